"""Token models on PyTorch through the real worker path (benchbench.worker.core): the tiny presets
in inference, train and generate, the LLM variants, which attention backend ran, the bytes MBU
needs, and failures (out of memory, an encoder asked to generate) as records."""

import pytest

from benchbench.case import Case, Settings

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from benchbench.worker import core  # noqa: E402

FAST = Settings(warmup_iters=1, warmup_max_time=1.0, min_time=0.05, max_time=0.5, min_iters=3, telemetry_hz=0)
PROMPT, NEW, BATCH = 12, 6, 2
# tiny_decoder: 2 layers, 2 KV heads of 32 dims, fp32
KV_PER_POSITION = 2 * 2 * BATCH * 2 * 32 * 4  # (keys, values) × layers × batch × KV heads × head dim × bytes


def gen_case(variant="fp32", model="tiny_decoder", **kw):
    return Case("torch", model, BATCH, "cpu", "generate", variant, (PROMPT,), prompt_len=PROMPT, new_tokens=NEW,
                settings=FAST, **kw)  # fmt: skip


@pytest.fixture(scope="module")
def records():
    out = {v: core.run(gen_case(v)) for v in ("fp32", "bf16", "int8_weight", "int4_weight", "sdpa:math")}
    for mode in ("inference", "train"):
        for model in ("tiny_encoder", "tiny_decoder"):
            case = Case("torch", model, BATCH, "cpu", mode, "fp32", (16,), seq_len=16, settings=FAST)
            out[f"{model}/{mode}"] = core.run(case)
    return out


def test_generate_record_has_ttft_tokens_and_rates(records):
    rec = records["fp32"]
    assert rec.status == "ok", rec.reason
    g = rec.generate
    assert (g["batch"], g["prompt_len"], g["new_tokens"]) == (BATCH, PROMPT, NEW)
    assert len(rec.samples) == g["runs"] * (NEW - 1) == g["tpot_s"]["n"]  # every decode token, singly
    assert len(g["ttft_samples"]) == len(g["e2e_samples"]) == g["runs"]
    assert 0 < g["tpot_s"]["p50"] <= g["tpot_s"]["p90"] <= g["tpot_s"]["p99"]
    assert rec.timing["percentiles_of"] == "single iterations" and rec.timing["block_size"] == 1
    assert rec.stats["throughput"] == pytest.approx(g["decode_tokens_per_s"], rel=1e-12)
    for e2e, ttft in zip(g["e2e_samples"], g["ttft_samples"]):
        assert e2e > ttft > 0
    assert g["output_tokens"] == BATCH * NEW * g["runs"]


def test_generate_record_has_the_bytes_and_flops_mbu_and_mfu_need(records):
    rec = records["fp32"]
    g = rec.generate
    positions = PROMPT + NEW - 1  # the last token is never fed back
    assert g["kv_cache_positions"] == positions
    assert g["kv_cache_bytes"] == KV_PER_POSITION * positions  # measured from the cache's tensors
    assert g["kv_read_per_step_bytes"] == KV_PER_POSITION * (PROMPT + 1 + (NEW - 2) / 2)
    assert g["weights_bytes"] == rec.model["params"] * 4 == 656_000 * 4  # fp32, the LM head tied
    assert g["weights_read_per_step_bytes"] == g["weights_bytes"]  # the token table is the LM head: read whole
    assert g["prefill_flops"] > g["decode_step_flops"] > 0
    assert rec.runtime["sdpa"]["requested"].startswith("auto")
    assert rec.runtime["sdpa"]["prefill"]["backends"], rec.runtime["sdpa"]


def test_reduced_precision_and_torchao_weights_are_smaller_and_say_how_close_they_are(records):
    fp32 = records["fp32"].generate["weights_bytes"]
    assert records["bf16"].generate["weights_bytes"] == fp32 // 2
    for v in ("bf16", "int8_weight", "int4_weight"):
        rec = records[v]
        assert rec.status == "ok", (v, rec.reason)
        f = rec.fidelity
        assert 0 <= f["greedy_token_agreement"] <= 1 and f["tokens_compared"] == NEW, (v, f)
        assert len(f["first_divergence"]) == BATCH and f["max_abs_diff"] > 0, (v, f)  # really changed
        assert rec.generate["kv_cache_bytes"] == KV_PER_POSITION // 2 * (PROMPT + NEW - 1)  # bf16 cache
    int8, int4 = records["int8_weight"], records["int4_weight"]
    assert int8.model["quantized_layers"] == int4.model["quantized_layers"] == 2 * 7 + 1  # + the LM head
    assert "torchao" in int8.runtime["quantization"]["library"]
    assert int4.generate["weights_bytes"] < int8.generate["weights_bytes"] < records["bf16"].generate["weights_bytes"]
    # quantized, the LM head is no longer the token table: that table is only gathered from
    assert int8.generate["weights_read_per_step_bytes"] < int8.generate["weights_bytes"]


def test_a_forced_attention_backend_is_the_one_that_ran(records):
    rec = records["sdpa:math"]
    assert rec.status == "ok", rec.reason
    assert rec.runtime["sdpa"]["requested"] == "math"
    assert rec.runtime["sdpa"]["decode"]["backends"] == ["math"]
    assert rec.runtime["dtype"] == "bfloat16"


def test_encoders_and_decoders_run_inference_and_train_over_seq_len(records):
    for name in ("tiny_encoder/inference", "tiny_encoder/train", "tiny_decoder/inference", "tiny_decoder/train"):
        rec = records[name]
        assert rec.status == "ok", (name, rec.reason)
        assert rec.runtime["input_shape"] == [BATCH, 16] and rec.model["flops_per_sample"] > 0, name
        assert rec.stats["throughput"] > 0 and not rec.generate
    assert records["tiny_encoder/train"].runtime["loss"].startswith("masked-LM")
    assert (
        records["tiny_decoder/train"].model["train_flops_per_sample"]
        > records["tiny_decoder/train"].model["flops_per_sample"]
    )


def test_an_encoder_or_a_vision_model_asked_to_generate_is_skipped_with_the_reason():
    rec = core.run(gen_case(model="tiny_encoder"))
    assert rec.status == "skipped" and "encoder" in rec.reason
    rec = core.run(Case("torch", "seed_mlp", 1, "cpu", "generate", "fp32", (10,), settings=FAST))
    assert rec.status == "skipped" and "not a token model" in rec.reason


def test_a_generate_case_that_runs_out_of_memory_is_a_failed_record(tmp_path, monkeypatch):
    """A decoder whose KV cache outgrows the device: the decode step raises torch's own
    OutOfMemoryError (what CUDA raises; a fake, since this machine has no GPU to fill)."""
    (tmp_path / "oom_llm.py").write_text(
        "import torch, transformers\n"
        "class Oom(transformers.LlamaForCausalLM):\n"
        "    def forward(self, input_ids=None, cache=None, **kw):\n"
        "        if input_ids.shape[1] == 1:\n"
        "            raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 2.00 GiB')\n"
        "        return super().forward(input_ids=input_ids, cache=cache, **kw)\n"
        "def build():\n"
        "    config = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64,\n"
        "        num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2)\n"
        "    return Oom(config)\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    rec = core.run(gen_case(model="oom_llm:build"))
    assert rec.status == "failed"
    assert rec.reason.startswith("out of memory: OutOfMemoryError: CUDA out of memory"), rec.reason
    assert not rec.samples and not rec.generate
