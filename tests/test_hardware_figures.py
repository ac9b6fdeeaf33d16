"""Hardware figures that hold on N devices and on CPUs (issue 17): N × peak and price for a
``devices: N`` case, train FLOPs counted from what runs (a frozen backbone's backward is the
head's), CPU peaks for the physical cores and for bf16/fp16/int8 from the ISA flags, the
precision of every variant, and the hardware report's pairing of cases across machines."""

from __future__ import annotations

import pytest

from benchbench.hardware import catalogue as hw


@pytest.fixture(scope="module")
def catalogue():
    return hw.load_catalogue(env={})


def h100(catalogue):
    return {d.id: d for d in catalogue}["nvidia-h100-sxm"]


def record(mode="inference", variant="fp32", throughput=100.0, flops=4e9, name="NVIDIA H100 80GB HBM3",
           device="cuda", devices=1, energy=None, model=None, runtime=None):  # fmt: skip
    return {
        "case": {"framework": "torch", "model": "m", "batch_size": 32, "device": device, "mode": mode,
                 "variant": variant, "input_shape": [3, 224, 224], "threads": None, "optimizer": "adam",
                 "devices": devices, "case_id": "x"},
        "status": "ok",
        "stats": {"throughput": throughput},
        "model": {"flops_per_sample": flops, **(model or {})},
        "runtime": {"device_name": name, "device_type": device.split(":")[0], "math_modes": {}, **(runtime or {})},
        "energy": energy or {},
    }  # fmt: skip


# --- item 2: devices: N is N devices' peak and price ----------------------------------------------


def test_n_gpus_are_held_against_n_peaks_and_n_prices(catalogue):
    spec = h100(catalogue)
    pricing = hw.Pricing(lifetime_years=3, usd_per_kwh=0.10, overrides={spec.id: {"price_usd": 30000}})
    one = hw.derive(record(throughput=1000.0, flops=8e9), spec, pricing=pricing)
    four = hw.derive(record(throughput=4000.0, flops=8e9, devices=4), spec, pricing=pricing)
    # four devices doing four times the work: the same MFU, the same samples/$ — not 4× better
    assert four["device_count"] == 4 and four["peak_flops"] == pytest.approx(4 * 66.9e12)
    assert four["mfu"] == pytest.approx(one["mfu"]) == pytest.approx(8e12 / 66.9e12)
    assert "4 × NVIDIA H100" in four["mfu_note"]
    assert four["samples_per_usd"] == pytest.approx(one["samples_per_usd"])
    assert "4 × $30000" in four["samples_per_usd_basis"] and "2800 W (4 × TDP)" in four["samples_per_usd_basis"]
    # measured power is already the sum over the GPUs (telemetry reads each): not multiplied again
    energy = {"primary": "gpu", "gpu": {"source": "nvml-energy-counter", "avg_w": 1400.0, "samples_per_j": 2.0}}
    measured = hw.derive(record(throughput=4000.0, devices=4, energy=energy), spec, pricing=pricing)
    usd_per_s = 4 * 30000 / (3 * 365.25 * 86400) + 1400 * 0.10 / 3.6e6
    assert measured["samples_per_usd"] == pytest.approx(4000 / usd_per_s)
    # cloud prices are per chip-hour
    pricing.overrides[spec.id]["cloud_usd_per_hour"] = 3.6
    cloud = hw.derive(record(throughput=4000.0, devices=4), spec, pricing=pricing)
    assert (
        cloud["samples_per_usd"] == pytest.approx(4000 / (4 * 0.001)) and "4 × cloud" in cloud["samples_per_usd_basis"]
    )


def test_ranks_on_one_cpu_share_its_peak(catalogue):
    peaks, basis = hw.estimate_cpu_peak(CPUINFO.format(extra="avx512f"), cores=4)
    cpu = hw.DeviceSpec(id="cpu-estimated", name="CPU", kind="cpu", match=(), peak_flops=peaks,
                        memory_bandwidth_bps=None, tdp_w=None, basis="estimated", note=basis)  # fmt: skip
    d = hw.derive(record(device="cpu", devices=2, throughput=10.0, name="X"), cpu)
    assert d["device_count"] == 1 and d["peak_flops"] == peaks["fp32"] and "share its cores" in d["device_count_note"]


# --- item 4: train FLOPs from what really runs ----------------------------------------------------


def test_train_flops_count_only_the_backward_that_runs():
    torch = pytest.importorskip("torch")
    from torch import nn

    from benchbench.backends.torch import _train_flops_per_sample

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4))
    x, y = torch.randn(2, 8), torch.randint(0, 4, (2,))
    loss = nn.CrossEntropyLoss()
    stats = {k: b.clone() for k, b in model.named_buffers()}
    # forward 2·8·16 + 2·16·4 = 384; backward of the last Linear: its weight grad (128) and its
    # input grad (128, batch norm's parameters train); the first Linear's input needs no grad
    assert _train_flops_per_sample(model, x, loss, y, list(model.parameters())) == 384 + 256 + 256
    model[0].requires_grad_(False)  # frozen: no backward through the first Linear at all
    trained = [p for p in model.parameters() if p.requires_grad]
    assert _train_flops_per_sample(model, x, loss, y, trained) == 384 + 256
    assert all(p.grad is None for p in model.parameters())  # counting does not touch .grad
    assert all(torch.equal(b, stats[k]) for k, b in model.named_buffers())  # nor batch norm's statistics


@pytest.mark.parametrize("variant", ["frozen_backbone", "finetune"])
def test_a_train_case_records_its_counted_flops_and_mfu_uses_them(catalogue, variant):
    pytest.importorskip("torch")
    from benchbench.backends.torch import BACKEND
    from benchbench.case import Case

    case = Case("torch", "seed_cnn", 2, "cpu", "train", variant, (3, 64, 64), threads=1)
    facts = BACKEND.prepare(case).model_facts()
    forward, train = facts["flops_per_sample"], facts["train_flops_per_sample"]
    assert "forward + backward" in facts["train_flops_note"] and "require grad" in facts["train_flops_note"]
    if variant == "frozen_backbone":  # only the 512→1 head runs backward: a rounding error on the forward
        assert forward < train < 1.001 * forward
    else:  # every layer's weight grad, every layer's input grad but the first conv's
        assert 2.5 * forward < train < 3 * forward
    d = hw.derive(record(mode="train", variant=variant, throughput=100.0, flops=forward,
                         model={"train_flops_per_sample": train, "train_flops_note": facts["train_flops_note"]}),
                  h100(catalogue))  # fmt: skip
    assert d["achieved_flops"] == pytest.approx(train * 100.0) and d["flops_basis"] == facts["train_flops_note"]
    assert d["precision"] == "fp32" and d["mfu"] == pytest.approx(train * 100.0 / 66.9e12)


def test_uncounted_train_flops_fall_back_to_three_forwards_labelled_but_never_for_a_frozen_backbone(catalogue):
    d = hw.derive(record(mode="train", throughput=10.0, flops=1e9), h100(catalogue))  # a TensorFlow record
    assert d["achieved_flops"] == pytest.approx(3e10) and d["flops_basis"].startswith("fallback: 3 × forward")
    d = hw.derive(record(mode="train", variant="frozen_backbone", throughput=10.0, flops=1e9), h100(catalogue))
    assert d["achieved_flops"] is None and d["mfu"] is None and "only the head runs backward" in d["mfu_reason"]


# --- item 6 and 10: CPU peaks for physical cores, bf16/fp16/int8 from the ISA ------------------------

CPUINFO = "processor\t: 0\nmodel name\t: X\ncpu MHz\t\t: 2000.000\nflags\t\t: fpu sse2 avx avx2 fma {extra}\n"
SPR = "avx512f avx512bw avx512_vnni avx512_bf16 avx512_fp16 avx_vnni amx_tile amx_bf16 amx_int8"


def _sysfs(tmp_path, siblings: dict[int, str]):
    for cpu, sib in siblings.items():
        d = tmp_path / "sys" / f"cpu{cpu}" / "topology"
        d.mkdir(parents=True)
        (d / "core_cpus_list").write_text(sib + "\n")
    (tmp_path / "cpuinfo").write_text(CPUINFO.format(extra="avx512f"))
    return str(tmp_path / "sys"), str(tmp_path / "cpuinfo")


def test_cpu_peak_counts_physical_cores_not_smt_threads(tmp_path):
    sysfs, cpuinfo = _sysfs(tmp_path, {0: "0,2", 1: "1,3", 2: "0,2", 3: "1,3"})  # 2 cores × 2 threads
    spec, basis = hw.local_cpu_spec(cpuinfo_path=cpuinfo, sysfs=sysfs, cpus={0, 1, 2, 3})
    assert spec.peak_flops["fp32"] == pytest.approx(2 * 2.0e9 * 64)  # not 4 × …
    assert "2 physical cores of the 4 logical CPUs" in basis and "SMT siblings counted once" in spec.note
    spec, basis = hw.local_cpu_spec(cpuinfo_path=cpuinfo, sysfs=sysfs, cpus={0, 2})  # one core's two threads
    assert spec.peak_flops["fp32"] == pytest.approx(1 * 2.0e9 * 64) and "1 physical core of the 2" in basis
    assert hw.physical_cores({0, 1}, sysfs=str(tmp_path / "nowhere"))[0] >= 1  # psutil's count, scaled


def test_cpu_peaks_for_amx_vnni_and_avx2():
    peaks, basis = hw.estimate_cpu_peak(CPUINFO.format(extra=SPR), cores=2)
    hz = 2 * 2.0e9
    assert peaks["fp32"] == pytest.approx(hz * 64)
    assert peaks["bf16"] == pytest.approx(hz * 1024) and "AMX-BF16" in basis
    assert peaks["int8"] == pytest.approx(hz * 2048) and "AMX-INT8" in basis
    assert peaks["fp16"] == pytest.approx(hz * 128) and "AVX512-FP16" in basis  # no amx_fp16 on this part
    assert "upper bound" in basis and peaks["tf32"] is None
    peaks, basis = hw.estimate_cpu_peak(CPUINFO.format(extra="avx512f avx512bw avx512_vnni avx512_bf16"), cores=2)
    assert peaks["bf16"] == pytest.approx(hz * 128) and peaks["int8"] == pytest.approx(hz * 256)
    assert "AVX512_BF16" in basis and "AVX512-VNNI" in basis
    peaks, basis = hw.estimate_cpu_peak(CPUINFO.format(extra="avx_vnni"), cores=2)
    assert peaks["fp32"] == pytest.approx(hz * 32) and peaks["int8"] == pytest.approx(hz * 128)
    peaks, basis = hw.estimate_cpu_peak(CPUINFO.format(extra=""), cores=2)  # AVX2 + FMA only
    assert peaks["int8"] == pytest.approx(hz * 128 / 3) and "VPMADDUBSW" in basis  # 32 MACs / 3 instr × 2
    assert peaks["bf16"] == peaks["fp32"] and "computed by the fp32" in basis


@pytest.mark.parametrize("variant, runtime, expected", [
    ("frozen_backbone", {}, "fp32"),
    ("finetune", {}, "fp32"),
    ("channels_last", {}, "fp32"),
    ("compile:max-autotune", {}, "fp32"),
    ("prune:0.5", {}, "fp32"),
    ("int8_static", {}, "int8"),
    ("tflite_int8", {}, "int8"),
    ("amp_bf16", {"autocast": "bfloat16"}, "bf16"),
    ("amp", {"dtype": "mixed_float16: float16 compute, float32 variables"}, "fp16"),
    ("finetune", {"math_modes": {"cudnn.allow_tf32": True}}, "tf32"),
])  # fmt: skip
def test_precision_of_every_variant(variant, runtime, expected):
    assert hw.precision(record(variant=variant, runtime=runtime)) == (expected, None)


@pytest.mark.parametrize("variant, why", [("int8_dynamic", "only the Linear layers"), ("sparse24", "2:4")])
def test_variants_without_one_precision_say_why(variant, why):
    prec, reason = hw.precision(record(variant=variant))
    assert prec is None and why in reason


def test_tf32_is_never_a_cpu_precision():
    rec = record(variant="channels_last", device="cpu", runtime={"math_modes": {"cudnn.allow_tf32": True}})
    assert hw.precision(rec) == ("fp32", None)


def test_int8_on_an_amx_cpu_gets_an_mfu():
    peaks, basis = hw.estimate_cpu_peak(CPUINFO.format(extra=SPR), cores=2)
    cpu = hw.DeviceSpec(id="cpu-estimated", name="CPU", kind="cpu", match=(), peak_flops=peaks,
                        memory_bandwidth_bps=None, tdp_w=None, basis="estimated", note=basis)  # fmt: skip
    d = hw.derive(record(variant="int8_static", device="cpu", name="X", throughput=100.0, flops=3.6e9), cpu)
    assert d["precision"] == "int8" and d["mfu"] == pytest.approx(3.6e11 / (4e9 * 2048))


# --- item 7: the hardware report pairs the same case -----------------------------------------------


def _row(machine_host, throughput, **case):
    """A record of ``case`` on machine ``machine_host`` as the report's rows have it."""
    from types import SimpleNamespace

    rec = record(throughput=throughput)
    rec["case"].update(case)
    run = SimpleNamespace(records=[rec], environment={"host": machine_host}, path=f"/runs/run-{machine_host}")
    (row,) = hw.derive_runs([run], [])
    return row


def test_report_pairs_by_everything_that_defines_a_case():
    from benchbench.report import hardware as section

    data = [
        _row("a", 100.0, threads=4),
        _row("a", 180.0, threads=8),
        _row("a", 50.0, threads=4, optimizer="sgd", mode="train"),
        _row("b", 200.0, threads=4),
        _row("b", 360.0, threads=8),
        _row("b", 75.0, threads=4, optimizer="sgd", mode="train"),
        _row("b", 999.0, threads=4, input_shape=[3, 512, 512]),  # no such case on a: no ratio
    ]
    data, ref = section.normalise(section.label_machines(data), "· a")
    rel = {(r["host"], r["threads"], r["mode"], tuple(r["input_shape"])): r["throughput_rel"] for r in data}
    assert rel[("b", 4, "inference", (3, 224, 224))] == pytest.approx(2.0)  # 200 / 100, not 200 / 180
    assert rel[("b", 8, "inference", (3, 224, 224))] == pytest.approx(2.0)
    assert rel[("b", 4, "train", (3, 224, 224))] == pytest.approx(1.5)
    assert rel[("b", 4, "inference", (3, 512, 512))] is None
    labels = {section.case_text(r, section.varying_fields(data)) for r in data if r["host"] == "b"}
    assert len(labels) == 4  # the bars tell the cases apart


def test_report_refuses_an_ambiguous_pair_naming_both_records():
    from benchbench.report import hardware as section

    twice = [_row("a", 100.0, device="cuda:0", case_id="c0"), _row("a", 120.0, device="cuda:1", case_id="c1")]
    data = twice + [_row("b", 200.0, case_id="c2"), _row("b", 50.0, batch_size=1, case_id="c3"),
                    _row("a", 25.0, batch_size=1, case_id="c4")]  # fmt: skip
    data, _ = section.normalise(section.label_machines(data), "· a")
    b = next(r for r in data if r["case_id"] == "c2")
    assert b["throughput_rel"] is None
    assert "ambiguous" in b["rel_reason"] and "(case c0, run run-a)" in b["rel_reason"]
    assert "(case c1, run run-a)" in b["rel_reason"] and "cuda:0" in b["rel_reason"] and "cuda:1" in b["rel_reason"]
    assert next(r for r in data if r["case_id"] == "c3")["throughput_rel"] == pytest.approx(2.0)  # others pair
    html = section.table(data)
    assert "no ratio: ambiguous" in html


# --- item 12: MirroredStrategy's memory is every GPU's ---------------------------------------------


@pytest.mark.slow
def test_mirrored_strategy_memory_is_every_replicas_not_gpu0s():
    import importlib.util
    import json
    import os
    import subprocess
    import sys

    if importlib.util.find_spec("tensorflow") is None:  # never imported here: TF + torchvision crash
        pytest.skip("tensorflow is not installed")
    code = (
        "import json\n"
        "from benchbench.backends.tensorflow import device_peaks\n"
        "peaks = {'GPU:0': 100, 'GPU:1': 300}\n"
        "print(json.dumps([device_peaks(['GPU:0', 'GPU:1'], lambda n: {'peak': peaks[n]}),\n"
        "                  device_peaks(['GPU:0'], lambda n: {'peak': peaks[n]})]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    two, one = json.loads(out.stdout.strip().splitlines()[-1])
    assert two["device_peak_allocated_bytes"] == 300 and two["device_peak_allocated_sum_bytes"] == 400
    assert two["device_peaks"] == [{"device": "GPU:0", "peak_allocated_bytes": 100},
                                   {"device": "GPU:1", "peak_allocated_bytes": 300}]  # fmt: skip
    assert "the largest of the 2 devices' peaks" in two["device_memory_source"]
    assert one["device_peak_allocated_bytes"] == 100 and "device_peaks" not in one
