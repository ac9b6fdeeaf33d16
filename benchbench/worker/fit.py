"""Mode ``fit`` in a worker (issue 19): one case, one seed, one record.

What a variant means here (:mod:`benchbench.fit_spec`):

- ``fp32``: train the model on the case's data set to its target (or for ``epochs``),
  evaluating the validation part after each epoch (:func:`benchbench.measure.fit.run`);
  the trained weights go to the cache, keyed by everything that defines them.
- ``frozen_backbone`` / ``finetune``: the model trained on ``fit: backbone`` (data set A;
  from the cache, trained first when missing) gives every tensor but the head; then the
  same fit on the case's data set (B), training the head alone or every layer.
- any other variant: the fp32 model trained on the case's data set (from the cache, else
  trained here and cached), the variant applied to it, and its accuracy, precision, recall
  and macro-F1 on the validation part against fp32's, with the output agreement
  (:mod:`benchbench.variants.fidelity`) on the same inputs.

Every record then times the inference of what the fit produced (the trained model, or
the variant) on a validation batch with the usual timing loop: ``stats`` is that speed,
so variants compare on one axis; the training throughput is in ``quality.train``. The
energy of the fit (per epoch, to target) is read from the same telemetry sampler as the
record's ``energy`` (the inference window).

It imports no other worker module: :func:`benchbench.worker.core.run` passes what it needs.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable

from benchbench import fit_spec
from benchbench.case import Case
from benchbench.data_spec import DEFAULT_CACHE
from benchbench.measure import fit as fitting
from benchbench.registry import split_variant
from benchbench.results import Record, utc_now

MODULES = {"torch": "benchbench.backends.torch_fit", "tensorflow": "benchbench.backends.tf_fit"}
CACHE_ENV = "BENCHBENCH_FIT_CACHE"
META = "fit.json"
CACHE_FORMAT = 1


def cache_root(case: Case, data) -> str:
    """Where trained models are kept: $BENCHBENCH_FIT_CACHE, else ``fits/`` in the data cache."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return os.path.abspath(env)
    return os.path.join(data.cache_dir or os.path.abspath(DEFAULT_CACHE), "fits")


def ingredients(case: Case, data, seed: int, job) -> dict:
    """Everything that defines a trained fp32 model: the key of its cache entry. The
    variant, how long it is timed and the number of seeds are not among them."""
    from benchbench import __version__

    versions = job.runtime.get("versions") or {}
    return {
        "format": CACHE_FORMAT,
        "benchbench": __version__,  # how it was trained (the fit loop, the pipelines) is benchbench's
        "framework": case.framework,
        "framework_version": versions.get("torch") or versions.get("tensorflow"),
        "model": case.model,
        "input_shape": list(case.input_shape),
        "batch_size": case.batch_size,
        "optimizer": case.optimizer,
        "device": case.device.split(":")[0],
        "data": data.identity(),
        "epochs": case.fit.epochs,
        "target": case.fit.target,
        "val_fraction": case.fit.val_fraction,
        "split_seed": case.fit.split_seed,
        "seed": seed,
    }


def _energy_between(tel) -> Callable[[float, float], dict]:
    """fn(t0, t1) → the primary domain's energy over [t0, t1] from the sampler that ran over
    the fit ({energy_j, source[, reason]}); None with the reason where there is none."""
    from benchbench.measure import telemetry as tm

    def unavailable(reason: str) -> Callable[[float, float], dict]:
        return lambda t0, t1: {"energy_j": None, "source": tm.UNAVAILABLE, "reason": reason}

    try:
        sampler = getattr(tel, "sampler", None)
        if sampler is None or not sampler.times:
            return unavailable("telemetry off (telemetry.hz: 0)")
        readings = [tm.Reading.of(s, sampler.times, rows) for s, rows in zip(tel.sources, sampler.rows)]
        mine = [r for r in readings if r.source.domain == tel.primary]
        if not mine:  # the reason the source could not be opened (e.g. no RAPL on a VM)
            names = tm.DOMAIN_SOURCE.get(tel.primary) or ()
            names = (names,) if isinstance(names, str) else tuple(names)
            why = [v for k, v in tel.missing.items() if any(k == n or k.startswith(f"{n}[") for n in names)]
            return unavailable(why[0] if why else f"no energy source for the {tel.primary} domain")

        def between(t0: float, t1: float) -> dict:
            entries = [tm.domain_energy(r, t0, t1, 0) for r in mine]
            if any(e.get("energy_j") is None for e in entries):
                return {"energy_j": None, "source": tm.UNAVAILABLE, "reason": entries[0].get("reason")}
            return {"energy_j": sum(e["energy_j"] for e in entries), "source": entries[0]["source"]}

        return between
    except Exception as e:  # telemetry never fails the case
        traceback.print_exc()
        return unavailable(f"telemetry failed: {type(e).__name__}: {e}")


def _train(job, model, tel, variant: str, variant_runtime: dict | None = None) -> dict:
    """Fit ``model`` (its trainable part for ``variant``: fp32, frozen_backbone, finetune) on
    the job's data set under the telemetry sampler: the fit's ``quality`` dict (curve,
    to-target figures, energy)."""
    call, params, runtime = job.trainable(model, variant)
    if variant_runtime is not None:
        variant_runtime.update(runtime)
    trainer = job.trainer(model, call, params)
    cfg = job.case.fit

    def progress(row: dict) -> None:
        print(f"epoch {row['epoch']}: train loss {row['train_loss']:.4g}, val accuracy "
              f"{row['val_accuracy']:.4f}, val F1 {row['val_f1']:.4f}, {row['elapsed_s']:.2f} s", flush=True)  # fmt: skip

    with tel.window() as clock:
        result = fitting.run(trainer, epochs=cfg.epochs, classes=job.classes, batch_size=job.case.batch_size,
                             target=cfg.target, clock=clock, on_epoch=progress)  # fmt: skip
    energy = fitting.energy_per_epoch(result, _energy_between(tel))
    out = result.to_dict(energy)
    out["trainable_params"] = (
        sum(int(p.numel()) for p in params) if job.framework == "torch" else runtime.get("trained")
    )
    return out


def trained_fp32(job, tel, *, owner: bool) -> tuple[object, dict]:
    """The fp32 model trained on the job's data set for its seed, and what says so: from the
    cache, or trained now (and cached). ``owner``: this case is the fp32 fit itself (its
    fit is always run, then cached over any older entry with the same key)."""
    case = job.case
    key_parts = ingredients(case, job.data_cfg, job.seed, job)
    key = fitting.cache_key(key_parts)
    root = cache_root(case, job.data_cfg)
    folder = os.path.join(root, key)
    meta_path = os.path.join(folder, META)
    if not owner and os.path.isfile(meta_path):
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
        model = job.load(folder)
        return model, {"key": key, "cache": "hit", "path": folder, "fit": meta.get("fit"), "ingredients": key_parts}
    model = job.new_model()
    quality = _train(job, model, tel, "fp32")
    os.makedirs(root, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=key + ".tmp-", dir=root)
    try:
        weights = job.save(model, tmp)
        meta = {"key": key, "ingredients": key_parts, "weights": weights, "saved_at": utc_now(),
                "fit": {k: v for k, v in quality.items() if k != "curve"}, "curve": quality.get("curve")}  # fmt: skip
        with open(os.path.join(tmp, META), "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1, sort_keys=True, default=str)
        if os.path.isdir(folder):
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.rename(tmp, folder)
        except OSError:  # another worker wrote it first: theirs is as good
            if not os.path.isfile(meta_path):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    info = {"key": key, "cache": "stored" if owner else "miss: trained here", "path": folder, "ingredients": key_parts}
    info["fit"] = {k: v for k, v in quality.items() if k != "curve"}
    return model, {**info, "quality": quality}


def _trained_summary(info: dict) -> dict:
    fit = info.get("fit") or {}
    return {
        "key": info["key"],
        "cache": info["cache"],
        "path": info["path"],
        "reached": fit.get("reached"),
        "reached_epoch": fit.get("reached_epoch"),
        "epochs_run": fit.get("epochs_run"),
        "time_to_target_s": fit.get("time_to_target_s"),
        "final": fit.get("final"),
    }


def _evaluate(job, call, modules, prep=None) -> tuple:
    """(outputs on the validation part, metrics)."""
    out = job.outputs(call, modules, prep) if prep is not None else job.outputs(call, modules)
    metrics = fitting.classification_metrics(job.val_labels(), job.labels_of(out), job.classes)
    return out, metrics


def measure_fit(case: Case, *, host_memory: Callable[[], dict], one_line: Callable[[BaseException], str]) -> Record:
    """One seed of a mode-fit case (the seed: ``settings.seed + process - 1``) → its record."""
    from benchbench.framework.base import Skip
    from benchbench.measure.stats import summarize
    from benchbench.measure.telemetry import Telemetry
    from benchbench.measure.timing import measure
    from benchbench.variants import fidelity

    rec = Record(case=case.to_dict(), status="failed", started_at=utc_now())
    seed = fit_spec.fit_seed(case.settings)
    base, _ = split_variant(case.variant)
    try:
        t0 = time.perf_counter()
        job = importlib.import_module(MODULES[case.framework]).Job(case, seed)
        rec.runtime = dict(job.runtime)
        rec.cold_start = {"build_s": None, "compile_s": None, "data_s": job.data_s,
                          "setup_s": time.perf_counter() - t0}  # fmt: skip
        quality: dict = {"kind": None, "variant": case.variant, "seed": seed, "data": job.data_info,
                         "target": case.fit.target, "epochs_max": case.fit.epochs}  # fmt: skip
        with Telemetry.for_case(case, job.runtime) as tel:
            if base == "fp32":
                model, info = trained_fp32(job, tel, owner=True)
                quality.update(kind="fit", **info.pop("quality"), trained=_trained_summary(info))
                subject = job.subject(model)
                rec.fidelity = fidelity.identical(seed, "fp32 is the reference")
            elif base in fit_spec.TRANSFER:
                a_job = job.for_data(case.fit.backbone)
                backbone, info = trained_fp32(a_job, tel, owner=False)
                model, loaded = job.from_backbone(backbone)
                variant_runtime: dict = {}
                fit_quality = _train(job, model, tel, case.variant, variant_runtime)
                rec.runtime.update(variant_runtime)
                backbone_info = {**_trained_summary(info), "data": a_job.data_info, **loaded}
                if "quality" in info:  # trained here: its curve is this record's to keep
                    backbone_info["curve"] = info["quality"].get("curve")
                quality.update(kind="transfer", **fit_quality, backbone=backbone_info)
                subject = job.subject(model)
                rec.fidelity = fidelity.unavailable(
                    "transfer learning: the model is trained on another data set, not a conversion of fp32"
                )
            else:
                model, info = trained_fp32(job, tel, owner=False)
                ref_out, ref = _evaluate(job, model, [model])
                subject = job.variant(model)
                out, metrics = _evaluate(job, subject.call, subject.modules, subject.prep)
                rec.runtime.update(subject.runtime)
                rec.cold_start.update(subject.cold_start)
                quality.update(kind="variant", metrics=metrics, fp32=ref, delta=fitting.quality_delta(metrics, ref),
                               trained=_trained_summary(info),
                               metrics_note="accuracy; precision, recall and F1 macro-averaged over the classes "
                               "(scikit-learn), on the validation part; delta = variant − the trained fp32 model")  # fmt: skip
                if "quality" in info:
                    quality["trained"]["curve"] = info["quality"].get("curve")
                rec.fidelity = fidelity.compare(
                    ref_out, out, seed=seed,
                    method=f"the trained fp32 model vs the variant on the validation part ({len(out)} samples, "
                    f"{case.framework}), eval mode; top-1 = argmax agreement; single-output sigmoid: output > 0.5",
                )  # fmt: skip
            if quality["kind"] in ("fit", "transfer"):
                final = quality.get("final") or {}
                quality["metrics"] = {k: final.get(f"val_{k}") for k in fitting.METRIC_NAMES}
            step = job.inference_step(subject)
            with job.context():
                timing = measure(step, case.settings, clock=tel.edge_clock(), timed_window=tel.sampling)
            rec.telemetry, rec.energy = tel.report(case.batch_size * timing.iterations, timing.timed_wall_s)
        rec.memory = {**host_memory(), **job.device_memory()}
        rec.samples = timing.samples
        rec.timing = timing.to_dict()
        rec.cold_start["first_iter_s"] = timing.first_iter_s
        rec.stats = summarize(timing.samples, case.batch_size).to_dict()
        quality["inference"] = {
            "throughput": rec.stats.get("throughput"),
            "median_s": rec.stats.get("median"),
            "batch_size": case.batch_size,
            "note": "what the fit produced (or the variant), inference on a validation batch: the record's stats",
        }
        rec.model = subject.facts() if case.settings.process == 1 else {}
        rec.quality = quality
        rec.status = "ok"
    except Skip as e:
        rec.status, rec.reason = "skipped", str(e)
    except fitting.Diverged as e:
        rec.reason = str(e)
        traceback.print_exc()
    except MemoryError as e:
        rec.reason = f"out of memory: {one_line(e)}"
        traceback.print_exc()
    except Exception as e:
        reason = one_line(e)
        rec.reason = f"out of memory: {reason}" if "out of memory" in reason.lower() else reason
        traceback.print_exc()
    with contextlib.suppress(Exception):
        rec.runtime.setdefault("fit_seed", seed)
    rec.ended_at = utc_now()
    return rec
