"""Compression and precision variants of the tensorflow backend (Keras 3 on TensorFlow).

Imported only by :mod:`benchbench.backends.tensorflow` inside a worker. A :class:`TFVariant`
is resolved from the case (``resolve``: a Skip with the reason when tensorflow cannot run
it), checked against the device, then applied to the freshly built fp32 model; the backend
asks it for its optimizer wrapper, its timed step (TensorFlow Lite), its runtime facts,
its model facts and its fidelity. What each variant does:

* ``fp16`` / ``bf16``: the model built under the Keras dtype policy ``float16`` /
  ``bfloat16`` (variables and compute in that type), with the fp32 model's weights cast
  into it. ``amp``: ``mixed_float16`` on a GPU, ``mixed_bfloat16`` elsewhere; ``amp_bf16``:
  ``mixed_bfloat16`` (fp32 variables, 16-bit compute). float16 training goes through a
  ``LossScaleOptimizer``. The policy is set only while the model is built, then reset.
* ``tflite_dynamic`` / ``tflite_int8``: ``tf.lite.TFLiteConverter`` (``Optimize.DEFAULT``;
  int8: full-integer kernels only, calibrated on a few seeded batches, float32 inputs and
  outputs so the step includes the (de)quantisation) run by the LiteRT interpreter
  (``ai-edge-litert``; ``tf.lite.Interpreter`` where it is not installed) with the case's
  threads. The timed step is set_tensor + invoke + get_tensor (a host copy of every output).
* ``prune`` / ``prune:SPARSITY``: unstructured magnitude pruning of the kernels tfmot
  prunes (Conv, Dense, Embedding; not depthwise kernels, not biases), tensor by tensor, to
  SPARSITY (default 0.5). TF Model Optimization cannot wrap a Keras 3
  model (see :data:`TFMOT_NOTE`), so the smallest-magnitude weights are zeroed here: what
  ``prune_low_magnitude`` at a constant final sparsity followed by ``strip_pruning`` leaves
  for inference.
* ``frozen_backbone`` / ``finetune`` (train mode): every layer but the classifier head
  (the last layer with weights) ``trainable=False``, vs every layer trainable.
"""

from __future__ import annotations

import os
import tempfile
import time
import zlib

import numpy as np

from benchbench import registry
from benchbench.framework.base import Skip
from benchbench.framework.tf_runtime import keras, tf
from benchbench.variants import fidelity

BASE = ("fp32", "eager", "xla")  # the backend's own execution variants
POLICY = {"fp16": "float16", "bf16": "bfloat16", "amp_bf16": "mixed_bfloat16"}  # amp: by device
TFLITE = ("tflite_dynamic", "tflite_int8")
TRANSFER = ("frozen_backbone", "finetune")
IDENTICAL = {  # variants whose forward pass is the fp32 one by construction
    "fp32": "fp32 is the reference",
    "frozen_backbone": "freezing changes which weights train, not the forward pass (before training)",
    "finetune": "every layer trains: the forward pass before training is the fp32 one",
}
KINDS = (*BASE, *POLICY, "amp", *TFLITE, "prune", *TRANSFER)
CALIBRATION = (4, 8)  # tflite_int8's representative dataset: 4 seeded batches of 8 samples
PRUNABLE = {  # layer class -> the weights tfmot's prune registry prunes (biases and depthwise kernels never)
    "Dense": ("kernel",), "Embedding": ("embeddings",),
    "EinsumDense": ("kernel",),  # Keras 3's MultiHeadAttention projections (tfmot: its *_dense.kernel)
    "Conv1D": ("kernel",), "Conv2D": ("kernel",), "Conv3D": ("kernel",),
    "Conv2DTranspose": ("kernel",), "Conv3DTranspose": ("kernel",),
    "SeparableConv1D": ("pointwise_kernel",), "SeparableConv2D": ("pointwise_kernel",),
}  # fmt: skip
TFMOT_NOTE = (
    "tensorflow-model-optimization 0.8.1 prunes only tf_keras (Keras 2) models: prune_low_magnitude "
    "on a Keras 3 model raises ValueError ('can only prune an object of the following types')"
)


def resolve(case) -> TFVariant:
    """The case's variant, or Skip with the reason tensorflow cannot run it (registry.VARIANTS'
    tensorflow column: devices and modes; what only the device can tell: ``check_device``)."""
    why = registry.variant_support("tensorflow", case.variant, case.device, case.mode)
    if why:
        raise Skip(why)
    kind, _ = registry.split_variant(case.variant)
    if kind not in KINDS:
        raise Skip(f"variant {case.variant!r} is not implemented for tensorflow")
    return TFVariant(case, kind, registry.variant_param(case.variant) if kind == "prune" else None)


def _litert():
    """(Interpreter class, which one) — LiteRT's package where installed."""
    try:
        from importlib import metadata

        from ai_edge_litert.interpreter import Interpreter

        return (
            Interpreter,
            f"LiteRT: ai_edge_litert.interpreter.Interpreter (ai-edge-litert {metadata.version('ai-edge-litert')})",
        )
    except ImportError:
        return tf.lite.Interpreter, "tf.lite.Interpreter (ai-edge-litert is not installed)"


def _count(weights) -> int:
    return int(sum(np.prod(w.shape) for w in weights))


def _nonzero(weights) -> int:
    return int(sum(np.count_nonzero(np.asarray(keras.ops.convert_to_numpy(w))) for w in weights))


def _outputs(value) -> np.ndarray:
    """One float32 array of the model's outputs (several outputs flattened and joined)."""
    flat = [np.asarray(tf.cast(t, tf.float32)).reshape(len(t), -1) for t in tf.nest.flatten(value)]
    return flat[0] if len(flat) == 1 else np.concatenate(flat, axis=1)


def magnitude_prune(model, sparsity: float) -> dict:
    """Zero the smallest-magnitude ``round(sparsity × n)`` weights of each prunable kernel
    (per tensor, as tfmot's ConstantSparsity does per layer). Returns what was pruned."""
    pruned, total = 0, 0
    layers = 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        names = PRUNABLE.get(type(layer).__name__)
        if not names:
            continue
        for v in layer.weights:
            if v.name not in names:
                continue
            w = np.array(keras.ops.convert_to_numpy(v))
            k = int(round(sparsity * w.size))
            if k:
                flat = w.reshape(-1)
                flat[np.argpartition(np.abs(flat), k - 1)[:k]] = 0
                v.assign(w)
            pruned, total, layers = pruned + k, total + w.size, layers + 1
    return {"pruned_weights": pruned, "prunable_weights": total, "pruned_tensors": layers}


def freeze_backbone(model) -> str:
    """Every layer but the head (the last one with weights) frozen; returns the head's name."""
    with_weights = [layer for layer in model.layers if layer.weights]
    if not with_weights:
        raise ValueError("frozen_backbone: the model has no layer with weights")
    head = with_weights[-1]
    for layer in model.layers:
        layer.trainable = layer is head
    return head.name


class TFVariant:
    def __init__(self, case, kind: str, sparsity: float | None):
        self.case, self.kind, self.sparsity = case, kind, sparsity
        self.name = case.variant
        self.base = kind if kind in BASE else ("eager" if kind in TFLITE else "fp32")
        self.policy: str | None = POLICY.get(kind)
        self.info: dict = {"name": self.name}
        self.cold_start: dict = {}
        self.step = None  # the timed step, where the variant replaces the backend's
        self._ref = None  # fp32 outputs on the fidelity batch (train mode: before training)
        self._out = None  # the variant's (train mode: before training)
        self._fp32_file = None  # policy and prune variants: the fp32 weights, on disk over the timed window

    # ------------------------------------------------------------ before the build

    def check_device(self, device_kind: str) -> None:
        if self.kind == "amp":
            self.policy = "mixed_float16" if device_kind == "cuda" else "mixed_bfloat16"
        if self.kind == "fp16" and device_kind != "cuda":
            raise Skip(f"variant 'fp16' runs on a GPU only: TensorFlow has no float16 kernels for most "
                       f"ops on {device_kind} (use bf16 or amp there)")  # fmt: skip
        if self.kind in TFLITE and device_kind != "cpu":
            raise Skip(f"variant {self.name!r} runs on the CPU only: TensorFlow Lite's interpreter "
                       f"does not run on {device_kind}")  # fmt: skip

    def fidelity_batch(self, sample_shape) -> np.ndarray:
        """The fixed seeded batch: whole batches of the case's size, not the timed batch's seed."""
        n = fidelity.samples_for(self.case.batch_size)
        rng = np.random.default_rng(self.case.settings.seed + fidelity.SEED_OFFSET)
        return rng.standard_normal((n, *sample_shape), dtype=np.float32)

    # ------------------------------------------------------------- after the build

    def apply(self, model, build, x_host: np.ndarray):
        """The variant's model from the freshly built fp32 ``model`` (same seeded weights);
        ``build()`` builds the fp32 model again (under the dtype policy, for policy variants);
        ``x_host`` is the timed batch."""
        t0 = time.perf_counter()
        self._shape, self._x_host = tuple(x_host.shape[1:]), x_host
        self._x_fid = self.fidelity_batch(self._shape)
        # fidelity runs after the timed window (out of the peak RSS it records), in chunks of
        # the case's batch; in train mode before training, which changes the weights
        early = self.kind not in IDENTICAL and self.case.mode == "train"
        if early:
            self._ref = self._chunks(lambda x: model(x, training=False), self._x_fid)
        elif self.policy is not None or self.kind == "prune":  # for the reference after timing
            self._tmp = tempfile.TemporaryDirectory(prefix="benchbench-fp32-")
            self._fp32_file, self._build = os.path.join(self._tmp.name, "fp32.weights.h5"), build
            model.save_weights(self._fp32_file)
        self.params_vars = list(model.trainable_weights)  # the "params" scope, before any freezing
        if self.policy is not None:
            model = self._rebuild(model, build)
        elif self.kind == "prune":
            self.info.update(method="magnitude pruning implemented in benchbench (per-kernel, smallest |w| "
                             "zeroed), equivalent to tfmot prune_low_magnitude + strip_pruning at constant "
                             "final sparsity", tfmot_not_used=TFMOT_NOTE, sparsity=self.sparsity,
                             **magnitude_prune(model, self.sparsity))  # fmt: skip
        elif self.kind in TFLITE:
            self._convert(model)
        elif self.kind in TRANSFER:
            if self.kind == "frozen_backbone":
                self.info["head"] = freeze_backbone(model)
            self.info["trained_params"] = _count(model.trainable_weights)
        if early:
            self._out = self._chunks(lambda x: model(x, training=False), self._x_fid)
        if self.kind not in BASE:
            self.cold_start["variant_s"] = time.perf_counter() - t0
        self.model = model
        return model

    def _rebuild(self, fp32_model, build):
        weights = fp32_model.get_weights()
        keras.config.set_dtype_policy(self.policy)
        try:
            model = build()
            if not model.built:
                model(self._x_fid[:1], training=False)
        finally:
            keras.config.set_dtype_policy("float32")
        model.set_weights(weights)  # cast into the policy's variable dtype
        self.params_vars = list(model.trainable_weights)
        return model

    def _convert(self, model) -> None:
        t0 = time.perf_counter()
        converter = tf.lite.TFLiteConverter.from_keras_model(model)  # weights frozen into the flatbuffer
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if self.kind == "tflite_int8":
            n, b = CALIBRATION
            rng = np.random.default_rng(self.case.settings.seed + 2 * fidelity.SEED_OFFSET)  # not the fidelity batch
            batches = [rng.standard_normal((b, *self._shape), dtype=np.float32) for _ in range(n)]
            converter.representative_dataset = lambda: ([x] for x in batches)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            quant = (f"full-integer int8 (weights and activations; TFLITE_BUILTINS_INT8 kernels only), "
                     f"calibrated on {n} seeded batches of {b} standard-normal samples; float32 "
                     f"inputs and outputs (the (de)quantisation runs inside the timed step)")  # fmt: skip
        else:
            quant = "dynamic-range: int8 weights, float activations (Optimize.DEFAULT, no dataset)"
        self.flatbuffer = converter.convert()
        self._lite_cls, which = _litert()
        self.threads = tf.config.threading.get_intra_op_parallelism_threads()
        _, run = self._interpreter(len(self._x_host))
        self.step = lambda: run(self._x_host)
        self.cold_start["compile_s"] = time.perf_counter() - t0
        self.cold_start["compile_note"] = "TFLiteConverter.convert and the interpreter's allocate_tensors"
        self.info.update(
            quantization=quant,
            interpreter=which,
            interpreter_threads=self.threads,
            op_resolver="AUTO (builtin kernels, LiteRT's default XNNPACK delegate on CPU)",
            timed_step="set_tensor + invoke + get_tensor (every output copied to the host)",
        )

    def _interpreter(self, batch: int):
        interp = self._lite_cls(model_content=self.flatbuffer, num_threads=self.threads)
        inp = interp.get_input_details()[0]
        interp.resize_tensor_input(inp["index"], [batch, *self._shape])
        interp.allocate_tensors()
        outs = [d["index"] for d in interp.get_output_details()]

        def run(x):
            interp.set_tensor(inp["index"], x)
            interp.invoke()
            return [interp.get_tensor(i) for i in outs]

        return interp, run

    # ---------------------------------------------------------------- the backend's hooks

    def wrap_optimizer(self, opt):
        if self.policy in ("float16", "mixed_float16"):  # float16 gradients underflow unscaled
            self.info["loss_scaling"] = "keras.optimizers.LossScaleOptimizer (dynamic)"
            return keras.optimizers.LossScaleOptimizer(opt)
        return opt

    def annotate(self, runtime: dict) -> None:
        modes = runtime["math_modes"]
        if self.policy is not None:
            p = keras.dtype_policies.DTypePolicy(self.policy)
            modes.update(keras_dtype_policy=p.name, compute_dtype=p.compute_dtype, variable_dtype=p.variable_dtype)
            runtime["dtype"] = (
                p.compute_dtype
                if p.compute_dtype == p.variable_dtype
                else (f"{p.name}: {p.compute_dtype} compute, {p.variable_dtype} variables")
            )
        elif self.kind in TFLITE:
            modes.update(execution=f"TensorFlow Lite flatbuffer on {self.info['interpreter']}",
                         keras_dtype_policy=None)  # fmt: skip
            runtime["dtype"] = "int8 (float32 I/O)" if self.kind == "tflite_int8" else "int8 weights, float32 compute"
        runtime["variant"] = self.info  # the same dict: wrap_optimizer adds to it later

    def model_facts(self, facts: dict) -> dict:
        """The backend's facts plus non-zero counts, the variant's size, the params scope."""
        model = self.model
        params = _count(self.params_vars)
        facts.update(params=params, nonzero_params=_nonzero(self.params_vars),
                     nonzero_note="non-zero entries of the trainable weights (the params scope)")  # fmt: skip
        if self.kind in TRANSFER:
            facts["non_trainable_params"] = _count(model.weights) - params
            facts["trained_params"] = _count(model.trainable_weights)
        if self.kind in TFLITE:
            facts.update(
                serialized_bytes=len(self.flatbuffer),
                serialized_format=f"TensorFlow Lite flatbuffer ({self.kind}; len of the converter's bytes)",
            )
        if self.kind == "prune":  # pruning shrinks a file only once it is compressed
            facts["serialized_deflate_bytes"] = self._deflated(model)
        return facts

    def _deflated(self, model) -> int:
        with tempfile.TemporaryDirectory(prefix="benchbench-keras-") as tmp:
            path = os.path.join(tmp, "model.keras")
            model.save(path)
            with open(path, "rb") as f:
                return len(zlib.compress(f.read(), 6))

    def fidelity(self) -> dict:
        seed = self.case.settings.seed + fidelity.SEED_OFFSET
        if self.kind in IDENTICAL:
            return fidelity.identical(seed, IDENTICAL[self.kind])
        if self._out is None:
            self._out = self._variant_outputs()
        if self._ref is None:  # once: the fp32 weights' file is gone afterwards
            self._ref = self._reference_outputs()
        out, ref = self._out, self._ref
        how = "LiteRT interpreter" if self.kind in TFLITE else "the model run as the timed step runs it"
        method = (fidelity.method(len(self._x_fid), "tensorflow") + f"; in chunks of the case's batch; reference: "
                  f"the fp32 Keras model called eagerly; variant: {how}")  # fmt: skip
        if self.case.mode == "train":
            method += "; train mode: both forward passes before any training step"
        return fidelity.compare(ref, out, seed=seed, method=method)

    def _chunks(self, fn, x) -> np.ndarray:
        """``fn``'s outputs over ``x`` a case batch at a time, as one float32 array."""
        bs = self.case.batch_size
        return np.concatenate([_outputs(fn(x[i : i + bs])) for i in range(0, len(x), bs)])

    def _reference_outputs(self) -> np.ndarray:
        """The fp32 model's outputs on the fidelity batch, after the timed window."""

        def run(m):
            return self._chunks(lambda x: m(x, training=False), self._x_fid)

        if self._fp32_file is None:  # eager / xla / TFLite: the Keras model is the fp32 one
            return run(self.model)
        try:
            if self.policy is not None:  # the fp32 build again (the policy is float32 by now)
                ref = self._build()
                if not ref.built:
                    ref(self._x_fid[:1], training=False)
                ref.load_weights(self._fp32_file)
                return run(ref)
            pruned = self.model.get_weights()  # prune: the weights before pruning, then back
            self.model.load_weights(self._fp32_file)
            try:
                return run(self.model)
            finally:
                self.model.set_weights(pruned)
        finally:
            self._tmp.cleanup()
            self._fp32_file = None

    def _variant_outputs(self) -> np.ndarray:
        if self.kind in TFLITE:
            _, run = self._interpreter(self.case.batch_size)
            outs = lambda x: [o.astype(np.float32).reshape(len(o), -1) for o in run(x)]  # noqa: E731
            return self._chunks(lambda x: np.concatenate(outs(x), axis=1), self._x_fid)
        if self.base == "eager":
            return self._chunks(lambda x: self.model(x, training=False), self._x_fid)
        fn = tf.function(lambda x: self.model(x, training=False), jit_compile=self.base == "xla")
        return self._chunks(lambda x: fn(tf.constant(x)), self._x_fid)
