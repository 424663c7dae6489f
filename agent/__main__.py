"""`python -m agent`: run the host agent, or `--once` to print one round of samples as JSON."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time

from agent import collectors as registry
from agent.batcher import Batcher
from agent.config import Config, ConfigError, load
from agent.runner import Runner

log = logging.getLogger("agent")

SHUTDOWN_DRAIN_S = 3.0


def once(cfg: Config) -> int:
    """Print one round as JSON; a short priming round first, so rates and percents are present."""
    cols = registry.build(cfg, registry.default_os_layer(cfg))
    runner = Runner(cols, Batcher(cfg.host, cfg.window), None, None, cfg.interval)
    runner.round()
    time.sleep(min(cfg.interval, 0.5))
    samples = runner.round()
    for c in cols:
        getattr(c, "close", lambda: None)()
    rows = [
        {"metric": s.metric, "tags": s.tags, "unit": s.unit, "ts": s.ts, "value": s.value}
        for s in samples
    ]
    json.dump({"host": cfg.host, "samples": rows}, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


def run(cfg: Config) -> int:
    """Run until SIGTERM/SIGINT; then spool what is held and try to send it briefly."""
    if cfg.url.startswith("http://"):
        # http.client imports ssl (~6 MB of RSS) even for plain http; this process never needs
        # it then, so it is kept out. https URLs import it as usual.
        sys.modules.setdefault("ssl", None)  # type: ignore[arg-type]
    from agent.sender import Delivery, HttpClient
    from agent.spool import Spool

    if not cfg.token:
        log.error("no FLEETPULSE_TOKEN: the API will answer 401 and batches stay in the spool")
    spool = Spool(cfg.spool_dir, cfg.spool_max_batches, int(cfg.spool_max_mb * 1024 * 1024))
    delivery = Delivery(spool, HttpClient(cfg.url, cfg.token, cfg.timeout, cfg.ca_file))
    cols = registry.build(cfg, registry.default_os_layer(cfg))
    timings_file = cfg.extra.get("timings_file")
    runner = Runner(
        cols,
        Batcher(cfg.host, cfg.window, spool.carry()),
        spool,
        delivery,
        cfg.interval,
        keep_timings=100000 if timings_file else 0,
    )
    stop, send_stop = threading.Event(), threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %d: flushing to the spool and stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sender = threading.Thread(target=delivery.run, args=(send_stop,), name="sender", daemon=True)
    sender.start()
    log.info(
        "agent started: host=%s url=%s interval=%ss collectors=%s spool=%s (%d pending)",
        cfg.host, cfg.url, cfg.interval, ",".join(c.name for c in cols), cfg.spool_dir,
        spool.pending(),
    )  # fmt: skip
    runner.run(stop)  # returns after the held windows are in the spool
    send_stop.set()
    delivery.wake.set()
    sender.join(timeout=cfg.timeout + 1)
    if not sender.is_alive():
        delivery.drain(time.monotonic() + SHUTDOWN_DRAIN_S)
    delivery.client.close()
    for c in cols:
        getattr(c, "close", lambda: None)()
    if timings_file:
        runner.write_timings(timings_file)
    log.info("agent stopped; %d batch(es) left in the spool", spool.pending())
    spool.close()
    return 0


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
        return 2
    logging.basicConfig(
        level=getattr(logging, cfg.log_level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return once(cfg) if args.once else run(cfg)


if __name__ == "__main__":
    sys.exit(main())
