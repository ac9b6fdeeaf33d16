"""Fidelity of a variant against the fp32 reference: numpy arrays in, a dict out.

No framework here: each backend runs the fp32 model and then the variant on the same
seeded weights and the same fixed seeded input batch (outside the timed window) and hands
the two output arrays to :func:`compare`.
"""

from __future__ import annotations

import numpy as np

REFERENCE = "fp32"
SAMPLES = 64  # the fixed batch: at least this many samples (a whole number of the case's batches)
SEED_OFFSET = 1000
DEGENERATE = 1e-6  # mean |fp32 output| below this: the outputs are noise-level, top-1 is a coin toss  # the fidelity batch's seed is the case seed + this (not the timed input's)


def samples_for(batch_size: int, at_least: int = SAMPLES) -> int:
    """At least ``at_least`` samples, in whole batches of ``batch_size`` (so a compiled or
    traced variant sees the shape it was built for)."""
    return -(-max(at_least, batch_size) // batch_size) * batch_size


def method(batch: int, framework: str) -> str:
    return (
        f"same seeded weights, fixed seeded batch of {batch} ({framework}), variant vs fp32 outputs in eval "
        "mode; top-1 = argmax agreement; single-output sigmoid models: agreement of output > 0.5"
    )


def compare(
    reference, candidate, *, seed: int, method: str, threshold: float = 0.5, reference_name: str = REFERENCE
) -> dict:
    """Top-1 agreement (0..1), max and mean absolute difference of ``candidate`` against
    ``reference`` (both (N, ...) arrays of outputs; flattened per sample). One output per
    sample (a sigmoid) is a binary decision at ``threshold``."""
    ref = np.asarray(reference, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    if ref.shape != cand.shape:
        raise ValueError(f"output shapes differ: reference {ref.shape}, variant {cand.shape}")
    n = ref.shape[0]
    ref2, cand2 = ref.reshape(n, -1), cand.reshape(n, -1)
    finite = np.isfinite(cand2).all(axis=1)
    if ref2.shape[1] == 1:
        top1 = (ref2[:, 0] > threshold) == (cand2[:, 0] > threshold)
    else:
        top1 = ref2.argmax(axis=1) == cand2.argmax(axis=1)
    top1 &= finite
    diff = np.abs(ref2 - cand2)
    out = {
        "reference": reference_name,
        "top1_agreement": float(top1.mean()) if n else None,
        "max_abs_diff": float(diff.max()) if diff.size and finite.all() else None,
        "mean_abs_diff": float(diff.mean()) if diff.size and finite.all() else None,
        "reference_mean_abs": float(np.abs(ref2).mean()) if ref2.size else None,
        "batch": int(n),
        "seed": int(seed),
        "method": method,
    }
    scale = out["reference_mean_abs"]
    if out["mean_abs_diff"] is not None and scale:
        out["relative_mean_abs_diff"] = out["mean_abs_diff"] / scale
    if scale is not None and scale < DEGENERATE:
        out["note"] = (
            f"the fp32 outputs are ~0 (mean |output| {scale:.2g}: random weights): top-1 agreement "
            "compares near-ties and means little here; see relative_mean_abs_diff"
        )
    if not finite.all():
        out["nonfinite_samples"] = int((~finite).sum())
        out["diff_reason"] = "the variant gave non-finite outputs (overflow): differences are undefined"
    return out


def identical(seed: int, why: str, reference_name: str = REFERENCE) -> dict:
    """A variant whose forward pass is the fp32 one by construction (fp32 itself, the
    transfer pair before training): agreement 1, differences 0, and the reason."""
    return {
        "reference": reference_name,
        "top1_agreement": 1.0,
        "max_abs_diff": 0.0,
        "mean_abs_diff": 0.0,
        "batch": None,
        "seed": int(seed),
        "method": f"not recomputed: {why}",
    }


def unavailable(reason: str) -> dict:
    return {"available": False, "reason": reason}
