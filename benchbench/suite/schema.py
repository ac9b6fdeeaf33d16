"""Suites: YAML loading, strict validation with file:line errors, matrix expansion.

A suite file says *what* to measure (a matrix of frameworks × models × batch sizes ×
devices × modes × variants, trimmed by ``exclude`` and extended by ``include``) and how
long to measure it (``defaults``, overridden per model under ``models``). Every user
mistake becomes one ``FILE:LINE: key.path: message`` line of a :class:`UserError`, all
problems of a file at once. The schema is a set of pydantic models (strict, no extra
keys), which also gives :func:`suite_json_schema` for editors; pydantic's own messages
are never shown.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import hashlib
import importlib.machinery
import importlib.util
import itertools
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from benchbench import data_spec as data_config
from benchbench import fit_spec, registry, yamlsrc
from benchbench.case import TOKEN_AXES, Case, Settings
from benchbench.errors import UserError
from benchbench.suite import catalogue as suite_catalogue
from benchbench.yamlsrc import Problem, format_path

Catalog = Callable[[str], "dict | None"]

# nesting order; the token axes (seq_len, prompt_len, new_tokens) apply to token models only
AXES = ("framework", "model", "batch_size", "device", "mode", "variant", *TOKEN_AXES)
_SETTINGS_FIELDS = tuple(f.name for f in dataclasses.fields(Settings))
_LIST_MAX = 12  # allowed values are listed in a message up to this many
_LIST_HINT = "run `benchbench list models` to see them all"
INT64_MAX = 2**63 - 1  # the most elements a framework's tensor (int64 sizes) can hold


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    path: str
    text: str  # the exact text of the file
    content_hash: str  # sha256 hex of text
    cases: tuple[Case, ...]
    baseline: str = "fp32"  # the reference variant (suite key baseline:)
    catalogue: tuple[str, ...] = ()  # device catalogue files (suite key catalogue:), absolute paths


# ----------------------------------------------------------------- messages


def _fail(message: str):
    """Raise a validation error whose message is shown as is."""
    raise PydanticCustomError("benchbench", "{msg}", {"msg": message})


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    text = repr(value) if isinstance(value, (str, list, dict)) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _num(value: Any) -> str:
    """2.0 -> '2', 0.5 -> '0.5': numbers as a person would write them."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _describe(value: Any) -> str:
    """``'32' (text)``, ``true (a boolean)``, ``2.5 (a number)``: the value and its type."""
    kinds = [(bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "text"),
             (list, "a list"), (dict, "a mapping"), (datetime.date, "a date")]  # fmt: skip
    kind = next((k for t, k in kinds if isinstance(value, t)), type(value).__name__)
    return "null" if value is None else f"{_show(value)} ({kind})"


def _did_you_mean(word: Any, choices: list[str]) -> str:
    if not isinstance(word, str) or not choices:
        return ""
    by_lower = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(word, choices, n=1)
    best = by_lower.get(word.lower()) or (close[0] if close else None)
    return f"; did you mean '{best}'?" if best else ""


def _unknown(what: str, value: Any, choices: list[str]) -> str:
    listing = f"allowed: {', '.join(choices)}" if len(choices) <= _LIST_MAX else _LIST_HINT
    return f"unknown {what} {_show(value)}{_did_you_mean(value, choices)} ({listing})"


# ------------------------------------------------------------- value checks


def _as_list(value: Any) -> Any:
    """An axis value may be one scalar; null is an empty axis."""
    return [] if value is None else value if isinstance(value, list) else [value]


def _named(kind: str, allowed: dict) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in allowed:
            _fail(_unknown(kind, value, list(allowed)))
        return value

    return check


_DEVICES_SHOWN = [s for d in registry.DEVICES for s in ([d, "cuda:N"] if d == "cuda" else [d])]


def _check_device(value: str) -> str:
    if registry.DEVICE_RE.match(value):
        return value
    guess = value.strip().lower().replace("gpu", "cuda", 1)
    hint = f"; did you mean '{guess}'?" if registry.DEVICE_RE.match(guess) else ""
    hint = hint or _did_you_mean(value, list(registry.DEVICES))
    _fail(f"unknown device {_show(value)}{hint} (allowed: {', '.join(_DEVICES_SHOWN)})")


def _check_model(value: str, info: ValidationInfo) -> str:
    kind = registry.model_kind(value)
    if kind == "user" and not registry.USER_MODEL_RE.match(value):
        _fail(
            f"model {_show(value)} is not a model callable: write package.module:function "
            "(e.g. mynets.models:build), or timm:NAME for a timm model"
        )
    if kind in ("zoo", "timm") and info.context:
        message = info.context["models"].problem(value)
        if message:
            _fail(message)
    return value


def _check_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", value) or value in (".", ".."):
        _fail(f"{_show(value)} is not a usable name: use letters, digits, _ . - (it names a directory)")
    return value


def _text_number(value: Any) -> Any:
    """Before a float field: a string that float() reads is a helpful error, not a number."""
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        if re.fullmatch(r"\s*[-+]?\d+[eE][-+]?\d+\s*", value):
            _fail(f"expected a number, got {_describe(value)}: write {number!r} "
                  f"(PyYAML reads {value.strip()} as text)")  # fmt: skip
        _fail(f"expected a number, got {_describe(value)}: remove the quotes")
    return value


def _threads(value: Any) -> int | None:
    if value == "all" and isinstance(value, str):
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    _fail(f"expected an integer >= 1 or 'all', got {_describe(value)}")


def _processes(value: Any) -> int | None:
    if value == "auto" and isinstance(value, str):
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    _fail(f"expected an integer >= 1 or 'auto', got {_describe(value)}")


_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}  # fmt: skip


def parse_bytes(value: Any) -> int | None:
    """``4GiB`` -> 4294967296; an int is bytes; None is no limit."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value >= 1:
            return value
        _fail(f"must be at least 1 byte, got {value}")
    hint = ""
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]+)\s*", value)
        unit = m and m[2]
        if unit in _UNITS and int(Decimal(m[1]) * _UNITS[unit]) >= 1:
            return int(Decimal(m[1]) * _UNITS[unit])
        if unit:
            hint = _did_you_mean(unit, list(_UNITS))
    _fail(f"expected bytes: an integer or text like '4GiB' (units: {', '.join(_UNITS)}), "
          f"got {_describe(value)}{hint}")  # fmt: skip


class _ModelChecker:
    """Checks zoo and timm names against each framework's catalog, fetched once, lazily."""

    def __init__(self, catalog: Catalog | None, frameworks: list[str]):
        self.catalog = catalog or _probe_catalog
        self.frameworks = frameworks
        self.cache: dict[str, dict | None] = {}

    def problem(self, name: str) -> str | None:
        """A problem when no framework of the suite has ``name``; a name that only some of
        them have is checked per (framework, model) case after expansion (:meth:`pair_problem`)."""
        messages = [self.pair_problem(framework, name) for framework in self.frameworks]
        return None if not messages or None in messages else messages[0]

    def pair_problem(self, framework: str, name: str) -> str | None:
        if framework not in self.cache:
            self.cache[framework] = self.catalog(framework)
        found = self.cache[framework]
        return (found is not None and self.problem_in(name, found)) or None

    @staticmethod
    def problem_in(name: str, found: dict) -> str | None:
        zoo = list(found.get("models") or [])
        timm = found.get("timm_models")
        if registry.model_kind(name) == "timm":
            if timm is None:
                return found.get("timm_reason") or f"timm is not installed: pip install timm (for {name!r})"
            short = name[len(registry.TIMM_PREFIX) :]
            timm_names = [registry.TIMM_PREFIX + t for t in timm]
            return None if short in timm else _unknown("timm model", name, timm_names)
        if name in zoo:
            return None
        if timm and name in timm:
            return f"{name!r} is a timm model: write 'timm:{name}'"
        return _unknown("model", name, zoo + list(registry.SEED_MODELS))


def _probe_catalog(framework: str) -> dict | None:
    from benchbench.probe import probe  # runs a subprocess (cached): only when a name needs it

    return probe(framework)


# ------------------------------------------------------------------ schema


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


PosInt = Annotated[int, Field(ge=1)]
NonNegInt = Annotated[int, Field(ge=0)]


def _number(**limits) -> Any:
    return Annotated[float, Field(allow_inf_nan=False, **limits), BeforeValidator(_text_number)]


def _axis(item: Any, item_schema: dict, check: Callable | None = None) -> Any:
    inner = Annotated[item, AfterValidator(check)] if check else item
    array = {"type": "array", "items": item_schema, "minItems": 1}
    return Annotated[
        list[inner],
        Field(min_length=1),
        BeforeValidator(_as_list),
        WithJsonSchema({"anyOf": [item_schema, array]}),
    ]


def _names(allowed: dict) -> dict:
    return {"type": "string", "enum": list(allowed)}


Frameworks = _axis(str, _names(registry.FRAMEWORKS), _named("framework", registry.FRAMEWORKS))
Models = _axis(str, {"type": "string"}, _check_model)
BatchSizes = _axis(PosInt, {"type": "integer", "minimum": 1, "maximum": INT64_MAX})
Devices = _axis(str, {"type": "string", "pattern": registry.DEVICE_RE.pattern}, _check_device)
Modes = _axis(str, _names(registry.MODES), _named("mode", registry.MODES))
SeqLens = _axis(PosInt, {"type": "integer", "minimum": 1})
NewTokens = _axis(Annotated[int, Field(ge=2)], {"type": "integer", "minimum": 2})


def _check_variant(value: str) -> str:
    problem = registry.variant_problem(value)
    if problem and registry.split_variant(value)[0] not in registry.VARIANTS:
        hint = _did_you_mean(registry.split_variant(value)[0], list(registry.VARIANTS))
        problem = f"unknown variant {_show(value)}{hint} (run `benchbench list variants` to see them)"
    if problem:
        _fail(problem)
    return value


_VARIANT_SCHEMA = {"type": "string", "pattern": f"^({'|'.join(registry.VARIANTS)})(:[^:]+)?$"}
Variants = _axis(str, _VARIANT_SCHEMA, _check_variant)

_S = Settings()
MAX_TELEMETRY_HZ = 100


class TelemetrySettings(_Strict):
    """The power/utilisation sampler over the timed window (``telemetry:``)."""

    hz: _number(ge=0, le=MAX_TELEMETRY_HZ) = Field(
        _S.telemetry_hz, description="samples per second over the timed window; 0 = off, at most 100"
    )
    idle_baseline_s: _number(ge=0) = Field(
        _S.idle_baseline_s, description="s of idle power measured before the case (total and above-idle energy)"
    )


class ResourceSettings(_Strict):
    """What a cluster executor (Ray) asks for per case (``resources:``); a key left out is
    derived from the case (cpu: its threads, cuda: one GPU, tpu: a TPU)."""

    num_cpus: _number(gt=0) = Field(None, description="CPUs (default: threads, or a whole node with threads: all)")
    num_gpus: _number(ge=0) = Field(None, description="GPUs (default: devices for a cuda case, else 0)")
    accelerator_type: str = Field(None, description="a GPU model Ray knows, e.g. A100, H100, V100")
    custom: dict[str, _number(gt=0)] = Field(None, description="custom resources, e.g. {tpu_host: 1}")


class MeasureSettings(_Strict):
    """How long and how to measure; every key optional (``defaults:`` and ``models: NAME:``)."""

    warmup_iters: NonNegInt = Field(_S.warmup_iters, description="untimed iterations, at least")
    warmup_max_time: _number(gt=0) = Field(_S.warmup_max_time, description="s; warm-up cap")
    min_time: _number(ge=0) = Field(_S.min_time, description="s of timed iterations, at least")
    max_time: _number(gt=0) = Field(_S.max_time, description="s; >= min_time")
    min_iters: PosInt = Field(_S.min_iters)
    max_iters: PosInt = Field(_S.max_iters, description=">= min_iters")
    target_rel_ci: _number(gt=0, lt=1) = Field(
        _S.target_rel_ci, description="half-width of the 95% CI of the median / median"
    )
    timeout: _number(gt=0) = Field(_S.timeout, description="s for the whole case")
    memory_limit: Annotated[
        int | None,
        PlainValidator(parse_bytes),
        WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"},
                                  {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*[A-Za-z]+\s*$"}]}),
    ] = Field(None, description="worker RSS: bytes or text like '4GiB'; null = no limit")  # fmt: skip
    threads: Annotated[
        int | None,
        PlainValidator(_threads),
        WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 1}, {"const": "all"}]}),
    ] = Field("all", description="an integer, or 'all' the cores the worker may use")
    optimizer: Annotated[str, AfterValidator(_named("optimizer", registry.OPTIMIZERS))] = Field(
        "adam", json_schema_extra={"enum": list(registry.OPTIMIZERS)}
    )
    seed: NonNegInt = Field(_S.seed)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    cooldown_s: _number(ge=0) = Field(_S.cooldown_s, description="s of rest before the case when another ran before it")
    processes: Annotated[
        int | None,
        PlainValidator(_processes),
        WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 1}, {"const": "auto"}]}),
    ] = Field(
        "auto",
        description="fresh worker processes per case, interleaved across the suite and combined "
        "into one record with an interval that covers a re-run: an integer, or 'auto' (5 planned, "
        "more up to max_processes until target_rel_ci is met; a time budget may stop it from 3 on)",
    )
    max_processes: PosInt = Field(_S.max_processes, description="auto: processes per case at most")
    profile: bool = Field(
        _S.profile,
        description="after the timed window, a short extra window under the "
        "framework's profiler: top ops by self time in the record, a Chrome trace in the run dir",
    )
    autotune: bool = Field(
        _S.autotune,
        description="the framework's kernel autotuning (torch: cudnn.benchmark; TensorFlow: "
        "TF_CUDNN_USE_AUTOTUNE), its search in the first iteration and warm-up, recorded in math_modes; "
        "false: off (a case of its own)",
    )
    input_shape: Annotated[list[PosInt], Field(min_length=1)] = Field(
        None, description="per sample, channels first; suite-wide it applies to image models only"
    )
    devices: PosInt = Field(
        1,
        description="data-parallel over N devices (torch DDP via torchrun, "
        "TensorFlow MirroredStrategy); batch_size is per device",
    )
    resources: ResourceSettings = Field(None, description="what a cluster executor (Ray) asks for per case")
    data: data_config.DataField = Field(
        None,
        description="synthetic (default: tensors already on the "
        "device) or a real input pipeline; lists in size, preset, "
        "num_workers, prefetch are swept",
    )
    fit: fit_spec.FitField = Field(
        None, description="mode fit: epochs, target, val_fraction, split_seed, seeds, backbone (benchbench.fit_spec)"
    )


class Matrix(_Strict):
    """The axes, expanded as a cartesian product. A value may be one scalar or a list."""

    framework: Frameworks = Field(["torch"])
    model: Models = Field(description="seed, torchvision, timm:NAME or package.module:function")
    batch_size: BatchSizes
    device: Devices = Field(["cpu"], description="cpu, cuda, cuda:N, tpu or xla (torch_xla on the CPU)")
    mode: Modes = Field(["inference"])
    variant: Variants = Field(["fp32"])
    seq_len: SeqLens = Field(
        None, description=f"token models: tokens per sequence (default {registry.DEFAULT_SEQ_LEN})"
    )
    prompt_len: SeqLens = Field(
        None, description=f"generate: prompt tokens per sequence (default {registry.DEFAULT_PROMPT_LEN})"
    )
    new_tokens: NewTokens = Field(
        None, description=f"generate: tokens generated per sequence, >= 2 (default {registry.DEFAULT_NEW_TOKENS})"
    )


class Selection(_Strict):
    """An ``exclude`` or ``include`` entry: some axes, each one value or a list."""

    framework: Frameworks = None
    model: Models = None
    batch_size: BatchSizes = None
    device: Devices = None
    mode: Modes = None
    variant: Variants = None
    seq_len: SeqLens = None
    prompt_len: SeqLens = None
    new_tokens: NewTokens = None


class SuiteFile(_Strict):
    """A benchbench suite: what to measure, and how long to measure it."""

    model_config = ConfigDict(title="benchbench suite")

    name: Annotated[str, AfterValidator(_check_name)] = Field(
        description="names the results directory", json_schema_extra={"pattern": "^[A-Za-z0-9_.-]+$"}
    )
    description: str = ""
    baseline: Annotated[str, AfterValidator(_check_variant)] = Field(
        "fp32",
        description="the reference variant: fidelity and speed-up are against it",
        json_schema_extra=_VARIANT_SCHEMA,
    )
    matrix: Matrix
    include: list[Selection] = Field([], description="cases added after exclude")
    exclude: list[Selection] = Field([], description="drops the cases matching all given keys")
    defaults: MeasureSettings = Field(default_factory=MeasureSettings)
    models: dict[str, MeasureSettings] = Field({}, description="per-model settings overrides")
    catalogue: Annotated[list[str], BeforeValidator(_as_list)] = Field(
        [],
        description="device catalogue file(s), relative to the suite, merged over the built-in one (report --hardware)",
        json_schema_extra={"anyOf": [{"type": "string"}, {"type": "array"}]},
    )


def suite_json_schema() -> dict:
    """JSON Schema (draft 2020-12) of the suite format, for editors."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema"} | SuiteFile.model_json_schema()


# ------------------------------------------------------------ loading


def load_suite(path: str | os.PathLike, catalog: Catalog | None = None) -> Suite:
    """Read, validate and expand a suite file; any mistake in it is a UserError."""
    name = os.fspath(path)

    def fail(line: str):
        raise UserError(line, [line])

    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        fail(f"{name}: no such file")
    except IsADirectoryError:
        fail(f"{name}: is a directory, not a suite file")
    except OSError as e:
        fail(f"{name}: cannot read: {e.strerror or e}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        fail(f"{name}:{line}: not UTF-8 text (byte {raw[e.start]:#04x})")
    return parse_suite(text, name, catalog)


def parse_suite(text: str, filename: str, catalog: Catalog | None = None, search: Sequence[str] | None = None) -> Suite:
    """Validate and expand suite text; ``filename`` labels the error lines, and its directory
    (with the current one) is where user models (``pkg.module:callable``) are looked for,
    as the worker has them on its path; ``search`` replaces those two directories."""
    filename = str(filename)
    try:
        src = yamlsrc.load(text)
    except yamlsrc.YamlSyntaxError as e:
        raise _error(filename, [Problem(e.line, (), f"YAML syntax error: {e}")]) from None
    data = src.data
    if isinstance(data, yamlsrc.Bad):  # the whole document was refused (a tag): say why
        raise _error(filename, src.problems)
    if data is None:
        problem = "the suite is empty: it needs at least name: and matrix: (model:, batch_size:)"
        raise _error(filename, [Problem(1, (), problem)])
    if not isinstance(data, dict):
        problem = f"a suite is a mapping (name:, matrix:, …), got {_describe(data)}"
        raise _error(filename, [Problem(src.line_of(()), (), problem)])

    problems = list(src.problems)
    checker = _ModelChecker(catalog, _frameworks(data))
    try:
        spec = SuiteFile.model_validate(data, context={"models": checker})
    except ValidationError as e:
        spec = None
        for err in e.errors(include_url=False):
            if not src.rejected(err["loc"]):
                problems.append(_translate(err, src))
    cases: tuple[Case, ...] = ()
    if spec is not None:
        problems += _check_limits(spec, src)
        cases = _expand(spec, src, problems)
        problems += _check_pairs(cases, checker, src)
        problems += _check_sizes(spec, cases, src)
        if search is None:
            search = [os.getcwd(), str(Path(filename).resolve().parent)]
        problems += _check_user_models(cases, src, search)
        problems += _check_baseline(spec, cases, src)
        catalogue, issues = suite_catalogue.resolve(data.get("catalogue"), filename)  # as written: str or list
        problems += [Problem(src.line_of(k), k, m) for k, m in issues]
    if problems:
        raise _error(filename, problems)
    return Suite(
        name=spec.name,
        description=spec.description,
        path=filename,
        text=text,
        content_hash=hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest(),
        cases=cases,
        baseline=spec.baseline,
        catalogue=catalogue,
    )


def _error(filename: str, problems: list[Problem]) -> UserError:
    lines = []
    for p in sorted(problems, key=lambda p: p.line or 0):
        where = f"{filename}:{p.line}" if p.line else filename
        path = format_path(p.path)
        lines.append(f"{where}: {path}: {p.message}" if path else f"{where}: {p.message}")
    count = f"{len(lines)} problem{'s' if len(lines) > 1 else ''}"
    return UserError(f"{filename}: invalid suite ({count})", lines)


def _frameworks(data: dict) -> list[str]:
    """The known frameworks a suite names (model names are checked against each)."""
    matrix = data.get("matrix")
    named = _as_list(matrix.get("framework", "torch")) if isinstance(matrix, dict) else ["torch"]
    for entry in data.get("include") if isinstance(data.get("include"), list) else []:
        if isinstance(entry, dict):
            named += _as_list(entry.get("framework"))
    return list(dict.fromkeys(f for f in named if isinstance(f, str) and f in registry.FRAMEWORKS))


# ------------------------------------------------------ pydantic -> lines

_EXPECTED = {
    "int_type": "an integer",
    "float_type": "a number",
    "finite_number": "a finite number",
    "string_type": "text",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}
_MISSING = {
    ("name",): "the suite's name (letters, digits, _ . -)",
    ("matrix",): "what to measure (model:, batch_size:, and optionally device:, mode:, …)",
    ("matrix", "model"): "the models to measure",
    ("matrix", "batch_size"): "the batch sizes to measure",
}


def _translate(err: dict, src: yamlsrc.Source) -> Problem:
    loc, kind, value = tuple(err["loc"]), err["type"], err.get("input")
    ctx = err.get("ctx") or {}
    path = _shown_path(loc, src.data)
    line = src.line_of(loc)
    if kind == "extra_forbidden":
        line = src.key_lines.get(loc, line)
        message = _unknown_key(loc[:-1], loc[-1])
    elif kind == "missing":
        line = src.line_of(loc[:-1])
        message = f"required key missing: {_MISSING.get(loc, 'give a value')}"
    elif kind == "benchbench":
        message = ctx["msg"]
    elif kind in _EXPECTED:
        message = f"expected {_EXPECTED[kind]}, got {_describe(value)}"
    elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        op, limit = {"greater_than": (">", "gt"), "greater_than_equal": (">=", "ge"),
                     "less_than": ("<", "lt"), "less_than_equal": ("<=", "le")}[kind]  # fmt: skip
        message = f"must be {op} {_num(ctx[limit])}, got {_show(value)}"
    elif kind == "too_short":
        message = "empty: give at least one value"
        field = Matrix.model_fields.get(str(loc[-1])) if loc[:1] == ("matrix",) else None
        if field is not None and not field.is_required():
            default = ", ".join(field.default) if field.default else "its default"  # a token axis: per model
            message += f", or leave {loc[-1]} out for {default}"
    else:  # a kind not seen yet: pydantic's one-line message, without its URL
        message = str(err.get("msg", kind)).splitlines()[0]
    return Problem(line, path, message)


def _shown_path(loc: tuple, data: Any) -> tuple:
    """The key path as the user wrote it: a scalar axis value has no [0]."""
    shown: list = []
    for part in loc:
        if isinstance(part, int) and not isinstance(data, list):
            continue
        shown.append(part)
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            data = None
    return tuple(shown)


def _unknown_key(parent: tuple, key: str) -> str:
    if parent in ((), ("matrix",)):
        allowed = list((SuiteFile if parent == () else Matrix).model_fields)
    elif parent[:1] in (("include",), ("exclude",)):
        allowed = list(Selection.model_fields)
    elif parent[-1:] == ("resources",):
        allowed = list(ResourceSettings.model_fields)
    elif parent[-1:] == ("data",):
        allowed = list(data_config.DataSpec.model_fields)
    elif parent in (("defaults", "fit"),) or parent[::2] == ("models", "fit") or parent[-2:-1] == ("fit",):
        allowed = fit_spec.keys_for(parent[-1])  # mode fit's block, its target: and backbone:
    elif parent == ("defaults", "telemetry") or (len(parent) == 3 and parent[::2] == ("models", "telemetry")):
        allowed = list(TelemetrySettings.model_fields)
    else:
        allowed = list(MeasureSettings.model_fields)
    if key == "devices" and "device" in allowed:
        hint = (
            "; did you mean 'device'? ('devices: N', the data-parallel device count, "
            "is a setting under defaults: or models: NAME:)"
        )
    elif key in MeasureSettings.model_fields and key not in allowed:
        hint = "; it is a measurement setting: put it under defaults: (or models: NAME:)"
    elif key in TelemetrySettings.model_fields and key not in allowed:
        hint = f"; it is a telemetry setting: write telemetry: {{{key}: …}}"
    elif key in AXES and key not in allowed:
        hint = "; it is a matrix axis: put it under matrix:"
    else:
        hint = _did_you_mean(key, allowed)
    return f"unknown key {_show(key)}{hint} (allowed: {', '.join(allowed)})"


# ------------------------------------------------- checks across blocks


def _set(block: MeasureSettings) -> dict:
    """The keys a block gives, nested ones too (``telemetry: {hz: 50}`` leaves idle_baseline_s out)."""
    return block.model_dump(exclude_unset=True)


def _check_limits(spec: SuiteFile, src: yamlsrc.Source) -> list[Problem]:
    """max_time >= min_time and max_iters >= min_iters, after defaults and overrides merge."""
    problems = []
    base, defaults = dataclasses.asdict(_S), _set(spec.defaults)
    blocks = [(("defaults",), defaults)] + [(("models", m), _set(b)) for m, b in spec.models.items()]
    for path, here in blocks:
        outer = {**base, **defaults} if path[0] == "models" else base
        merged = {**outer, **here}
        for low, high in (("min_time", "max_time"), ("min_iters", "max_iters")):
            if merged[high] >= merged[low] or not ({low, high} & here.keys()):
                continue
            key = high if high in here else low

            def source(k: str) -> str:
                if k in here:
                    return ""
                return " (from defaults)" if k in defaults else " (the default)"

            message = (f"{high} {_num(merged[high])}{source(high)} is less than "
                       f"{low} {_num(merged[low])}{source(low)}")  # fmt: skip
            problems.append(Problem(src.line_of(path + (key,)), path + (key,), message))
    return problems


# --------------------------------------------------------------- expansion


def _expand(spec: SuiteFile, src: yamlsrc.Source, problems: list[Problem]) -> tuple[Case, ...]:
    axes = {a: getattr(spec.matrix, a) or [None] for a in AXES}  # a token axis left out: [None]
    combos = list(itertools.product(*axes.values()))
    for section, entries in (("exclude", spec.exclude), ("include", spec.include)):
        for i, entry in enumerate(entries):
            if not entry.model_fields_set:
                what = "would drop every case" if section == "exclude" else "adds nothing"
                message = f"an empty entry {what}: name at least one axis ({', '.join(AXES)})"
                problems.append(Problem(src.line_of((section, i)), (section, i), message))
    for entry in spec.exclude:
        if entry.model_fields_set:
            combos = [c for c in combos if not _matches(entry, c)]
    for entry in spec.include:
        values = [getattr(entry, a) if a in entry.model_fields_set else axes[a] for a in AXES]
        combos += itertools.product(*values)
    if not combos:
        message = "drops every case of the matrix: nothing to run"
        problems.append(Problem(src.line_of(("exclude",)), ("exclude",), message))
        return ()

    in_matrix = list(dict.fromkeys(c[1] for c in combos))
    for name in spec.models:
        if name not in in_matrix:
            shown = in_matrix if len(in_matrix) <= _LIST_MAX else in_matrix[:_LIST_MAX] + ["…"]
            message = (f"{name!r} is not in the matrix{_did_you_mean(name, in_matrix)} "
                       f"(models in the matrix: {', '.join(shown)})")  # fmt: skip
            line = src.key_lines.get(("models", name), src.line_of(("models",)))
            problems.append(Problem(line, ("models", name), message))

    cases: dict[str, Case] = {}
    for combo in combos:
        case = _case(spec, *combo)
        override = _set(spec.models[combo[1]]) if combo[1] in spec.models else {}
        with_data, issues = data_config.expand_case(case, _set(spec.defaults), override)  # data: sweeps
        with_data, fit_issues = fit_spec.expand_cases(with_data, _set(spec.defaults), override)  # mode fit
        issues += fit_issues
        problems += [p for p in (Problem(src.line_of(k), k, m) for k, m in issues) if p not in problems]
        for case in with_data:
            cases.setdefault(case.case_id, case)
    return tuple(cases.values())


def _check_pairs(cases: tuple[Case, ...], checker: _ModelChecker, src: yamlsrc.Source) -> list[Problem]:
    """A zoo model that one framework of the suite has and another lacks (resnet18 is in
    torchvision, not in keras.applications): a problem for each case that pairs them."""
    problems = []
    for framework, model in dict.fromkeys((c.framework, c.model) for c in cases):
        if registry.model_kind(model) not in ("zoo", "timm"):
            continue
        message = checker.pair_problem(framework, model)
        if message:
            loc = _model_loc(src.data, model)
            message = (f"not available for {framework}: {message}; to run it on the other "
                       f"frameworks only, add to exclude: {{framework: {framework}, model: {model!r}}}")  # fmt: skip
            problems.append(Problem(src.line_of(loc), _shown_path(loc, src.data), message))
    return problems


def _check_baseline(spec: SuiteFile, cases: tuple[Case, ...], src: yamlsrc.Source) -> list[Problem]:
    """A ``baseline:`` the suite names must be one of its variants."""
    present = list(dict.fromkeys(c.variant for c in cases))
    if "baseline" not in spec.model_fields_set or not cases or spec.baseline in present:
        return []
    message = f"{spec.baseline!r} is not a variant of this suite (its variants: {', '.join(present)})"
    return [Problem(src.line_of(("baseline",)), ("baseline",), message)]


def _check_sizes(spec: SuiteFile, cases: tuple[Case, ...], src: yamlsrc.Source) -> list[Problem]:
    """A batch's element count, batch_size × prod(input_shape), must fit an int64: no
    framework can allocate (or even describe) a bigger tensor. Said at the key to change:
    input_shape when one sample is already too big, else batch_size."""
    problems: list[Problem] = []
    limit = f"at most {INT64_MAX} (2^63 - 1, the int64 limit): no framework can allocate more"
    for case in cases:
        per_sample = math.prod(case.input_shape)
        if case.batch_size > INT64_MAX:
            loc = _model_loc(src.data, case.batch_size, "batch_size")
            message = f"batch_size {case.batch_size} is too large: {limit}"
        elif per_sample > INT64_MAX:
            loc = _shape_loc(spec, case)
            message = f"input_shape {list(case.input_shape)} is {per_sample} elements per sample: {limit}"
        elif case.batch_size * per_sample > INT64_MAX:
            loc = _model_loc(src.data, case.batch_size, "batch_size")
            shape_from = format_path(_shape_loc(spec, case)) if _shape_loc(spec, case) else f"{case.model}'s default"
            message = (f"batch_size {case.batch_size} × input_shape {list(case.input_shape)} (from {shape_from}) "
                       f"= {case.batch_size * per_sample} elements per batch: {limit}")  # fmt: skip
        else:
            continue
        problem = Problem(src.line_of(loc), _shown_path(loc, src.data), message)
        if problem not in problems:
            problems.append(problem)
    return problems


def _shape_loc(spec: SuiteFile, case: Case) -> tuple:
    """The key the case's input_shape came from: its model's override, else defaults (or () for
    the model's built-in shape)."""
    if case.model in spec.models and "input_shape" in _set(spec.models[case.model]):
        return ("models", case.model, "input_shape")
    return ("defaults", "input_shape") if "input_shape" in _set(spec.defaults) else ()


def _check_user_models(cases: tuple[Case, ...], src: yamlsrc.Source, search: Sequence[str]) -> list[Problem]:
    """A user model ``pkg.module:callable`` whose top-level package cannot be found on the
    worker's path (``search``, then this Python's ``sys.path``) can never be built. Looked
    for with ``find_spec`` on the top-level name only, which runs none of its code; a
    deeper problem (a missing submodule, an import error, no such callable) stays a failed
    record at run time, with the worker's traceback."""
    problems = []
    for model in dict.fromkeys(c.model for c in cases):
        if registry.model_kind(model) != "user":
            continue
        top = model.split(":", 1)[0].split(".", 1)[0]
        if _top_level_found(top, search):
            continue
        loc = _model_loc(src.data, model)
        where = ", ".join(dict.fromkeys(p for p in search if p))
        message = (f"model {model!r}: no module named {top!r} (looked in {where} and this Python's "
                   f"sys.path; put {top}/ or {top}.py next to the suite, or install it)")  # fmt: skip
        problems.append(Problem(src.line_of(loc), _shown_path(loc, src.data), message))
    return problems


def _top_level_found(top: str, search: Sequence[str]) -> bool:
    try:
        return (
            importlib.machinery.PathFinder.find_spec(top, [p for p in search if p]) is not None
            or importlib.util.find_spec(top) is not None
        )
    except (ImportError, ValueError):  # a broken finder, or a module in sys.modules without a spec
        return True  # not ours to judge here: the worker says what is wrong


def _model_loc(data: dict, model: Any, axis: str = "model") -> tuple:
    """Where ``model`` (a value of ``axis``) is first named: under the matrix, else in an include entry."""
    for i, entry in enumerate([data.get("matrix")] + list(data.get("include") or [])):
        where = ("matrix",) if i == 0 else ("include", i - 1)
        named = entry.get(axis) if isinstance(entry, dict) else None
        if named == model and not isinstance(named, list):
            return where + (axis,)
        if isinstance(named, list) and model in named:
            return where + (axis, named.index(model))
    return ("matrix", axis)


def _matches(entry: Selection, combo: tuple) -> bool:
    return all(combo[i] in getattr(entry, axis) for i, axis in enumerate(AXES) if axis in entry.model_fields_set)


def _case(spec: SuiteFile, framework, model, batch_size, device, mode, variant, *token_axes) -> Case:
    defaults = _set(spec.defaults)
    override = _set(spec.models[model]) if model in spec.models else {}
    merged = {**defaults, **override}
    telemetry = {**defaults.get("telemetry", {}), **override.get("telemetry", {})}
    merged.update({("telemetry_hz" if k == "hz" else k): v for k, v in telemetry.items()})
    if "input_shape" in override:
        shape = override["input_shape"]
    elif "input_shape" in defaults and registry.takes_image_shape(model):
        shape = defaults["input_shape"]
    else:
        shape = registry.default_input_shape(model)
    tokens = registry.token_axes(model, mode, *token_axes)  # None: the case takes no token ids
    if tokens is not None:
        shape = (tokens[0] or tokens[1],)  # token ids per sequence: seq_len, or the prompt in generate
    return Case(
        framework=framework,
        model=model,
        batch_size=batch_size,
        device=device,
        mode=mode,
        variant=variant,
        input_shape=tuple(shape),
        threads=merged.get("threads"),
        optimizer=merged.get("optimizer", "adam"),
        devices=merged.get("devices", 1),
        **dict(zip(TOKEN_AXES, tokens or (None, None, None))),
        settings=Settings(**{k: v for k, v in merged.items() if k in _SETTINGS_FIELDS}),
    )
