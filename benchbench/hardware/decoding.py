"""Decoding figures from a generate record: MBU for decode, MFU for prefill. Pure arithmetic.

A decode step of a dense transformer must read every weight it multiplies by and the KV cache
of every sequence once; with one or a few sequences it does little arithmetic per byte, so
its speed is bounded by memory bandwidth, and the honest efficiency figure is **MBU** (model
bandwidth utilisation):

    MBU = (weight bytes read per step + KV-cache bytes read per step) / time per output token
          / the device's peak memory bandwidth

Prefill processes the whole prompt at once and is bounded by compute: **MFU** = prefill
FLOPs / TTFT / the device's peak FLOP/s at the precision that ran.

The byte and FLOP counts are in the record's ``generate`` block, measured by the backend
(``weights_read_per_step_bytes``, ``kv_read_per_step_bytes``, ``prefill_flops``); the times are
the record's medians (``tpot_s.median``, ``ttft_s.median``); the peaks come from the device
catalogue (:mod:`benchbench.hardware.catalogue`). Every figure is ``None`` with a reason when
an input is missing, never a guess.
"""

from __future__ import annotations


def bytes_per_decode_step(weights_bytes: float, kv_cache_bytes: float) -> float:
    """What one decode step must read from device memory: the weights it multiplies by and
    the KV cache it attends over (bytes)."""
    if weights_bytes < 0 or kv_cache_bytes < 0:
        raise ValueError("byte counts cannot be negative")
    return float(weights_bytes) + float(kv_cache_bytes)


def achieved_bandwidth(bytes_per_step: float, time_per_token_s: float) -> float:
    """Bytes/s a decode step achieves: the bytes it must read over its time (one step makes
    one token for every sequence of the batch)."""
    if time_per_token_s <= 0:
        raise ValueError("time per output token must be positive")
    return bytes_per_step / time_per_token_s


def mbu(weights_bytes: float, kv_cache_bytes: float, time_per_token_s: float, peak_bandwidth_bps: float) -> float:
    """Model bandwidth utilisation, 0..1 (above 1: the bytes were not all read from device
    memory — a cache held them — or the peak is wrong)."""
    if peak_bandwidth_bps <= 0:
        raise ValueError("peak bandwidth must be positive")
    step = bytes_per_decode_step(weights_bytes, kv_cache_bytes)
    return achieved_bandwidth(step, time_per_token_s) / peak_bandwidth_bps


def mfu(flops: float, seconds: float, peak_flops_per_s: float) -> float:
    """Model FLOP utilisation, 0..1: ``flops`` done in ``seconds`` against the peak."""
    if seconds <= 0 or peak_flops_per_s <= 0:
        raise ValueError("seconds and peak FLOP/s must be positive")
    return flops / seconds / peak_flops_per_s


def _median(block: dict, key: str) -> float | None:
    part = block.get(key) or {}
    value = part.get("median") if isinstance(part, dict) else None
    return float(value) if value else None


def figures(generate: dict, peak_bandwidth_bps: float | None, peak_flops_per_s: float | None) -> dict:
    """MBU of decode and MFU of prefill for a record's ``generate`` block, with the bytes and
    FLOPs used, each ``None`` with a reason where an input is missing."""
    out: dict = {"mbu": None, "mfu_prefill": None, "decode_bytes_per_step": None, "achieved_bandwidth_bps": None}
    weights = generate.get("weights_read_per_step_bytes")
    kv = generate.get("kv_read_per_step_bytes")
    tpot = _median(generate, "tpot_s")
    if weights is None or kv is None:
        out["mbu_reason"] = "the record has no weight or KV-cache byte counts"
    elif tpot is None:
        out["mbu_reason"] = "the record has no time per output token"
    else:
        step = bytes_per_decode_step(weights, kv)
        out["decode_bytes_per_step"] = step
        out["achieved_bandwidth_bps"] = achieved_bandwidth(step, tpot)
        if peak_bandwidth_bps:
            out["mbu"] = mbu(weights, kv, tpot, peak_bandwidth_bps)
        else:
            out["mbu_reason"] = "no peak memory bandwidth for this device in the catalogue"
    flops = generate.get("prefill_flops")
    ttft = _median(generate, "ttft_s")
    if flops is None:
        out["mfu_prefill_reason"] = generate.get("prefill_flops_note") or "the record has no prefill FLOP count"
    elif ttft is None:
        out["mfu_prefill_reason"] = "the record has no TTFT"
    elif not peak_flops_per_s:
        out["mfu_prefill_reason"] = "no peak FLOP/s for this device and precision in the catalogue"
    else:
        out["mfu_prefill"] = mfu(flops, ttft, peak_flops_per_s)
    return out
