"""The TensorFlow backend (Keras 3 on TensorFlow). Imported only in worker and probe processes.

Mirrors ``backends/torch.py``: the same model names (seed models, keras.applications with
torchvision-style aliases, a user's ``module:callable``), the same records. Differences a
reader of the records should know:

* Layout: Keras is channels last. The case's (C, H, W) becomes (H, W, C); the record's
  ``runtime.input_shape`` is the NHWC shape actually fed and ``runtime.data_layout`` says so.
* Execution: the ``fp32`` variant runs a compiled ``tf.function`` (TensorFlow's normal
  graph mode); ``eager`` calls Keras op by op; ``xla`` is ``tf.function(jit_compile=True)``.
  Precision, TensorFlow Lite, pruning and transfer variants: ``benchbench.variants.tf_variants``.
* Threads: intra-op = the case's threads (default every usable core), inter-op = PyTorch's
  default count capped at intra-op, both set before TensorFlow's runtime starts.
"""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
import time

import numpy as np

from benchbench import registry
from benchbench.case import Case
from benchbench.framework.base import Prepared, Skip
from benchbench.framework.tf_runtime import keras, set_threads, tf, thread_counts  # noqa: F401 (re-exported)
from benchbench.hardware.environment import cpu_model
from benchbench.models import keras_models

VARIANTS = {"fp32": "tf.function", "eager": "eager", "xla": "tf.function(jit_compile=True)"}
FLOP_OPS = ("Conv2D", "Conv3D", "DepthwiseConv2dNative", "Conv2DBackpropInput", "MatMul",
            "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3")  # fmt: skip
UNCOUNTED_MATMUL_OPS = ("Einsum", "XlaDot", "XlaDotV2", "XlaConvV2")
FLOPS_NOTE = (
    "forward pass per sample; FLOPs = 2 × multiply-accumulates; convolutions and matmuls "
    "of the frozen tf.function graph at batch 1, counted by TensorFlow's op statistics "
    "(the tf.compat.v1.profiler registry) — the same scope as the torch backend's count"
)
PARAMS_NOTE = (
    "params: trainable weights (what torch counts as parameters); non_trainable_params: "
    "batch-norm moving statistics, normalisation constants, frozen weights (torch's buffers)"
)


# ------------------------------------------------------------------ facts


def _versions() -> dict:
    from importlib import metadata

    build = tf.sysconfig.get_build_info()
    dists = {}
    for dist in ("tensorflow", "tensorflow-cpu", "tensorflow-tpu", "tf-nightly"):
        try:
            dists[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return {
        "tensorflow": tf.__version__,
        "tensorflow_distribution": ", ".join(f"{d}=={v}" for d, v in dists.items()) or None,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "cuda": build.get("cuda_version"),
        "cudnn": build.get("cudnn_version"),
    }


def _gpu_devices() -> dict:
    """Physical GPUs, listed without starting TensorFlow's runtime."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        reason = "no GPU visible to TensorFlow"
        if not tf.test.is_built_with_cuda():
            reason += " (a CPU-only TensorFlow build; NVIDIA GPUs need tensorflow with its and-cuda extra)"
        return {"available": False, "reason": reason}
    out = []
    for i, gpu in enumerate(gpus):
        details = tf.config.experimental.get_device_details(gpu)
        cap = details.get("compute_capability")
        out.append({
            "index": i,
            "name": details.get("device_name", gpu.name),
            "memory_bytes": None,  # TensorFlow tells it only once its runtime has started
            "uuid": None,  # TensorFlow does not expose it; the worker records the PCI bus id
            "capability": f"{cap[0]}.{cap[1]}" if cap else None,
        })  # fmt: skip
    return {"available": True, "count": len(out), "gpus": out}


def _tpu_target() -> tuple[str | None, str | None]:
    """(resolver target, None) when a TPU may be attached, else (None, why not). Asks no
    network service: TPUClusterResolver() with no target queries the GCE metadata server."""
    name = os.environ.get("TPU_NAME") or os.environ.get("COLAB_TPU_ADDR")
    if name:
        return name, None
    if glob.glob("/dev/accel[0-9]*") or glob.glob("/dev/vfio/[0-9]*"):
        return "local", None  # a TPU VM: the chips are on this host
    return None, (
        "no TPU visible to TensorFlow (TPU_NAME and COLAB_TPU_ADDR unset, no /dev/accel* or /dev/vfio device)"
    )


def _tpu_devices() -> dict:
    target, reason = _tpu_target()
    if target is None:
        return {"available": False, "reason": reason}
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=target)
        master = resolver.master()
    except Exception as e:  # no TPU behind the name
        reason = f"TPUClusterResolver({target!r}) found no TPU: {type(e).__name__}: {e}"
        return {"available": False, "reason": reason}
    return {"available": True, "target": target, "master": master or None}


def _show_only_gpus(gpus: list) -> None:
    """Make only ``gpus`` visible to TensorFlow; before the runtime starts."""
    try:
        tf.config.set_visible_devices(gpus, "GPU")
    except RuntimeError:  # the runtime already runs in this process (an in-process caller)
        if tf.config.get_visible_devices("GPU") != gpus:
            raise RuntimeError("TensorFlow's runtime already started in this process with other GPUs "
                               "visible; run this case in its own process") from None  # fmt: skip


def _set_fp32_math(variant: str) -> dict:
    """fp32 means fp32: TF32 off (TensorFlow turns it on by default on Ampere and later),
    Keras's dtype policy float32; say which modes were on."""
    tf.config.experimental.enable_tensor_float_32_execution(False)
    keras.config.set_dtype_policy("float32")
    try:  # oneDNN kernels: on by default in x86 Linux builds unless TF_ENABLE_ONEDNN_OPTS=0
        from tensorflow.python.util import _pywrap_util_port

        onednn = bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        onednn = None
    return {
        "tensor_float_32_execution": tf.config.experimental.tensor_float_32_execution_enabled(),
        "keras_dtype_policy": keras.config.dtype_policy().name,
        "reduced_precision_reduction": False,
        "execution": VARIANTS[variant],
        "xla_jit_compile": variant == "xla",
        "onednn_opts": onednn,
    }


def set_autotune(on: bool, environ=None) -> dict:
    """The ``autotune`` setting: TensorFlow's cuDNN autotuning (``TF_CUDNN_USE_AUTOTUNE``, on by
    default: each convolution's algorithms are timed on first use, in the first iteration and
    warm-up), set before the runtime makes its first convolution kernel. XLA's GPU autotuning
    (``--xla_gpu_autotune_level``, the ``xla`` variant) is left at XLA's default either way."""
    env = os.environ if environ is None else environ
    env["TF_CUDNN_USE_AUTOTUNE"] = "1" if on else "0"
    return {
        "autotune": bool(on),
        "TF_CUDNN_USE_AUTOTUNE": env["TF_CUDNN_USE_AUTOTUNE"],
        "autotune_note": "cuDNN convolution autotuning (TF_CUDNN_USE_AUTOTUNE) in the first iteration and "
        "warm-up; XLA's own GPU autotuning (xla variant) stays at its default",
    }


def _checksum(outputs):
    """A scalar that depends on every output: what a timed step copies to the host."""
    return tf.add_n([tf.reduce_sum(tf.cast(t, tf.float32)) for t in tf.nest.flatten(outputs)])


def _pci_bus_ids() -> list[str | None]:
    """The PCI bus ids of the visible GPUs, in TensorFlow's order (GPU:0, GPU:1 …): how NVML's
    view is matched, not the index."""
    from tensorflow.python.client import device_lib

    out: list[str | None] = []
    for dev in device_lib.list_local_devices():
        if dev.device_type == "GPU":
            bus = None
            for part in dev.physical_device_desc.split(","):
                key, _, value = part.partition(":")
                if key.strip() == "pci bus id":
                    bus = value.strip()
            out.append(bus)
    return out


def _pci_bus_id() -> str | None:
    """The PCI bus id of the (first) visible GPU."""
    ids = _pci_bus_ids()
    return ids[0] if ids else None


def device_peaks(names: list[str], memory_info) -> dict:
    """The allocator's peak on every device a case ran on (``memory_info(name)``:
    ``tf.config.experimental.get_memory_info``): one device's as the figure; for several
    (MirroredStrategy's replicas) the largest as the figure, each in ``device_peaks`` and the
    sum beside them — never GPU:0's alone without saying so."""
    peaks = []
    for name in names:
        try:
            peaks.append(int(memory_info(name)["peak"]))
        except Exception as e:  # an allocator that keeps no statistics
            return {
                "device_peak_allocated_bytes": None,
                "device_peak_reserved_bytes": None,
                "device_memory_reason": f"tf.config.experimental.get_memory_info({name!r}): {type(e).__name__}: {e}",
            }
    source = ("tf.config.experimental.get_memory_info peak over warm-up and timed window (allocator growth on); "
              "TensorFlow does not expose its reserved pool size")  # fmt: skip
    if len(names) == 1:
        return {"device_peak_allocated_bytes": peaks[0], "device_peak_reserved_bytes": None,
                "device_memory_source": source}  # fmt: skip
    return {
        "device_peak_allocated_bytes": max(peaks),
        "device_peak_reserved_bytes": None,
        "device_peaks": [{"device": n, "peak_allocated_bytes": p} for n, p in zip(names, peaks)],
        "device_peak_allocated_sum_bytes": sum(peaks),
        "device_memory_source": f"{source}; the largest of the {len(names)} devices' peaks (MirroredStrategy "
        f"replicas), each in device_peaks, their sum in device_peak_allocated_sum_bytes",
    }


def _serialized(model) -> tuple[int, str]:
    with tempfile.TemporaryDirectory(prefix="benchbench-keras-") as tmp:
        path = os.path.join(tmp, "model.keras")
        try:
            model.save(path)
            fmt = "keras .keras archive (model.save)"
        except Exception as e:  # a subclassed model without get_config: weights only
            path = os.path.join(tmp, "model.weights.h5")
            model.save_weights(path)
            fmt = f"keras weights .h5 (model.save_weights; model.save failed: {type(e).__name__})"
        return os.path.getsize(path), fmt


def _flops_per_sample(model, sample_shape) -> tuple[int | None, str]:
    """Convolution and matmul FLOPs of one sample's forward pass, from TensorFlow's op
    statistics on the frozen graph of a batch-1 tf.function, functions it calls included
    (Keras runs a grouped convolution as an XLA-compiled function); None with the reason
    when the graph cannot be counted (never 0)."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
    from tensorflow.python.profiler.internal import flops_registry  # noqa: F401 (registers the statistics)

    fn = tf.function(lambda x: model(x, training=False))
    concrete = fn.get_concrete_function(tf.TensorSpec((1, *sample_shape), tf.float32))
    graph = convert_variables_to_constants_v2(concrete).graph
    library = {f.signature.name: f for f in graph.as_graph_def().library.function}
    total, uncounted = _count_flops(graph, library, depth=0)
    if uncounted:
        ops = ", ".join(sorted(uncounted))
        return None, f"unavailable: TensorFlow's op statistics cannot count {ops} ops"
    if total == 0:
        return None, "unavailable: no convolution or matmul in the forward graph"
    return total, FLOPS_NOTE


def _count_flops(graph, library: dict, depth: int) -> tuple[int, set[str]]:
    """(FLOPs of the convolutions and matmuls in ``graph`` and the functions it calls,
    op types that could not be counted)."""
    from tensorflow.python.framework import function_def_to_graph
    from tensorflow.python.framework import ops as tf_ops
    from tensorflow.python.util import deprecation

    total, uncounted = 0, set()
    for op in graph.get_operations():
        if op.type in UNCOUNTED_MATMUL_OPS:
            uncounted.add(op.type)
        elif op.type in FLOP_OPS:
            with deprecation.silence():  # the registry uses a TF1 shape helper and says so
                stats = tf_ops.get_stats_for_node_def(graph, op.node_def, "flops")
            if stats.value is None:
                uncounted.add(op.type)
            else:
                total += int(stats.value)
        elif op.type in ("PartitionedCall", "StatefulPartitionedCall"):
            name = op.get_attr("f").name
            if name not in library or depth >= 8:
                uncounted.add(f"{op.type}({name})")
                continue
            body = function_def_to_graph.function_def_to_graph(library[name], input_shapes=[t.shape for t in op.inputs])
            n, missed = _count_flops(body, library, depth + 1)
            total += n
            uncounted |= missed
    return total, uncounted


class _Device:
    """Where a case runs: a TensorFlow device name, and a TPUStrategy for TPUs."""

    def __init__(self, kind: str, name: str, strategy=None):
        self.kind, self.name, self.strategy = kind, name, strategy

    def scope(self):
        return self.strategy.scope() if self.strategy is not None else tf.device(self.name)

    def sync(self) -> None:
        # .numpy() has already waited for the value it copies; on an accelerator wait for
        # every queued kernel too (optimizer updates the loss does not depend on)
        if self.kind != "cpu":
            tf.test.experimental.sync_devices()


def _mirrored_device(case: Case) -> _Device:
    """``devices: N``: a MirroredStrategy over N GPUs, or over N logical CPU devices. Before
    the runtime starts: the worker measures the case's one-device baseline in a process of
    its own, since the logical devices cannot change once the runtime runs."""
    n = case.devices
    kind = case.device.split(":")[0]
    if kind == "cpu":
        cpus = tf.config.list_physical_devices("CPU")
        try:
            tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * n)
        except RuntimeError:  # the runtime already started (an in-process caller): checked below
            pass
        have = len(tf.config.list_logical_devices("CPU"))
        if have < n:
            raise Skip(f"devices: {n}: TensorFlow's runtime already started with {have} logical CPU device(s)")
        tf.config.set_visible_devices([], "GPU")
        names = [f"/CPU:{i}" for i in range(n)]
        return _Device(
            "cpu",
            "/CPU:0",
            tf.distribute.MirroredStrategy(
                devices=names, cross_device_ops=tf.distribute.ReductionToOneDevice(reduce_to_device="/CPU:0")
            ),
        )
    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) < n:
        raise Skip(f"devices: {n} needs {n} GPUs; {len(gpus)} visible to TensorFlow")
    for g in gpus[:n]:
        try:
            tf.config.experimental.set_memory_growth(g, True)
        except RuntimeError:
            pass
    return _Device("cuda", "/GPU:0", tf.distribute.MirroredStrategy(devices=[f"/GPU:{i}" for i in range(n)]))


def _tpu_strategy():
    target, reason = _tpu_target()
    if target is None:
        raise Skip(reason)
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=target)
        tf.config.experimental_connect_to_cluster(resolver)
        topology = tf.tpu.experimental.initialize_tpu_system(resolver)
        # one core, like the torch backend's one XLA device: the whole batch on one replica
        assignment = tf.tpu.experimental.DeviceAssignment.build(topology, num_replicas=1)
        return tf.distribute.TPUStrategy(resolver, experimental_device_assignment=assignment)
    except Exception as e:  # no usable TPU behind the name
        raise Skip(f"TPU {target!r} could not be initialised: {type(e).__name__}: {e}") from None


# ---------------------------------------------------------------- backend


class TensorFlowBackend:
    name = "tensorflow"

    def profile(self, prepared: Prepared, trace_path) -> dict:
        from benchbench.backends import tf_profile  # the window, the op table and the trace

        with prepared.context():
            return tf_profile.profile_window(prepared.step, prepared.runtime.get("device_type", "cpu"), trace_path)

    def probe(self) -> dict:
        return {
            "framework": "tensorflow",
            "versions": _versions(),
            "devices": {
                "cpu": {"available": True, "name": cpu_model()},
                "cuda": _gpu_devices(),
                "tpu": _tpu_devices(),
            },
            "models": keras_models.zoo_names(),
            "model_source": "keras.applications",
            "aliases": dict(registry.TORCHVISION_TO_KERAS),  # torchvision name -> Keras builder
            "timm_models": None,
            "timm_reason": "timm models are PyTorch models: the tensorflow backend cannot run them",
        }

    def _device(self, case: Case) -> _Device:
        """Resolve the device and make only it visible: before the runtime starts."""
        kind, _, index = case.device.partition(":")
        if case.devices > 1:  # data-parallel: a MirroredStrategy (benchbench.worker.data_parallel)
            return _mirrored_device(case)
        gpus = tf.config.list_physical_devices("GPU")
        if kind == "cpu":
            if gpus:  # a CPU case neither starts nor holds memory on the GPUs
                _show_only_gpus([])
            return _Device("cpu", "/CPU:0")
        if kind == "cuda":
            info = _gpu_devices()
            if not info["available"]:
                raise Skip(info["reason"])
            i = int(index or 0)
            if i >= len(gpus):
                raise Skip(f"{case.device}: only {len(gpus)} GPU(s) visible to TensorFlow")
            _show_only_gpus([gpus[i]])
            # grow the allocator on demand instead of taking the whole GPU at start-up
            with contextlib.suppress(RuntimeError):  # already set by an earlier case in this process
                tf.config.experimental.set_memory_growth(gpus[i], True)
            return _Device("cuda", "/GPU:0")
        if kind == "tpu":
            if case.variant == "eager":
                raise Skip("variant 'eager' cannot run on a TPU: TPU programs are compiled")
            if gpus:
                _show_only_gpus([])
            return _Device("tpu", "/TPU:0", _tpu_strategy())
        raise Skip(f"device {case.device!r} is not supported by the tensorflow backend")

    def prepare(self, case: Case) -> Prepared:
        from benchbench.variants import tf_variants  # precision, TFLite, pruning, transfer

        variant = tf_variants.resolve(case)  # Skip where tensorflow cannot run it
        set_threads(*thread_counts(case.threads))  # before anything below starts the runtime
        autotune = set_autotune(case.settings.autotune)  # before the first convolution kernel is made
        device = self._device(case)
        variant.check_device(device.kind)
        math_modes = {**_set_fp32_math(variant.base), **autotune}
        keras.utils.set_random_seed(case.settings.seed)
        if case.seq_len or case.prompt_len:  # token models (keras_hub presets): benchbench.backends.tf_tokens
            from benchbench.backends import tf_tokens

            base = {"framework": "tensorflow", "versions": _versions(), "device_name": cpu_model(),
                    "device_type": device.kind, "tf_device": device.name, "math_modes": math_modes,
                    "threads": tf.config.threading.get_intra_op_parallelism_threads(),
                    "interop_threads": tf.config.threading.get_inter_op_parallelism_threads()}  # fmt: skip
            return tf_tokens.prepare(case, device, base, _checksum, _serialized)
        rng = np.random.default_rng(case.settings.seed)
        shape = keras_models.keras_input_shape(case.input_shape)

        x_host = rng.standard_normal((case.batch_size, *shape), dtype=np.float32)
        t0 = time.perf_counter()
        with device.scope():
            model = keras_models.build(case.model, case.input_shape)
            if not model.built:  # a subclassed model creates its weights on its first call
                model(x_host[:1], training=False)
        device.sync()
        build_s = time.perf_counter() - t0
        with device.scope():  # the same seeded weights, cast / pruned / frozen / converted
            model = variant.apply(model, lambda: keras_models.build(case.model, case.input_shape), x_host)

        with device.scope():
            # inputs already on the device (on a TPU: a variable in the strategy's scope)
            real_data = case.data is not None  # a data: pipeline assigns each batch to the variable
            x = tf.Variable(x_host, trainable=False) if device.strategy or real_data else tf.identity(x_host)

        runtime = {
            "framework": "tensorflow",
            "versions": _versions(),
            "device_name": cpu_model(),
            "device_type": device.kind,
            "tf_device": device.name,
            "threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "interop_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "interop_threads_rule": "PyTorch's default inter-op count (physical cores), capped at "
            "the intra-op threads so a case never runs on more cores than it asks for",
            "math_modes": math_modes,
            "dtype": "float32",
            "input_shape": [case.batch_size, *shape],
            "data_layout": keras_models.data_layout(case.input_shape),
        }
        app = keras_models.keras_name(case.model) if registry.model_kind(case.model) == "zoo" else None
        if app is not None:
            runtime["keras_model"] = app
            runtime["keras_kwargs"] = keras_models.zoo_kwargs(app)
        if device.kind == "cuda":
            details = tf.config.experimental.get_device_details(tf.config.get_visible_devices("GPU")[0])
            runtime["device_name"] = details.get("device_name")
            buses = _pci_bus_ids()
            runtime["device_pci_bus_id"] = buses[0] if buses else None
            if case.devices > 1:  # MirroredStrategy over GPU:0…N-1: telemetry reads each of them
                runtime["device_pci_bus_ids"] = buses[: case.devices]
        elif device.kind == "tpu":
            runtime["device_name"] = "TPU"
            runtime["tpu_replicas"] = device.strategy.num_replicas_in_sync
        variant.annotate(runtime)
        jit = variant.base == "xla"
        compiled = variant.base != "eager"

        def run_on_device(fn, *args):
            if device.strategy is None:
                return fn(*args)
            out = device.strategy.run(fn, args=args)  # devices: N: sum the replicas' values
            return device.strategy.reduce("SUM", out, axis=None) if case.devices > 1 else out

        if case.mode == "inference":

            def forward(inputs):
                return _checksum(model(inputs, training=False))

            if compiled:
                fwd = tf.function(lambda inputs: run_on_device(forward, inputs), jit_compile=jit)
            else:
                fwd = forward
            call, args = fwd, (x,)
        else:
            loss_name, loss_fn, make_targets = keras_models.loss_for(case.model)
            with device.scope():
                out_shape = (case.batch_size, *model(x_host[:1], training=False).shape[1:])
                y_host = make_targets(out_shape, rng)
                y = tf.Variable(y_host, trainable=False) if device.strategy or real_data else tf.identity(y_host)
                if case.optimizer == "sgd":
                    opt = keras.optimizers.SGD(learning_rate=1e-3, momentum=0.9)
                else:
                    opt = keras.optimizers.Adam(learning_rate=1e-3)
                opt = variant.wrap_optimizer(opt)
                opt.build(model.trainable_variables)
            runtime["loss"] = loss_name
            runtime["optimizer"] = type(opt).__name__

            def train_step(inputs, targets):
                with tf.GradientTape() as tape:
                    loss = loss_fn(targets, model(inputs, training=True))
                    scaled = opt.scale_loss(loss)  # float16: × the loss scale (LossScaleOptimizer); else loss
                grads = tape.gradient(scaled, model.trainable_variables)  # apply_gradients unscales
                opt.apply_gradients(zip(grads, model.trainable_variables))
                return loss

            if compiled:
                train = tf.function(lambda a, b: run_on_device(train_step, a, b), jit_compile=jit)
            else:
                train = train_step
            call, args = train, (x, y)

        compile_s = None
        if compiled:  # trace now; XLA compiles on the first call (cold_start.first_iter_s)
            t0 = time.perf_counter()
            with device.scope():
                call.get_concrete_function(*args)
            compile_s = time.perf_counter() - t0

        def step():
            # TensorFlow may hand back a result before the work is done (GPU kernels are
            # queued on a stream; a TPU runs ahead of the host). Copying a value that
            # depends on every output (inference: a sum of the outputs, computed in the
            # same function; train: the loss) to the host with .numpy() makes the step
            # wait for it, and device.sync() waits for what the value does not depend on
            # (the optimizer's updates) on an accelerator — so no time is taken from an
            # asynchronous queue. The copy is one float.
            call(*args).numpy()
            device.sync()

        # every device the case runs on: MirroredStrategy's replicas are GPU:0…N-1
        kind_name = device.name.lstrip("/").split(":")[0]
        memory_devices = [f"{kind_name}:{i}" for i in range(case.devices)] if case.devices > 1 else [
            device.name.lstrip("/")]  # fmt: skip

        def reset_peak():
            if device.kind in ("cuda", "tpu"):
                for name in memory_devices:
                    with contextlib.suppress(Exception):
                        tf.config.experimental.reset_memory_stats(name)

        def device_memory() -> dict:
            if device.kind == "cpu":
                return {
                    "device_peak_allocated_bytes": None,
                    "device_peak_reserved_bytes": None,
                    "device_memory_reason": "cpu case: no device allocator (host RSS covers it)",
                }
            return device_peaks(memory_devices, tf.config.experimental.get_memory_info)

        def model_facts() -> dict:
            trainable, frozen = keras_models.param_counts(model)
            size, fmt = _serialized(model)
            facts = {
                "params": trainable,
                "non_trainable_params": frozen,
                "params_note": PARAMS_NOTE,
                "serialized_bytes": size,
                "serialized_format": fmt,
            }
            try:
                with device.scope() if device.strategy is None else tf.device("/CPU:0"):
                    facts["flops_per_sample"], facts["flops_note"] = _flops_per_sample(model, shape)
            except Exception as e:  # a graph TensorFlow cannot freeze or count
                facts["flops_per_sample"] = None
                facts["flops_note"] = f"unavailable: {type(e).__name__}: {e}"
            return facts

        cold_start = {"build_s": build_s, "compile_s": compile_s}
        if compiled:
            cold_start["compile_note"] = "tf.function tracing" + (
                "; XLA compiles in the first iteration (first_iter_s)" if jit else ""
            )
        cold_start.update(variant.cold_start)  # variant_s; TFLite: conversion as compile_s
        return Prepared(
            step=variant.step or step,  # TFLite: the interpreter's set_tensor + invoke + get_tensor
            cold_start=cold_start,
            runtime=runtime,
            reset_peak_memory=reset_peak,
            device_memory=device_memory,
            model_facts=lambda: variant.model_facts(model_facts()),
            context=device.scope,
            fidelity=variant.fidelity,
            inputs=None if variant.step else (x, y if case.mode == "train" else None),  # data: pipelines
        )


BACKEND = TensorFlowBackend()
