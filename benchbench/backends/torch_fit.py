"""Mode ``fit`` on PyTorch (issue 19): a case's data split and loaders, its model (the head
sized for the data set's classes), a :class:`benchbench.measure.fit.Trainer`, saved
weights, the transfer pair's start, and a compression variant applied to trained weights.
The bookkeeping (stop rule, curve, time to target) is :mod:`benchbench.measure.fit`; the
orchestration :mod:`benchbench.worker.fit`. Imported only in worker processes.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from benchbench import registry
from benchbench.framework.base import Skip
from benchbench.hardware.environment import cpu_model
from benchbench.measure.fit import Evaluation, StepResult
from benchbench.models import torch_models
from benchbench.pipelines import split as splits
from benchbench.pipelines import tabular

CALIBRATION_BATCHES = 4  # int8_static: batches of the training part the observers see
WEIGHTS = "model.pt"


def _device(case) -> torch.device:
    kind = case.device.split(":")[0]
    if kind == "cpu":
        return torch.device("cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise Skip("no CUDA GPU visible to PyTorch")
        dev = torch.device(case.device)
        index = dev.index or 0
        if index >= torch.cuda.device_count():
            raise Skip(f"{case.device}: only {torch.cuda.device_count()} CUDA GPU(s) visible")
        return torch.device("cuda", index)
    raise Skip(f"mode fit runs on cpu and cuda (torch), not {case.device}")


def _sync(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None  # eager CPU ops have finished when they return


def _fp32_math() -> dict:
    """fp32 means fp32: TF32 and reduced-precision reductions off (as the torch backend sets them)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
    torch.set_float32_matmul_precision("highest")
    return {
        "cuda.matmul.allow_tf32": False,
        "cudnn.allow_tf32": False,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "reduced_precision_reduction": False,
    }


def _versions() -> dict:
    out = {"torch": torch.__version__, "cuda": torch.version.cuda}
    for pkg in ("torchvision", "timm", "numpy", "sklearn"):
        try:
            out[pkg] = __import__(pkg).__version__
        except Exception:  # not installed: not a version
            out[pkg] = None
    return out


def saved_bytes(module: nn.Module) -> int:
    import io

    buf = io.BytesIO()
    torch.save(module.state_dict(), buf)
    return buf.getbuffer().nbytes


def build(name: str, input_shape, classes: int) -> nn.Module:
    """The case's model with random weights, its classifier sized for ``classes`` where the
    builder takes it (torchvision, timm); seed and user models keep their own heads."""
    kind = registry.model_kind(name)
    if kind == "zoo":
        import torchvision

        return torchvision.models.get_model(name, weights=None, num_classes=classes)
    if kind == "timm":
        import timm

        return timm.create_model(name[len(registry.TIMM_PREFIX) :], pretrained=False, num_classes=classes)
    return torch_models.build(name, input_shape)


def head_name(model: nn.Module) -> str | None:
    """The classifier head: the last nn.Linear (what frozen_backbone leaves trainable)."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    return names[-1] if names else None


@dataclass
class Subject:
    """What the fit produced, ready to evaluate and time: ``call(prep(x))`` runs it."""

    call: Callable
    modules: list  # put in eval mode around an evaluation
    prep: Callable = lambda t: t
    runtime: dict = field(default_factory=dict)
    cold_start: dict = field(default_factory=dict)
    facts: Callable[[], dict] = dict


class Job:
    """One mode-fit case in this process: device, threads, determinism, the data split."""

    framework = "torch"

    def __init__(self, case, seed: int, data=None):
        reason = registry.variant_support("torch", case.variant, case.device, "fit")
        if reason:
            raise Skip(reason)
        self.case, self.seed = case, seed
        self.data_cfg = data if data is not None else case.data
        self.device = _device(case)
        torch.set_num_threads(case.threads or len(os.sched_getaffinity(0)))
        self.math_modes = _fp32_math()
        self.determinism = self._deterministic()
        self.sync = _sync(self.device)
        t0 = time.perf_counter()
        self._load_data()
        self.data_s = time.perf_counter() - t0
        self.loss_name, self.loss_fn, _ = torch_models.loss_for(case.model)
        self.binary = self.loss_name == "binary cross-entropy"
        self._check_classes()
        self.runtime = {
            "framework": "torch",
            "versions": _versions(),
            "device_name": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else cpu_model(),
            "device_type": self.device.type,
            "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(),
            "math_modes": self.math_modes,
            "dtype": "float32",
            "input_shape": [case.batch_size, *case.input_shape],
            "data_layout": "NCHW" if len(case.input_shape) == 3 else "NC",
            "loss": self.loss_name,
            "optimizer": "SGD" if case.optimizer == "sgd" else "Adam",
            "learning_rate": 1e-3,
            "determinism": self.determinism,
        }
        if self.device.type == "cuda":
            self.runtime["device_uuid"] = str(torch.cuda.get_device_properties(self.device).uuid)

    def for_data(self, data) -> Job:
        """The same case and seed on another data set (the transfer pair's data set A)."""
        return Job(dataclasses.replace(self.case, variant="fp32", data=data), self.seed, data)

    # ------------------------------------------------------------------ set-up

    def _deterministic(self) -> dict:
        torch.manual_seed(self.seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        if self.device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        return {
            "seed": self.seed,
            "torch.manual_seed": self.seed,
            "use_deterministic_algorithms": "True (warn_only: an op without a deterministic kernel warns)",
            "cudnn.deterministic": True,
            "cudnn.benchmark": False,
            "loader_shuffle_seed": self.seed,
            "split_seed": self.case.fit.split_seed,
            "note": "the same seed gives the same fit on the same machine and thread count; "
            "float reductions may differ across thread counts and machines",
        }

    def _load_data(self) -> None:
        cfg, fit = self.data_cfg, self.case.fit
        bs = self.case.batch_size
        if cfg.source == "sklearn":
            arr = tabular.split(cfg.name, fit.val_fraction, fit.split_seed)
            self.batches = tabular.ArrayBatches(arr.x_train, arr.y_train, bs, self.seed)
            self.steps_per_epoch = self.batches.steps_per_epoch
            self.class_names = arr.classes
            self.x_val = torch.from_numpy(arr.x_val)
            self.y_val = torch.from_numpy(arr.y_val)
            self.data_info = {**cfg.identity(), **arr.info, "loader": self.batches.describe()}

            def next_batch():
                x, y = self.batches.next()
                return torch.from_numpy(x), torch.from_numpy(y)

            self.next_batch = next_batch
            return
        from benchbench.pipelines import presets
        from benchbench.pipelines.generate import list_images
        from benchbench.pipelines.torch_pipeline import ImageFolderSet, TorchPipeline

        split, gen_s = splits.image_split(cfg, fit.val_fraction, fit.split_seed)
        self.pipe = TorchPipeline(cfg, split.train, bs, self.case.input_shape, self.device.type, self.seed)
        self.steps_per_epoch = len(self.pipe.dataset) // bs
        self.class_names = list(self.pipe.classes)
        self.next_batch = self.pipe.next
        paths, labels, val_classes = list_images(split.val)
        if val_classes != self.class_names:
            raise ValueError(f"validation classes {val_classes} differ from training classes {self.class_names}")
        hw = tuple(int(v) for v in self.case.input_shape[-2:])
        val = ImageFolderSet(paths, labels, presets.torch_transform("none", hw), cfg.on_corrupt)
        items = [val[i] for i in range(len(val))]
        self.x_val = torch.stack([x for x, _, _ in items])
        self.y_val = torch.tensor([y for _, y, _ in items], dtype=torch.int64)
        self.data_info = {
            **cfg.identity(),
            **split.info,
            "generate_s": gen_s,
            "loader": self.pipe.describe(),
            "validation": "decoded once, resized to the input size, scaled to [0, 1] (preset none), in file order",
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

    def new_model(self) -> nn.Module:
        torch.manual_seed(self.seed)  # the same seeded initial weights for every fit of this seed
        return build(self.case.model, self.case.input_shape, self.classes).to(self.device)

    def save(self, model: nn.Module, folder: str) -> str:
        torch.save(model.state_dict(), os.path.join(folder, WEIGHTS))
        return WEIGHTS

    def load(self, folder: str) -> nn.Module:
        model = self.new_model()
        state = torch.load(os.path.join(folder, WEIGHTS), map_location=self.device, weights_only=True)
        model.load_state_dict(state)
        return model

    def from_backbone(self, backbone: nn.Module) -> tuple[nn.Module, dict]:
        """A fresh model (this seed's initial weights) with every tensor of ``backbone``
        except the classifier head's: the head starts anew for this data set."""
        model = self.new_model()
        head = head_name(model)
        own = model.state_dict()
        keep = {
            k: v
            for k, v in backbone.state_dict().items()
            if k in own and own[k].shape == v.shape and not (head and k.startswith(head + "."))
        }
        model.load_state_dict(keep, strict=False)
        return model, {
            "head": head,
            "head_init": "fresh (this seed's initial weights): the head is the new task's",
            "tensors_from_backbone": len(keep),
            "tensors": len(own),
        }

    def trainable(self, model: nn.Module, variant: str) -> tuple[Callable, list, dict]:
        """(forward, parameters that train, runtime facts) for ``variant``: every parameter
        (fp32, finetune) or the head alone (frozen_backbone), the variant module's own choice
        (:func:`benchbench.variants.torch_variants.apply`)."""
        from benchbench.variants import torch_variants

        x = self.val_batch()
        train = dataclasses.replace(self.case, mode="train", variant=variant)
        v = torch_variants.apply(train, model, x, self.device, self.sync)
        return v.call, v.params(), dict(v.runtime)

    # ------------------------------------------------------------------ data on the device

    def val_batch(self) -> torch.Tensor:
        """The first ``batch_size`` validation samples (repeated to fill a batch)."""
        bs = self.case.batch_size
        idx = torch.arange(bs) % len(self.x_val)
        return self.x_val[idx].to(self.device)

    def targets(self, y: torch.Tensor) -> torch.Tensor:
        return (y.float().view(-1, 1) if self.binary else y.long()).to(self.device)

    def predict(self, out: torch.Tensor) -> torch.Tensor:
        return (out.reshape(-1) > 0.5).long() if self.binary else out.reshape(len(out), -1).argmax(1)

    def outputs(self, call: Callable, modules: list, prep: Callable = lambda t: t) -> np.ndarray:
        """``call`` over the validation part in eval mode without gradients, in full batches
        of the case's size (the last one padded, its padding dropped): (n, outputs) float32."""
        bs, n = self.case.batch_size, len(self.x_val)
        was = [m.training for m in modules]
        for m in modules:
            m.eval()
        outs = []
        try:
            with torch.inference_mode():
                for i in range(0, n, bs):
                    idx = torch.arange(i, i + bs) % n
                    out = call(prep(self.x_val[idx].to(self.device)))
                    outs.append(out.float().reshape(bs, -1).cpu()[: min(bs, n - i)])
        finally:
            for m, w in zip(modules, was):
                m.train(w)
        return torch.cat(outs).numpy()

    def labels_of(self, outputs: np.ndarray) -> np.ndarray:
        return self.predict(torch.from_numpy(outputs)).numpy()

    def val_labels(self) -> np.ndarray:
        return self.y_val.numpy()

    # ------------------------------------------------------------------ training

    def trainer(self, model: nn.Module, call: Callable, params: list) -> Trainer:
        return Trainer(self, model, call, params)

    # ------------------------------------------------------------------ after training

    def subject(self, model: nn.Module) -> Subject:
        """The trained model itself (fp32, the transfer pair) as what is evaluated and timed."""
        return Subject(call=model, modules=[model], facts=lambda: self.model_facts(model))

    def variant(self, model: nn.Module) -> Subject:
        """The case's variant applied to the trained fp32 ``model`` (changed in place by the
        pruning variants: evaluate fp32 first)."""
        from benchbench.variants import torch_variants

        base, _ = registry.split_variant(self.case.variant)
        x = self.val_batch()
        if base == "int8_static":
            return self._int8_static(model, x)
        inference = dataclasses.replace(self.case, mode="inference")
        v = torch_variants.apply(inference, model, x, self.device, self.sync)
        modules = [v.model] + ([v.runnable] if v.runnable is not None else [])

        def facts() -> dict:
            return {**self.model_facts(v.model), **v.model_facts()}

        return Subject(call=v.call, modules=modules, prep=v.prep, runtime=dict(v.runtime),
                       cold_start=dict(v.cold_start), facts=facts)  # fmt: skip

    def _int8_static(self, model: nn.Module, x: torch.Tensor) -> Subject:
        """Static int8 as the variant makes it (FX graph mode, x86 qconfig), its observers fed
        batches of the training part, never the validation part."""
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

        t0 = time.perf_counter()
        torch.backends.quantized.engine = "x86"
        model.eval()
        prepared = prepare_fx(copy.deepcopy(model), get_default_qconfig_mapping("x86"), (x,))
        with torch.no_grad():
            for _ in range(CALIBRATION_BATCHES):
                xb, _ = self.next_batch()
                prepared(xb.to(self.device))
        q = convert_fx(prepared)
        transform_s = time.perf_counter() - t0
        runtime = {
            "quantization": {
                "flow": "FX graph mode (prepare_fx/convert_fx)",
                "qconfig": "x86",
                "engine": "x86",
                "calibration": f"{CALIBRATION_BATCHES} batches of {self.case.batch_size} from the training part "
                "(its loader and augmentation); never the validation part",
            }
        }

        def facts() -> dict:
            out = self.model_facts(model)
            out.update(serialized_bytes=saved_bytes(q), params_note="counted on the float model before quantization",
                       serialized_format="torch.save(state_dict) of the quantized model (int8 weights, packed)")  # fmt: skip
            return out

        return Subject(call=q, modules=[q], runtime=runtime, cold_start={"transform_s": transform_s}, facts=facts)

    def model_facts(self, model: nn.Module) -> dict:
        return {
            "params": sum(p.numel() for p in model.parameters()),
            "nonzero_params": int(sum(int(torch.count_nonzero(p.detach())) for p in model.parameters())),
            "serialized_bytes": saved_bytes(model),
            "serialized_format": "torch.save(state_dict)",
            "classes": self.classes,
        }

    def inference_step(self, subject: Subject) -> Callable[[], None]:
        x = subject.prep(self.val_batch())
        for m in subject.modules:
            m.eval()

        def step():
            subject.call(x)
            self.sync()

        return step

    def context(self):
        return torch.inference_mode()

    def device_memory(self) -> dict:
        if self.device.type != "cuda":
            return {"device_peak_allocated_bytes": None, "device_peak_reserved_bytes": None,
                    "device_memory_reason": f"{self.device.type} case: no device allocator (host RSS covers it)"}  # fmt: skip
        return {
            "device_peak_allocated_bytes": torch.cuda.max_memory_allocated(self.device),
            "device_peak_reserved_bytes": torch.cuda.max_memory_reserved(self.device),
            "device_memory_source": "torch.cuda.max_memory_allocated/reserved over the fit and the timed window",
        }


class Trainer:
    """:class:`benchbench.measure.fit.Trainer` for a torch model: one step on a batch of the
    training loader; an evaluation over the validation part."""

    def __init__(self, job: Job, model: nn.Module, call: Callable, params: list):
        self.job, self.model, self.call = job, model, call
        self.steps_per_epoch = job.steps_per_epoch
        if job.case.optimizer == "sgd":
            self.opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
        else:
            self.opt = torch.optim.Adam(params, lr=1e-3)
        self._train_mode()

    def _train_mode(self) -> None:
        self.model.train()
        for m in self.model.modules():  # a frozen batch norm keeps its statistics (as Keras's does)
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(p.requires_grad for p in m.parameters()):
                m.eval()

    def train_step(self) -> StepResult:
        job = self.job
        xb, yb = job.next_batch()
        x, y = xb.to(job.device), job.targets(yb)
        self.opt.zero_grad(set_to_none=True)
        out = self.call(x)
        loss = job.loss_fn(out.float(), y)
        loss.backward()
        self.opt.step()
        correct = int((job.predict(out.detach()).cpu() == yb).sum())
        value = float(loss.detach())
        job.sync()
        return StepResult(loss=value, correct=correct, samples=len(yb))

    def evaluate(self) -> Evaluation:
        job = self.job
        out = torch.from_numpy(job.outputs(self.call, [self.model]))
        self._train_mode()
        with torch.no_grad():
            loss = float(job.loss_fn(out, job.targets(job.y_val).cpu()))
        return Evaluation(y_true=job.val_labels(), y_pred=job.predict(out).numpy(), loss=loss)
