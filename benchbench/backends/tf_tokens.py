"""TensorFlow token models: the transformer presets as keras_hub models
(:mod:`benchbench.models.transformers_keras`), fed seeded token ids, in inference and train over
``seq_len`` tokens. Imported only in worker processes; the tensorflow backend hands a token case
over to :func:`prepare` once its device, threads and math modes are set.

Generate mode runs on torch only (``registry.VARIANTS``: no per-token timed loop for keras_hub
yet), as do the LLM variants; here: ``fp32`` (a tf.function), ``eager`` and ``xla``. A user's
``module:callable`` token model is PyTorch only.
"""

from __future__ import annotations

import time

import numpy as np

from benchbench import registry
from benchbench.case import Case
from benchbench.framework.base import Prepared, Skip
from benchbench.framework.tf_runtime import keras, tf
from benchbench.models.transformers_presets import PRESETS
from benchbench.variants import fidelity

VARIANTS = ("fp32", "eager", "xla")
MLM_FRACTION = 0.15  # as the torch side: masked-LM labels on 15% of the positions


def prepare(case: Case, device, runtime: dict, checksum, serialized) -> Prepared:
    """``device``: the tensorflow backend's device (scope, sync, kind); ``runtime``: what it already
    knows (versions, device, threads, math modes); ``checksum``: its one-value-per-output reduction
    that a timed step copies to the host; ``serialized``: its saved-size function."""
    base, _ = registry.split_variant(case.variant)
    if registry.model_kind(case.model) != "transformer":
        raise Skip(f"{case.model}: token models on tensorflow are the presets ({', '.join(PRESETS)}); "
                   "a user's transformers model runs on torch")  # fmt: skip
    if case.mode not in ("inference", "train"):
        raise Skip(f"mode {case.mode} is not implemented for tensorflow token models (inference, train)")
    if base not in VARIANTS:
        raise Skip(f"variant {case.variant!r} is not implemented for tensorflow token models ({', '.join(VARIANTS)})")
    if case.devices > 1 or device.strategy is not None:
        raise Skip("tensorflow token models run on one device without a distribution strategy")
    from benchbench.models import transformers_keras

    preset = PRESETS[case.model]
    rng = np.random.default_rng(case.settings.seed)
    ids_host = rng.integers(0, preset.vocab, (case.batch_size, case.seq_len), dtype=np.int32)
    masked = None
    if preset.family == "bert" and case.mode == "train":  # the masked-LM head reads these positions
        k = max(1, round(MLM_FRACTION * case.seq_len))
        masked = np.stack([np.sort(rng.choice(case.seq_len, k, replace=False)) for _ in range(case.batch_size)])
        masked = masked.astype(np.int32)
    host = transformers_keras.inputs(preset.family, ids_host, masked)

    t0 = time.perf_counter()
    with device.scope():
        model = transformers_keras.build(case.model, case.mode)
        model(host, training=False)  # builds the weights
        inputs = {k: tf.identity(v) for k, v in host.items()}
    device.sync()
    build_s = time.perf_counter() - t0
    runtime.update({
        "dtype": "float32",
        "input_shape": [case.batch_size, case.seq_len],
        "data_layout": "token ids (batch, tokens)",
        "token_model": {"kind": registry.TRANSFORMER_MODELS[case.model].kind, "class": type(model).__name__,
                        "library": f"keras_hub {__import__('keras_hub').__version__}", "vocab": preset.vocab},
    })  # fmt: skip
    jit, compiled = base == "xla", base != "eager"
    runtime["math_modes"]["execution"] = {"fp32": "tf.function", "eager": "eager", "xla": "tf.function(jit_compile=True)"}[base]  # fmt: skip

    if case.mode == "inference":

        def forward(batch):
            return checksum(model(batch, training=False))

        call = tf.function(forward, jit_compile=jit) if compiled else forward
        args: tuple = (inputs,)
    else:
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        if preset.family == "bert":
            labels = tf.identity(np.take_along_axis(ids_host, masked, axis=1))
            runtime["loss"] = "masked-LM cross-entropy (15% of positions)"

            def loss_of(batch, y):
                return loss_fn(y, model(batch, training=True))
        else:
            labels = inputs["token_ids"]
            runtime["loss"] = "causal-LM cross-entropy"

            def loss_of(batch, y):
                return loss_fn(y[:, 1:], model(batch, training=True)[:, :-1])

        opt = keras.optimizers.SGD(1e-3, momentum=0.9) if case.optimizer == "sgd" else keras.optimizers.Adam(1e-3)
        with device.scope():
            opt.build(model.trainable_variables)
        runtime["optimizer"] = type(opt).__name__

        def train_step(batch, y):
            with tf.GradientTape() as tape:
                loss = loss_of(batch, y)
            grads = tape.gradient(loss, model.trainable_variables)
            opt.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        call = tf.function(train_step, jit_compile=jit) if compiled else train_step
        args = (inputs, labels)

    compile_s = None
    if compiled:  # trace now; XLA compiles on the first call
        t0 = time.perf_counter()
        with device.scope():
            call.get_concrete_function(*args)
        compile_s = time.perf_counter() - t0

    def step():
        call(*args).numpy()  # one value that depends on every output (or the loss) copied: the work is done
        device.sync()

    def model_facts() -> dict:
        trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
        size, fmt = serialized(model)
        return {
            "params": trainable,
            "serialized_bytes": size,
            "serialized_format": fmt,
            "flops_per_sample": None,
            "flops_note": "unavailable: not counted for tensorflow token models yet",
        }

    return Prepared(
        step=step,
        cold_start={"build_s": build_s, "compile_s": compile_s},
        runtime=runtime,
        reset_peak_memory=lambda: None,
        device_memory=lambda: {
            "device_peak_allocated_bytes": None,
            "device_peak_reserved_bytes": None,
            "device_memory_reason": "not read for tensorflow token models yet",
        },
        model_facts=model_facts,
        context=device.scope,
        fidelity=lambda: (
            fidelity.identical(case.settings.seed, "the fp32 model is the reference")
            if base == "fp32"
            else fidelity.unavailable("not computed for tensorflow token models yet")
        ),
    )
