"""The terminal table's note column for generate and fit records: TTFT and time to target
are in the table, not only in the records and the report."""

from __future__ import annotations

from benchbench.cli.display import generate_note, note, quality_note
from benchbench.results import Record

CASE = {"framework": "torch", "model": "tiny_decoder", "batch_size": 1, "device": "cpu", "mode": "generate",
        "variant": "fp32", "settings": {"target_rel_ci": 0.02}}  # fmt: skip


def test_generate_note_gives_ttft_with_its_interval_the_token_p99_and_the_decode_rate():
    gen = {
        "ttft_s": {"median": 0.0123, "rel_ci": 0.031},
        "tpot_s": {"median": 0.004, "p99": 0.0061},
        "decode_tokens_per_s": 248.04,
    }
    assert generate_note(gen) == "TTFT 12.30 ms ±3.1%, per-token p99 6.10 ms, 248.0 decode tok/s"
    assert generate_note({"ttft_s": {"median": 1.5, "rel_ci": None}, "tpot_s": {}}) == "TTFT 1.5 s"
    assert generate_note({}) == ""
    rec = Record(case=CASE, status="ok", generate=gen, timing={"target_met": True, "warmup_settled": True})
    assert note(rec) == generate_note(gen)


def test_quality_note_time_to_target_over_seeds_or_not_reached():
    fit = {
        "kind": "fit",
        "target": {"metric": "val_accuracy", "value": 0.95},
        "seeds_run": 3,
        "seeds_reached": 2,
        "time_to_target_s": 12.34,
        "spread": {"time_to_target_s": {"median": 12.34, "min": 10.0, "max": 14.68, "n": 2}},
    }
    assert quality_note(fit) == "val_accuracy ≥ 0.95 in 12.3 s (2/3 seeds, 10.0 s–14.7 s)"
    missed = {**fit, "seeds_reached": 0, "time_to_target_s": None}
    assert quality_note(missed) == "val_accuracy ≥ 0.95 not reached (0/3 seeds)"
    one = {**fit, "seeds_run": 1, "seeds_reached": 1, "spread": {"time_to_target_s": {"n": 1}}}
    assert quality_note(one) == "val_accuracy ≥ 0.95 in 12.3 s (1/1 seeds)"


def test_quality_note_of_a_variant_is_its_f1_and_the_change_against_fp32():
    q = {"kind": "variant", "metrics": {"accuracy": 0.9, "f1": 0.8912}, "delta": {"f1": -0.0213}}
    assert quality_note(q) == "val F1 0.891 (-0.021 vs fp32)"
    assert quality_note({"kind": "variant", "metrics": {"f1": 0.5}}) == "val F1 0.500"
    assert quality_note({}) == ""
