"""``benchbench list variants``: which framework runs each variant on which devices and modes."""

from __future__ import annotations

from benchbench.registry import VARIANT_FRAMEWORKS, VARIANTS

_MODE_SHORT = {"inference": "inf", "train": "train"}


def _cell(col: dict | None) -> str:
    if col is None:
        return "-"
    return f"{','.join(col['devices'])} {'+'.join(_MODE_SHORT.get(m, m) for m in col['modes'])}"


def support_lines() -> list[str]:
    """A plain-text table: variant, one column per framework (devices, modes; '-' = not
    available), then the description."""
    rows = [("variant", *VARIANT_FRAMEWORKS, "description")]
    for name, entry in VARIANTS.items():
        shown = name
        if entry.get("param"):
            shown += ":" + ("FRACTION" if entry["param"].get("fraction") else "MODE")
        rows.append((shown, *(_cell(entry.get(fw)) for fw in VARIANT_FRAMEWORKS), entry["description"]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + "  " + r[-1] for r in rows]
    lines.append(
        "(inf = inference; '-' = not available for that framework: `benchbench run --dry-run` says why; "
        "a parameter after ':' is optional)"
    )
    return lines
