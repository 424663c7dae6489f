"""gunicorn settings: ``gunicorn -c gunicorn.conf.py`` starts the API (CONTRACT.md section 1)."""

import logging
import multiprocessing
import os

wsgi_app = "app.wsgi:application"
bind = [os.environ.get("FLEETPULSE_BIND") or "0.0.0.0:8000"]
# One process per core, plus one to cover I/O waits (FLEETPULSE_WORKERS overrides). Sync workers
# by default: the work per request is CPU (JSON, numpy, SQLite) and the 2-core bench measured
# gthread slower (bench/README.md). FLEETPULSE_THREADS > 1 gives gthread workers: keep-alive,
# and requests of one worker that wait on InfluxDB together share one /write (group commit,
# app/storage/influxdb/group.py), which pays where influxd's fsync or the network is slow.
workers = int(os.environ.get("FLEETPULSE_WORKERS") or multiprocessing.cpu_count() + 1)
threads = int(os.environ.get("FLEETPULSE_THREADS") or 1)
worker_class = "gthread" if threads > 1 else "sync"
# Never preload: the app opens SQLite, and an SQLite connection (or its lock state) carried
# across fork() into workers corrupts concurrent writes. Each worker builds its own app.
preload_app = False
timeout = 30
graceful_timeout = 20
keepalive = 5
max_requests = 0
# gunicorn >= 25 opens a control socket (``gunicornc``) at one fixed path in $HOME by default:
# an admin surface we do not use, shared by every gunicorn of that user, and a thread in the
# master that is stopped and restarted around every worker fork. Off.
control_socket_disable = True
accesslog = None  # the app logs one line per request itself
errorlog = "-"
loglevel = os.environ.get("FLEETPULSE_LOG_LEVEL", "info").lower()
# TLS straight from gunicorn when no reverse proxy terminates it (see SECURITY.md).
certfile = os.environ.get("FLEETPULSE_TLS_CERT") or None
keyfile = os.environ.get("FLEETPULSE_TLS_KEY") or None


# What the master makes before it forks, for every worker to share (a reload re-reads this
# file, so on_reload makes them again for the new workers).
_shared: dict = {}


def on_starting(server):
    """Before any worker: the metadata database must answer and every live node of the fleet
    run with the same settings (else a clear refusal, nothing started); then the per-token
    rate-limit buckets every worker shares."""
    from app.web import nodes
    from app.web.ratelimit import SharedBuckets
    from app.web.settings import Settings

    try:
        settings = Settings.from_env()
    except ValueError as e:
        raise RuntimeError(str(e)) from e
    node, run = nodes.node_name(settings, server.cfg.bind), nodes.instance(os.getpid())
    nodes.join(settings, node, run)
    os.environ["FLEETPULSE_NODE_ID"] = node  # the workers beat under the same name
    _shared["node"] = (settings, node, run)
    _shared["buckets"] = SharedBuckets()


def on_reload(server):
    on_starting(server)


def on_exit(server):
    """A clean stop leaves the fleet, so it may restart with other settings at once."""
    if "node" in _shared:
        from app.web import nodes

        try:
            nodes.leave(*_shared["node"])
        except Exception as e:  # the database is down: the row ages out instead
            server.log.warning("leaving the fleet: %s", e)


def post_worker_init(worker):
    """Each worker starts its job thread after the fork; the lease makes each slot run once."""
    logging.basicConfig(
        level=os.environ.get("FLEETPULSE_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(process)d %(levelname)s %(name)s %(message)s",
    )
    from app.storage.metadb import is_shared

    app = worker.wsgi
    ext = app.extensions["fleetpulse"]
    if "buckets" in _shared:
        ext.limiter.share(_shared["buckets"])  # one rate per token across every worker
    if ext.settings.jobs:
        ext.jobs.start()
    if ext.settings.node_id and is_shared(ext.settings.metadata_url):
        from app.web import nodes
        from app.web.nodes import Heartbeat

        Heartbeat(ext.meta, ext.settings, nodes.instance(os.getppid())).start()
    worker.log.info("Worker ready (pid: %s)", worker.pid)
