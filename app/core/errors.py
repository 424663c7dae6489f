"""Domain errors: raised by ingest and storage, mapped to HTTP answers by ``app.web.errors``."""

from __future__ import annotations


class Invalid(Exception):
    """A refused request (400): ``details`` maps each bad field's path to its reasons."""

    def __init__(self, message: str, details: dict[str, list[str]]) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class TooLarge(Exception):
    """A request over a documented size limit (413), refused before it is all read."""


class StorageUnavailable(Exception):
    """The database cannot be reached or did not answer in time (503, retry later)."""


class StorageFull(Exception):
    """The database has no space left (507); nothing of the request was stored."""
