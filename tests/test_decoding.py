"""MBU and prefill MFU arithmetic (benchbench.hardware.decoding): exact figures from hand-picked inputs."""

import pytest

from benchbench.hardware import decoding


def test_mbu_is_the_bytes_a_step_reads_over_its_time_and_the_peak():
    # a 1B-parameter bf16 model (2e9 bytes), 1e8 bytes of KV cache read per step, 10 ms per token,
    # on a 4.8 TB/s device: 2.1e9 B / 0.01 s = 2.1e11 B/s = 4.375% of the peak
    assert decoding.bytes_per_decode_step(2e9, 1e8) == 2.1e9
    assert decoding.achieved_bandwidth(2.1e9, 0.01) == pytest.approx(2.1e11, rel=1e-15)
    assert decoding.mbu(2e9, 1e8, 0.01, 4.8e12) == pytest.approx(0.04375, rel=1e-12)
    # twice as fast is twice the utilisation; the KV cache counts as much as the weights
    assert decoding.mbu(2e9, 1e8, 0.005, 4.8e12) == pytest.approx(0.0875, rel=1e-12)
    assert decoding.mbu(1e9, 1.1e9, 0.01, 4.8e12) == pytest.approx(0.04375, rel=1e-12)


def test_mfu_of_prefill():
    # 2.5e13 FLOPs of prefill in 50 ms on a 989.4 TFLOP/s (bf16 dense) device
    assert decoding.mfu(2.5e13, 0.05, 989.4e12) == pytest.approx(2.5e13 / 0.05 / 989.4e12, rel=1e-15)
    assert decoding.mfu(1e12, 1.0, 1e12) == 1.0


@pytest.mark.parametrize(
    "call",
    [
        lambda: decoding.mbu(1, 1, 0.0, 1e12),
        lambda: decoding.mbu(1, 1, 0.01, 0.0),
        lambda: decoding.bytes_per_decode_step(-1, 0),
        lambda: decoding.mfu(1, 0.0, 1.0),
    ],
)
def test_impossible_inputs_are_refused_not_turned_into_a_number(call):
    with pytest.raises(ValueError):
        call()


GENERATE = {
    "weights_read_per_step_bytes": 2e9,
    "kv_read_per_step_bytes": 1e8,
    "prefill_flops": 2.5e13,
    "tpot_s": {"median": 0.01},
    "ttft_s": {"median": 0.05},
}


def test_figures_of_a_generate_block():
    f = decoding.figures(GENERATE, 4.8e12, 989.4e12)
    assert f["mbu"] == pytest.approx(0.04375, rel=1e-12)
    assert f["decode_bytes_per_step"] == 2.1e9 and f["achieved_bandwidth_bps"] == pytest.approx(2.1e11)
    assert f["mfu_prefill"] == pytest.approx(2.5e13 / 0.05 / 989.4e12, rel=1e-12)
    assert "mbu_reason" not in f and "mfu_prefill_reason" not in f


def test_missing_inputs_give_none_with_the_reason_never_zero():
    f = decoding.figures(GENERATE, None, None)
    assert f["mbu"] is None and "peak memory bandwidth" in f["mbu_reason"]
    assert f["achieved_bandwidth_bps"] == pytest.approx(2.1e11)  # the device's own figure needs no peak
    assert f["mfu_prefill"] is None and "peak FLOP/s" in f["mfu_prefill_reason"]
    f = decoding.figures({**GENERATE, "kv_read_per_step_bytes": None, "prefill_flops": None}, 4.8e12, 1e15)
    assert f["mbu"] is None and "byte counts" in f["mbu_reason"]
    assert f["mfu_prefill"] is None and "FLOP count" in f["mfu_prefill_reason"]
    f = decoding.figures({**GENERATE, "tpot_s": None, "ttft_s": {}}, 4.8e12, 1e15)
    assert f["mbu"] is None and "time per output token" in f["mbu_reason"]
    assert f["mfu_prefill"] is None and "TTFT" in f["mfu_prefill_reason"]
