"""The token axes in a suite: seq_len for token models, prompt_len and new_tokens for generate,
their defaults, what other models do with them, labels and case_ids, and bad values."""

import pytest

from benchbench import registry
from benchbench.case import Case
from benchbench.errors import UserError
from benchbench.suite.schema import parse_suite


def cases(text: str) -> dict[str, Case]:
    return {c.label: c for c in parse_suite(text, "s.yaml", catalog=lambda fw: None).cases}


def test_token_axes_apply_to_token_models_only_with_their_defaults():
    got = cases(
        "name: t\n"
        "matrix:\n"
        "  model: [tiny_decoder, tiny_encoder, seed_mlp]\n"
        "  batch_size: 2\n"
        "  mode: [inference, generate]\n"
        "  seq_len: [16, 32]\n"
        "  new_tokens: 8\n"
    )
    assert sorted(got) == sorted(
        [
            "torch/tiny_decoder/bs2/cpu/inference/fp32/seq16",
            "torch/tiny_decoder/bs2/cpu/inference/fp32/seq32",
            f"torch/tiny_decoder/bs2/cpu/generate/fp32/prompt{registry.DEFAULT_PROMPT_LEN}+8",
            "torch/tiny_encoder/bs2/cpu/inference/fp32/seq16",
            "torch/tiny_encoder/bs2/cpu/inference/fp32/seq32",
            # an encoder asked to generate is a case (the worker skips it with the reason)
            f"torch/tiny_encoder/bs2/cpu/generate/fp32/prompt{registry.DEFAULT_PROMPT_LEN}+8",
            # a vision model drops the token axes: one case per mode, as before
            "torch/seed_mlp/bs2/cpu/inference/fp32",
            "torch/seed_mlp/bs2/cpu/generate/fp32",
        ]
    )
    gen = got[f"torch/tiny_decoder/bs2/cpu/generate/fp32/prompt{registry.DEFAULT_PROMPT_LEN}+8"]
    assert (gen.seq_len, gen.prompt_len, gen.new_tokens) == (None, registry.DEFAULT_PROMPT_LEN, 8)
    assert gen.input_shape == (registry.DEFAULT_PROMPT_LEN,)
    enc = got["torch/tiny_encoder/bs2/cpu/inference/fp32/seq32"]
    assert enc.input_shape == (32,) and enc.prompt_len is None and enc.new_tokens is None
    mlp = got["torch/seed_mlp/bs2/cpu/inference/fp32"]
    assert mlp.seq_len is None and mlp.input_shape == (10,)


def test_a_case_without_token_axes_keeps_its_case_id_and_a_token_case_round_trips():
    plain = Case("torch", "seed_mlp", 1, "cpu", "inference", "fp32", (10,))
    assert "seq_len" not in plain.identity() and "prompt_len" not in plain.to_dict()
    tok = Case("torch", "tiny_decoder", 1, "cpu", "generate", "fp32", (8,), prompt_len=8, new_tokens=4)
    again = Case.from_dict(tok.to_dict())
    assert again == tok and again.case_id == tok.case_id
    assert tok.case_id != Case("torch", "tiny_decoder", 1, "cpu", "generate", "fp32", (8,), prompt_len=8,
                               new_tokens=5).case_id  # fmt: skip


def test_include_and_exclude_select_on_token_axes():
    got = cases(
        "name: t\n"
        "matrix: {model: tiny_encoder, batch_size: 1, seq_len: [16, 32, 64]}\n"
        "exclude: [{seq_len: 32}]\n"
        "include: [{model: tiny_decoder, mode: generate, prompt_len: [4, 8], new_tokens: 2}]\n"
    )
    assert sorted(got) == [
        "torch/tiny_decoder/bs1/cpu/generate/fp32/prompt4+2",
        "torch/tiny_decoder/bs1/cpu/generate/fp32/prompt8+2",
        "torch/tiny_encoder/bs1/cpu/inference/fp32/seq16",
        "torch/tiny_encoder/bs1/cpu/inference/fp32/seq64",
    ]


def test_a_users_callable_is_a_token_model_when_the_case_names_a_seq_len_or_generates():
    assert registry.token_axes("pkg.m:build", "inference", None, None, None) is None
    assert registry.token_axes("pkg.m:build", "inference", 64, None, None) == (64, None, None)
    assert registry.token_axes("pkg.m:build", "generate", None, None, None) == (
        None,
        registry.DEFAULT_PROMPT_LEN,
        registry.DEFAULT_NEW_TOKENS,
    )
    assert registry.token_axes("resnet18", "inference", 64, None, None) is None


@pytest.mark.parametrize(
    "axis,value,message",
    [
        ("new_tokens", "1", "matrix.new_tokens: must be >= 2, got 1"),
        ("seq_len", "0", "matrix.seq_len: must be >= 1, got 0"),
        (
            "prompt_len",
            "[]",
            "matrix.prompt_len: empty: give at least one value, or leave prompt_len out for its default",
        ),
        ("seq_len", "'128'", "matrix.seq_len: expected an integer, got '128' (text)"),
    ],
)
def test_bad_token_axes_name_the_line_and_the_rule(axis, value, message):
    text = f"name: t\nmatrix:\n  model: tiny_decoder\n  batch_size: 1\n  {axis}: {value}\n"
    with pytest.raises(UserError) as e:
        parse_suite(text, "s.yaml", catalog=lambda fw: None)
    assert e.value.problems == [f"s.yaml:5: {message}"]


def test_the_llm_suite_is_valid_and_its_cpu_part_is_the_two_small_decoders():
    from conftest import REPO

    suite = parse_suite((REPO / "suites" / "llm.yaml").read_text(encoding="utf-8"), "llm.yaml", catalog=lambda fw: None)
    cpu = sorted(c.label for c in suite.cases if c.device == "cpu")
    assert cpu == [
        "torch/gpt2_small/bs1/cpu/generate/fp32/prompt32+32",
        "torch/tiny_decoder/bs1/cpu/generate/fp32/prompt32+32",
    ]
    assert any(c.model == "llama_1b" and c.device == "cuda" for c in suite.cases)
