"""`python -m tests.agent_tick`: the real agent (`agent.__main__.run`) with a test collector.

The collector is a test's, not the agent's: it is injected here, never in the collector
table. Each round it emits one `test.tick` sample and appends its timestamp to the file
named by TICK_LOG (written before the sample is returned, so a SIGKILL never hides one the
agent took); a test then counts every sample the API stored against this log.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

from agent import collectors as registry
from agent.__main__ import run
from agent.collectors.base import CollectorBase, Metric
from agent.config import load
from agent.samples import Sample

TICK = Metric("test.tick", "count")


class TickCollector(CollectorBase):
    """One sample per round, each logged with its timestamp as the batcher files it."""

    name = "tick"
    metrics = (TICK,)

    def __init__(self, log_path: Path) -> None:
        self._log = open(log_path, "a", buffering=1)  # noqa: SIM115  (held for the run)

    def collect(self, now: float | None = None) -> list[Sample]:
        """The sample, logged first: the log may hold one the agent never got to keep."""
        ts = round(time.time() if now is None else now, 3)
        self._log.write(f"{ts!r}\n")  # one write(2): in the page cache before it returns
        return [TICK.sample({}, ts, 1.0)]

    def close(self) -> None:
        """Close the log."""
        self._log.close()


def main() -> int:
    """Run the agent with its configured collectors plus the tick."""
    cfg = load()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cols = [
        *registry.build(cfg, registry.default_os_layer(cfg)),
        TickCollector(Path(os.environ["TICK_LOG"])),
    ]
    return run(cfg, cols)


if __name__ == "__main__":
    sys.exit(main())
