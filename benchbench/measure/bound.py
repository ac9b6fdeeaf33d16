"""Which side sets the pace: the input pipeline or the model. Framework-free.

Rates are images per second of the same configuration measured one after another in
one worker: the loader alone, the model alone (synthetic tensors on the device) and the
two together end to end (host→device copy included).
"""

from __future__ import annotations

TOLERANCE = 0.10  # rates within 10% of each other are "balanced"


def fmt_rate(rate: float) -> str:
    """410 → '410', 1250 → '1,250', 3.456 → '3.46'."""
    return f"{rate:,.0f}" if rate >= 100 else f"{rate:.3g}"


def classify(
    loader: float | None, model: float | None, end_to_end: float | None = None, tolerance: float = TOLERANCE
) -> dict:
    """{bound: input|compute|balanced|unknown, text, the rates, ratios}."""
    out = {
        "loader_rate": loader,
        "model_rate": model,
        "end_to_end_rate": end_to_end,
        "tolerance": tolerance,
        "end_to_end_vs_model": None,
        "end_to_end_vs_slower": None,
        "note": None,
    }
    if not loader or not model or loader <= 0 or model <= 0:
        missing = [n for n, r in (("loader", loader), ("model", model)) if not r or r <= 0]
        out.update(bound="unknown", text=f"unknown: no {' or '.join(missing)} rate")
        return out
    a, b = f"loader {fmt_rate(loader)} img/s", f"model {fmt_rate(model)} img/s"
    if loader < model * (1 - tolerance):
        out.update(bound="input", text=f"input-bound: {a} < {b}")
    elif model < loader * (1 - tolerance):
        out.update(bound="compute", text=f"compute-bound: {b} < {a}")
    else:
        out.update(bound="balanced", text=f"balanced: {a} ≈ {b} (within {tolerance:.0%})")
    if end_to_end:
        slower = min(loader, model)
        out["end_to_end_vs_model"] = end_to_end / model
        out["end_to_end_vs_slower"] = end_to_end / slower
        if end_to_end < slower * (1 - tolerance):
            out["note"] = (
                f"end to end {fmt_rate(end_to_end)} img/s is {end_to_end / slower:.0%} of the slower "
                "side: loader and model do not overlap fully (on a CPU they share the cores)"
            )
    return out
