"""A reserve file beside the spool: room to give back when the disk is full.

On a full file system SQLite cannot even delete (a delete writes to the WAL first), so the
spool keeps RESERVE_BYTES in `SPOOL_DIR/reserve`. The first SQLITE_FULL releases it: the
write that failed then goes through, and the spool has room to drop its oldest batches for
the writes after it. It is made again once the file system has room for it and more.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

RESERVE_FILE = "reserve"
RESERVE_BYTES = 1 << 20
REMAKE_WHEN_FREE = 4 * RESERVE_BYTES  # free bytes the file system needs before it is re-made


def make(directory: Path) -> bool:
    """Write the reserve if it is missing and the disk has room; True when it is there."""
    path = directory / RESERVE_FILE
    try:
        if path.stat().st_size == RESERVE_BYTES:
            return True
    except FileNotFoundError:
        pass
    try:
        st = os.statvfs(directory)
        if st.f_bavail * st.f_frsize < REMAKE_WHEN_FREE:
            return False
        with open(path, "wb") as fh:
            fh.write(b"\0" * RESERVE_BYTES)  # real blocks: a sparse file would give back nothing
    except OSError:
        path.unlink(missing_ok=True)
        return False
    return True


def release(directory: Path) -> bool:
    """Give the reserve's room back to the file system; False when there was none."""
    try:
        (directory / RESERVE_FILE).unlink()
    except FileNotFoundError:
        return False
    log.warning("disk full: released the spool's %d-byte reserve", RESERVE_BYTES)
    return True
