"""Mode fit through the worker (issue 19): a diverging fit is a failed record with the reason;
the trained fp32 model is cached and a changed setting retrains; a variant's quality is
measured against the very fp32 model the fit case trained; and, through the real CLI, both
frameworks fit, combine their seeds, and the report draws the quality section.

torch runs in this process; TensorFlow only in the CLI's worker subprocesses."""

from __future__ import annotations

import json
import textwrap

import pytest

from benchbench.suite.schema import parse_suite
from conftest import bb, run_dir_of, write

IRIS = """\
name: qw
matrix:
  framework: torch
  model: seed_mlp
  batch_size: 16
  mode: fit
  variant: [fp32, int8_dynamic]
defaults:
  warmup_iters: 1
  min_time: 0.05
  max_time: 0.2
  telemetry: {hz: 0}
  threads: 1
  data: {source: sklearn, name: iris}
  fit: {epochs: 3, target: {metric: val_accuracy, value: 0.8}}
"""


def _cases(text: str) -> dict:
    return {c.variant: c for c in parse_suite(text, "qw.yaml", catalog=lambda fw: None).cases}


def _fit(case):
    from benchbench.worker.core import host_memory, one_line
    from benchbench.worker.fit import measure_fit

    return measure_fit(case, host_memory=host_memory, one_line=one_line)


@pytest.fixture
def caches(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHBENCH_DATA_CACHE", str(tmp_path / "data"))
    monkeypatch.setenv("BENCHBENCH_FIT_CACHE", str(tmp_path / "fits"))
    return tmp_path


def test_the_trained_model_is_cached_and_a_changed_setting_retrains(caches):
    pytest.importorskip("torch")
    cases = _cases(IRIS)
    first = _fit(cases["int8_dynamic"])  # nothing cached yet: the variant trains its fp32 model itself
    assert first.status == "ok", first.reason
    trained = first.quality["trained"]
    assert trained["cache"] == "miss: trained here" and trained["curve"] and (caches / "fits" / trained["key"]).is_dir()

    fp32 = _fit(cases["fp32"])  # the fit case always fits, and stores what it trained
    assert fp32.status == "ok", fp32.reason
    q = fp32.quality
    assert q["kind"] == "fit" and q["trained"]["cache"] == "stored" and q["trained"]["key"] == trained["key"]
    assert q["epochs_run"] == len(q["curve"]) <= 3 and q["data"]["train"] + q["data"]["val"] == 150
    assert q["metrics"]["accuracy"] == q["curve"][-1]["val_accuracy"]
    assert q["inference"]["throughput"] == fp32.stats["throughput"] > 0
    assert fp32.fidelity["top1_agreement"] == 1.0 and fp32.model["classes"] == 3
    assert fp32.runtime["determinism"]["seed"] == 0 and fp32.runtime["loss"] == "sparse categorical cross-entropy"

    again = _fit(cases["int8_dynamic"])
    assert again.status == "ok" and again.quality["trained"]["cache"] == "hit"
    v = again.quality
    assert v["kind"] == "variant" and v["fp32"] == fp32.quality["metrics"]  # the very model the fit case trained
    assert v["delta"] == pytest.approx({k: v["metrics"][k] - v["fp32"][k] for k in v["metrics"]})
    assert "validation part" in again.fidelity["method"] and again.runtime["quantization"]["layers"] == "nn.Linear"

    longer = _cases(IRIS.replace("epochs: 3", "epochs: 4"))["int8_dynamic"]
    retrained = _fit(longer)
    assert retrained.quality["trained"]["cache"] == "miss: trained here"
    assert retrained.quality["trained"]["key"] != trained["key"]


NAN_MODEL = '''\
import torch
from torch import nn


class NaNNet(nn.Module):
    """Its logits are NaN: any loss on them is NaN."""

    def __init__(self, features):
        super().__init__()
        self.lin = nn.Linear(features, 3)

    def forward(self, x):
        return self.lin(x) * float("nan")


def build(input_shape=(4,)):
    return NaNNet(input_shape[0])
'''


def test_a_diverging_fit_is_a_failed_record_with_the_reason(caches, monkeypatch):
    pytest.importorskip("torch")
    write(caches / "nan_models.py", NAN_MODEL)
    monkeypatch.syspath_prepend(str(caches))
    monkeypatch.chdir(caches)
    case = _cases(IRIS.replace("model: seed_mlp", "model: nan_models:build"))["fp32"]
    assert case.input_shape == (4,)
    rec = _fit(case)
    assert rec.status == "failed"
    assert rec.reason.startswith("diverged: the training loss became nan at epoch 1, step 1"), rec.reason
    assert rec.quality == {} and not (caches / "fits").exists()  # nothing cached from a failed fit


CLI = """\
name: qcli
matrix:
  framework: [torch, tensorflow]
  model: [seed_mlp, seed_cnn]
  batch_size: 16
  mode: fit
  variant: [fp32, prune:0.5]
exclude:
  - {model: seed_cnn, variant: prune:0.5}
include:
  - {framework: torch, model: seed_cnn, variant: [int8_static, finetune]}
  - {framework: tensorflow, model: seed_cnn, variant: tflite_int8}
defaults:
  warmup_iters: 1
  min_time: 0.05
  max_time: 0.3
  telemetry: {hz: 5}
  fit: {epochs: 3, target: {metric: val_accuracy, value: 0.8}, seeds: 2, backbone: {hue_shift: 0.5}}
models:
  seed_mlp: {data: {source: sklearn, name: iris}}
  seed_cnn: {data: {source: generated, images: 64, size: 24, preset: none}, fit: {seeds: 1}}
"""


@pytest.mark.slow
def test_cli_fits_on_both_frameworks_combines_seeds_and_reports(tmp_path):
    write(tmp_path / "q.yaml", CLI)
    env = {"BENCHBENCH_DATA_CACHE": str(tmp_path / "cache")}
    import os

    proc = bb("run", tmp_path / "q.yaml", "--out", tmp_path / "out", cwd=tmp_path, timeout=600,
              env={**os.environ, **env})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = run_dir_of(tmp_path / "out")
    recs = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    by = {(r["case"]["framework"], r["case"]["model"], r["case"]["variant"]): r for r in recs}
    assert len(recs) == 9 and all(r["status"] == "ok" for r in recs), [(k, r["reason"]) for k, r in by.items()]
    for fw in ("torch", "tensorflow"):
        fit = by[(fw, "seed_mlp", "fp32")]["quality"]
        assert fit["kind"] == "fit" and fit["seeds"] == [0, 1] and fit["seeds_run"] == 2
        assert len(fit["per_seed"]) == 2 and fit["spread"]["final.val_accuracy"]["n"] == 2
        assert fit["per_seed"][0]["curve"] != fit["per_seed"][1]["curve"]  # two seeds, two fits
        if fit["seeds_reached"]:
            assert fit["time_to_target_s"] == fit["spread"]["time_to_target_s"]["median"] > 0
        seed0, cpu = fit["per_seed"][0], by[(fw, "seed_mlp", "fp32")]["energy"]["cpu"]
        if seed0["fit_energy_j"] is None:  # no energy source here: the fit says why, as the record's energy does
            assert seed0["energy_reason"] == cpu["reason"] and cpu["energy_j"] is None
        else:  # a source: joules over the fit, never 0
            assert seed0["fit_energy_j"] > 0 and seed0["curve"][-1]["energy_j"] == seed0["fit_energy_j"]
        pruned = by[(fw, "seed_mlp", "prune:0.5")]
        assert pruned["quality"]["kind"] == "variant" and set(pruned["quality"]["delta"]) == {"accuracy", "precision",
                                                                                              "recall", "f1"}  # fmt: skip
        assert [s["trained"]["cache"] for s in pruned["quality"]["per_seed"]] == ["hit", "hit"]
        assert pruned["model"]["nonzero_params"] < by[(fw, "seed_mlp", "fp32")]["model"]["nonzero_params"]
    q8 = by[("torch", "seed_cnn", "int8_static")]
    assert "training part" in q8["runtime"]["quantization"]["calibration"]
    lite = by[("tensorflow", "seed_cnn", "tflite_int8")]
    assert "training part" in lite["runtime"]["variant"]["quantization"]
    ft = by[("torch", "seed_cnn", "finetune")]["quality"]
    assert ft["kind"] == "transfer" and ft["backbone"]["data"]["hue_shift"] == 0.5
    assert ft["per_seed"][0]["backbone"]["tensors_from_backbone"] == 8  # every tensor but the head's 2
    report = (run / "report.html").read_text()
    assert "Quality: time to target" in report and "Speed vs quality" in report and "Learning curve" in report
    assert textwrap.dedent("bb-quality") in report
