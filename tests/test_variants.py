"""Compression and precision variants (issue 5): the support table, suite validation of
variant names, the fidelity maths, and each CPU variant through the real worker on the
small seed models with sane size, sparsity and fidelity figures."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

from benchbench import registry
from benchbench.case import Case, Settings
from benchbench.errors import UserError
from benchbench.suite.schema import parse_suite
from benchbench.variants import fidelity
from conftest import bb, run_dir_of, write

FAST = Settings(warmup_iters=1, warmup_max_time=1.0, min_time=0.05, max_time=0.3, min_iters=3, telemetry_hz=0)
CNN_SHAPE = (3, 32, 32)


def case(variant, model="seed_cnn", mode="inference", batch=8, device="cpu"):
    shape = CNN_SHAPE if model == "seed_cnn" else (10,)
    return Case("torch", model, batch, device, mode, variant, shape, threads=2, settings=FAST)


# ------------------------------------------------------------------ the table


def test_support_table_gives_reasons_for_what_cannot_run():
    assert registry.variant_support("torch", "fp32", "cpu", "inference") is None
    assert registry.variant_support("torch", "prune:0.7", "cuda:1", "inference") is None
    assert "bf16" in registry.variant_support("torch", "fp16", "cpu", "inference")
    assert "CPU only" in registry.variant_support(
        "torch", "int8_static", "cuda", "inference"
    ) or "CPU" in registry.variant_support("torch", "int8_static", "cuda", "inference")
    assert "train" in registry.variant_support("torch", "int8_dynamic", "cpu", "train")
    assert "not available for torch" in registry.variant_support("torch", "tflite_int8", "cpu", "inference")
    assert "CPU" in registry.variant_support("tensorflow", "tflite_int8", "cuda", "inference")
    assert "train mode only" in registry.variant_support("torch", "finetune", "cpu", "inference")
    assert registry.variant_support("tensorflow", "xla", "cpu", "train") is None


def test_variant_parameters_parse_and_default():
    assert registry.variant_param("prune") == 0.5
    assert registry.variant_param("prune:0.7") == 0.7
    assert registry.variant_param("channel_prune") == 0.25
    assert registry.variant_param("compile") == "default"
    assert registry.variant_param("compile:max-autotune") == "max-autotune"
    assert registry.variant_param("fp32") is None
    assert "between 0 and 1" in registry.variant_problem("prune:1.5")
    assert "between 0 and 1" in registry.variant_problem("prune:half")
    assert "reduce-overhead" in registry.variant_problem("compile:fast")
    assert "takes no parameter" in registry.variant_problem("bf16:2")
    assert registry.variant_problem("int4") == "unknown variant 'int4'"


def test_suite_rejects_bad_variant_names_with_file_and_line():
    text = textwrap.dedent("""\
        name: v
        matrix:
          model: seed_mlp
          batch_size: 1
          variant: [fp32, prune:1.5, compile:fast, bf61]
        """)
    with pytest.raises(UserError) as info:
        parse_suite(text, "v.yaml", lambda fw: {"models": [], "timm_models": None})
    lines = info.value.lines()
    assert lines == [
        "v.yaml:5: matrix.variant[1]: variant 'prune:1.5': prune:FRACTION needs a number between 0 and 1 "
        "(exclusive), e.g. prune:0.5",
        "v.yaml:5: matrix.variant[2]: variant 'compile:fast': compile:MODE, MODE in default, reduce-overhead, "
        "max-autotune",
        "v.yaml:5: matrix.variant[3]: unknown variant 'bf61'; did you mean 'bf16'? "
        "(run `benchbench list variants` to see them)",
    ]


def test_suite_baseline_must_be_one_of_its_variants():
    base = "name: v\n{baseline}matrix:\n  model: seed_mlp\n  batch_size: 1\n  variant: [fp32, prune:0.3]\n"
    catalog = lambda fw: {"models": [], "timm_models": None}  # noqa: E731
    assert parse_suite(base.format(baseline=""), "v.yaml", catalog).baseline == "fp32"
    assert parse_suite(base.format(baseline="baseline: prune:0.3\n"), "v.yaml", catalog).baseline == "prune:0.3"
    with pytest.raises(UserError) as info:
        parse_suite(base.format(baseline="baseline: bf16\n"), "v.yaml", catalog)
    assert info.value.lines() == [
        "v.yaml:2: baseline: 'bf16' is not a variant of this suite (its variants: fp32, prune:0.3)"
    ]


# ------------------------------------------------------------------ fidelity maths


def test_fidelity_compare_counts_agreement_and_differences():
    ref = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    cand = np.array([[0.2, 0.8], [0.4, 0.6], [0.3, 0.7], [0.6, 0.4]])  # sample 1 flips
    out = fidelity.compare(ref, cand, seed=3, method="m")
    assert out["top1_agreement"] == 0.75
    assert out["max_abs_diff"] == pytest.approx(0.4)
    assert out["mean_abs_diff"] == pytest.approx((0.1 + 0.1 + 0.4 + 0.4) / 8)
    assert (out["batch"], out["seed"], out["reference"]) == (4, 3, "fp32")


def test_fidelity_single_output_is_a_threshold_and_nonfinite_is_no_difference():
    ref = np.array([[0.4], [0.6], [0.9]])
    cand = np.array([[0.55], [0.7], [np.inf]])
    out = fidelity.compare(ref, cand, seed=0, method="m")
    assert out["top1_agreement"] == pytest.approx(1 / 3)  # 0.4→0.55 flips; the inf sample counts as a miss
    assert out["max_abs_diff"] is None and out["nonfinite_samples"] == 1
    assert fidelity.samples_for(8) == 64 and fidelity.samples_for(48) == 96 and fidelity.samples_for(100) == 100


# ------------------------------------------------------------------ the real worker


@pytest.fixture(scope="module")
def records():
    from benchbench import worker

    variants = [
        "fp32",
        "bf16",
        "amp",
        "amp_bf16",
        "channels_last",
        "torchscript",
        "int8_dynamic",
        "int8_static",
        "prune:0.5",
        "channel_prune",
    ]
    out = {v: worker.run(case(v)) for v in variants}
    for v in ("fp32", "int8_dynamic", "int8_static"):
        out[f"mlp/{v}"] = worker.run(case(v, model="seed_mlp"))
    for v in ("frozen_backbone", "finetune"):
        out[f"train/{v}"] = worker.run(case(v, mode="train"))
    return out


def test_every_cpu_variant_runs_with_size_params_and_fidelity(records):
    for name, rec in records.items():
        assert rec.status == "ok", (name, rec.reason)
        assert rec.model["params"] > 0 and rec.model["nonzero_params"] > 0, name
        assert rec.model["serialized_bytes"] > 0 and rec.model["serialized_format"], name
        assert rec.fidelity["reference"] == "fp32", name
        assert rec.stats["throughput"] > 0, name


def test_int8_agrees_with_fp32_and_is_smaller(records):
    for model in ("", "mlp/"):
        fp32 = records[f"{model}fp32"]
        for v in ("int8_dynamic", "int8_static"):
            rec = records[f"{model}{v}"]
            assert rec.fidelity["top1_agreement"] >= 0.9, (model, v, rec.fidelity)
            assert rec.fidelity["batch"] == 64 and rec.fidelity["max_abs_diff"] > 0  # really int8: not identical
            assert rec.model["serialized_bytes"] < fp32.model["serialized_bytes"], (model, v)
            assert rec.model["params"] == fp32.model["params"]
    assert records["int8_static"].runtime["quantization"]["engine"] == "x86"


def test_reduced_precision_differs_a_little_and_layout_changes_do_not(records):
    for v in ("bf16", "amp", "amp_bf16"):
        f = records[v].fidelity
        assert f["top1_agreement"] >= 0.9 and 0 < f["max_abs_diff"] < 0.1, (v, f)
    assert records["bf16"].runtime["dtype"] == "bfloat16"
    assert records["bf16"].model["serialized_bytes"] < 0.6 * records["fp32"].model["serialized_bytes"]
    for v in ("channels_last", "torchscript"):
        f = records[v].fidelity
        assert f["top1_agreement"] == 1.0 and f["max_abs_diff"] < 1e-4, (v, f)
    assert records["channels_last"].runtime["data_layout"].startswith("NHWC")
    assert records["torchscript"].cold_start["compile_s"] > 0
    assert records["fp32"].fidelity["top1_agreement"] == 1.0  # the reference itself
    assert records["fp32"].runtime["math_modes"]["float32_matmul_precision"] == "highest"


def test_pruning_zeroes_half_the_weights_and_channel_pruning_shrinks_the_model(records):
    fp32, pruned, shrunk = records["fp32"], records["prune:0.5"], records["channel_prune"]
    assert pruned.model["prunable_zero_fraction"] == pytest.approx(0.5, abs=0.01)
    assert pruned.model["params"] == fp32.model["params"]
    zero_share = 1 - pruned.model["nonzero_params"] / pruned.model["params"]
    assert 0.45 < zero_share <= 0.5  # biases are not pruned
    assert shrunk.model["params"] < 0.8 * fp32.model["params"]
    assert shrunk.model["nonzero_params"] == shrunk.model["params"]
    assert shrunk.model["serialized_bytes"] < fp32.model["serialized_bytes"]


def test_frozen_backbone_trains_only_the_head(records):
    frozen, full = records["train/frozen_backbone"], records["train/finetune"]
    assert frozen.model["trainable_params"] == 512 + 1  # seed_cnn's Dense 1 head
    assert "trainable_params" not in full.model
    assert frozen.runtime["optimizer"] == "Adam"


@pytest.mark.parametrize(
    "variant, model, mode, why",
    [
        ("fp16", "seed_cnn", "inference", "use bf16"),
        ("int8_dynamic", "seed_cnn", "train", "inference only"),
        ("tf32", "seed_cnn", "inference", "CUDA only"),
        ("channels_last", "seed_mlp", "inference", "needs image input"),
        ("xla", "seed_cnn", "inference", "not available for torch"),
    ],
)
def test_unsupported_combinations_skip_with_the_reason(variant, model, mode, why):
    from benchbench import worker

    rec = worker.run(case(variant, model=model, mode=mode))
    assert rec.status == "skipped" and why in rec.reason, rec.reason


@pytest.mark.slow
def test_compile_records_its_compile_time():
    from benchbench import worker

    rec = worker.run(case("compile", model="seed_mlp"))
    assert rec.status == "ok", rec.reason
    assert rec.cold_start["compile_s"] > 0 and rec.runtime["compile"]["mode"] == "default"
    assert rec.fidelity["top1_agreement"] == 1.0 and rec.fidelity["max_abs_diff"] < 1e-4


@pytest.mark.slow
def test_cli_run_dry_run_list_and_report_show_the_variants(tmp_path):
    suite = write(
        tmp_path / "v.yaml",
        textwrap.dedent("""\
        name: v
        baseline: fp32
        matrix:
          model: seed_mlp
          batch_size: 4
          variant: [fp32, prune:0.5, fp16]
        defaults: {min_time: 0.05, max_time: 0.2, warmup_max_time: 1, telemetry: {hz: 0}}
        """),
    )
    dry = bb("run", suite, "--dry-run")
    assert dry.returncode == 0 and "skip: variant fp16 on cpu" in dry.stdout
    listing = bb("list", "variants").stdout
    assert "int8_static" in listing and "tflite_int8" in listing and "prune:FRACTION" in listing
    done = bb("run", suite, "--out", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    run = run_dir_of(tmp_path / "out")
    assert json.loads((run / "run.json").read_text())["baseline"] == "fp32"
    recs = {r["case"]["variant"]: r for r in map(json.loads, (run / "results.jsonl").read_text().splitlines())}
    assert recs["fp16"]["status"] == "skipped" and "bf16" in recs["fp16"]["reason"]
    assert recs["prune:0.5"]["fidelity"]["batch"] == 64
    page = (run / "report.html").read_text()
    for column in ("size MiB", "non-zero %", "top-1 agree % vs fp32", "speed-up vs fp32"):
        assert column in page, column
