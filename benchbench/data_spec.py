"""A case's ``data:``: ``synthetic`` (tensors already on the device, the default) or a
real input pipeline over an image folder. Framework-free.

In a suite, ``data:`` sits under ``defaults:`` (or ``models: NAME:``, whose keys
override the defaults' keys). ``size``, ``preset``, ``num_workers`` and ``prefetch`` may
be lists: each combination is its own case (a sweep), like the matrix axes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from benchbench import registry

PRESETS = {
    "none": "decode, resize to the input size, scale to [0, 1]",
    "light": "random resized crop (scale 0.5-1), horizontal flip, scale to [0, 1]",
    "seed": "the seed articles' ImageDataGenerator: rescale 1/255, shear 0.2, zoom 0.2, horizontal flip",
    "heavy": "random resized crop, flip, rotation 15°, shear/zoom, colour jitter, ImageNet normalisation",
}
SOURCES = ("generated", "folder", "sklearn")
# scikit-learn's bundled data sets (inside the package: nothing downloaded), for the feature
# models in mode fit (benchbench.pipelines.tabular): name -> (features, classes, rows)
SKLEARN_SETS = {"digits": (64, 10, 1797), "breast_cancer": (30, 2, 569), "iris": (4, 3, 150), "wine": (13, 3, 178)}
LOADERS = ("native", "dali")
ON_CORRUPT = ("skip", "fail")
SWEEPS = ("size", "preset", "num_workers", "prefetch")  # list-valued keys: one case per combination
CACHE_ENV = "BENCHBENCH_DATA_CACHE"
DEFAULT_CACHE = os.path.join("results", ".data-cache")


@dataclass(frozen=True)
class DataConfig:
    """One pipeline configuration (no lists left). ``root`` (a folder source, absolute) and
    ``cache_dir`` (where generated sets live) say where, not what: not in the identity."""

    source: str = "generated"
    path: str | None = None  # folder source, as written in the suite
    images: int = 2000
    size: int = 256  # side of the stored images (generated) in pixels
    classes: int = 2
    seed: int = 0  # generation seed
    preset: str = "seed"
    num_workers: int = 0  # torch DataLoader workers; tf.data: parallel calls of the map (0 = inline)
    prefetch: int = 2  # torch prefetch_factor (batches per worker); tf.data prefetch buffer (batches)
    pin_memory: str = "auto"  # auto (on for cuda) | on | off
    persistent_workers: bool = True
    cache: bool = False  # tf.data .cache() of decoded images
    on_corrupt: str = "skip"
    loader: str = "native"
    name: str | None = None  # sklearn source: which bundled data set (SKLEARN_SETS)
    hue_shift: float = 0.0  # generated: every class's colours moved round the hue circle (0..1)
    root: str | None = field(default=None, compare=False, hash=False)
    cache_dir: str | None = field(default=None, compare=False, hash=False)

    def identity(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("root"), d.pop("cache_dir")
        if not d["hue_shift"]:  # only when set (and name only for sklearn): other case_ids stay as they were
            d.pop("hue_shift")
        if d["name"] is None:
            d.pop("name")
        if self.source in ("folder", "sklearn"):
            d["images"] = d["size"] = d["classes"] = d["seed"] = None
        if self.source != "folder":
            d["path"] = None
        return d

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DataConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @property
    def label(self) -> str:
        if self.source == "sklearn":
            return f"sklearn-{self.name}"
        return f"{self.preset}-w{self.num_workers}-p{self.prefetch}" + (
            f"-{self.size}px" if self.source == "generated" else ""
        )

    def generation_key(self) -> str:
        """What a generated set is a function of (its cache folder name)."""
        what = {
            "images": self.images,
            "size": self.size,
            "classes": self.classes,
            "seed": self.seed,
            "format": "jpeg-v1",
        }
        if self.hue_shift:  # only then: unshifted sets keep their cache folders
            what["hue_shift"] = self.hue_shift
        blob = json.dumps(what, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def folder(self) -> str:
        """The image folder: the given one, or the generated set's cache folder."""
        if self.source == "folder":
            return self.root or os.path.abspath(self.path or ".")
        return os.path.join(self.cache_dir or os.path.abspath(DEFAULT_CACHE), self.generation_key())

    def pin(self, device_type: str) -> bool:
        return self.pin_memory == "on" or (self.pin_memory == "auto" and device_type == "cuda")


# ----------------------------------------------------------------- suite schema


def _fail(message: str):
    raise PydanticCustomError("benchbench", "{msg}", {"msg": message})


def _as_list(value: Any) -> Any:
    return value if isinstance(value, list) else [value]


def _choice(allowed) -> Any:
    def check(value: Any) -> str:
        if not isinstance(value, str) or value not in allowed:
            _fail(f"expected one of {', '.join(allowed)}, got {value!r}")
        return value

    return Annotated[str, BeforeValidator(check), WithJsonSchema({"enum": list(allowed)})]


def _pin(value: Any) -> str:
    if value is True or value == "on":
        return "on"
    if value is False or value == "off":
        return "off"
    if value == "auto":
        return "auto"
    _fail(f"expected auto, true or false, got {value!r}")


def _sweep(item: Any, schema: dict) -> Any:
    return Annotated[
        list[item],
        Field(min_length=1),
        BeforeValidator(_as_list),
        WithJsonSchema({"anyOf": [schema, {"type": "array", "items": schema, "minItems": 1}]}),
    ]


_D = DataConfig()
NonNeg = Annotated[int, Field(ge=0)]
Pos = Annotated[int, Field(ge=1)]


class DataSpec(BaseModel):
    """A real input pipeline (``data:`` as a mapping). Lists in size, preset, num_workers
    and prefetch are swept: one case per combination."""

    model_config = ConfigDict(extra="forbid", strict=True)

    source: _choice(SOURCES) = Field(
        _D.source,
        description="generated (a seeded synthetic JPEG set, made "
        "once into the cache) or folder (path: class subfolders of JPEG/PNG)",
    )
    path: str | None = Field(
        None, description="folder source: a directory of class subfolders (relative to the current directory)"
    )
    images: Pos = Field(_D.images, description="generated: number of images")
    size: _sweep(Pos, {"type": "integer", "minimum": 1}) = Field([_D.size], description="generated: side in px")
    classes: Annotated[int, Field(ge=2)] = Field(_D.classes, description="generated: class folders")
    seed: NonNeg = Field(_D.seed, description="generated: the generator's seed")
    preset: _sweep(_choice(PRESETS), {"enum": list(PRESETS)}) = Field([_D.preset])
    num_workers: _sweep(NonNeg, {"type": "integer", "minimum": 0}) = Field([_D.num_workers])
    prefetch: _sweep(Pos, {"type": "integer", "minimum": 1}) = Field([_D.prefetch])
    pin_memory: Annotated[str, BeforeValidator(_pin), WithJsonSchema({"enum": ["auto", True, False]})] = "auto"
    persistent_workers: bool = _D.persistent_workers
    cache: bool = Field(_D.cache, description="tf.data: cache decoded images in memory (torch: not applicable)")
    on_corrupt: _choice(ON_CORRUPT) = Field(_D.on_corrupt, description="skip (count, warn) or fail the case")
    loader: _choice(LOADERS) = Field(_D.loader, description="native (DataLoader / tf.data) or dali (NVIDIA DALI)")
    name: _choice(SKLEARN_SETS) = Field(None, description="sklearn source: a data set bundled with scikit-learn")
    hue_shift: Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)] = Field(
        _D.hue_shift, description="generated: every class's colours moved round the hue circle (0..1)"
    )


def _synthetic(value: Any) -> Any:
    """``synthetic`` (or null) is no pipeline; a mapping is a DataSpec."""
    if value is None or value == "synthetic":
        return None
    if isinstance(value, str):
        _fail(f"expected 'synthetic' or a mapping (source:, preset:, num_workers:, …), got {value!r}")
    return value


DataField = Annotated[
    DataSpec | None,
    BeforeValidator(_synthetic),
    WithJsonSchema({"anyOf": [{"const": "synthetic"}, {"type": "null"}, DataSpec.model_json_schema()]}),
]


# ----------------------------------------------------------------- expansion


def configs(spec: dict, cache_dir: str | None = None) -> list[DataConfig]:
    """The DataConfigs of one merged ``data:`` mapping (a DataSpec's dump): its sweep lists expanded."""
    fixed = {k: v for k, v in spec.items() if k not in SWEEPS}
    if fixed.get("source") == "folder" and fixed.get("path"):
        fixed["root"] = os.path.abspath(fixed["path"])
    lists = [spec.get(k, [getattr(_D, k)]) for k in SWEEPS]
    cache = cache_dir or os.path.abspath(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)
    return [DataConfig(**fixed, **dict(zip(SWEEPS, combo)), cache_dir=cache) for combo in itertools.product(*lists)]


def merged(defaults: dict, override: dict) -> dict | None:
    """``models: NAME: data:`` keys over ``defaults: data:`` keys; synthetic (None) wins outright."""
    if "data" in override:
        if override["data"] is None:
            return None
        return {**(defaults.get("data") or {}), **override["data"]}
    return defaults.get("data")


def problem(case, data: DataConfig | None, where: tuple) -> tuple[tuple, str] | None:
    """(key path, message) when ``case`` cannot use ``data`` (None: fine); ``where`` is the
    block the data came from: ("defaults",) or ("models", NAME)."""
    at = where + ("data",)
    if data is None:
        if case.mode == "data":
            return ("matrix", "mode"), (
                "mode 'data' times an input pipeline: give defaults: data: "
                "{source: generated, …} (or models: NAME: data:)"
            )
        return None
    if data.source == "sklearn":  # feature vectors for the feature models, in mode fit
        return _sklearn_problem(case, data, at)
    if not registry.takes_image_shape(case.model):
        return (
            at,
            f"{case.model} takes feature vectors, not images: give it data: synthetic under models: {case.model}:",
        )
    if case.mode == "data" and case.variant != "fp32":
        return ("matrix", "mode"), (
            f"mode 'data' times the loader alone: variant {case.variant} does not "
            f"apply; add to exclude: {{mode: data, variant: {case.variant}}}"
        )
    if data.source == "folder" and not data.path:
        return at + ("source",), "source: folder needs path: DIR (class subfolders of images)"
    if data.source == "folder" and not os.path.isdir(data.root or ""):
        return at + ("path",), f"no such directory: {data.path} (relative to the current directory)"
    seed = registry.SEED_MODELS.get(case.model)
    if seed and seed.loss == "binary cross-entropy" and data.source == "generated" and data.classes != 2:
        return at + ("classes",), f"{case.model} is a binary classifier: classes must be 2"
    if data.loader == "dali" and case.framework != "torch":
        return at + ("loader",), "loader: dali is implemented for torch only"
    return None


def _sklearn_problem(case, data: DataConfig, at: tuple) -> tuple[tuple, str] | None:
    if not data.name:
        return at + ("source",), f"source: sklearn needs name: one of {', '.join(SKLEARN_SETS)}"
    if case.mode != "fit":
        return ("matrix", "mode"), (
            f"source: sklearn is a data set to train on: mode fit only (not {case.mode}); "
            f"add to exclude: {{mode: {case.mode}}} or give this model an image data set"
        )
    if registry.takes_image_shape(case.model) and registry.model_kind(case.model) != "user":
        return at + ("source",), f"{case.model} takes images: source sklearn gives feature vectors"
    seed = registry.SEED_MODELS.get(case.model)
    classes = SKLEARN_SETS[data.name][1]
    if seed and seed.loss == "sparse categorical cross-entropy" and classes > 10:
        return at + ("name",), f"{case.model} has 10 outputs: {data.name} has {classes} classes"
    return None


def expand_case(case, defaults: dict, override: dict) -> tuple[list, list[tuple[tuple, str]]]:
    """``case`` once per DataConfig of its merged ``data:`` (itself when synthetic), and the
    problems found: (key path, message)."""
    spec = merged(defaults, override)
    where = ("models", case.model) if "data" in override else ("defaults",)
    cases = [case] if spec is None else [dataclasses.replace(case, data=c) for c in configs(spec)]
    found = [p for p in (problem(c, c.data, where) for c in cases) if p]
    return cases, list(dict.fromkeys(found))
