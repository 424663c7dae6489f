"""`python -m agent`: run the host agent, or `--once` to print one round of samples as JSON.

Exit status: 0 after SIGTERM/SIGINT (the open batch flushed), 2 for a configuration error,
3 when another live agent holds the spool directory. Only this entry point exits.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from agent import collectors as registry
from agent.batcher import Batcher
from agent.config import Config, ConfigError, load
from agent.runner import Runner

if TYPE_CHECKING:
    from agent.collectors.base import Collector
    from agent.pipeline import Pipeline

log = logging.getLogger("agent")

SHUTDOWN_DRAIN_S = 3.0
EXIT_CONFIG, EXIT_SPOOL_BUSY = 2, 3


def once(cfg: Config) -> int:
    """Print one round as JSON; a short priming round first, so rates and percents are present."""
    cols = registry.build(cfg, registry.default_os_layer(cfg))
    runner = Runner(cols, Batcher(cfg.host, cfg.window), None, None, cfg.interval)
    runner.round()
    time.sleep(min(cfg.interval, 0.5))
    samples = runner.round()
    for c in cols:
        c.close()
    rows = [
        {"metric": s.metric, "tags": s.tags, "unit": s.unit, "ts": s.ts, "value": s.value}
        for s in samples
    ]
    json.dump({"host": cfg.host, "samples": rows}, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


def run(cfg: Config, collectors: Sequence[Collector] | None = None) -> int:
    """Run until SIGTERM/SIGINT; then spool what is held and try to send it briefly.

    collectors: injected ones (a test, or bench/agent.py timing each), else the configured.
    Raises SpoolBusy when another live agent holds cfg.spool_dir.
    """
    if cfg.url.startswith("http://"):
        # http.client imports ssl (~6 MB of RSS) even for plain http; this process never needs
        # it then, so it is kept out. https URLs import it as usual.
        sys.modules.setdefault("ssl", None)  # type: ignore[arg-type]
    from agent.pipeline import Pipeline

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: flushing to the spool and stopping", signum)
        stop.set()

    def configured() -> Sequence[Collector]:
        if collectors is not None:
            return collectors
        return registry.build(cfg, registry.default_os_layer(cfg))

    signal.signal(signal.SIGTERM, on_signal)  # from here on a stop flushes, never loses
    signal.signal(signal.SIGINT, on_signal)
    pipe = Pipeline(cfg, configured)  # the spool is this agent's from here on
    _token(cfg, pipe, stop)
    log.info(
        "agent started: host=%s url=%s interval=%ss collectors=%s spool=%s (%d pending, "
        "%d journaled point(s) restored)",
        cfg.host, cfg.url, cfg.interval, ",".join(c.name for c in pipe.collectors),
        cfg.spool_dir, pipe.spool.pending(), pipe.restored,
    )  # fmt: skip
    pipe.run(stop)  # returns after the held windows are in the spool
    left = pipe.close(time.monotonic() + cfg.timeout + 1, SHUTDOWN_DRAIN_S)
    log.info(
        "agent stopped; %d sample(s) batched since start, %d batch(es) left in the spool",
        pipe.runner.batcher.accepted, left,
    )  # fmt: skip
    return 0


def _token(cfg: Config, pipe: Pipeline, stop: threading.Event) -> None:
    """The agent token: configured, kept by an earlier enrollment, or enrolled for now."""
    from agent import enroll

    client = pipe.delivery.client
    if cfg.token:
        return
    kept = enroll.saved_token(cfg.spool_dir)
    if kept:
        client.set_token(kept)
    elif cfg.enroll_token:

        def got(token: str) -> None:
            client.set_token(token)
            pipe.delivery.wake.set()  # send what waited

        job = enroll.Enrollment(cfg, got)
        threading.Thread(target=job.run, args=(stop,), name="enroll", daemon=True).start()
    else:
        log.error("no FLEETPULSE_TOKEN: the API will answer 401 and batches stay in the spool")


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and the configuration, then run or print one round."""
    parser = argparse.ArgumentParser(prog="python -m agent", description="fleetpulse host agent")
    parser.add_argument("--config", metavar="FILE", help="TOML file (environment overrides it)")
    parser.add_argument("--once", action="store_true", help="print one round as JSON and exit")
    args = parser.parse_args(argv)
    try:
        cfg = load(args.config)
    except ConfigError as exc:
        print(f"fleetpulse-agent: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    logging.basicConfig(
        level=getattr(logging, cfg.log_level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.once:
        return once(cfg)
    from agent.spool import SpoolBusy  # after logging: --once never opens the spool

    try:
        return run(cfg)
    except SpoolBusy as exc:
        print(f"fleetpulse-agent: {exc}", file=sys.stderr)
        return EXIT_SPOOL_BUSY


if __name__ == "__main__":
    sys.exit(main())
