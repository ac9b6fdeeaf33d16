"""Transformer models for PyTorch with random weights: Hugging Face ``transformers`` configs
built with ``from_config`` (nothing downloaded: no Hub look-up, no tokenizer), or a user's
``module:callable`` returning a ``PreTrainedModel`` or a ``PretrainedConfig``.

What is built per kind and mode (one class per job, so the record's parameter count is of
what runs):

* encoder, inference: the bare encoder (``AutoModel``: BertModel with its pooler), last
  hidden states out;
* encoder, train: the encoder with its masked-LM head (``AutoModelForMaskedLM``, decoder tied
  to the token embedding), masked-LM loss on 15% of the positions;
* decoder, inference/train/generate: the causal LM (``AutoModelForCausalLM``), logits out,
  causal-LM loss in train.

Attention is PyTorch's ``scaled_dot_product_attention`` (``attn_implementation="sdpa"``).
Imported only inside a worker process.
"""

from __future__ import annotations

import importlib

import torch
import transformers

from benchbench.models.transformers_presets import PRESETS, Preset
from benchbench.registry import model_kind

MLM_FRACTION = 0.15  # masked-LM train step: share of positions with a label (BERT's 15%)


def hf_config(preset: Preset) -> transformers.PretrainedConfig:
    """The preset as a ``transformers`` config (``attn_implementation`` set on build)."""
    p = preset
    if p.family == "bert":
        return transformers.BertConfig(
            vocab_size=p.vocab,
            hidden_size=p.hidden,
            num_hidden_layers=p.layers,
            num_attention_heads=p.heads,
            intermediate_size=p.intermediate,
            max_position_embeddings=p.max_positions,
            layer_norm_eps=p.norm_eps,
            tie_word_embeddings=p.tied,
        )
    if p.family == "gpt2":
        return transformers.GPT2Config(
            vocab_size=p.vocab,
            n_positions=p.max_positions,
            n_embd=p.hidden,
            n_layer=p.layers,
            n_head=p.heads,
            n_inner=p.intermediate,
            layer_norm_epsilon=p.norm_eps,
            tie_word_embeddings=p.tied,
        )
    if p.family == "llama":
        return transformers.LlamaConfig(
            vocab_size=p.vocab,
            hidden_size=p.hidden,
            intermediate_size=p.intermediate,
            num_hidden_layers=p.layers,
            num_attention_heads=p.heads,
            num_key_value_heads=p.kv_heads,
            head_dim=p.head_dim or p.hidden // p.heads,
            max_position_embeddings=p.max_positions,
            rms_norm_eps=p.norm_eps,
            rope_theta=p.rope_theta,
            tie_word_embeddings=p.tied,
        )
    raise ValueError(f"preset {p.name}: unknown family {p.family!r}")


def auto_class(kind: str, mode: str):
    """The ``transformers`` auto class that builds what a case of this kind and mode runs."""
    if kind == "decoder":
        return transformers.AutoModelForCausalLM
    return transformers.AutoModelForMaskedLM if mode == "train" else transformers.AutoModel


def _user(spec: str, kind: str, mode: str) -> torch.nn.Module:
    module_name, attr = spec.split(":", 1)
    made = getattr(importlib.import_module(module_name), attr)()
    if isinstance(made, transformers.PretrainedConfig):
        made = auto_class(kind, mode).from_config(made, attn_implementation="sdpa")
    if not isinstance(made, torch.nn.Module):
        raise TypeError(
            f"{spec} returned {type(made).__name__}: a token model's callable returns a transformers "
            "PreTrainedModel or PretrainedConfig"
        )
    return made


def build(name: str, kind: str, mode: str, device: torch.device | str = "cpu") -> torch.nn.Module:
    """The model with random weights (seeded by the caller's ``torch.manual_seed``), fp32,
    built directly on ``device`` (``"meta"``: shapes only, for counting)."""
    if model_kind(name) == "user":
        return _user(name, kind, mode).to(device)
    config = hf_config(PRESETS[name])
    with torch.device(device):
        return auto_class(kind, mode).from_config(config, attn_implementation="sdpa", dtype=torch.float32)


def param_count(model: torch.nn.Module) -> int:
    """Parameters, each shared tensor once (a tied LM head is the embedding)."""
    return sum(p.numel() for p in model.parameters())


__all__ = ["MLM_FRACTION", "auto_class", "build", "hf_config", "param_count"]
