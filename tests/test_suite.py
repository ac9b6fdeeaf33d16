"""Suite loading: every malformed suite gets its exact file:line: key.path: message,
and valid suites expand to the right cases. Fast: a fake catalog, no framework."""

from __future__ import annotations

import hashlib
import textwrap

import pytest

from benchbench.errors import UserError
from benchbench.suite import schema as suite_mod
from benchbench.suite.schema import load_suite, parse_suite, suite_json_schema

ZOO = ["resnet18", "resnet50", "mobilenet_v2", "vit_b_16"]


def catalog(framework: str) -> dict | None:
    return {"models": ZOO, "timm_models": ["resnet10t"]}


def no_timm(framework: str) -> dict | None:
    return {"models": ZOO, "timm_models": None}


def parse(text: str, cat=catalog):
    return parse_suite(textwrap.dedent(text), "s.yaml", cat)


def problems(text: str, cat=catalog) -> list[str]:
    with pytest.raises(UserError) as info:
        parse(text, cat)
    return info.value.lines()


GOOD = """\
name: cnn
matrix:
  model: [seed_cnn, resnet18]
  batch_size: [1, 32]
"""

# (id, suite text, the exact problem lines it must give)
MALFORMED = [
    (
        "unknown top-level key",
        """\
        name: cnn
        matirx:
          model: resnet18
          batch_size: 1
        """,
        [
            "s.yaml:1: matrix: required key missing: what to measure (model:, batch_size:, "
            "and optionally device:, mode:, …)",
            "s.yaml:2: matirx: unknown key 'matirx'; did you mean 'matrix'? "
            "(allowed: name, description, baseline, matrix, include, exclude, defaults, models, catalogue)",
        ],
    ),
    (
        "unknown axis",
        GOOD + "  devices: [cpu]\n",
        [
            "s.yaml:5: matrix.devices: unknown key 'devices'; did you mean 'device'? ('devices: N', the "
            "data-parallel device count, is a setting under defaults: or models: NAME:) "
            "(allowed: framework, model, batch_size, device, mode, variant, seq_len, prompt_len, new_tokens)"
        ],
    ),
    (
        "setting put in the matrix",
        GOOD + "  min_time: 2\n",
        [
            "s.yaml:5: matrix.min_time: unknown key 'min_time'; it is a measurement setting: "
            "put it under defaults: (or models: NAME:) "
            "(allowed: framework, model, batch_size, device, mode, variant, seq_len, prompt_len, new_tokens)"
        ],
    ),
    (
        "unknown key in defaults",
        GOOD + "defaults:\n  max_tim: 3\n",
        ["s.yaml:6: defaults.max_tim: unknown key 'max_tim'; did you mean 'max_time'?"],
    ),
    (
        "unknown model, near miss",
        "name: a\nmatrix:\n  model: [seed_cnn, resnet81]\n  batch_size: 1\n",
        [
            "s.yaml:3: matrix.model[1]: unknown model 'resnet81'; did you mean 'resnet18'? "
            "(allowed: resnet18, resnet50, mobilenet_v2, vit_b_16, seed_cnn, seed_cnn4, seed_mlp)"
        ],
    ),
    (
        "timm name without its prefix",
        "name: a\nmatrix: {model: resnet10t, batch_size: 1}\n",
        ["s.yaml:2: matrix.model: 'resnet10t' is a timm model: write 'timm:resnet10t'"],
    ),
    (
        "unknown device",
        GOOD + "  device: [cpu, gpu]\n",
        [
            "s.yaml:5: matrix.device[1]: unknown device 'gpu'; did you mean 'cuda'? (allowed: cpu, cuda, cuda:N, tpu, xla)"
        ],
    ),
    (
        "unknown mode",
        GOOD + "  mode: training\n",
        [
            "s.yaml:5: matrix.mode: unknown mode 'training'; did you mean 'train'? (allowed: inference, train, data, generate, fit)"
        ],
    ),
    (
        "unknown variant",
        GOOD + "  variant: [fp32, int4]\n",
        ["s.yaml:5: matrix.variant[1]: unknown variant 'int4' (run `benchbench list variants` to see them)"],
    ),
    (
        "unknown framework",
        GOOD + "  framework: pytorch\n",
        [
            "s.yaml:5: matrix.framework: unknown framework 'pytorch'; did you mean 'torch'? "
            "(allowed: torch, tensorflow)"
        ],  # fmt: skip
    ),
    (
        "batch_size 0",
        "name: a\nmatrix:\n  model: resnet18\n  batch_size: [1, 0]\n",
        ["s.yaml:4: matrix.batch_size[1]: must be >= 1, got 0"],
    ),
    (
        "batch_size as a string",
        'name: a\nmatrix:\n  model: resnet18\n  batch_size: "32"\n',
        ["s.yaml:4: matrix.batch_size: expected an integer, got '32' (text)"],
    ),
    (
        "batch_size true",
        "name: a\nmatrix:\n  model: resnet18\n  batch_size: [8, true]\n",
        ["s.yaml:4: matrix.batch_size[1]: expected an integer, got true (a boolean)"],
    ),
    (
        "batch_size a float",
        "name: a\nmatrix:\n  model: resnet18\n  batch_size: 8.0\n",
        ["s.yaml:4: matrix.batch_size: expected an integer, got 8.0 (a number)"],
    ),
    (
        "empty axis list",
        GOOD + "  device: []\n",
        ["s.yaml:5: matrix.device: empty: give at least one value, or leave device out for cpu"],
    ),
    (
        "empty required axis",
        "name: a\nmatrix:\n  model: []\n  batch_size: 1\n",
        ["s.yaml:3: matrix.model: empty: give at least one value"],
    ),
    (
        "no matrix",
        "name: a\ndescription: nothing\n",
        [
            "s.yaml:1: matrix: required key missing: what to measure (model:, batch_size:, "
            "and optionally device:, mode:, …)"
        ],  # fmt: skip
    ),
    (
        "missing batch_size",
        "name: a\nmatrix:\n  model: resnet18\n",
        ["s.yaml:3: matrix.batch_size: required key missing: the batch sizes to measure"],
    ),
    (
        "everything excluded",
        GOOD + "exclude:\n  - {batch_size: [1, 32]}\n",
        ["s.yaml:6: exclude: drops every case of the matrix: nothing to run"],
    ),
    (
        "empty exclude entry",
        GOOD + "exclude:\n  - {}\n",
        [
            "s.yaml:6: exclude[0]: an empty entry would drop every case: name at least one axis "
            "(framework, model, batch_size, device, mode, variant, seq_len, prompt_len, new_tokens)"
        ],  # fmt: skip
    ),
    (
        "YAML syntax error",
        "name: a\nmatrix:\n  model: resnet18\n   batch_size: 1\n",
        ["s.yaml:4: YAML syntax error: mapping values are not allowed here"],
    ),
    (
        "unclosed flow list",
        "name: a\nmatrix:\n  model: [resnet18\n  batch_size: 1\n",
        [
            "s.yaml:4: YAML syntax error: expected ',' or ']', but got ':' (while parsing a flow sequence on line 3)"
        ],  # fmt: skip
    ),
    (
        "duplicate key",
        "name: a\nmatrix:\n  model: resnet18\n  batch_size: 1\n  model: resnet50\n",
        ["s.yaml:5: matrix.model: duplicate key (first given on line 3)"],
    ),
    (
        "python tag",
        "name: a\nmatrix:\n  model: !!python/object/apply:os.system [echo hi]\n  batch_size: 1\n",
        [
            "s.yaml:3: matrix.model: tag !!python/object/apply:os.system is not allowed: a suite "
            "holds plain data only (text, numbers, true/false, null, lists, mappings)"
        ],  # fmt: skip
    ),
    (
        "python name tag on a scalar",
        "name: !!python/name:os.system ''\nmatrix: {model: resnet18, batch_size: 1}\n",
        ["s.yaml:1: name: tag !!python/name:os.system is not allowed"],
    ),
    (
        "a tag on the whole document",
        "!!python/object:os.system {name: a}\n",
        ["s.yaml:1: tag !!python/object:os.system is not allowed"],
    ),
    (
        "a local tag",
        GOOD + "description: !secret x\n",
        ["s.yaml:5: description: tag !secret is not allowed"],
    ),
    (
        "two documents",
        GOOD + "---\nname: b\n",
        ["s.yaml:5: YAML syntax error: a second document (---): a suite is one"],
    ),
    (
        "a key that is not text",
        "name: a\nmatrix: {model: resnet18, batch_size: 1, 3: x}\n",
        ["s.yaml:2: matrix[\"3\"]: key '3' is not text: put it in quotes"],
    ),
    (
        "an alias inside itself",
        "name: a\nmatrix: &m {model: *m, batch_size: 1}\n",
        ["s.yaml:2: matrix.model: an alias refers to the value that contains it"],
    ),
    (
        "max_time < min_time",
        GOOD + "defaults:\n  min_time: 5\n  max_time: 2\n",
        ["s.yaml:7: defaults.max_time: max_time 2 is less than min_time 5"],
    ),
    (
        "max_time < min_time across defaults and models",
        GOOD + "defaults:\n  min_time: 5\nmodels:\n  resnet18: {max_time: 2}\n",
        ["s.yaml:8: models.resnet18.max_time: max_time 2 is less than min_time 5 (from defaults)"],  # fmt: skip
    ),
    (
        "min_time above the default max_time",
        GOOD + "defaults:\n  min_time: 20\n",
        ["s.yaml:6: defaults.min_time: max_time 10 (the default) is less than min_time 20"],
    ),
    (
        "max_iters < min_iters",
        GOOD + "defaults: {min_iters: 10, max_iters: 3}\n",
        ["s.yaml:5: defaults.max_iters: max_iters 3 is less than min_iters 10"],
    ),
    (
        "bad memory_limit string",
        GOOD + "defaults:\n  memory_limit: 4 gigs\n",
        [
            "s.yaml:6: defaults.memory_limit: expected bytes: an integer or text like '4GiB' "
            "(units: B, KB, MB, GB, TB, KiB, MiB, GiB, TiB), got '4 gigs' (text)"
        ],  # fmt: skip
    ),
    (
        "memory_limit unit in the wrong case",
        GOOD + "defaults:\n  memory_limit: 4gib\n",
        [
            "s.yaml:6: defaults.memory_limit: expected bytes: an integer or text like '4GiB' "
            "(units: B, KB, MB, GB, TB, KiB, MiB, GiB, TiB), got '4gib' (text); did you mean 'GiB'?"
        ],
    ),
    (
        "float written 1e-2",
        GOOD + "defaults:\n  target_rel_ci: 1e-2\n",
        [
            "s.yaml:6: defaults.target_rel_ci: expected a number, got '1e-2' (text): "
            "write 0.01 (PyYAML reads 1e-2 as text)"
        ],  # fmt: skip
    ),
    (
        "target_rel_ci out of (0, 1)",
        GOOD + "defaults:\n  target_rel_ci: 2\n",
        ["s.yaml:6: defaults.target_rel_ci: must be < 1, got 2"],
    ),
    (
        "threads 0",
        GOOD + "defaults:\n  threads: 0\n",
        ["s.yaml:6: defaults.threads: expected an integer >= 1 or 'all', got 0 (an integer)"],
    ),
    (
        "unknown optimizer",
        GOOD + "defaults:\n  optimizer: adamw\n",
        [
            "s.yaml:6: defaults.optimizer: unknown optimizer 'adamw'; did you mean 'adam'? (allowed: adam, sgd)"
        ],  # fmt: skip
    ),
    (
        "input_shape with a zero",
        GOOD + "defaults:\n  input_shape: [3, 0, 224]\n",
        ["s.yaml:6: defaults.input_shape[1]: must be >= 1, got 0"],
    ),
    (
        "models: override for a model not in the matrix",
        GOOD + "models:\n  resnet50: {max_time: 20}\n",
        [
            "s.yaml:6: models.resnet50: 'resnet50' is not in the matrix; did you mean 'resnet18'? "
            "(models in the matrix: seed_cnn, resnet18)"
        ],  # fmt: skip
    ),
    (
        "timm name unknown",
        "name: a\nmatrix: {model: 'timm:resnet11t', batch_size: 1}\n",
        [
            "s.yaml:2: matrix.model: unknown timm model 'timm:resnet11t'; "
            "did you mean 'timm:resnet10t'? (allowed: timm:resnet10t)"
        ],  # fmt: skip
    ),
    (
        "malformed user callable",
        "name: a\nmatrix: {model: 'foo:', batch_size: 1}\n",
        [
            "s.yaml:2: matrix.model: model 'foo:' is not a model callable: write "
            "package.module:function (e.g. mynets.models:build), or timm:NAME for a timm model"
        ],
    ),
    (
        "bad name",
        "name: my suite\nmatrix: {model: resnet18, batch_size: 1}\n",
        [
            "s.yaml:1: name: 'my suite' is not a usable name: use letters, digits, _ . - (it names a directory)"
        ],  # fmt: skip
    ),
    (
        "empty file",
        "# only a comment\n",
        ["s.yaml:1: the suite is empty: it needs at least name: and matrix: (model:, batch_size:)"],
    ),
    (
        "top level is a list",
        "- name: a\n",
        ["s.yaml:1: a suite is a mapping (name:, matrix:, …), got [{'name': 'a'}] (a list)"],
    ),
    (
        "include is a mapping",
        GOOD + "include: {model: resnet50}\n",
        ["s.yaml:5: include: expected a list, got {'model': 'resnet50'} (a mapping)"],
    ),
    (
        "telemetry rate above 100 Hz",
        GOOD + "defaults:\n  telemetry: {hz: 500}\n",
        ["s.yaml:6: defaults.telemetry.hz: must be <= 100, got 500"],
    ),
    (
        "unknown telemetry key",
        GOOD + "defaults:\n  telemetry:\n    hzz: 5\n",
        ["s.yaml:7: defaults.telemetry.hzz: unknown key 'hzz'; did you mean 'hz'? (allowed: hz, idle_baseline_s)"],
    ),
    (
        "telemetry setting outside telemetry:",
        GOOD + "defaults:\n  idle_baseline_s: 5\n",
        [
            "s.yaml:6: defaults.idle_baseline_s: unknown key 'idle_baseline_s'; it is a telemetry setting: "
            "write telemetry: {idle_baseline_s: …} (allowed: warmup_iters,"
        ],  # fmt: skip
    ),
    (
        "negative idle baseline and cool-down",
        GOOD + "defaults:\n  telemetry: {idle_baseline_s: -1}\n  cooldown_s: -2\n",
        [
            "s.yaml:6: defaults.telemetry.idle_baseline_s: must be >= 0, got -1",
            "s.yaml:7: defaults.cooldown_s: must be >= 0, got -2",
        ],  # fmt: skip
    ),
    (
        "telemetry not a mapping",
        GOOD + "defaults:\n  telemetry: 10\n",
        ["s.yaml:6: defaults.telemetry: expected a mapping, got 10 (an integer)"],
    ),
    (
        "telemetry rate as text",
        GOOD + "defaults:\n  telemetry: {hz: '10'}\n",
        ["s.yaml:6: defaults.telemetry.hz: expected a number, got '10' (text): remove the quotes"],
    ),
    (
        "unknown telemetry key in a model override",
        GOOD + "models:\n  resnet18: {telemetry: {rate: 5}}\n",
        ["s.yaml:6: models.resnet18.telemetry.rate: unknown key 'rate' (allowed: hz, idle_baseline_s)"],
    ),
    (
        "three problems",
        """\
        name: a
        matrix:
          model: resnet18
          batch_size: [0, 8]
          mode: [inference, trian]
        defaults:
          min_time: -1
        """,
        [
            "s.yaml:4: matrix.batch_size[0]: must be >= 1, got 0",
            "s.yaml:5: matrix.mode[1]: unknown mode 'trian'; did you mean 'train'? (allowed: inference, train, data, generate, fit)",
            "s.yaml:7: defaults.min_time: must be >= 0, got -1",
        ],
    ),
]


@pytest.mark.parametrize("text, expected", [pytest.param(t, e, id=i) for i, t, e in MALFORMED])
def test_malformed_suite(text, expected):
    """Each problem line is exactly the expected line (or starts with it, when the rest
    is a long list of allowed keys), one line per problem."""
    lines = problems(text)
    assert len(lines) == len(expected), lines
    for got, want in zip(lines, expected):
        assert got.startswith(want), (got, want)


def test_timm_not_installed():
    (line,) = problems("name: a\nmatrix: {model: 'timm:resnet10t', batch_size: 1}\n", no_timm)
    assert line == ("s.yaml:2: matrix.model: timm is not installed: pip install timm (for 'timm:resnet10t')")


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(UserError) as info:
        load_suite(path, catalog)
    assert info.value.lines() == [f"{path}: no such file"]


def test_not_utf8(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_bytes(b"name: a\ndescription: caf\xe9\n")
    with pytest.raises(UserError) as info:
        load_suite(path, catalog)
    assert info.value.lines() == [f"{path}:2: not UTF-8 text (byte 0xe9)"]


def test_errors_carry_summary_and_no_pydantic_text():
    with pytest.raises(UserError) as info:
        parse("name: a\nmatrix: {model: 3, batch_size: x, device: 1}\n")
    assert str(info.value) == "s.yaml: invalid suite (3 problems)"
    text = "\n".join(info.value.lines())
    assert "pydantic" not in text and "Input should" not in text


# ----------------------------------------------------------------- expansion


def labels(s) -> list[str]:
    return [c.label for c in s.cases]


def test_cartesian_count_and_order():
    s = parse(
        """\
        name: cnn
        matrix:
          model: [seed_cnn, resnet18]
          batch_size: [1, 32]
          device: [cpu, cuda]
          mode: [inference, train]
        """
    )
    assert len(s.cases) == 16
    expected = [
        f"torch/{m}/bs{b}/{d}/{mode}/fp32"
        for m in ("seed_cnn", "resnet18")
        for b in (1, 32)
        for d in ("cpu", "cuda")
        for mode in ("inference", "train")
    ]
    assert labels(s) == expected


def test_defaults_of_axes_and_scalar_shorthand():
    s = parse("name: a\nmatrix: {model: resnet18, batch_size: 4}\n")
    (case,) = s.cases
    assert (case.framework, case.model, case.batch_size) == ("torch", "resnet18", 4)
    assert (case.device, case.mode, case.variant) == ("cpu", "inference", "fp32")
    assert case.input_shape == (3, 224, 224) and case.threads is None and case.optimizer == "adam"


def test_exclude_drops_cases_matching_all_keys():
    s = parse(GOOD + "  device: [cpu, cuda]\nexclude:\n  - {device: cuda, batch_size: 1}\n")
    assert labels(s) == [
        "torch/seed_cnn/bs1/cpu/inference/fp32",
        "torch/seed_cnn/bs32/cpu/inference/fp32",
        "torch/seed_cnn/bs32/cuda/inference/fp32",
        "torch/resnet18/bs1/cpu/inference/fp32",
        "torch/resnet18/bs32/cpu/inference/fp32",
        "torch/resnet18/bs32/cuda/inference/fp32",
    ]


def test_exclude_with_a_list_value():
    s = parse(GOOD + "exclude:\n  - {model: [seed_cnn, resnet18], batch_size: 32}\n")
    assert labels(s) == ["torch/seed_cnn/bs1/cpu/inference/fp32", "torch/resnet18/bs1/cpu/inference/fp32"]


def test_include_adds_overrides_and_readds_excluded():
    s = parse(
        """\
        name: a
        matrix:
          model: resnet18
          batch_size: [1, 32]
          device: [cpu, cuda]
        exclude:
          - {device: cuda, batch_size: 1}
        include:
          - {model: resnet50, batch_size: 64}
          - {batch_size: 1, device: cuda}
        """
    )
    assert labels(s) == [
        "torch/resnet18/bs1/cpu/inference/fp32",
        "torch/resnet18/bs32/cpu/inference/fp32",
        "torch/resnet18/bs32/cuda/inference/fp32",
        "torch/resnet50/bs64/cpu/inference/fp32",  # the matrix's devices for the axis not named
        "torch/resnet50/bs64/cuda/inference/fp32",
        "torch/resnet18/bs1/cuda/inference/fp32",  # excluded, added back
    ]


def test_duplicates_dropped_first_occurrence_kept():
    s = parse(GOOD + "include:\n  - {model: resnet18, batch_size: 1}\n  - {model: resnet50, batch_size: 1}\n")
    assert labels(s) == [
        "torch/seed_cnn/bs1/cpu/inference/fp32",
        "torch/seed_cnn/bs32/cpu/inference/fp32",
        "torch/resnet18/bs1/cpu/inference/fp32",
        "torch/resnet18/bs32/cpu/inference/fp32",
        "torch/resnet50/bs1/cpu/inference/fp32",
    ]
    assert len({c.case_id for c in s.cases}) == len(s.cases)


def test_per_model_overrides_of_input_shape_and_settings():
    s = parse(
        """\
        name: a
        matrix:
          model: [seed_cnn, resnet18, seed_mlp]
          batch_size: 2
          mode: train
        defaults:
          input_shape: [3, 128, 128]
          max_time: 5
          memory_limit: 2GiB
          threads: all
          optimizer: sgd
        models:
          resnet18: {input_shape: [3, 160, 160], max_time: 20, threads: 4, optimizer: adam}
        """
    )
    cnn, resnet, mlp = s.cases
    assert cnn.input_shape == (3, 128, 128)
    assert resnet.input_shape == (3, 160, 160)
    assert mlp.input_shape == (10,)  # a suite-wide image shape does not apply to features
    assert cnn.settings.max_time == 5.0 and resnet.settings.max_time == 20.0
    assert isinstance(cnn.settings.max_time, float)
    assert cnn.settings.memory_limit == resnet.settings.memory_limit == 2147483648
    assert cnn.threads is None and resnet.threads == 4
    assert cnn.optimizer == "sgd" and resnet.optimizer == "adam"
    assert cnn.settings.min_time == 1.0  # untouched settings keep Settings' defaults


def test_telemetry_and_cooldown_merge_from_defaults_and_models():
    s = parse(
        """\
        name: a
        matrix: {model: [seed_cnn, resnet18, resnet50], batch_size: 2}
        defaults:
          telemetry: {idle_baseline_s: 5}
          cooldown_s: 30
        models:
          resnet18: {telemetry: {hz: 100}}
          resnet50: {telemetry: {hz: 0, idle_baseline_s: 0}, cooldown_s: 0}
        """
    )
    got = [(c.settings.telemetry_hz, c.settings.idle_baseline_s, c.settings.cooldown_s) for c in s.cases]
    assert got == [(10.0, 5.0, 30.0), (100.0, 5.0, 30.0), (0.0, 0.0, 0.0)]  # nested keys merge one by one
    assert all(isinstance(v, float) for v in got[1])
    plain = parse(GOOD).cases[0].settings
    assert (plain.telemetry_hz, plain.idle_baseline_s, plain.cooldown_s) == (10.0, 0.0, 0.0)


def test_json_schema_knows_the_telemetry_keys():
    jsonschema = pytest.importorskip("jsonschema")
    schema = suite_json_schema()
    good = {"name": "a", "matrix": {"model": "resnet18", "batch_size": 1},
            "defaults": {"telemetry": {"hz": 50, "idle_baseline_s": 2}, "cooldown_s": 10}}  # fmt: skip
    jsonschema.validate(good, schema, cls=jsonschema.Draft202012Validator)
    for bad in ({"hz": 101}, {"hzz": 1}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(dict(good, defaults={"telemetry": bad}), schema, cls=jsonschema.Draft202012Validator)


def test_seed_mlp_overridden_explicitly():
    s = parse("name: a\nmatrix: {model: seed_mlp, batch_size: 1}\nmodels:\n  seed_mlp: {input_shape: [20]}\n")
    assert s.cases[0].input_shape == (20,)


@pytest.mark.parametrize(
    "text, expected",
    [("2GiB", 2 * 2**30), ("1.5 KiB", 1536), ("4MB", 4_000_000), ("512", 512), ("null", None)],
)
def test_memory_limit(text, expected):
    s = parse(GOOD + f"defaults:\n  memory_limit: {text}\n")
    assert s.cases[0].settings.memory_limit == expected


def test_suite_fields_and_hash():
    text = "name: cnn\ndescription: two models\r\nmatrix: {model: resnet18, batch_size: 1}\n"
    s = parse_suite(text, "x/cnn.yaml", catalog)
    assert (s.name, s.description, s.path, s.text) == ("cnn", "two models", "x/cnn.yaml", text)
    assert s.content_hash == hashlib.sha256(text.encode()).hexdigest()


def test_load_suite_reads_the_file(tmp_path):
    path = tmp_path / "cnn.yaml"
    path.write_bytes(GOOD.replace("\n", "\r\n").encode())
    s = load_suite(path, catalog)
    assert s.path == str(path) and s.text == GOOD.replace("\n", "\r\n") and len(s.cases) == 4


def test_merge_keys_and_anchors():
    s = parse(
        """\
        name: a
        matrix: {model: [seed_cnn, resnet18], batch_size: 1}
        defaults: &base {max_time: 20, min_time: 2}
        models:
          resnet18:
            <<: *base
            min_time: 3
        """
    )
    assert s.cases[1].settings.max_time == 20.0 and s.cases[1].settings.min_time == 3.0


# ---------------------------------------------------------------- catalog


def test_catalog_none_skips_zoo_checks():
    s = parse("name: a\nmatrix: {model: [whatever_net, 'timm:nope'], batch_size: 1}\n", lambda fw: None)
    assert [c.model for c in s.cases] == ["whatever_net", "timm:nope"]


def test_catalog_fetched_once_per_framework():
    calls = []

    def counting(framework):
        calls.append(framework)
        return catalog(framework)

    parse("name: a\nmatrix: {model: [resnet18, resnet50, 'timm:resnet10t'], batch_size: 1}\n", counting)
    assert calls == ["torch"]


def test_probe_only_when_a_zoo_name_needs_it(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(suite_mod, "_probe_catalog", lambda fw: calls.append(fw) or catalog(fw))
    (tmp_path / "pkg").mkdir()  # the user model's package must be findable (next to the suite)
    parse_suite("name: a\nmatrix: {model: [seed_cnn, 'pkg.mod:build'], batch_size: 1}\n", tmp_path / "s.yaml")
    assert calls == []
    with pytest.raises(UserError):
        parse_suite("name: a\nmatrix: {model: resnet81, batch_size: 1}\n", "s.yaml")
    assert calls == ["torch"]


# --------------------------------------------------------------- case_id


def case_ids(text: str) -> dict[str, str]:
    return {c.label: c.case_id for c in parse(text).cases}


def test_case_id_stable_across_suites():
    a = case_ids("name: a\nmatrix: {model: [seed_cnn, resnet18], batch_size: [1, 8], device: [cpu, cuda]}\n")
    b = case_ids(
        "name: b\nmatrix:\n  device: [cuda, cpu]\n  batch_size: [8, 1]\n  model: [resnet18, seed_cnn]\n"
        "defaults: {min_time: 0.5}\n"  # settings are not identity
    )
    assert a == b
    c = case_ids("name: c\nmatrix: {model: [seed_cnn, resnet18], batch_size: [2, 8], device: [cpu, cuda]}\n")
    assert a["torch/resnet18/bs8/cuda/inference/fp32"] == c["torch/resnet18/bs8/cuda/inference/fp32"]
    assert set(a.values()) - set(c.values())  # bs1 became bs2: other ids
    bs1 = parse("name: a\nmatrix: {model: resnet18, batch_size: 1}\n").cases[0]
    bs2 = parse("name: a\nmatrix: {model: resnet18, batch_size: 2}\n").cases[0]
    assert bs1.case_id != bs2.case_id


def test_case_id_ignores_min_time():
    one = parse("name: a\nmatrix: {model: resnet18, batch_size: 1}\ndefaults: {min_time: 1}\n").cases[0]
    two = parse("name: a\nmatrix: {model: resnet18, batch_size: 1}\ndefaults: {min_time: 3}\n").cases[0]
    assert one.case_id == two.case_id and one.settings != two.settings


# ---------------------------------------------------------------- schema


def test_json_schema_shape():
    schema = suite_json_schema()
    assert isinstance(schema, dict)
    assert {"name", "matrix", "include", "exclude", "defaults", "models"} <= set(schema["properties"])
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["required"] == ["name", "matrix"]


def test_json_schema_validates_good_suites():
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    schema = suite_json_schema()
    good = """\
        name: cnn
        description: a suite
        matrix:
          framework: torch
          model: [seed_cnn, resnet18]
          batch_size: [1, 32]
          device: [cpu, "cuda:1"]
          mode: [inference, train]
          variant: fp32
        exclude:
          - {device: "cuda:1", batch_size: 1}
        include:
          - {model: resnet50, batch_size: [64]}
        defaults:
          warmup_iters: 3
          min_time: 1.0
          max_time: 10
          memory_limit: 4GiB
          threads: all
          optimizer: sgd
          input_shape: [3, 224, 224]
        models:
          resnet18: {input_shape: [3, 160, 160], max_time: 20, threads: 2, memory_limit: null}
        """
    data = yaml.safe_load(textwrap.dedent(good))
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(data, schema, cls=jsonschema.Draft202012Validator)
    parse(good)  # and benchbench agrees
    bad = dict(data, matrix=dict(data["matrix"], batch_size=[0]))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema, cls=jsonschema.Draft202012Validator)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(dict(data, matirx={}), schema, cls=jsonschema.Draft202012Validator)


# ------------------------------------------- what a framework can allocate, what can be imported

INT64 = "at most 9223372036854775807 (2^63 - 1, the int64 limit): no framework can allocate more"


def test_a_batch_size_beyond_int64_is_a_problem_at_its_line():
    (line,) = problems("name: a\nmatrix:\n  model: seed_mlp\n  batch_size: [1, 99999999999999999999999999]\n")
    assert line == f"s.yaml:4: matrix.batch_size[1]: batch_size 99999999999999999999999999 is too large: {INT64}"
    (line,) = problems(
        "name: a\nmatrix: {model: seed_mlp, batch_size: 1}\ninclude:\n  - {batch_size: 9223372036854775808}\n"
    )
    assert line == f"s.yaml:4: include[0].batch_size: batch_size 9223372036854775808 is too large: {INT64}"


def test_a_batch_whose_element_count_overflows_int64_names_the_key_and_the_limit():
    # one sample alone is too big: the input_shape is what to change
    (line,) = problems(
        """\
        name: a
        matrix: {model: [seed_cnn, resnet18], batch_size: 2}
        models:
          resnet18:
            input_shape: [3, 4294967296, 4294967296]
        """
    )
    assert line == (
        "s.yaml:5: models.resnet18.input_shape: input_shape [3, 4294967296, 4294967296] is "
        f"55340232221128654848 elements per sample: {INT64}"
    )
    # each fits, the batch does not: said at the batch size, naming where the shape came from
    (line,) = problems(
        """\
        name: a
        matrix:
          model: resnet18
          batch_size: [8, 3074457345618258603]
        defaults:
          input_shape: [3]
        """
    )
    assert line == (
        "s.yaml:4: matrix.batch_size[1]: batch_size 3074457345618258603 × input_shape [3] (from "
        f"defaults.input_shape) = 9223372036854775809 elements per batch: {INT64}"
    )
    # exactly the limit still loads
    s = parse("name: a\nmatrix: {model: resnet18, batch_size: 3074457345618258602}\ndefaults: {input_shape: [3]}\n")
    assert s.cases[0].batch_size * 3 == 2**63 - 2


def test_a_user_model_whose_package_cannot_be_found_is_a_problem_at_its_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    suite_dir = tmp_path / "suites"
    suite_dir.mkdir()
    (suite_dir / "nextto.py").write_text("raise SystemExit('imported at validation time')\n")  # never run
    (tmp_path / "incwd").mkdir()
    text = (
        "name: a\nmatrix:\n  model: [seed_mlp, 'nextto:build', 'incwd.models:build', 'json.decoder:JSONDecoder',\n"
        "          'nosuchpkg_bb.models:build']\n  batch_size: 1\ninclude:\n  - {model: 'otherpkg_bb:net'}\n"
    )
    (suite_dir / "s.yaml").write_text(text)
    with pytest.raises(UserError) as info:
        load_suite(suite_dir / "s.yaml", catalog)
    where = f"looked in {tmp_path}, {suite_dir} and this Python's sys.path"
    assert info.value.lines() == [
        f"{suite_dir / 's.yaml'}:4: matrix.model[4]: model 'nosuchpkg_bb.models:build': no module named "
        f"'nosuchpkg_bb' ({where}; put nosuchpkg_bb/ or nosuchpkg_bb.py next to the suite, or install it)",
        f"{suite_dir / 's.yaml'}:7: include[0].model: model 'otherpkg_bb:net': no module named "
        f"'otherpkg_bb' ({where}; put otherpkg_bb/ or otherpkg_bb.py next to the suite, or install it)",
    ]
    # found next to the suite, in the cwd, or installed: loads (a deeper problem is the worker's to report)
    fixed = text.replace("'nosuchpkg_bb.models:build'", "'incwd.nosuchmodule:build'").replace(
        "include:\n  - {model: 'otherpkg_bb:net'}\n", ""
    )
    (suite_dir / "s.yaml").write_text(fixed)
    models = [c.model for c in load_suite(suite_dir / "s.yaml", catalog).cases]
    assert models == [
        "seed_mlp",
        "nextto:build",
        "incwd.models:build",
        "json.decoder:JSONDecoder",
        "incwd.nosuchmodule:build",
    ]
