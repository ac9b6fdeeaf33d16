"""The generation timing loop: prefill timed apart from decode, every output token on its own.

Pure: no framework. The backend hands over two callables (:class:`Steps`) and the clock is
injected, so a fake model with known per-step costs gives exactly those times through this
very loop (``tests/test_generate.py``).

One *run* generates ``new_tokens`` tokens for each of the batch's sequences (greedy, KV
cache on):

* ``reset()`` (optional, untimed) empties the KV cache before each run.
* ``prefill()`` runs the prompt through the model, fills the KV cache and picks every
  sequence's first output token; it returns with the device synchronised. Its time is the
  run's **TTFT** (time to first token).
* ``decode(state)`` runs the previous tokens through the model against the cache and picks
  the next ones, ``new_tokens - 1`` times; each returns with the device synchronised and
  is timed on its own: a **time per output token** (TPOT; vLLM's inter-token latency).
  One clock reading ends a step and starts the next, so a run's end-to-end latency is
  exactly TTFT + the sum of its TPOTs.

The rules are those of :mod:`benchbench.measure.timing`: the first run is cold (kept apart,
never in the samples), untimed warm-up runs until settled (the same warm-up function, on
whole runs), then timed runs until ``min_time`` and ``min_iters`` (runs) are reached and
the 95% intervals of the median TTFT and of the median TPOT are both within
``target_rel_ci`` — or ``max_time`` / ``max_iters`` stops it, and the record says so. The
record's ``samples`` are the single-token decode times; its ``generate`` block
(:func:`summary`) holds TTFT, TPOT and end-to-end statistics, token rates and what the
backend measured about the model (KV-cache and weight bytes, FLOPs).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from benchbench.case import Settings
from benchbench.measure import processes as proc_stats
from benchbench.measure.stats import percentile, rel_ci_halfwidth
from benchbench.measure.timing import CI_CHECK_GROWTH, Timing, _warm_up

Clock = Callable[[], float]

DEFINITIONS = {
    "ttft": "time to first token: the prompt (batch × prompt_len tokens) through the model with the KV "
    "cache on, and every sequence's first output token chosen (greedy), device synchronised",
    "tpot": "time per output token: one decode step (each sequence's last token against the KV cache, "
    "next token chosen), device synchronised; single steps, never block means",
    "e2e": "one run: TTFT + the new_tokens - 1 decode steps (the clock reading that ends a step starts the next)",
    "decode_tokens_per_s": "batch × decode steps / their summed time (the prefill's token excluded)",
    "output_tokens_per_s": "batch × new_tokens × runs / summed end-to-end time (prefill included)",
    "prefill_tokens_per_s": "batch × prompt_len / median TTFT",
}


@dataclass(frozen=True)
class Steps:
    """What a backend gives the loop for one generate case."""

    prefill: Callable[[], Any]  # -> state; device synchronised on return
    decode: Callable[[Any], Any]  # state -> state; one token per sequence, synchronised
    new_tokens: int  # output tokens per sequence in one run (the prefill's first one included)
    # before each run, untimed: an empty KV cache (a server's cache is allocated before a request comes)
    reset: Callable[[], None] | None = None
    # after the timed window: what the backend measured about the model and its cache (KV-cache
    # and weight bytes, FLOPs: :mod:`benchbench.hardware.decoding` turns them into MBU and MFU)
    facts: Callable[[], dict] | None = None


@dataclass(frozen=True)
class GenerateTiming:
    """What the loop observed; ``timing.samples`` are the single-token decode times (s)."""

    timing: Timing
    ttft: list[float]  # s, one per timed run
    e2e: list[float]  # s, one per timed run
    first_ttft_s: float  # the cold first run (never in the samples)
    first_e2e_s: float
    new_tokens: int  # per sequence and run


def run_once(steps: Steps, clock: Clock) -> tuple[float, list[float]]:
    """One generation: (TTFT, the decode steps' times), all in seconds."""
    if steps.reset is not None:
        steps.reset()
    t0 = clock()
    state = steps.prefill()
    prev = clock()
    ttft = prev - t0
    tokens: list[float] = []
    for _ in range(steps.new_tokens - 1):
        state = steps.decode(state)
        now = clock()
        tokens.append(now - prev)
        prev = now
    return ttft, tokens


def _rel(xs: list[float]) -> float | None:
    return rel_ci_halfwidth(sorted(xs)) if xs else None


def measure(
    steps: Steps,
    settings: Settings,
    clock: Clock = time.perf_counter,
    timed_window: Callable[[], AbstractContextManager] | None = None,
) -> GenerateTiming:
    """Time whole generations by the module docstring's rules; ``min_iters``/``max_iters``
    count runs. ``timed_window`` (the telemetry sampler) brackets the timed runs only."""
    if steps.new_tokens < 2:
        raise ValueError("new_tokens must be at least 2: one prefill token and at least one decode step")
    s = settings
    first_ttft, first_tokens = run_once(steps, clock)

    def one_run() -> None:
        run_once(steps, clock)

    warm, warm_s, settled = _warm_up(one_run, s, clock)

    ttfts: list[float] = []
    e2es: list[float] = []
    tokens: list[float] = []
    next_check = s.min_iters
    stop, rel = "", None
    with timed_window() if timed_window is not None else contextlib.nullcontext():
        start = clock()
        while True:
            ttft, steps_s = run_once(steps, clock)
            ttfts.append(ttft)
            tokens += steps_s
            e2es.append(ttft + math.fsum(steps_s))
            elapsed = clock() - start
            runs = len(ttfts)
            if not s.stop_on_ci and elapsed >= s.min_time and runs >= s.min_iters:
                stop = "share_done"  # one process's share of a case measured in several
                break
            if elapsed >= s.min_time and runs >= s.min_iters and runs >= next_check:
                both = [_rel(ttfts), _rel(tokens)]
                rel = None if None in both else max(r for r in both if r is not None)
                if rel is not None and rel <= s.target_rel_ci:
                    stop = "ci_target_met"
                    break
                next_check = max(runs + 1, math.ceil(runs * CI_CHECK_GROWTH))
            if runs >= s.min_iters and elapsed >= s.max_time:
                stop = "max_time"
                break
            if runs >= s.max_iters:
                stop = "max_iters"
                break
        wall = clock() - start
    timing = Timing(
        samples=tokens,
        block_size=1,
        first_iter_s=first_ttft + math.fsum(first_tokens),
        warmup_iters=len(warm),
        warmup_s=warm_s,
        warmup_settled=settled,
        timed_wall_s=wall,
        iterations=len(tokens),
        stop_reason=stop,
        target_met=stop == "ci_target_met",
        final_rel_ci=_rel(tokens),
    )
    return GenerateTiming(timing, ttfts, e2es, first_ttft, timing.first_iter_s, steps.new_tokens)


def output_tokens(gt: GenerateTiming, batch: int) -> int:
    """Tokens generated in the timed window: every sequence's, every run's, the prefill's first included."""
    return batch * gt.new_tokens * len(gt.ttft)


def part(gt: GenerateTiming, batch: int, prompt_len: int) -> dict:
    """One process's ``generate`` block before :func:`summary`: its raw TTFT and end-to-end
    samples and the case's shape (the decode samples are the record's ``samples``)."""
    return {
        "batch": batch,
        "prompt_len": prompt_len,
        "new_tokens": gt.new_tokens,
        "runs": len(gt.ttft),
        "ttft_samples": list(gt.ttft),
        "e2e_samples": list(gt.e2e),
        "first_run": {"ttft_s": gt.first_ttft_s, "e2e_s": gt.first_e2e_s, "note": "cold: never in the samples"},
    }


def _stats(per_process: Sequence[Sequence[float]]) -> dict | None:
    """Order statistics over every process's samples pooled, and the median of the process
    medians with the interval that covers a re-run (:func:`benchbench.measure.processes.combine`)."""
    runs = [list(xs) for xs in per_process if xs]
    if not runs:
        return None
    xs = sorted(t for r in runs for t in r)
    ps = proc_stats.combine(runs)
    return {
        "n": len(xs),
        "median": ps.median,
        "ci95_low": ps.ci95_low,
        "ci95_high": ps.ci95_high,
        "rel_ci": ps.rel_ci,
        "interval_scope": ps.interval_scope,
        "mean": math.fsum(xs) / len(xs),
        "min": xs[0],
        "max": xs[-1],
        "p50": percentile(xs, 50),
        "p90": percentile(xs, 90),
        "p95": percentile(xs, 95),
        "p99": percentile(xs, 99),
    }


def summary(parts: Sequence[dict], tokens: Sequence[Sequence[float]], facts: dict | None = None) -> dict:
    """The record's ``generate`` block from one or several processes' :func:`part` blocks and
    their decode samples (``tokens``, in the same order): TTFT, TPOT and end-to-end statistics
    (seconds), the token rates (tokens/s), the raw TTFT and end-to-end samples, and ``facts``
    (KV-cache and weight bytes, FLOPs: measured once per case) — else the first part's."""
    if not parts:
        return {}
    first = parts[0]
    batch, prompt_len, new_tokens = int(first["batch"]), int(first["prompt_len"]), int(first["new_tokens"])
    ttft = [list(p.get("ttft_samples") or []) for p in parts]
    e2e = [list(p.get("e2e_samples") or []) for p in parts]
    decode_s = math.fsum(math.fsum(t) for t in tokens)
    decode_n = sum(len(t) for t in tokens)
    e2e_s = math.fsum(math.fsum(x) for x in e2e)
    runs = sum(len(x) for x in e2e)
    ttft_stats = _stats(ttft)
    out: dict[str, Any] = {
        "batch": batch,
        "prompt_len": prompt_len,
        "new_tokens": new_tokens,
        "runs": runs,
        "processes": len(parts),
        "output_tokens": batch * new_tokens * runs,
        "ttft_s": ttft_stats,
        "tpot_s": _stats(tokens),
        "e2e_s": _stats(e2e),
        "decode_tokens_per_s": batch * decode_n / decode_s if decode_s > 0 else None,
        "output_tokens_per_s": batch * new_tokens * runs / e2e_s if e2e_s > 0 else None,
        "prefill_tokens_per_s": None,
        "ttft_samples": [t for x in ttft for t in x],
        "e2e_samples": [t for x in e2e for t in x],
        "first_run": first.get("first_run"),
        "definitions": DEFINITIONS,
    }
    if ttft_stats and ttft_stats["median"] > 0:
        out["prefill_tokens_per_s"] = batch * prompt_len / ttft_stats["median"]
    out.update(facts_of(first) if facts is None else facts)
    return out


_COMPUTED = frozenset({"batch", "prompt_len", "new_tokens", "runs", "processes", "output_tokens", "ttft_s",
                       "tpot_s", "e2e_s", "decode_tokens_per_s", "output_tokens_per_s", "prefill_tokens_per_s",
                       "ttft_samples", "e2e_samples", "first_run", "definitions"})  # fmt: skip


def facts_of(block: dict) -> dict:
    """The measured-once facts of a ``generate`` block: what :func:`summary` does not compute."""
    return {k: v for k, v in block.items() if k not in _COMPUTED}


def combine(blocks: Sequence[dict], tokens: Sequence[Sequence[float]]) -> dict:
    """A case's ``generate`` block from its processes' blocks (each a :func:`summary` of one
    process) and decode samples, in process order: statistics recomputed over all of them,
    each with the between-process interval; the facts measured once (process 1's) kept."""
    if not blocks or not blocks[0]:
        return {}
    return summary(blocks, tokens)
