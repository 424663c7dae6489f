"""The node's place in its fleet: join at start (refusing other settings), beat while serving,
leave on a clean stop. One node is one gunicorn master and its workers."""

from __future__ import annotations

import logging
import socket
import threading

from app.core.errors import StorageUnavailable
from app.storage.meta import MetaStore, NodeMismatch
from app.storage.metadb import is_shared
from app.web.jobs import Background
from app.web.settings import Settings

log = logging.getLogger("fleetpulse.nodes")

BEAT = 15.0  # seconds between heartbeats (a node counts as gone after NODE_TTL = 45 s)


def node_name(settings: Settings, bind: list[str] | str) -> str:
    """FLEETPULSE_NODE_ID, else this machine's name and the address it serves."""
    if settings.node_id:
        return settings.node_id
    first = bind[0] if isinstance(bind, list) and bind else str(bind)
    return f"{socket.gethostname()}:{first}"


def instance(master_pid: int) -> str:
    """This run of the node: its machine and gunicorn master (two machines given one
    FLEETPULSE_NODE_ID stay two nodes)."""
    return f"{socket.gethostname()}/{master_pid}"


def join(settings: Settings, node: str, run: str) -> None:
    """Check the metadata database answers and no live node runs with other settings, then
    register; RuntimeError (gunicorn's clean refusal) names what is wrong."""
    try:
        meta = MetaStore(settings.metadata_url)
    except ValueError as e:  # a wrong or unreachable FLEETPULSE_METADATA_URL
        raise RuntimeError(str(e)) from e
    except StorageUnavailable as e:  # an SQLite file that cannot be opened
        raise RuntimeError(f"FLEETPULSE_METADATA_URL: cannot use it: {e}") from e
    if not is_shared(settings.metadata_url):  # one node: nothing to agree with
        meta.close()
        return
    try:
        meta.join(node, run, settings.fleet_settings())
    except NodeMismatch as e:
        raise RuntimeError(f"refusing to start node {node!r}: {e}") from e
    except StorageUnavailable as e:
        raise RuntimeError(f"FLEETPULSE_METADATA_URL: cannot use it: {e}") from e
    finally:
        meta.close()  # nothing open crosses the fork into the workers


def leave(settings: Settings, node: str, run: str) -> None:
    """Deregister on a clean stop, so the fleet can restart with new settings at once."""
    if not is_shared(settings.metadata_url):
        return
    meta = MetaStore(settings.metadata_url)
    try:
        meta.leave(node, run)
    finally:
        meta.close()


class Heartbeat(Background):
    """A worker's thread that keeps its node's row fresh; missed beats are only logged."""

    def __init__(self, meta: MetaStore, settings: Settings, run: str, every: float = BEAT) -> None:
        super().__init__("fleetpulse-beat", self._loop)
        self.meta, self.node, self.run, self.every = meta, settings.node_id, run, every
        self.settings = settings.fleet_settings()

    def _loop(self, stop: threading.Event) -> None:
        failing = False
        while not stop.wait(self.every):
            try:
                self.meta.beat(self.node, self.run, self.settings)
                failing = False
            except Exception as e:  # the database is down: requests answer 503 meanwhile
                if not failing:
                    log.warning("heartbeat of node %s failed: %s", self.node, e)
                failing = True
