"""The device catalogue's current lineup (issue #20): every built-in entry parses and says what
was checked; the new entries match the names the frameworks report (and only those); their
peaks are dense; the fp8 / fp4 / memory-capacity fields are parsed into SI units and a bad
value is an error naming the file, line, device and key."""

from __future__ import annotations

import pytest

from benchbench.errors import UserError
from benchbench.hardware import catalogue as hw

LINEUP = ("nvidia-b200", "nvidia-b300", "nvidia-gb200", "nvidia-h20", "nvidia-h100-nvl", "nvidia-rtx-5090",
          "nvidia-l40s", "amd-mi300x", "amd-mi325x", "amd-mi355x", "google-tpu-v6e", "google-tpu-v7")  # fmt: skip


@pytest.fixture(scope="module")
def by_id():
    return {d.id: d for d in hw.load_catalogue(env={})}


def test_every_built_in_entry_parses_and_the_lineup_is_there(by_id):
    assert set(LINEUP) <= set(by_id)
    assert len(by_id) == len(hw.load_catalogue(env={}))  # no id twice


def test_every_verified_field_says_what_was_checked(by_id):
    for d in by_id.values():
        v = d.verified
        assert isinstance(v, str), (d.id, v)  # a sentence, not a bare true/false
        assert v.split()[0].rstrip(":,").lower() in ("yes", "partly", "no"), (d.id, v)
        assert len(v) > 30, (d.id, v)  # …and then what was (not) checked against which table
        assert d.source, d.id


def test_every_lineup_figure_left_null_is_explained(by_id):
    for i in LINEUP:
        d = by_id[i]
        nulls = [p for p, v in d.peak_flops.items() if v is None and p not in ("tf32", "fp16", "fp32", "int8", "fp4")]
        missing = nulls + [k for k, v in (("bandwidth", d.memory_bandwidth_bps), ("TDP/power", d.tdp_w),
                                          ("memory", d.memory_bytes)) if v is None]  # fmt: skip
        if missing:
            assert "null" in d.verified or "no vendor source" in d.verified, (i, missing)
    assert "bandwidth" in by_id["google-tpu-v7"].verified and by_id["google-tpu-v7"].memory_bandwidth_bps is None
    h20 = by_id["nvidia-h20"]
    assert all(v is None for v in h20.peak_flops.values()) and h20.memory_bandwidth_bps is None
    assert h20.verified.startswith("no vendor source found")


NAMES = {
    "NVIDIA B200": "nvidia-b200",
    "NVIDIA GB200": "nvidia-gb200",
    "NVIDIA B300 SXM6 AC": "nvidia-b300",
    "NVIDIA H20": "nvidia-h20",
    "NVIDIA H100 NVL": "nvidia-h100-nvl",
    "NVIDIA GeForce RTX 5090": "nvidia-rtx-5090",
    "NVIDIA L40S": "nvidia-l40s",
    "AMD Instinct MI300X": "amd-mi300x",
    "AMD Instinct MI300X VF": "amd-mi300x",
    "AMD Instinct MI325X": "amd-mi325x",
    "AMD Instinct MI355X": "amd-mi355x",
    "v6e-8": "google-tpu-v6e",
    "TPU v6 lite": "google-tpu-v6e",
    "tpu7x-8": "google-tpu-v7",
    "TPU7x": "google-tpu-v7",
    "NVIDIA H200": "nvidia-h200-sxm",  # H20's pattern must not take the H200
    "NVIDIA H100 80GB HBM3": "nvidia-h100-sxm",  # nor H100 NVL's the SXM
}


@pytest.mark.parametrize("name,expected", sorted(NAMES.items()))
def test_names_the_frameworks_report_match_one_entry(by_id, name, expected):
    spec, why = hw.match_device(name, list(by_id.values()))
    assert why is None and spec.id == expected


@pytest.mark.parametrize("name", ["NVIDIA GB300", "NVIDIA GeForce RTX 5090 D", "AMD Instinct MI300A",
                                  "AMD Instinct MI350X", "v5e-8"])  # fmt: skip
def test_other_parts_are_not_taken_for_a_lineup_entry(by_id, name):
    spec, _ = hw.match_device(name, [by_id[i] for i in LINEUP])
    assert spec is None


def test_peaks_are_dense_and_in_si(by_id):
    b200, gb200, mi300x, mi355x = by_id["nvidia-b200"], by_id["nvidia-gb200"], by_id["amd-mi300x"], by_id["amd-mi355x"]
    assert b200.peak_flops["bf16"] == pytest.approx(2.25e15)  # not the 4.5 PF sparse headline
    assert b200.peak_flops["fp4"] == pytest.approx(9e15) and gb200.peak_flops["fp4"] == pytest.approx(10e15)
    assert mi300x.peak_flops["bf16"] == pytest.approx(1307.4e12) and mi300x.memory_bandwidth_bps == 5.3e12
    assert mi355x.peak_flops["fp4"] == pytest.approx(10066.3e12)
    assert by_id["nvidia-h100-nvl"].peak_flops["fp8"] == pytest.approx(3341e12 / 2)
    assert by_id["google-tpu-v7"].peak_flops["fp8"] == pytest.approx(4614e12)
    # the ratios of one tensor unit's dense rates: fp8 = 2 × bf16 (data-center NVIDIA and AMD), up to
    # the vendors' rounding (L40S: 362.05 bf16, 733 fp8) — a sparse figure would be off by 2×
    for i in ("nvidia-b200", "nvidia-b300", "nvidia-gb200", "nvidia-h100-nvl", "nvidia-l40s", "amd-mi300x",
              "amd-mi355x", "nvidia-h100-sxm", "nvidia-h200-sxm"):  # fmt: skip
        p = by_id[i].peak_flops
        assert p["fp8"] == pytest.approx(2 * p["bf16"], rel=0.02), i
    # and the entries that print sparse figures say they were halved
    for i in ("nvidia-b200", "nvidia-b300", "nvidia-gb200", "nvidia-h100-nvl"):
        assert "halved" in by_id[i].source + by_id[i].verified, i


def test_memory_capacity_in_bytes_by_the_unit_the_vendor_prints(by_id):
    assert by_id["nvidia-b200"].memory_bytes == 180e9  # memory_gb
    assert by_id["amd-mi355x"].memory_bytes == 288 * 2**30  # memory_gib (AMD's ROCm table)
    assert by_id["google-tpu-v7"].memory_bytes == 192 * 2**30
    assert by_id["nvidia-a10g"].memory_bytes is None  # not given: unknown, not 0


def test_fp8_and_fp4_are_known_precisions():
    assert {"fp8", "fp4"} <= set(hw.PRECISIONS)
    assert hw.precision({"case": {"variant": "fp8"}}) == ("fp8", None)


CAT = "devices:\n  - id: my-npu\n    name: My NPU\n    match: ['My NPU']\n    peak_tflops: {{bf16: 100}}\n{extra}"


@pytest.mark.parametrize("extra,message", [
    ("    memory_gb: lots\n", "device 'my-npu': memory_gb: expected a number or null, got 'lots'"),
    ("    memory_gb: 80\n    memory_gib: 80\n", "give memory_gb or memory_gib"),
    ("    memory_gib: -1\n", "memory_gib: must not be negative"),
    ("    verified: 3\n", "verified: expected a sentence saying what was checked, got 3"),
    ("    verified: '  '\n", "verified: empty"),
    ("    memory_gbs: 80\n", "unknown key(s) ['memory_gbs']; allowed:"),
    ("    kind: npu\n", "kind: 'npu' is not one of ['gpu', 'tpu', 'cpu']"),
])  # fmt: skip
def test_a_bad_entry_is_an_error_naming_file_line_device_and_key(tmp_path, extra, message):
    f = tmp_path / "mine.yaml"
    f.write_text(CAT.format(extra=extra))
    with pytest.raises(UserError) as e:
        hw.load_catalogue([f], env={})
    assert str(e.value).startswith(f"{f}:2: device 'my-npu': ") and message in str(e.value), str(e.value)


@pytest.mark.parametrize("peaks,message", [
    ("{fp8: fast}", "peak_tflops.fp8: expected a number or null, got 'fast'"),
    ("{fp4: -1}", "peak_tflops.fp4: must not be negative"),
    ("{fp6: 1}", "unknown precision(s) ['fp6']; allowed: ['fp32', 'tf32', 'bf16', 'fp16', 'int8', 'fp8', 'fp4']"),
])  # fmt: skip
def test_bad_fp8_and_fp4_peaks_are_errors(tmp_path, peaks, message):
    f = tmp_path / "mine.yaml"
    f.write_text(CAT.format(extra="").replace("{bf16: 100}", peaks))
    with pytest.raises(UserError) as e:
        hw.load_catalogue([f], env={})
    assert message in str(e.value)


def test_a_user_file_may_still_say_verified_true_or_nothing(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text(CAT.format(extra="    verified: true\n    memory_gb: 24\n"))
    spec = {d.id: d for d in hw.load_catalogue([f], env={})}["my-npu"]
    assert spec.verified is True and spec.memory_bytes == 24e9 and spec.basis.startswith("user file")
