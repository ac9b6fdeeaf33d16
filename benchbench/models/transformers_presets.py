"""The transformer presets' architecture hyperparameters: plain data, no framework.

Each preset is a published architecture's shape, built with random weights by
:mod:`benchbench.models.transformers_torch` (Hugging Face ``transformers`` ``*Config`` +
``from_config``) and :mod:`benchbench.models.transformers_keras` (``keras_hub`` backbones).
Nothing is downloaded: no Hub look-up, no tokenizer; inputs are seeded token ids. The names,
kinds and published parameter counts a suite may rely on are in
:data:`benchbench.registry.TRANSFORMER_MODELS` (``tests/test_transformers_presets.py`` holds
the two tables to each other and the built models to the published counts).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    name: str
    family: str  # "bert" (encoder), "gpt2" or "llama" (decoders): which config class builds it
    vocab: int
    hidden: int
    layers: int
    heads: int  # query heads
    kv_heads: int  # key/value heads (grouped-query attention when < heads)
    intermediate: int  # the MLP's inner width
    max_positions: int
    tied: bool = True  # LM head shares the token embedding
    rope_theta: float = 10_000.0  # llama only
    norm_eps: float = 1e-5
    head_dim: int | None = None  # default hidden / heads
    source: str = ""  # where the hyperparameters come from


PRESETS = {
    p.name: p
    for p in (
        Preset("tiny_encoder", "bert", vocab=1024, hidden=64, layers=2, heads=2, kv_heads=2, intermediate=256,
               max_positions=512, norm_eps=1e-12, source="a BERT-shaped test model (benchbench)"),
        Preset("tiny_decoder", "llama", vocab=2048, hidden=128, layers=2, heads=4, kv_heads=2, intermediate=384,
               max_positions=2048, source="a Llama-shaped test model with grouped-query attention (benchbench)"),
        Preset("bert_base", "bert", vocab=30522, hidden=768, layers=12, heads=12, kv_heads=12, intermediate=3072,
               max_positions=512, norm_eps=1e-12,
               source="BERT-Base, Devlin et al. 2018, arXiv:1810.04805 (L=12, H=768, A=12); uncased vocabulary"),
        Preset("gpt2_small", "gpt2", vocab=50257, hidden=768, layers=12, heads=12, kv_heads=12, intermediate=3072,
               max_positions=1024,
               source="GPT-2 small, Radford et al. 2019 (12 layers, d_model 768), the openai-community/gpt2 config"),
        Preset("llama_1b", "llama", vocab=128256, hidden=2048, layers=16, heads=32, kv_heads=8, intermediate=8192,
               max_positions=131072, rope_theta=500_000.0, head_dim=64,
               source="Llama 3.2 1B's published config (16 layers, d_model 2048, 32 query / 8 KV heads, "
               "MLP 8192, vocabulary 128256, tied embeddings, RoPE theta 500000)"),
    )
}  # fmt: skip
