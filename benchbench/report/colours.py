"""Fixed colours: the same variant (or framework) has the same colour in every figure
and every report. Known names have a fixed entry; any other name takes a colour from
the spare palette by a stable hash of the name (not by order of appearance)."""

from __future__ import annotations

import hashlib

VARIANT_COLOURS = {
    "fp32": "#1f77b4",
    "tf32": "#17becf",
    "fp16": "#ff7f0e",
    "bf16": "#2ca02c",
    "int8": "#d62728",
    "dynamic_int8": "#e377c2",
    "static_int8": "#8c564b",
    "pruned": "#9467bd",
}
FRAMEWORK_COLOURS = {
    "torch": "#ee4c2c",
    "tensorflow": "#425066",
    "jax": "#5e97f6",
    "onnxruntime": "#7f7f7f",
}
# Bar fill patterns per framework (colour stays the variant's in bar charts).
FRAMEWORK_PATTERNS = {"torch": "", "tensorflow": "/", "jax": ".", "onnxruntime": "x"}
SPARE = (
    "#bcbd22",
    "#0b6e4f",
    "#a05195",
    "#f95d6a",
    "#2f4b7c",
    "#ffa600",
    "#665191",
    "#003f5c",
    "#7a5195",
    "#58508d",
    "#ef5675",
    "#4d9221",
)
SPARE_PATTERNS = ("\\", "-", "|", "+")


def _pick(name: str, choices: tuple[str, ...]) -> str:
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return choices[int.from_bytes(digest[:4], "big") % len(choices)]


def variant_colour(variant: str) -> str:
    return VARIANT_COLOURS.get(variant) or _pick(variant, SPARE)


def framework_colour(framework: str) -> str:
    return FRAMEWORK_COLOURS.get(framework) or _pick(framework, SPARE)


def framework_pattern(framework: str) -> str:
    if framework in FRAMEWORK_PATTERNS:
        return FRAMEWORK_PATTERNS[framework]
    return _pick(framework, SPARE_PATTERNS)
