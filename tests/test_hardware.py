"""The device catalogue, matching, CPU estimates and the derived figures (MFU, samples/J,
samples/$), on hand-made records; model FLOPs against torchvision's published figures."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from benchbench.errors import UserError
from benchbench.hardware import catalogue as hw


@pytest.fixture(scope="module")
def catalogue():
    return hw.load_catalogue(env={})


def record(mode="inference", variant="fp32", throughput=100.0, flops=4e9, name="NVIDIA H100 80GB HBM3",
           device_type="cuda", energy=None, status="ok", math_modes=None):  # fmt: skip
    return {
        "case": {"framework": "torch", "model": "m", "batch_size": 32, "device": device_type, "mode": mode,
                 "variant": variant, "case_id": "x"},
        "status": status,
        "stats": {"throughput": throughput},
        "model": {"flops_per_sample": flops},
        "runtime": {"device_name": name, "device_type": device_type, "math_modes": math_modes or {}},
        "energy": energy or {},
    }  # fmt: skip


# --- catalogue ------------------------------------------------------------------------------------

NAMES = {
    "NVIDIA H100 80GB HBM3": "nvidia-h100-sxm",
    "NVIDIA H100 PCIe": "nvidia-h100-pcie",
    "NVIDIA H200": "nvidia-h200-sxm",
    "NVIDIA A100-SXM4-40GB": "nvidia-a100-sxm-40gb",
    "NVIDIA A100-SXM4-80GB": "nvidia-a100-sxm-80gb",
    "NVIDIA A100-PCIE-40GB": "nvidia-a100-pcie-40gb",
    "NVIDIA A100 80GB PCIe": "nvidia-a100-pcie-80gb",
    "NVIDIA L4": "nvidia-l4",
    "NVIDIA L40S": "nvidia-l40s",
    "NVIDIA A10G": "nvidia-a10g",
    "NVIDIA A10": "nvidia-a10",
    "Tesla T4": "nvidia-t4",
    "Tesla V100-SXM2-16GB": "nvidia-v100-sxm2",
    "Tesla V100-PCIE-32GB": "nvidia-v100-pcie",
    "NVIDIA GeForce RTX 4090": "nvidia-rtx-4090",
    "v4-8": "google-tpu-v4",
    "v5litepod-8": "google-tpu-v5e",
    "v5p-8": "google-tpu-v5p",
}


@pytest.mark.parametrize("name,expected", sorted(NAMES.items()))
def test_match_by_name(catalogue, name, expected):
    spec, why = hw.match_device(name, catalogue)
    assert why is None and spec.id == expected


@pytest.mark.parametrize("name", ["NVIDIA GB300", "NVIDIA H200 NVL", "AMD EPYC 9654", "NVIDIA L40", None, ""])
def test_unknown_names_are_unknown(catalogue, name):
    spec, why = hw.match_device(name, catalogue)
    assert spec is None and ("unknown" in why or "no device name" in why)


def test_catalogue_is_dense_sourced_and_in_si(catalogue):
    by_id = {d.id: d for d in catalogue}
    h100 = by_id["nvidia-h100-sxm"]
    assert h100.peak_flops["bf16"] == pytest.approx(989.4e12)  # dense, not the 1,979 sparse figure
    assert h100.peak_flops["tf32"] == pytest.approx(h100.peak_flops["bf16"] / 2)
    assert h100.memory_bandwidth_bps == pytest.approx(3.35e12)
    assert by_id["nvidia-a100-sxm-80gb"].peak_flops["bf16"] == pytest.approx(312e12)
    assert by_id["nvidia-t4"].peak_flops["bf16"] is None  # Turing has no bf16: None, not 0
    for d in catalogue:
        assert d.source and d.source.startswith("http"), d.id
        for prec, peak in d.peak_flops.items():
            assert peak is None or peak > 0, (d.id, prec)
        # tensor-core dense peaks: no device lists tf32 above bf16, nor bf16 above int8
        p = d.peak_flops
        if p["tf32"] and p["bf16"]:
            assert p["tf32"] <= p["bf16"], d.id
        if p["bf16"] and p["int8"]:
            assert p["bf16"] <= p["int8"], d.id


def test_user_file_adds_and_replaces(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text(
        "devices:\n"
        "  - {id: nvidia-l4, name: My L4, match: ['\\bL4\\b'], peak_tflops: {fp32: 1}, price_usd: 2000}\n"
        "  - {id: my-cpu, name: EPYC 9654, kind: cpu, match: ['EPYC 9654'], peak_tflops: {fp32: 10}}\n"
    )
    cat = hw.load_catalogue(env={hw.ENV_VAR: str(f)})
    by_id = {d.id: d for d in cat}
    assert by_id["nvidia-l4"].name == "My L4" and by_id["nvidia-l4"].peak_flops["fp32"] == 1e12
    assert by_id["nvidia-l4"].basis.startswith("user file")
    assert hw.match_device("AMD EPYC 9654 96-Core Processor", cat)[0].id == "my-cpu"
    assert len(cat) == len(hw.load_catalogue(env={})) + 1


@pytest.mark.parametrize("text,message", [
    ("devices: nope", "'devices:' list"),
    ("devices:\n  - {id: a, name: A, match: ['('], peak_tflops: {}}", "not a regular expression"),
    ("devices:\n  - {id: a, name: A, match: [x], peak_tflops: {fp12: 1}}", "unknown precision"),
    ("devices:\n  - {id: a, name: A, match: [x], peak_tflops: {fp32: fast}}", "expected a number"),
    ("devices:\n  - {id: a, match: [x], peak_tflops: {}}", "missing key 'name'"),
])  # fmt: skip
def test_bad_user_file_is_a_user_error(tmp_path, text, message):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(UserError, match=message):
        hw.load_catalogue([f], env={})


def test_missing_user_file(tmp_path):
    with pytest.raises(UserError, match="not found"):
        hw.load_catalogue(env={hw.ENV_VAR: str(tmp_path / "none.yaml")})


# --- CPU estimate ---------------------------------------------------------------------------------

CPUINFO = "processor\t: 0\nmodel name\t: X\ncpu MHz\t\t: 2600.000\nflags\t\t: fpu sse2 avx avx2 fma {extra}\n"


def test_cpu_estimate_avx512():
    peaks, basis = hw.estimate_cpu_peak(CPUINFO.format(extra="avx512f"), cores=4)
    assert peaks["fp32"] == pytest.approx(4 * 2.6e9 * 16 * 2 * 2)
    assert basis.startswith("estimated from /proc/cpuinfo") and "AVX-512" in basis and "upper bound" in basis
    # no bf16 arithmetic in the ISA: bf16 runs on the fp32 FMAs, so their rate bounds it (labelled)
    assert peaks["bf16"] == peaks["fp32"] and "bf16: no bf16 arithmetic in the ISA" in basis


def test_cpu_estimate_bf16_from_avx512_bf16_and_from_amx_tiles():
    peaks, basis = hw.estimate_cpu_peak(CPUINFO.format(extra="avx512f avx512_bf16"), cores=4)
    assert peaks["bf16"] == pytest.approx(2 * peaks["fp32"]) and "AVX512_BF16" in basis
    peaks, basis = hw.estimate_cpu_peak(CPUINFO.format(extra="avx512f avx512_bf16 amx_bf16"), cores=4)
    assert peaks["bf16"] == pytest.approx(4 * 2.6e9 * 1024) and "AMX-BF16 tiles" in basis
    assert peaks["fp32"] == pytest.approx(4 * 2.6e9 * 64)


def test_cpu_estimate_avx2_and_max_clock():
    peaks, basis = hw.estimate_cpu_peak(CPUINFO.format(extra=""), cores=2, max_mhz=3000)
    assert peaks["fp32"] == pytest.approx(2 * 3.0e9 * 8 * 2 * 2)
    assert "AVX2" in basis and "cpufreq max" in basis


@pytest.mark.parametrize("text,cores,why", [
    ("processor: 0\nFeatures: fp asimd\ncpu MHz: 2000\n", 4, "non-x86"),
    ("flags: avx2 fma\n", 4, "clock unknown"),
    (CPUINFO.format(extra=""), None, "core count unknown"),
])  # fmt: skip
def test_cpu_estimate_unknown(text, cores, why):
    peaks, reason = hw.estimate_cpu_peak(text, cores)
    assert peaks is None and why in reason


def test_cpu_record_uses_estimate_only_on_the_same_host(catalogue):
    peaks, basis = hw.estimate_cpu_peak(CPUINFO.format(extra="avx512f"), cores=1)
    local = hw.DeviceSpec(id="cpu-estimated", name="CPU (estimated)", kind="cpu", match=(), peak_flops=peaks,
                          memory_bandwidth_bps=None, tdp_w=None, basis="estimated", note=basis)  # fmt: skip
    rec = record(name="AMD EPYC", device_type="cpu")
    env = {"host": "box", "cpu": {"model": "AMD EPYC"}}
    spec, _ = hw.resolve(rec, catalogue, env, local, "box")
    assert spec is local
    spec, why = hw.resolve(rec, catalogue, env, local, "other-box")
    assert spec is None and "another host" in why
    spec, why = hw.resolve(rec, catalogue, env, None, "box")
    assert spec is None and "unknown" in why
    d = hw.derive(rec, local)
    assert d["mfu"] == pytest.approx(100 * 4e9 / (2.6e9 * 64)) and "estimated" in d["mfu_note"]


# --- derived figures ------------------------------------------------------------------------------


def h100(catalogue):
    return {d.id: d for d in catalogue}["nvidia-h100-sxm"]


def test_mfu_inference_fp32(catalogue):
    d = hw.derive(record(throughput=1000.0, flops=8e9), h100(catalogue))
    assert d["achieved_flops"] == pytest.approx(8e12)
    assert d["precision"] == "fp32" and d["mfu"] == pytest.approx(8e12 / 66.9e12)


def test_mfu_train_counts_three_forward_passes(catalogue):
    d = hw.derive(record(mode="train", throughput=1000.0, flops=8e9), h100(catalogue))  # train FLOPs not counted
    assert d["flops_factor"] == 3 and d["achieved_flops"] == pytest.approx(24e12)
    assert d["flops_basis"].startswith("fallback: 3 × forward FLOPs")


def test_mfu_uses_the_variants_peak(catalogue):
    spec = h100(catalogue)
    assert hw.derive(record(variant="bf16", throughput=1e4, flops=8e9), spec)["mfu"] == pytest.approx(8e13 / 989.4e12)
    tf32 = hw.derive(record(throughput=1e4, flops=8e9, math_modes={"cuda.matmul.allow_tf32": True}), spec)
    assert tf32["precision"] == "tf32" and tf32["mfu"] == pytest.approx(8e13 / 494.7e12)
    amp = hw.derive(record(variant="amp"), spec)
    assert amp["mfu"] is None and "autocast dtype" in amp["mfu_reason"]
    t4 = {d.id: d for d in catalogue}["nvidia-t4"]
    no_bf16 = hw.derive(record(variant="bf16", name="Tesla T4"), t4)
    assert no_bf16["mfu"] is None and "no bf16 peak" in no_bf16["mfu_reason"]


def test_missing_inputs_give_none_with_reasons(catalogue):
    d = hw.derive(record(flops=None), h100(catalogue))
    assert d["achieved_flops"] is None and d["mfu"] is None and "FLOPs" in d["mfu_reason"]
    d = hw.derive(record(name="Mystery GPU"), None, "not in the catalogue")
    assert d["device"] == "unknown" and d["mfu"] is None and "not in the catalogue" in d["mfu_reason"]
    assert d["samples_per_usd"] is None and d["samples_per_usd_reason"]
    d = hw.derive(record(status="failed"), h100(catalogue))
    assert d["mfu"] is None and d["mfu_reason"] == "case failed"
    d = hw.derive(record(energy={"primary": "gpu", "gpu": {"source": "unavailable", "reason": "no NVML",
                                                           "samples_per_j": None}}), h100(catalogue))  # fmt: skip
    assert d["samples_per_j"] is None and d["samples_per_j_reason"] == "no NVML"


def test_samples_per_joule_and_dollar(catalogue):
    energy = {"primary": "gpu", "gpu": {"source": "nvml-energy-counter", "energy_j": 700.0, "avg_w": 350.0,
                                        "samples_per_j": 2.0}}  # fmt: skip
    spec = h100(catalogue)
    pricing = hw.Pricing(lifetime_years=3, usd_per_kwh=0.10, overrides={spec.id: {"price_usd": 30000}})
    d = hw.derive(record(throughput=700.0, energy=energy), spec, pricing=pricing)
    assert d["samples_per_j"] == 2.0 and d["energy_source"] == "nvml-energy-counter"
    usd_per_s = 30000 / (3 * 365.25 * 86400) + 350 * 0.10 / 3.6e6
    assert d["samples_per_usd"] == pytest.approx(700 / usd_per_s)
    assert "350 W (measured)" in d["samples_per_usd_basis"]
    # no measured power: the TDP, labelled
    d = hw.derive(record(throughput=700.0), spec, pricing=pricing)
    assert "700 W (TDP)" in d["samples_per_usd_basis"]
    # cloud price wins when given
    pricing.overrides[spec.id]["cloud_usd_per_hour"] = 3.6
    d = hw.derive(record(throughput=700.0), spec, pricing=pricing)
    assert d["samples_per_usd"] == pytest.approx(700 / 0.001) and "cloud" in d["samples_per_usd_basis"]
    # no price at all
    d = hw.derive(record(), spec)
    assert d["samples_per_usd"] is None and "no price" in d["samples_per_usd_reason"]


def test_ridge_point(catalogue):
    spec = h100(catalogue)
    assert hw.ridge_point(spec, "bf16") == pytest.approx(989.4e12 / 3.35e12)
    assert hw.ridge_point({d.id: d for d in catalogue}["nvidia-t4"], "bf16") is None


def test_hardware_module_imports_no_framework():
    code = (
        "import sys, benchbench.hardware.catalogue as h; h.load_catalogue(); "
        "print(sorted(m for m in ('torch', 'tensorflow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- model FLOPs vs published torchvision figures ---------------------------------------------------

# torchvision's model docs list "GFLOPS" that are multiply-accumulates: resnet50 4.09,
# mobilenet_v2 0.30, resnet18 1.81, vit_b_16 17.56 per 224×224 image. benchbench counts
# FLOPs = 2 × MACs. vit_b_16 checks that attention is counted: nn.MultiheadAttention's
# inference fast path and CPU's fused attention kernel are invisible to FlopCounterMode.
PUBLISHED_GMACS = {"resnet50": 4.09, "mobilenet_v2": 0.30, "resnet18": 1.81, "vit_b_16": 17.56}


@pytest.mark.slow
def test_model_flops_match_torchvision_published():
    pytest.importorskip("torchvision")
    code = (
        "import json, torch, torchvision\n"
        "from benchbench.backends.torch import _flops_per_sample\n"
        f"names = {sorted(PUBLISHED_GMACS)!r}\n"
        "flops = {n: _flops_per_sample(getattr(torchvision.models, n)().eval(), "
        "torch.randn(1, 3, 224, 224)) for n in names}\n"
        "print(json.dumps({**flops, 'fastpath_after': torch.backends.mha.get_fastpath_enabled()}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    flops = json.loads(out.stdout.strip().splitlines()[-1])
    assert flops["fastpath_after"] is True  # the counter restores the MHA fast path it turned off
    for name, gmacs in PUBLISHED_GMACS.items():
        assert flops[name] == pytest.approx(2 * gmacs * 1e9, rel=0.02), name


# Keras applications against their papers' multiply-adds per 224×224 image: ResNet50 (v1)
# 3.8 × 10⁹ (He et al. 2016, table 1), MobileNetV2 300 M (Sandler et al. 2018, table 3).
# keras.io's application table lists no FLOPs. The count is of the frozen tf.function graph.
KERAS_PUBLISHED_GMACS = {"resnet50": 3.8, "mobilenet_v2": 0.30}


@pytest.mark.slow
def test_keras_model_flops_match_published():
    if importlib.util.find_spec("tensorflow") is None:  # never imported here: TF + torchvision crash
        pytest.skip("tensorflow is not installed")
    code = (
        "import json\n"
        "from benchbench.backends import tensorflow as backend\n"
        "from benchbench.models import keras_models\n"
        f"names = {sorted(KERAS_PUBLISHED_GMACS)!r}\n"
        "print(json.dumps({n: backend._flops_per_sample(keras_models.build(n, [3, 224, 224]), (224, 224, 3)) "
        "for n in names}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    for name, gmacs in KERAS_PUBLISHED_GMACS.items():
        flops, note = got[name]
        assert flops == pytest.approx(2 * gmacs * 1e9, rel=0.02), name
        assert "2 × multiply-accumulates" in note


# --- the report's hardware section ------------------------------------------------------------------


def _run_dir(path, host, name, throughput, energy=None):
    from benchbench.results import Record, append_record, write_json

    path.mkdir(parents=True)
    for mode in ("inference", "train"):
        d = record(mode=mode, throughput=throughput, flops=8.18e9, name=name, energy=energy)
        d["case"].update(input_shape=[3, 224, 224], threads=None, optimizer="adam", case_id=f"{mode}-id",
                         model="resnet50")  # fmt: skip
        append_record(path / "results.jsonl", Record(**{**d, "schema_version": 1}))
    write_json(path / "environment.json", {"host": host, "cpu": {"model": "X"}})
    return path


def test_report_hardware_section(tmp_path, capsys):
    pytest.importorskip("plotly")
    from benchbench.cli import main

    energy = {"primary": "gpu", "gpu": {"source": "nvml-energy-counter", "avg_w": 400.0, "samples_per_j": 5.0}}
    a = _run_dir(tmp_path / "a", "box-a", "NVIDIA A100-SXM4-80GB", 1000.0, energy)
    b = _run_dir(tmp_path / "b", "box-b", "NVIDIA H100 80GB HBM3", 3000.0)
    c = _run_dir(tmp_path / "c", "box-c", "Mystery Accelerator 9000", 50.0)
    prices = tmp_path / "prices.yaml"
    prices.write_text("devices:\n  - {id: nvidia-a100-sxm-80gb, name: NVIDIA A100 SXM4 80GB, "
                      "match: ['A100-SXM4?-80GB'], peak_tflops: {fp32: 19.5}, memory_bandwidth_gbs: 2039, "
                      "tdp_w: 400, cloud_usd_per_hour: 3.6}\n")  # fmt: skip
    out = tmp_path / "r.html"
    assert main(["report", str(a), str(b), str(c), "-o", str(out), "--hardware", "--reference", "A100",
                 "--devices", str(prices)]) == 0  # fmt: skip
    text = out.read_text()
    assert "Hardware comparison" in text and "Roofline" in text
    assert "NVIDIA A100 SXM4 80GB · box-a" in text  # the reference, named in the note
    assert "(×3.00)" in text  # H100 samples/s against the A100's
    assert "not in the device catalogue" in text  # the unknown device says why

    from benchbench.report import frame as data
    from benchbench.report import hardware as section

    rows, ref = section.normalise(section.rows(data.load_runs([a, b, c]), hw.load_catalogue([prices], env={})),
                                  "A100")  # fmt: skip
    a100 = next(r for r in rows if r["device_id"] == "nvidia-a100-sxm-80gb" and r["mode"] == "inference")
    assert a100["mfu"] == pytest.approx(8.18e12 / 19.5e12)
    assert a100["samples_per_j"] == 5.0 and a100["samples_per_usd"] == pytest.approx(1000.0 / 0.001)
    h = next(r for r in rows if r["device_id"] == "nvidia-h100-sxm" and r["mode"] == "train")
    assert h["throughput_rel"] == pytest.approx(3.0) and h["achieved_flops"] == pytest.approx(3 * 8.18e9 * 3000)
    unknown = next(r for r in rows if r["device"] == "unknown")
    assert unknown["mfu"] is None and unknown["throughput_rel"] == pytest.approx(0.05)
    # a reference that names no machine there is an error listing them, not a silent fallback
    assert main(["report", str(a), str(b), "-o", str(tmp_path / "r2.html"), "--hardware", "--reference", "TPU v5"]) == 2
    err = capsys.readouterr().err
    assert "--reference 'TPU v5' matches none of the machines" in err and "box-b" in err
    assert not (tmp_path / "r2.html").exists()


# --- profiling ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_profile_window_after_the_timed_one(tmp_path):
    pytest.importorskip("torch")
    from benchbench.case import Case, Settings

    settings = Settings(warmup_iters=1, min_time=0.05, max_time=0.3, min_iters=3, telemetry_hz=0, profile=True)
    case = Case(framework="torch", model="seed_mlp", batch_size=4, device="cpu", mode="train", variant="fp32",
                input_shape=(10,), threads=1, settings=settings)  # fmt: skip
    work = tmp_path / "run" / ".work"
    work.mkdir(parents=True)
    (work / "c.json").write_text(json.dumps(case.to_dict()))
    out = subprocess.run([sys.executable, "-m", "benchbench.worker", str(work / "c.json"), str(work / "r.json")],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    rec = json.loads((work / "r.json").read_text())
    assert rec["status"] == "ok", rec["reason"]
    prof = rec["runtime"]["profile"]
    assert prof["available"] and prof["iterations"] == 5
    trace = tmp_path / "run" / "profiles" / f"{case.case_id}.trace.json"
    assert prof["trace"] == str(trace) and trace.stat().st_size > 0
    ops = prof["top_host_ops"]
    assert ops and all(o["self_s"] > 0 for o in ops) and any("addmm" in o["op"] or "linear" in o["op"] for o in ops)
    assert prof["top_device_ops"] is None and prof["device_ops_reason"]
    assert sum(o["share"] for o in ops) <= 1.0 + 1e-9


def test_profile_setting_in_a_suite(tmp_path):
    from benchbench.suite.schema import load_suite

    f = tmp_path / "s.yaml"
    f.write_text(
        "name: p\nmatrix: {model: [seed_mlp, seed_cnn], batch_size: [1]}\n"
        "defaults: {profile: false}\nmodels: {seed_mlp: {profile: true}}\n"
    )
    cases = {c.model: c for c in load_suite(f).cases}
    assert cases["seed_mlp"].settings.profile is True and cases["seed_cnn"].settings.profile is False
    f.write_text("name: p\nmatrix: {model: [seed_mlp], batch_size: [1]}\ndefaults: {profile: 'yes'}\n")
    with pytest.raises(UserError, match="profile"):
        load_suite(f)


def test_records_match_only_their_kind_of_device(catalogue):
    cpu = record(name="Fancy CPU with T4 in its name", device_type="cpu")
    spec, why = hw.resolve(cpu, catalogue)
    assert spec is None and "not in the catalogue" in why
    tpu = record(name="AMD EPYC (host CPU)", device_type="tpu")
    spec, why = hw.resolve(tpu, catalogue, {"tpu": {"tpu_accelerator_type": "v5litepod-8"}})
    assert spec.id == "google-tpu-v5e"
    spec, why = hw.resolve(tpu, catalogue, {})
    assert spec is None and "no device name" in why


# --- a suite's own catalogue (top-level catalogue:) ------------------------------------------------

MY_CAT = (
    "devices:\n  - id: my-npu\n    name: My NPU\n    kind: gpu\n    match: ['My NPU']\n    peak_tflops: {bf16: 100}\n"
)
SUITE_WITH_CAT = "name: c\nmatrix: {{model: [seed_mlp], batch_size: [1]}}\ncatalogue: {cat}\n"


def test_suite_catalogue_is_resolved_next_to_the_suite_and_kept_with_the_run(tmp_path):
    from benchbench.suite import catalogue as suite_catalogue
    from benchbench.suite.schema import load_suite

    (tmp_path / "cats").mkdir()
    (tmp_path / "cats" / "mine.yaml").write_text(MY_CAT)
    suite_file = tmp_path / "s.yaml"
    suite_file.write_text(SUITE_WITH_CAT.format(cat="cats/mine.yaml"))
    suite = load_suite(suite_file)
    assert suite.catalogue == (str((tmp_path / "cats" / "mine.yaml").resolve()),)
    run = tmp_path / "run"
    run.mkdir()
    copy = suite_catalogue.save(suite.catalogue, run)
    assert suite_catalogue.run_files([run, tmp_path]) == [copy]
    by_id = {d.id: d for d in hw.load_catalogue(suite_catalogue.run_files([run]), env={})}
    assert by_id["my-npu"].peak_flops["bf16"] == 100e12 and "nvidia-h100-sxm" in by_id  # merged over the built-in
    # --resume loads the run's own suite.yaml copy: the run's catalogue copy stands in for the file
    (run / "suite.yaml").write_text(suite.text)
    (run / "run.json").write_text("{}")
    assert load_suite(run / "suite.yaml").catalogue == (str(copy.resolve()),)
    assert load_suite(tmp_path / "s.yaml").catalogue != ()  # a list works too:
    suite_file.write_text(SUITE_WITH_CAT.format(cat="[cats/mine.yaml]"))
    assert len(load_suite(suite_file).catalogue) == 1


@pytest.mark.parametrize("cat,text,message", [
    ("none.yaml", None, "s.yaml:3: catalogue: device catalogue file 'none.yaml' not found"),
    ("bad.yaml", MY_CAT.replace("bf16", "fp12"), "s.yaml:3: catalogue: {dir}/bad.yaml:2: device 'my-npu': "
                                                "peak_tflops: unknown precision(s) ['fp12']"),
    ("bad.yaml", MY_CAT + "  - {id: x, name: X, match: ['('], peak_tflops: {}}\n",
     "s.yaml:3: catalogue: {dir}/bad.yaml:7: device 'x': match '(' is not a regular expression"),
    ("bad.yaml", "devices:\n  - id: a\n    id: b\n", "s.yaml:3: catalogue: {dir}/bad.yaml:3: duplicate key"),
    ("bad.yaml", "devices: [\n", "s.yaml:3: catalogue: {dir}/bad.yaml:2: not a valid device catalogue"),
])  # fmt: skip
def test_suite_catalogue_mistakes_name_both_files_and_lines(tmp_path, cat, text, message):
    from benchbench.cli import main

    if text is not None:
        (tmp_path / cat).write_text(text)
    (tmp_path / "s.yaml").write_text(SUITE_WITH_CAT.format(cat=cat))
    with pytest.raises(UserError) as e:
        from benchbench.suite.schema import load_suite

        load_suite(tmp_path / "s.yaml")
    line = next(p for p in e.value.problems if "catalogue" in p)
    assert line.startswith(str(tmp_path / "s.yaml")) and message.format(dir=tmp_path.resolve()) in line, line
    assert main(["validate", str(tmp_path / "s.yaml")]) == 2


def test_run_catalogue_reaches_the_hardware_report(tmp_path):
    pytest.importorskip("plotly")
    from benchbench.cli import main
    from benchbench.suite import catalogue as suite_catalogue

    run = _run_dir(tmp_path / "a", "box-a", "My NPU v2", 1000.0)
    cat = tmp_path / "mine.yaml"
    cat.write_text(MY_CAT)
    suite_catalogue.save([str(cat)], run)
    out = tmp_path / "r.html"
    assert main(["report", str(run), "-o", str(out), "--hardware"]) == 0
    text = out.read_text()
    assert "My NPU" in text and "not in the device catalogue" not in text


def test_catalogue_ships_in_the_hardware_package():
    from importlib import resources

    assert resources.files("benchbench.hardware").joinpath("devices.yaml").is_file()
