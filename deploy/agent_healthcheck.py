"""Docker health check for the agent container: exit 0 while `python -m agent` runs.

The agent has no port to ask. With `pid: host` the container sees every process of
the docker host, so the agent is looked for among the processes that share this
check's cgroup (the container's), not merely by name.
"""

from __future__ import annotations

import itertools
import os
import sys

PROC = "/proc"


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def is_agent(argv: list[bytes]) -> bool:
    """True for a command line that runs the agent module (`... -m agent ...`)."""
    return any(a == b"-m" and b == b"agent" for a, b in itertools.pairwise(argv))


def agent_running(proc: str = PROC) -> bool:
    me = os.getpid()
    own_cgroup = _read(f"{proc}/self/cgroup")
    for name in os.listdir(proc):
        if not name.isdigit() or int(name) == me:
            continue
        cmdline = _read(f"{proc}/{name}/cmdline")
        if not cmdline or not is_agent(cmdline.rstrip(b"\0").split(b"\0")):
            continue
        if own_cgroup is None or _read(f"{proc}/{name}/cgroup") == own_cgroup:
            return True
    return False


def main() -> int:
    if agent_running():
        return 0
    print("no `python -m agent` process in this container", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
