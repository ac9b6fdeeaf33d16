"""Mode ``fit`` on TensorFlow / Keras 3 (issue 19): the same :class:`Job` as
:mod:`benchbench.backends.torch_fit` — data split and loaders (tf.data for image sets),
the model (a keras.applications head sized for the data set's classes), a
:class:`benchbench.measure.fit.Trainer` (a ``tf.function`` train step), saved weights,
the transfer pair's start, and a compression variant applied to the trained weights
(TensorFlow Lite int8 calibrated on batches of the training part). Never imports torch
(the two in one process crash here). Imported only in worker processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from benchbench import registry
from benchbench.framework.base import Skip
from benchbench.framework.tf_runtime import keras, set_threads, tf, thread_counts
from benchbench.hardware.environment import cpu_model
from benchbench.measure.fit import Evaluation, StepResult
from benchbench.models import keras_models
from benchbench.pipelines import split as splits
from benchbench.pipelines import tabular

CALIBRATION_BATCHES = 4  # tflite_int8: batches of the training part in the representative dataset
WEIGHTS = "model.weights.h5"
TFLITE = ("tflite_dynamic", "tflite_int8")


def build(name: str, input_shape, classes: int):
    """The case's model with random weights, a keras.applications head sized for
    ``classes``; seed and user models keep their own heads."""
    if registry.model_kind(name) == "zoo":
        app = keras_models.keras_name(name)
        if app is None:
            raise ValueError(f"unknown model {name!r} for tensorflow")
        kwargs = keras_models.zoo_kwargs(app)
        return getattr(keras.applications, app)(
            input_shape=keras_models.keras_input_shape(input_shape), classes=classes, **kwargs
        )
    return keras_models.build(name, input_shape)


def _versions() -> dict:
    out = {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__}
    try:
        import sklearn

        out["sklearn"] = sklearn.__version__
    except ImportError:
        out["sklearn"] = None
    return out


def _litert():
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "LiteRT: ai_edge_litert.interpreter.Interpreter"
    except ImportError:
        return tf.lite.Interpreter, "tf.lite.Interpreter (ai-edge-litert is not installed)"


@dataclass
class Subject:
    """What the fit produced, ready to evaluate and time: ``call(x)`` on a numpy batch."""

    call: Callable
    modules: list = field(default_factory=list)
    prep: Callable = lambda t: t
    runtime: dict = field(default_factory=dict)
    cold_start: dict = field(default_factory=dict)
    facts: Callable[[], dict] = dict


class Job:
    """One mode-fit case in this process: device, threads, determinism, the data split."""

    framework = "tensorflow"

    def __init__(self, case, seed: int, data=None, _started: bool = False):
        reason = registry.variant_support("tensorflow", case.variant, case.device, "fit")
        if reason:
            raise Skip(reason)
        self.case, self.seed = case, seed
        self.data_cfg = data if data is not None else case.data
        if not _started:
            set_threads(*thread_counts(case.threads))  # before the runtime starts
            self.kind = self._device()
            self.determinism = self._deterministic()
        tf.config.experimental.enable_tensor_float_32_execution(False)
        keras.config.set_dtype_policy("float32")
        t0 = time.perf_counter()
        self._load_data()
        self.data_s = time.perf_counter() - t0
        self.loss_name, self.loss_fn, _ = keras_models.loss_for(case.model)
        self.binary = self.loss_name == "binary cross-entropy"
        self._check_classes()
        self.shape = keras_models.keras_input_shape(case.input_shape)

    def _runtime(self) -> dict:
        return {
            "framework": "tensorflow",
            "versions": _versions(),
            "device_name": cpu_model() if self.kind == "cpu" else "GPU",
            "device_type": self.kind,
            "threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "interop_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "math_modes": {
                "tensor_float_32_execution": tf.config.experimental.tensor_float_32_execution_enabled(),
                "keras_dtype_policy": keras.config.dtype_policy().name,
                "execution": "tf.function",
            },
            "dtype": "float32",
            "input_shape": [self.case.batch_size, *keras_models.keras_input_shape(self.case.input_shape)],
            "data_layout": keras_models.data_layout(self.case.input_shape),
            "loss": self.loss_name,
            "optimizer": "SGD" if self.case.optimizer == "sgd" else "Adam",
            "learning_rate": 1e-3,
            "determinism": self.determinism,
        }

    @property
    def runtime(self) -> dict:
        if not hasattr(self, "_rt"):
            self._rt = self._runtime()
        return self._rt

    def for_data(self, data) -> Job:
        """The same case and seed on another data set (the transfer pair's data set A)."""
        job = Job(dataclasses.replace(self.case, variant="fp32", data=data), self.seed, data, _started=True)
        job.kind, job.determinism = self.kind, self.determinism
        return job

    # ------------------------------------------------------------------ set-up

    def _device(self) -> str:
        kind, _, index = self.case.device.partition(":")
        gpus = tf.config.list_physical_devices("GPU")
        if kind == "cpu":
            if gpus:
                with contextlib.suppress(RuntimeError):
                    tf.config.set_visible_devices([], "GPU")
            return "cpu"
        if kind == "cuda":
            i = int(index or 0)
            if i >= len(gpus):
                raise Skip(f"{self.case.device}: {len(gpus)} GPU(s) visible to TensorFlow")
            tf.config.set_visible_devices([gpus[i]], "GPU")
            with contextlib.suppress(RuntimeError):
                tf.config.experimental.set_memory_growth(gpus[i], True)
            return "cuda"
        raise Skip(f"mode fit runs on cpu and cuda (tensorflow), not {self.case.device}")

    def _deterministic(self) -> dict:
        """Seeds everywhere; TensorFlow's op determinism too, unless an image pipeline crops at
        random (presets light, heavy): tf.data's random crop (tf_pipeline) is an op without an
        explicit seed, which op determinism refuses to run — then the global seed alone decides."""
        from benchbench.pipelines import presets

        keras.utils.set_random_seed(self.seed)
        sets = [d for d in (self.case.data, self.case.fit.backbone) if d is not None and d.source != "sklearn"]
        cropping = [d.preset for d in sets if presets.crops(d.preset)]
        if not cropping:
            tf.config.experimental.enable_op_determinism()
        return {
            "seed": self.seed,
            "keras.utils.set_random_seed": self.seed,
            "tf.config.experimental.enable_op_determinism": not cropping,
            **(
                {
                    "op_determinism_reason": f"off: preset {cropping[0]}'s random crop in tf.data runs without an "
                    "explicit op seed, which op determinism refuses; the global seed (keras.utils.set_random_seed) "
                    "still seeds it"
                }
                if cropping
                else {}
            ),
            "loader_shuffle_seed": self.seed,
            "split_seed": self.case.fit.split_seed,
            "note": "the same seed gives the same fit on the same machine and thread count",
        }

    def _load_data(self) -> None:
        cfg, fit = self.data_cfg, self.case.fit
        bs = self.case.batch_size
        if cfg.source == "sklearn":
            arr = tabular.split(cfg.name, fit.val_fraction, fit.split_seed)
            self.batches = tabular.ArrayBatches(arr.x_train, arr.y_train, bs, self.seed)
            self.steps_per_epoch = self.batches.steps_per_epoch
            self.class_names = arr.classes
            self.x_val, self.y_val = arr.x_val, arr.y_val
            self.next_batch = self.batches.next
            self.data_info = {**cfg.identity(), **arr.info, "loader": self.batches.describe()}
            return
        from benchbench.pipelines.generate import list_images
        from benchbench.pipelines.tf_pipeline import TfPipeline

        split, gen_s = splits.image_split(cfg, fit.val_fraction, fit.split_seed)
        self.pipe = TfPipeline(cfg, split.train, bs, self.case.input_shape, "cpu", self.seed)
        self.steps_per_epoch = self.pipe.images // bs
        self.class_names = list(self.pipe.classes)
        self.next_batch = self.pipe.next
        paths, labels, val_classes = list_images(split.val)
        if val_classes != self.class_names:
            raise ValueError(f"validation classes {val_classes} differ from training classes {self.class_names}")
        h, w = (int(v) for v in self.case.input_shape[-2:])

        def decode(path):
            img = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
            return tf.clip_by_value(tf.image.resize(img, (h, w)), 0.0, 255.0) / 255.0

        self.x_val = np.stack([decode(p).numpy() for p in paths]).astype(np.float32)
        self.y_val = np.asarray(labels, dtype=np.int64)
        self.data_info = {
            **cfg.identity(),
            **split.info,
            "generate_s": gen_s,
            "loader": self.pipe.describe(),
            "validation": "decoded once, resized to the input size, scaled to [0, 1] (preset none), in file order",
            "epoch": "⌊training images / batch⌋ steps of the repeated, reshuffled tf.data pipeline",
        }

    @property
    def classes(self) -> int:
        return len(self.class_names)

    def _check_classes(self) -> None:
        seed = registry.SEED_MODELS.get(self.case.model)
        if self.binary and self.classes != 2:
            raise ValueError(f"{self.case.model} is a binary classifier; the data set has {self.classes} classes")
        if seed and seed.loss == "sparse categorical cross-entropy" and self.classes > 10:
            raise ValueError(f"{self.case.model} has 10 outputs; the data set has {self.classes} classes")

    # ------------------------------------------------------------------ models

    def new_model(self):
        keras.utils.set_random_seed(self.seed)  # the same seeded initial weights for every fit of this seed
        model = build(self.case.model, self.case.input_shape, self.classes)
        if not model.built:
            model(self.x_val[:1], training=False)
        return model

    def save(self, model, folder: str) -> str:
        model.save_weights(os.path.join(folder, WEIGHTS))
        return WEIGHTS

    def load(self, folder: str):
        model = self.new_model()
        model.load_weights(os.path.join(folder, WEIGHTS))
        return model

    @staticmethod
    def _head(model):
        layers = [layer for layer in model.layers if layer.weights]
        return layers[-1] if layers else None

    def from_backbone(self, backbone) -> tuple[object, dict]:
        """A fresh model (this seed's initial weights) with every layer's weights from
        ``backbone`` except the head's (the last layer with weights), matched by position."""
        model = self.new_model()
        head = self._head(model)
        loaded = 0
        for mine, theirs in zip(model.layers, backbone.layers):
            if mine is head or not mine.weights:
                continue
            src = theirs.get_weights()
            if [w.shape for w in src] == [tuple(w.shape) for w in mine.weights]:
                mine.set_weights(src)
                loaded += 1
        return model, {
            "head": head.name if head is not None else None,
            "head_init": "fresh (this seed's initial weights): the head is the new task's",
            "layers_from_backbone": loaded,
            "layers_with_weights": sum(1 for layer in model.layers if layer.weights),
        }

    def trainable(self, model, variant: str) -> tuple[Callable, list, dict]:
        """(forward, variables that train, runtime facts) for ``variant``: every layer (fp32,
        finetune), or the head alone for frozen_backbone
        (:func:`benchbench.variants.tf_variants.freeze_backbone`)."""
        from benchbench.variants.tf_variants import freeze_backbone

        runtime: dict = {}
        if variant == "frozen_backbone":
            runtime["transfer"] = f"frozen backbone: only {freeze_backbone(model)} trains"
        elif variant == "finetune":
            runtime["transfer"] = "finetune: every layer trains"
        variables = list(model.trainable_variables)
        runtime["trained"] = int(sum(np.prod(v.shape) for v in variables))
        return model, variables, runtime

    # ------------------------------------------------------------------ data

    def val_batch(self) -> np.ndarray:
        bs = self.case.batch_size
        return self.x_val[np.arange(bs) % len(self.x_val)]

    def targets(self, y) -> np.ndarray:
        y = np.asarray(y)
        return y.astype(np.float32).reshape(-1, 1) if self.binary else y.astype(np.int32)

    def predict(self, out: np.ndarray) -> np.ndarray:
        out = np.asarray(out)
        return (out.reshape(-1) > 0.5).astype(np.int64) if self.binary else out.reshape(len(out), -1).argmax(1)

    def outputs(self, call: Callable, modules: list, prep: Callable = lambda t: t) -> np.ndarray:
        """``call`` over the validation part in full batches of the case's size (the last one
        padded, its padding dropped): (n, outputs) float32."""
        bs, n = self.case.batch_size, len(self.x_val)
        outs = []
        for i in range(0, n, bs):
            x = self.x_val[np.arange(i, i + bs) % n]
            out = np.asarray(call(prep(x)), dtype=np.float32).reshape(bs, -1)
            outs.append(out[: min(bs, n - i)])
        return np.concatenate(outs)

    def labels_of(self, outputs: np.ndarray) -> np.ndarray:
        return self.predict(outputs)

    def val_labels(self) -> np.ndarray:
        return self.y_val

    # ------------------------------------------------------------------ training

    def trainer(self, model, call, variables) -> Trainer:
        return Trainer(self, model, variables)

    def _keras_call(self, model, jit: bool = False, eager: bool = False) -> Callable:
        if eager:
            return lambda x: model(x, training=False)
        fn = tf.function(lambda x: model(x, training=False), jit_compile=jit)
        return lambda x: fn(tf.constant(x))

    # ------------------------------------------------------------------ after training

    def subject(self, model) -> Subject:
        return Subject(call=self._keras_call(model), modules=[model], facts=lambda: self.model_facts(model))

    def variant(self, model) -> Subject:
        """The case's variant applied to the trained fp32 ``model`` (changed in place by
        prune: evaluate fp32 first)."""
        from benchbench.variants import tf_variants

        base, _ = registry.split_variant(self.case.variant)
        if base in TFLITE:
            return self._tflite(model, base)
        inference = dataclasses.replace(self.case, mode="inference")
        v = tf_variants.resolve(inference)
        v.check_device(self.kind)
        x_host = self.val_batch()
        model_v = v.apply(model, lambda: build(self.case.model, self.case.input_shape, self.classes), x_host)
        runtime: dict = {"math_modes": dict(self.runtime["math_modes"])}
        v.annotate(runtime)
        call = self._keras_call(model_v, jit=v.base == "xla", eager=v.base == "eager")
        return Subject(call=call, modules=[model_v], runtime=runtime, cold_start=dict(v.cold_start),
                       facts=lambda: v.model_facts(self.model_facts(model_v)))  # fmt: skip

    def _tflite(self, model, kind: str) -> Subject:
        t0 = time.perf_counter()
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if kind == "tflite_int8":
            batches = [np.asarray(self.next_batch()[0], dtype=np.float32) for _ in range(CALIBRATION_BATCHES)]
            converter.representative_dataset = lambda: ([b] for b in batches)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            quant = (f"full-integer int8, calibrated on {CALIBRATION_BATCHES} batches of {self.case.batch_size} "
                     "from the training part (its loader and augmentation), never the validation part; "
                     "float32 inputs and outputs")  # fmt: skip
        else:
            quant = "dynamic-range: int8 weights, float activations (Optimize.DEFAULT, no dataset)"
        flat = converter.convert()
        cls, which = _litert()
        threads = tf.config.threading.get_intra_op_parallelism_threads()
        interp = cls(model_content=flat, num_threads=threads)
        inp = interp.get_input_details()[0]
        interp.resize_tensor_input(inp["index"], [self.case.batch_size, *self.shape])
        interp.allocate_tensors()
        out_index = interp.get_output_details()[0]["index"]

        def run(x):
            interp.set_tensor(inp["index"], np.ascontiguousarray(x, dtype=np.float32))
            interp.invoke()
            return interp.get_tensor(out_index)

        runtime = {"variant": {"name": kind, "quantization": quant, "interpreter": which, "interpreter_threads": threads},
                   "dtype": "int8 (float32 I/O)" if kind == "tflite_int8" else "int8 weights, float32 compute"}  # fmt: skip

        def facts() -> dict:
            out = self.model_facts(model)
            out.update(serialized_bytes=len(flat), serialized_format=f"TensorFlow Lite flatbuffer ({kind})")
            return out

        return Subject(call=run, runtime=runtime, cold_start={"compile_s": time.perf_counter() - t0}, facts=facts)

    def model_facts(self, model) -> dict:
        trainable, frozen = keras_models.param_counts(model)
        with tempfile.TemporaryDirectory(prefix="benchbench-keras-") as tmp:
            path = os.path.join(tmp, "model.weights.h5")
            model.save_weights(path)
            size = os.path.getsize(path)
        nonzero = int(sum(np.count_nonzero(np.asarray(w)) for w in model.get_weights()))
        return {
            "params": trainable,
            "non_trainable_params": frozen,
            "nonzero_params": nonzero,
            "nonzero_note": "non-zero entries of every weight (trainable and not)",
            "serialized_bytes": size,
            "serialized_format": "keras weights .h5 (model.save_weights)",
            "classes": self.classes,
        }

    def inference_step(self, subject: Subject) -> Callable[[], None]:
        x = subject.prep(self.val_batch())

        def step():
            np.asarray(subject.call(x))  # the outputs copied to the host: the work is done

        return step

    def context(self):
        return contextlib.nullcontext()

    def device_memory(self) -> dict:
        if self.kind == "cpu":
            return {"device_peak_allocated_bytes": None, "device_peak_reserved_bytes": None,
                    "device_memory_reason": "cpu case: no device allocator (host RSS covers it)"}  # fmt: skip
        try:
            peak = tf.config.experimental.get_memory_info("GPU:0")["peak"]
        except Exception as e:
            return {"device_peak_allocated_bytes": None, "device_memory_reason": f"{type(e).__name__}: {e}"}
        return {"device_peak_allocated_bytes": peak, "device_peak_reserved_bytes": None,
                "device_memory_source": "tf.config.experimental.get_memory_info peak over the fit and the timed window"}  # fmt: skip


class Trainer:
    """:class:`benchbench.measure.fit.Trainer` for a Keras model: a ``tf.function`` train step
    on a batch of the training loader; an evaluation over the validation part."""

    def __init__(self, job: Job, model, variables: list):
        self.job, self.model, self.variables = job, model, variables
        self.steps_per_epoch = job.steps_per_epoch
        if job.case.optimizer == "sgd":
            self.opt = keras.optimizers.SGD(learning_rate=1e-3, momentum=0.9)
        else:
            self.opt = keras.optimizers.Adam(learning_rate=1e-3)
        self.opt.build(variables)
        loss_fn = job.loss_fn

        @tf.function
        def step(x, y):
            with tf.GradientTape() as tape:
                out = model(x, training=True)
                loss = loss_fn(y, out)
            grads = tape.gradient(loss, variables)
            self.opt.apply_gradients(zip(grads, variables))
            return loss, out

        self._step = step
        self._eval = job._keras_call(model)

    def train_step(self) -> StepResult:
        job = self.job
        xb, yb = job.next_batch()
        y = np.asarray(yb)
        loss, out = self._step(tf.convert_to_tensor(xb, tf.float32), tf.constant(job.targets(y)))
        value = float(loss.numpy())  # a host copy: the step has finished
        correct = int((job.predict(out.numpy()) == y.reshape(-1)).sum())
        return StepResult(loss=value, correct=correct, samples=len(y))

    def evaluate(self) -> Evaluation:
        job = self.job
        out = job.outputs(self._eval, [self.model])
        loss = float(job.loss_fn(job.targets(job.y_val), out).numpy())
        return Evaluation(y_true=job.val_labels(), y_pred=job.predict(out), loss=loss)
