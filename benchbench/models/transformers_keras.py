"""Transformer presets for TensorFlow (Keras 3): ``keras_hub`` backbones constructed in code with
random weights — the same architectures as :mod:`benchbench.models.transformers_torch` builds
(``tests/test_transformers_keras.py`` holds every family's parameter count to transformers').
Nothing downloaded: no preset, no tokenizer, no preprocessor.

* ``bert``: ``BertBackbone`` (the encoder with its pooler) in inference; ``BertMaskedLM`` (the
  backbone and its masked-LM head, tied to the token embedding) in train;
* ``gpt2``, ``llama``: ``GPT2CausalLM`` / ``LlamaCausalLM`` around their backbones (LM head
  tied to the token embedding), logits out.

keras_hub is installed without its dependencies (``pip install --no-deps keras-hub``): its
``tensorflow-text`` requirement would install the full ``tensorflow`` over ``tensorflow-cpu``,
and the backbones need none of it. Imported only inside a worker, after
:mod:`benchbench.backends.tensorflow` has set TensorFlow up.
"""

from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "tensorflow"

import keras_hub  # noqa: E402

from benchbench.models.transformers_presets import PRESETS, Preset  # noqa: E402


def backbone(p: Preset):
    if p.family == "bert":
        return keras_hub.models.BertBackbone(
            vocabulary_size=p.vocab,
            num_layers=p.layers,
            num_heads=p.heads,
            hidden_dim=p.hidden,
            intermediate_dim=p.intermediate,
            max_sequence_length=p.max_positions,
            num_segments=2,
        )
    if p.family == "gpt2":
        return keras_hub.models.GPT2Backbone(
            vocabulary_size=p.vocab,
            num_layers=p.layers,
            num_heads=p.heads,
            hidden_dim=p.hidden,
            intermediate_dim=p.intermediate,
            max_sequence_length=p.max_positions,
        )
    if p.family == "llama":
        return keras_hub.models.LlamaBackbone(
            vocabulary_size=p.vocab,
            num_layers=p.layers,
            num_query_heads=p.heads,
            num_key_value_heads=p.kv_heads,
            hidden_dim=p.hidden,
            intermediate_dim=p.intermediate,
            rope_max_wavelength=p.rope_theta,
            layer_norm_epsilon=p.norm_eps,
            tie_word_embeddings=p.tied,
        )
    raise ValueError(f"preset {p.name}: unknown family {p.family!r}")


def build_preset(p: Preset, mode: str):
    """What a case of this preset and mode runs (see the module docstring)."""
    bb = backbone(p)
    if p.family == "bert":
        return keras_hub.models.BertMaskedLM(bb, preprocessor=None) if mode == "train" else bb
    cls = keras_hub.models.GPT2CausalLM if p.family == "gpt2" else keras_hub.models.LlamaCausalLM
    return cls(bb, preprocessor=None)


def build(name: str, mode: str):
    return build_preset(PRESETS[name], mode)


def inputs(family: str, token_ids, mask_positions=None) -> dict:
    """The dict a keras_hub model of ``family`` takes for a (batch, tokens) array of ids."""
    import numpy as np

    out = {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids, dtype=bool)}
    if family == "bert":
        out["segment_ids"] = np.zeros_like(token_ids)
    if mask_positions is not None:
        out["mask_positions"] = mask_positions
    return out


__all__ = ["backbone", "build", "build_preset", "inputs"]
