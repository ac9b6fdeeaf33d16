"""The report's decoding section on hand-made generate records: MBU, prefill MFU, J/token and
tokens/$ with exact arithmetic against catalogue peaks; every missing input a reason, never 0;
the TTFT-vs-TPOT view per machine and variant; the section through ``benchbench report``."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from benchbench.hardware import catalogue as hw

pytest.importorskip("plotly")
from benchbench.report import decoding  # noqa: E402  (after the plotly check)

H100 = "NVIDIA H100 80GB HBM3"  # nvidia-h100-sxm: 3.35 TB/s, bf16 989.4 TFLOP/s dense


@pytest.fixture(scope="module")
def catalogue():
    return hw.load_catalogue(env={})


def stats(median, p90=None, p99=None):
    return {"n": 10, "median": median, "p50": median, "p90": p90 or median, "p99": p99 or median}


def generate_record(name=H100, device="cuda", variant="bf16", tpot=1e-3, ttft=2.0, weights=2e9, kv=0.5e9,
                    prefill_flops=1e15, out_tps=1000.0, avg_w=500.0, devices=1, model="llama_1b",
                    device_type="cuda", tpu_type=None, energy=True):  # fmt: skip
    gen = {"batch": 4, "prompt_len": 128, "new_tokens": 32, "runs": 10, "ttft_s": stats(ttft, ttft * 1.1),
           "tpot_s": stats(tpot, tpot * 1.2, tpot * 1.5), "e2e_s": stats(ttft + 31 * tpot),
           "decode_tokens_per_s": 4 / tpot, "output_tokens_per_s": out_tps, "kv_cache_bytes": 3e8,
           "weights_read_per_step_bytes": weights, "kv_read_per_step_bytes": kv, "prefill_flops": prefill_flops}  # fmt: skip
    runtime = {"device_name": name, "device_type": device_type, "math_modes": {}}
    if tpu_type:
        runtime["tpu_accelerator_type"] = tpu_type
    return {
        "case": {"framework": "torch", "model": model, "batch_size": 4, "device": device, "mode": "generate",
                 "variant": variant, "prompt_len": 128, "new_tokens": 32, "devices": devices, "case_id": "g1"},
        "status": "ok",
        "runtime": runtime,
        "energy": ({"primary": "gpu", "gpu": {"source": "nvml-energy-counter", "avg_w": avg_w, "energy_j": 50.0}}
                   if energy else {"primary": "gpu", "gpu": {"source": "unavailable", "avg_w": None,
                                                             "reason": "nvidia-ml-py not installed"}}),
        "generate": gen,
    }  # fmt: skip


def row(record, catalogue, pricing=None):
    spec, why = hw.resolve(record, catalogue, {})
    return decoding.row_of(record, spec, why, pricing)


def test_mbu_prefill_mfu_j_per_token_and_tokens_per_dollar_exactly(catalogue):
    pricing = hw.Pricing(overrides={"nvidia-h100-sxm": {"cloud_usd_per_hour": 3.6}})
    r = row(generate_record(), catalogue, pricing)
    assert r["device_id"] == "nvidia-h100-sxm" and r["precision"] == "bf16"
    # (2e9 weights + 0.5e9 KV bytes) per 1 ms step = 2.5e12 B/s of 3.35e12
    assert r["decode_bytes_per_step"] == 2.5e9 and r["achieved_bandwidth_bps"] == pytest.approx(2.5e12)
    assert r["mbu"] == pytest.approx(2.5e12 / 3.35e12)
    # 1e15 FLOPs in a 2 s TTFT = 5e14 FLOP/s of 989.4e12 at bf16
    assert r["mfu_prefill"] == pytest.approx(5e14 / 989.4e12)
    assert r["j_per_token"] == pytest.approx(500.0 / 1000.0)  # 500 W at 1000 output tokens/s
    assert r["j_per_token_basis"].startswith("average power / output tokens per second")
    rec = generate_record()
    rec["energy"]["gpu"]["j_per_sample"] = 0.55  # the worker's own figure: energy / output tokens
    mine = row(rec, catalogue, pricing)
    assert mine["j_per_token"] == 0.55 and mine["j_per_token_basis"].startswith("energy over the timed runs")
    assert r["tokens_per_usd"] == pytest.approx(1000.0 / (3.6 / 3600))  # 1e6 tokens per dollar
    assert "cloud $3.6/hour" in r["tokens_per_usd_basis"]
    assert r["tpot_p99_s"] == pytest.approx(1.5e-3) and r["ttft_median_s"] == 2.0


def test_a_devices_2_case_is_held_against_twice_the_peaks(catalogue):
    one, two = row(generate_record(), catalogue), row(generate_record(devices=2), catalogue)
    assert two["mbu"] == pytest.approx(one["mbu"] / 2) and two["mfu_prefill"] == pytest.approx(one["mfu_prefill"] / 2)
    assert "2 × NVIDIA H100" in two["peak_note"]


def test_an_unknown_device_gives_reasons_not_zeros(catalogue):
    r = row(generate_record(name="Mystery Accelerator 9000"), catalogue)
    assert r["device"] == "unknown"
    for key in ("mbu", "mfu_prefill", "tokens_per_usd"):
        assert r[key] is None, key
    assert "not in the device catalogue" in r["mbu_reason"] and "not in the device catalogue" in r["mfu_prefill_reason"]
    assert r["achieved_bandwidth_bps"] == pytest.approx(2.5e12)  # what was measured is still shown
    assert r["j_per_token"] == pytest.approx(0.5)  # measured power needs no catalogue


def test_a_catalogue_entry_without_bandwidth_gives_no_mbu(catalogue):
    # TPU7x: Google's bandwidth row was not verified, so the catalogue holds null
    r = row(generate_record(name="host cpu", device="tpu", device_type="xla", tpu_type="tpu7x-8"), catalogue)
    assert r["device_id"] == "google-tpu-v7" and r["mbu"] is None
    assert r["mbu_reason"] == "no peak memory bandwidth for this device in the catalogue"
    assert r["mfu_prefill"] == pytest.approx(5e14 / 2307e12)  # its bf16 peak is known


def test_missing_inputs_are_named(catalogue):
    rec = generate_record(energy=False)
    del rec["generate"]["kv_read_per_step_bytes"]
    rec["generate"]["prefill_flops"] = None
    rec["generate"]["prefill_flops_note"] = "FlopCounterMode could not count the fused attention"
    r = row(rec, catalogue)
    assert r["mbu"] is None and r["mbu_reason"] == "the record has no weight or KV-cache byte counts"
    assert r["mfu_prefill"] is None and r["mfu_prefill_reason"] == "FlopCounterMode could not count the fused attention"
    assert r["j_per_token"] is None and r["j_per_token_reason"] == "nvidia-ml-py not installed"
    r = row(generate_record(name=H100, variant="int8_dynamic"), catalogue)
    assert r["mfu_prefill"] is None and "no single peak" in r["mfu_prefill_reason"]


def test_fp8_cases_are_held_against_the_fp8_peak(catalogue):
    r = row(generate_record(variant="fp8"), catalogue)
    assert r["precision"] == "fp8" and r["mfu_prefill"] == pytest.approx(5e14 / 1978.9e12)


def runs_of(*records_by_host):
    return [SimpleNamespace(records=recs, environment={"host": host}, path=f"/runs/{host}-run")
            for host, recs in records_by_host]  # fmt: skip


def test_the_ttft_vs_tpot_view_has_a_trace_per_machine_and_variant(catalogue):
    runs = runs_of(("box-a", [generate_record(), generate_record(variant="fp16", tpot=1.2e-3)]),
                   ("box-b", [generate_record(name="NVIDIA L40S", tpot=4e-3, ttft=5.0)]))  # fmt: skip
    data = decoding.rows(runs, catalogue, local_host="elsewhere")
    fig = decoding.ttft_vs_tpot(data)
    names = sorted(t.name for t in fig.data)
    assert names == ["NVIDIA H100 SXM5 80GB · box-a · bf16", "NVIDIA H100 SXM5 80GB · box-a · fp16",
                     "NVIDIA L40S · box-b · bf16"]  # fmt: skip
    l40s = next(t for t in fig.data if "L40S" in t.name)
    assert list(l40s.x) == pytest.approx([4.0]) and list(l40s.y) == pytest.approx([5000.0])  # ms
    assert list(l40s.error_x.array) == pytest.approx([(6e-3 - 4e-3) * 1e3])  # up to TPOT p99


def test_the_section_skips_runs_without_generate_cases_and_keeps_failed_ones_out(catalogue):
    other = generate_record()
    other["case"]["mode"] = "inference"
    failed = generate_record()
    failed["status"] = "failed"
    assert decoding.section(runs_of(("box-a", [other, failed])), catalogue) is None
    sec = decoding.section(runs_of(("box-a", [generate_record()])), catalogue)
    assert sec.id == "decoding" and "decoding-table" in sec.body and "NVIDIA H100 SXM5 80GB" in sec.body
    assert [slug for slug, _ in sec.figures] == ["decoding-ttft-tpot", "decoding-mbu", "decoding-j-per-token"]


def test_the_report_command_shows_the_decoding_section(tmp_path):
    from benchbench.results import Record, append_record, write_json

    if "generate" not in Record.__dataclass_fields__:
        pytest.skip("this checkout's Record has no generate block yet")
    from benchbench.cli import main

    run = tmp_path / "run"
    run.mkdir()
    d = generate_record()
    d["stats"] = {"throughput": 1000.0}
    append_record(run / "results.jsonl", Record(**{**d, "schema_version": 1}))
    write_json(run / "environment.json", {"host": "box-a", "cpu": {"model": "X"}})
    out = tmp_path / "r.html"
    assert main(["report", str(run), "-o", str(out), "--hardware"]) == 0
    text = out.read_text()
    assert "Decoding: TTFT, time per token, MBU" in text and "decoding-ttft-tpot" in text
