"""Small network helpers every launcher and load generator needs."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nothing listens on now, so parallel servers never collide on a fixed one."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def samples_headers(token: str) -> dict[str, str]:
    """The headers an agent sends with a gzipped batch."""
    return {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
    }
