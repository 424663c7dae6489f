"""Every bad field of a request, by its path, capped so a hostile body cannot make a huge 400."""

from __future__ import annotations

from app.core.errors import Invalid

MAX_DETAILS = 1000


class Problems(dict[str, list[str]]):
    """Field path -> reasons; ``raise_if_any`` turns them into one ``Invalid``."""

    def add(self, path: str, reason: str) -> None:
        """Note a reason, unless MAX_DETAILS fields are already named."""
        if len(self) < MAX_DETAILS or path in self:
            self.setdefault(path, []).append(reason)
        else:
            self.setdefault("_truncated", ["more invalid fields were not listed"])

    def raise_if_any(self) -> None:
        """A 400 naming every field noted so far."""
        if self:
            raise Invalid(summary(self), cap(dict(self)))


def cap(details: dict[str, list[str]]) -> dict[str, list[str]]:
    """At most MAX_DETAILS fields (plus the truncation note)."""
    return details if len(details) <= MAX_DETAILS + 1 else dict(list(details.items())[:MAX_DETAILS])


def summary(details: dict[str, list[str]], named: int = 3) -> str:
    """The one-line error: how many fields, the first few by name, the first one's reason."""
    paths = [k for k in details if k != "_truncated"]
    first = next(iter(details))
    shown = ", ".join(paths[:named]) + (", ..." if len(paths) > named else "")
    return f"invalid request: {len(paths)} bad field(s) ({shown}); {first}: {details[first][0]}"
