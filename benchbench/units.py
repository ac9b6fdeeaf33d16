"""How figures are written for people: one place for units, used by the terminal and the report."""

from __future__ import annotations

import html
import math


def fmt_bytes(n: float | None) -> str:
    """Memory in MiB with thousands separators (tables and the report); ``n/a`` when unknown."""
    if n is None:
        return "n/a"
    return f"{n / 2**20:,.0f} MiB"


def fmt_size(n: float) -> str:
    """A size with the largest binary unit that keeps it readable: 512 B, 3.2 MiB, 1.5 GiB."""
    for unit in ("B", "KiB", "MiB"):
        if abs(n) < 1024:
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def fmt_ms(seconds: float | None) -> str:
    """Seconds shown as milliseconds with precision by size; ``n/a`` when unknown."""
    if seconds is None:
        return "n/a"
    ms = seconds * 1e3
    return f"{ms:,.3f}" if ms < 1 else f"{ms:,.2f}" if ms < 100 else f"{ms:,.1f}"


def esc(value: object, quote: bool = True) -> str:
    """HTML text of a value (attributes need ``quote``); None and NaN are empty."""
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    return html.escape("" if missing else str(value), quote=quote)
