"""The transformer presets: the names a suite may use, their architectures built offline from
transformers configs (on PyTorch's meta device: shapes only, no memory, no download), and
their parameter counts against the published ones."""

import pytest

from benchbench import registry
from benchbench.models.transformers_presets import PRESETS

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from benchbench.models import transformers_torch  # noqa: E402

# what the built models hold exactly (transformers' own classes; a tied LM head counted once)
EXACT = {
    ("bert_base", "inference"): 109_482_240,  # BertModel with its pooler
    ("bert_base", "train"): 109_514_298,  # BertForMaskedLM: + the MLM head's transform and bias (decoder tied)
    ("gpt2_small", "inference"): 124_439_808,  # GPT2LMHeadModel, LM head tied
    ("llama_1b", "inference"): 1_235_814_400,  # LlamaForCausalLM, Llama 3.2 1B's shape, tied
    ("tiny_encoder", "inference"): 202_688,
    ("tiny_decoder", "inference"): 656_000,
}


def test_the_registry_and_the_hyperparameters_name_the_same_presets():
    assert set(registry.TRANSFORMER_MODELS) == set(PRESETS)
    for name, preset in PRESETS.items():
        assert registry.TRANSFORMER_MODELS[name].kind == ("encoder" if preset.family == "bert" else "decoder")
        assert registry.model_kind(name) == "transformer"
        assert not registry.takes_image_shape(name)


@pytest.mark.parametrize("name,mode", sorted(EXACT))
def test_parameter_counts_are_the_published_ones(name, mode):
    kind = registry.TRANSFORMER_MODELS[name].kind
    model = transformers_torch.build(name, kind, mode, "meta")
    count = transformers_torch.param_count(model)
    assert count == EXACT[(name, mode)]
    published = registry.TRANSFORMER_MODELS[name].published_params
    # the papers round: BERT-base "110M", GPT-2 small "124M", Llama 3.2 1B "1.23B"
    assert abs(count - published) / published < 0.01, (name, count, published)
    assert model.config._attn_implementation == "sdpa"


def test_the_architectures_are_the_published_shapes():
    bert = transformers_torch.hf_config(PRESETS["bert_base"])
    assert (bert.num_hidden_layers, bert.hidden_size, bert.num_attention_heads, bert.intermediate_size) == (
        12,
        768,
        12,
        3072,
    )
    gpt2 = transformers_torch.hf_config(PRESETS["gpt2_small"])
    assert (gpt2.n_layer, gpt2.n_embd, gpt2.n_head, gpt2.vocab_size, gpt2.n_positions) == (12, 768, 12, 50257, 1024)
    llama = transformers_torch.hf_config(PRESETS["llama_1b"])
    assert (llama.num_hidden_layers, llama.hidden_size, llama.num_attention_heads, llama.num_key_value_heads) == (
        16,
        2048,
        32,
        8,
    )
    assert (llama.intermediate_size, llama.vocab_size, llama.tie_word_embeddings) == (8192, 128256, True)


def test_a_users_callable_may_return_a_config_or_a_model(tmp_path, monkeypatch):
    (tmp_path / "my_llm.py").write_text(
        "import transformers\n"
        "def config():\n"
        "    return transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100, n_positions=64)\n"
        "def model():\n"
        "    return transformers.AutoModelForCausalLM.from_config(config())\n"
        "def wrong():\n"
        "    return 42\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    built = transformers_torch.build("my_llm:config", "decoder", "generate", "meta")
    assert type(built).__name__ == "GPT2LMHeadModel"
    assert transformers_torch.param_count(built) == transformers_torch.param_count(
        transformers_torch.build("my_llm:model", "decoder", "generate", "meta")
    )
    with pytest.raises(TypeError, match="PreTrainedModel or PretrainedConfig"):
        transformers_torch.build("my_llm:wrong", "decoder", "generate", "meta")


# tests/test_transformers_keras.py holds keras_hub's builds of these architectures to the same counts
REDUCED_PARAMS = {"bert_base": 8_842_752, "gpt2_small": 8_643_840, "llama_1b": 62_871_552}


@pytest.mark.parametrize("name", sorted(REDUCED_PARAMS))
def test_reduced_architectures_match_the_keras_side(name):
    """One layer and a 1000-token vocabulary: every kind of weight each family has, counted the same
    by transformers and keras_hub."""
    import dataclasses

    p = PRESETS[name]
    p = dataclasses.replace(p, layers=1, vocab=1000, max_positions=min(p.max_positions, 2048))
    kind = "encoder" if p.family == "bert" else "decoder"
    with torch.device("meta"):
        model = transformers_torch.auto_class(kind, "inference").from_config(transformers_torch.hf_config(p))
    assert transformers_torch.param_count(model) == REDUCED_PARAMS[name]
