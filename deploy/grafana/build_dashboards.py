"""Generate the Grafana dashboards in deploy/grafana/dashboards/ (InfluxQL).

    .venv/bin/python deploy/grafana/build_dashboards.py          # rewrite the JSON files
    .venv/bin/python deploy/grafana/build_dashboards.py --check  # exit 1 if they are stale

Every time-series query reads the 30-second series (`rp_30s`) for the recent past and
the 30-minute series (`rp_30m`) for what is older, in one InfluxQL statement with two
subqueries split at `now() - $hires` (a dashboard variable): see README.md here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dashgen.host import host_detail
from dashgen.overview import fleet_overview

OUT_DIR = Path(__file__).resolve().parent / "dashboards"
DASHBOARDS = {
    "fleet-overview.json": fleet_overview,
    "host-detail.json": host_detail,
}


def render() -> dict[str, str]:
    """Each file's text, exactly as written (the --check compares it byte for byte)."""
    return {name: json.dumps(build(), indent=2) + "\n" for name, build in DASHBOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    """Write the dashboards, or with --check exit 1 if a file differs from what would be."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is stale")
    args = parser.parse_args(argv)
    stale = []
    for name, text in render().items():
        path = OUT_DIR / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print("stale dashboards (run build_dashboards.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
