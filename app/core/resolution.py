"""Read resolutions (contract section 6): ``30s``, ``30m``, or any whole multiple of 30 s
written ``Ns``, ``Nm``, ``Nh`` or ``Nd``; windows aligned to the epoch, right-labelled."""

from __future__ import annotations

import re

_FORM = re.compile(r"^([1-9][0-9]{0,9})([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
FORMS = "30s, 30m, auto, or a whole multiple of 30 s written Ns, Nm, Nh or Nd (1m, 5m, 2h, 1d)"
NATIVE = {30: "30s", 1800: "30m"}  # the stored series


def seconds(text: str) -> int | None:
    """The step of a resolution in seconds; None when it is not one of the allowed forms."""
    m = _FORM.fullmatch(text)
    if m is None:
        return None
    step = int(m.group(1)) * _UNIT[m.group(2)]
    return step if step % 30 == 0 else None


def stored_for(step: int) -> str:
    """The stored series a step is computed from: 30-minute where it divides it, else 30 s."""
    return "30m" if step % 1800 == 0 else "30s"
