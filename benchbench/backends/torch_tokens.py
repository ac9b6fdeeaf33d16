"""PyTorch token models: the transformer presets and a user's ``transformers`` model, fed
seeded token ids. Imported only in worker processes; :class:`benchbench.backends.torch.TorchBackend`
hands a token case over to :func:`prepare` with its device, sync and base runtime.

* inference: one forward over ``batch × seq_len`` tokens (encoders: hidden states; decoders:
  logits at every position);
* train: forward, loss, backward, optimizer step (decoders: causal-LM loss; encoders: masked-LM
  loss on 15% of the positions, seeded);
* generate (decoders): greedy generation with the KV cache, ``batch`` sequences of
  ``prompt_len`` prompt tokens and ``new_tokens`` new ones, timed by
  :mod:`benchbench.measure.generate` (TTFT apart from every single decode token).

Measured once per case (process 1), outside the timed window: FLOPs on the fp32 model before
the variant (``FlopCounterMode``, attention through the math backend so that it is counted),
the fp32 reference and the variant's fidelity, and which attention backend ran (``runtime.sdpa``).
"""

from __future__ import annotations

import contextlib
import inspect
import time

import torch

from benchbench import registry
from benchbench.case import Case
from benchbench.framework.base import Prepared, Skip
from benchbench.measure import generate as gen_loop
from benchbench.models import transformers_torch
from benchbench.variants import fidelity, torch_llm

FIDELITY_SEQUENCES = 4  # sequences the fidelity check runs (at most the case's batch)
FIDELITY_TOKENS = 32  # generate: greedy tokens compared with fp32's (at most new_tokens)
FIDELITY_POSITIONS = 16  # inference/train: the last positions whose outputs are compared
FLOPS_NOTE = (
    "FLOPs = 2 × multiply-accumulates, counted by torch.utils.flop_counter.FlopCounterMode on the fp32 "
    "model before the variant (matmuls and attention: the math SDPA backend while counting)"
)
KV_NOTE = (
    "KV-cache bytes: the key and value tensors the cache holds after a run (measured); read per decode "
    "step: the bytes per cached position × the positions a step attends over, on average over the run "
    "(a static cache is attended over its whole length, masked)"
)
WEIGHTS_NOTE = (
    "weights_bytes: every parameter as stored (a torchao tensor: its packed data, scales and zero points); "
    "read per decode step: all of them except embedding tables that are only gathered from (token and "
    "position embeddings not shared with the LM head: a step reads one row per sequence)"
)


def _forward_kw(model, name: str) -> bool:
    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def _logits(out) -> torch.Tensor:
    return out.logits if hasattr(out, "logits") else out[0]


def _first(out) -> torch.Tensor:
    """The first output of a forward: logits (LM heads) or the last hidden states."""
    return out[0] if isinstance(out, (tuple, list)) else next(iter(out.values()))


class Greedy:
    """Greedy generation against a KV cache, as :class:`benchbench.measure.generate.Steps` wants it:
    ``reset`` (a fresh cache), ``prefill`` (the prompt; returns the first tokens, (batch, 1)) and
    ``decode`` (the previous tokens in; the next ones out), each ending with ``sync()``."""

    def __init__(self, model, ids: torch.Tensor, new_tokens: int, sync, *, static: bool = False, decode_call=None):
        self.model, self.ids, self.new_tokens, self.sync = model, ids, new_tokens, sync
        self.decode_call = decode_call if decode_call is not None else model
        self.static = static
        self.cache_kw = "cache" if _forward_kw(model, "cache") else "past_key_values"  # transformers 5 renamed it
        self.keep = {"logits_to_keep": 1} if _forward_kw(model, "logits_to_keep") else {}
        self.cache = None

    def reset(self) -> None:
        from transformers import DynamicCache, StaticCache

        if not self.static:
            self.cache = DynamicCache(config=self.model.config)
        elif self.cache is None:  # one preallocated cache, emptied between runs
            max_len = self.ids.shape[1] + self.new_tokens
            self.cache = StaticCache(config=self.model.config, max_cache_len=max_len)
        else:
            self.cache.reset()

    def prefill(self) -> torch.Tensor:
        out = self.model(input_ids=self.ids, use_cache=True, **{self.cache_kw: self.cache}, **self.keep)
        tokens = _logits(out)[:, -1:].argmax(-1)
        self.sync(tokens)
        return tokens

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        out = self.decode_call(input_ids=tokens, use_cache=True, **{self.cache_kw: self.cache})
        tokens = _logits(out)[:, -1:].argmax(-1)
        self.sync(tokens)
        return tokens

    def forced_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher forcing through the timed path (prefill, then the decode call against the
        cache): the logits that choose each of ``tokens`` (batch, n) when the tokens before it
        are fed back — (batch, n, vocab), float32, on the CPU."""
        self.reset()
        out = self.model(input_ids=self.ids, use_cache=True, **{self.cache_kw: self.cache}, **self.keep)
        logits = [_logits(out)[:, -1].float().cpu()]
        for i in range(tokens.shape[1] - 1):
            out = self.decode_call(input_ids=tokens[:, i : i + 1], use_cache=True, **{self.cache_kw: self.cache})
            logits.append(_logits(out)[:, -1].float().cpu())
        return torch.stack(logits, dim=1)

    def steps(self, facts=None) -> gen_loop.Steps:
        return gen_loop.Steps(self.prefill, self.decode, self.new_tokens, reset=self.reset, facts=facts)

    def run(self, tokens: int | None = None) -> torch.Tensor:
        """One untimed generation: the (batch, tokens) generated token ids."""
        self.reset()
        out = [self.prefill()]
        for _ in range((tokens or self.new_tokens) - 1):
            out.append(self.decode(out[-1]))
        return torch.cat(out, dim=1)

    def kv_facts(self) -> dict:
        """The cache after the last run: its bytes, the bytes per cached position, and what a
        decode step reads of it on average."""
        layers = getattr(self.cache, "layers", None)
        if not layers:
            return {"kv_cache_bytes": None, "kv_cache_reason": "the model's cache has no layers to measure"}
        total = sum(torch_llm.tensor_bytes(x) for layer in layers for x in (layer.keys, layer.values))
        length = int(layers[0].keys.shape[-2])
        per_position = total / length
        prompt = self.ids.shape[1]
        # decode step i (0-based) attends over prompt + i + 1 positions; a static cache over all of them
        attended = length if self.static else prompt + 1 + (self.new_tokens - 2) / 2
        return {
            "kv_cache_bytes": total,
            "kv_cache_positions": length,
            "kv_cache_bytes_per_position": per_position,
            "kv_cache": "static (preallocated, compiled decode)" if self.static else "dynamic (grows per token)",
            "kv_read_per_step_bytes": per_position * attended,
            "kv_note": KV_NOTE,
        }


def weight_bytes(model: torch.nn.Module) -> dict:
    """Bytes of the weights as stored, and what a decode step reads of them."""
    params = list(model.parameters())
    total = sum(torch_llm.tensor_bytes(p) for p in params)
    try:
        head = model.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        head = None
    head_w = getattr(head, "weight", None)
    gathered = {id(m.weight): m.weight for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    gathered = {k: w for k, w in gathered.items() if w is not head_w}
    skipped = sum(torch_llm.tensor_bytes(w) for w in gathered.values())
    return {"weights_bytes": total, "weights_read_per_step_bytes": total - skipped, "weights_note": WEIGHTS_NOTE}


def _count_flops(fn) -> int:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with sdpa_kernel([SDPBackend.MATH]), counter:
        fn()
    return int(counter.get_total_flops())


def _mlm_labels(ids: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    mask = torch.rand(ids.shape, generator=gen) < transformers_torch.MLM_FRACTION
    return torch.where(mask.to(ids.device), ids, torch.full_like(ids, -100))


def _kind(case: Case) -> str:
    info = registry.TRANSFORMER_MODELS.get(case.model)
    if info is not None:
        return info.kind
    if registry.model_kind(case.model) != "user":
        raise Skip(f"{case.model} is not a token model: generate mode needs a decoder (a causal LM)")
    return "decoder" if case.mode == "generate" else "user"


def prepare(case: Case, device: torch.device, sync, runtime: dict, serialized_bytes) -> Prepared:
    """The token case ready to time (see the module docstring); ``runtime`` holds what the torch
    backend already knows (versions, device, threads, math modes); ``serialized_bytes`` is its
    ``torch.save`` size counter."""
    kind = _kind(case)
    if case.mode not in ("inference", "train", "generate"):
        raise Skip(f"mode {case.mode} is not for token models (inference, train, generate)")
    if case.mode == "generate" and kind != "decoder":
        raise Skip(f"{case.model} is an encoder: generate mode needs a decoder (a causal LM)")
    if case.devices > 1:
        raise Skip(f"devices: {case.devices} is not implemented for token models yet")
    seed = case.settings.seed
    once = case.settings.process == 1  # FLOPs, fidelity, the attention backend: once per case
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)

    t0 = time.perf_counter()
    model = transformers_torch.build(case.model, kind, case.mode, device).eval()
    sync(model)
    build_s = time.perf_counter() - t0
    vocab = int(model.config.vocab_size)
    length = case.prompt_len if case.mode == "generate" else case.seq_len
    ids = torch.randint(0, vocab, (case.batch_size, length), generator=gen).to(device)
    params = transformers_torch.param_count(model)
    runtime.update({
        "dtype": "float32",
        "input_shape": [case.batch_size, length],
        "data_layout": "token ids (batch, tokens)",
        "token_model": {"kind": kind, "class": type(model).__name__, "vocab": vocab,
                        "attn_implementation": getattr(model.config, "_attn_implementation", None)},
    })  # fmt: skip
    facts: dict = {"params": params}

    # the fp32 reference and FLOPs, before the variant changes the model in place
    fid_gen = torch.Generator().manual_seed(seed + fidelity.SEED_OFFSET)
    n_fid = min(case.batch_size, FIDELITY_SEQUENCES)
    fid_ids = torch.randint(0, vocab, (n_fid, length), generator=fid_gen).to(device)
    reference = None
    base, _ = registry.split_variant(case.variant)
    with torch.inference_mode():
        if once and base != "fp32":
            reference = _reference(case, model, fid_ids, sync)
    if once:
        facts.update(_flops(case, model, ids, sync))
    same = fidelity.identical(seed, "the fp32 model is the reference")

    v = torch_llm.apply(case, model, device)
    model = v.model
    runtime.update(v.runtime)
    facts.update(v.facts)
    cold_start = {"build_s": build_s, "compile_s": None, **v.cold_start}

    if case.mode == "generate":
        return _generate(case, model, ids, fid_ids, v, sync, runtime, cold_start, facts, reference, once,
                         device, serialized_bytes, same)  # fmt: skip
    return _forward(case, model, ids, fid_ids, gen, v, sync, runtime, cold_start, facts, reference, once, kind,
                    device, serialized_bytes, same)  # fmt: skip


def _reference(case: Case, model, fid_ids: torch.Tensor, sync) -> dict:
    """fp32 outputs on the fidelity batch: generate — greedy tokens and the logits at the
    positions that predict them (teacher forced); else the last positions' first outputs."""
    if case.mode == "generate":
        n = min(case.new_tokens, FIDELITY_TOKENS)
        greedy = Greedy(model, fid_ids, n, sync)
        tokens = greedy.run()
        return {"tokens": tokens, "logits": greedy.forced_logits(tokens)}
    out = _first(model(input_ids=fid_ids))[:, -FIDELITY_POSITIONS:].float().cpu()
    return {"outputs": out}


def _flops(case: Case, model, ids: torch.Tensor, sync) -> dict:
    try:
        if case.mode == "generate":
            g = Greedy(model, ids, 2, sync)
            g.reset()
            first: dict = {}
            with torch.inference_mode():
                prefill = _count_flops(lambda: first.update(tokens=g.prefill()))
                decode = _count_flops(lambda: g.decode(first["tokens"]))  # the cache holds the prompt
            return {
                "prefill_flops": prefill,
                "decode_step_flops": decode,
                "flops_note": FLOPS_NOTE + "; prefill: the whole batch's prompt (LM head on the last position, "
                "as the timed prefill); decode: one step of the whole batch at the first decode position",
            }
        one = ids[:1]
        with torch.inference_mode():
            out = {
                "flops_per_sample": _count_flops(lambda: model(input_ids=one)),
                "flops_note": FLOPS_NOTE + " (one sequence)",
            }
        if case.mode == "train":
            params = [p for p in model.parameters() if p.requires_grad]
            out["train_flops_per_sample"] = _count_flops(
                lambda: torch.autograd.grad(model(input_ids=one, labels=one).loss, params)
            )
            out["train_flops_note"] = FLOPS_NOTE + "; forward + backward of one sequence (causal-LM labels)"
        return out
    except Exception as e:  # an op FlopCounterMode cannot trace
        return {"flops_per_sample": None, "flops_note": f"unavailable: {type(e).__name__}: {e}"[:300]}


def _device_memory(device: torch.device):
    def reset_peak():
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

    def read() -> dict:
        if device.type != "cuda":
            return {
                "device_peak_allocated_bytes": None,
                "device_peak_reserved_bytes": None,
                "device_memory_reason": f"{device.type} case: no device allocator (host RSS covers it)",
            }
        return {
            "device_peak_allocated_bytes": torch.cuda.max_memory_allocated(device),
            "device_peak_reserved_bytes": torch.cuda.max_memory_reserved(device),
            "device_memory_source": "torch.cuda.max_memory_allocated/reserved over warm-up and timed window",
        }

    return reset_peak, read


def _sdpa(v: torch_llm.Variant, calls: dict) -> dict:
    """Which attention backend ran in each of ``calls`` (name → callable)."""
    out: dict = {"requested": v.runtime.get("sdpa_forced") or "auto: torch chooses"}
    for name, fn in calls.items():
        try:
            with v.context():
                out[name] = torch_llm.observed_sdpa(fn)
        except Exception as e:
            out[name] = {"backends": None, "reason": f"{type(e).__name__}: {e}"[:300]}
    return out


def _compile_first(fn, cold_start: dict, note: str) -> None:
    t0 = time.perf_counter()
    fn()
    cold_start["compile_s"] = time.perf_counter() - t0
    cold_start["compile_note"] = note


def _generate(case, model, ids, fid_ids, v, sync, runtime, cold_start, facts, reference, once, device, serialized_bytes,
              same):  # fmt: skip
    compiled = v.compile_mode is not None
    decode_call = torch.compile(model, mode=v.compile_mode, dynamic=False) if compiled else None
    greedy = Greedy(model, ids, case.new_tokens, sync, static=compiled, decode_call=decode_call)
    runtime["generate"] = {"decoding": "greedy (argmax)", "cache": "static" if compiled else "dynamic",
                           "prefill_logits": "last position only" if greedy.keep else "every position"}  # fmt: skip

    def context():
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        stack.enter_context(v.context())
        return stack

    with context():
        if compiled:  # the first run compiles the decode step (prefill stays eager)
            _compile_first(greedy.run, cold_start, "first run of the compiled decode step (static KV cache)")
        if once:
            first: dict = {}

            def prefill():
                greedy.reset()
                first["tokens"] = greedy.prefill()

            runtime["sdpa"] = _sdpa(v, {"prefill": prefill, "decode": lambda: greedy.decode(first["tokens"])})
        fid = _safe(lambda: _generate_fidelity(case, model, fid_ids, v, sync, decode_call, reference))
    once_facts = {k: facts.pop(k) for k in ("prefill_flops", "decode_step_flops", "flops_note") if k in facts}

    def gen_facts() -> dict:
        out = {**greedy.kv_facts(), **weight_bytes(model), **once_facts}
        if once_facts.get("prefill_flops") is None:
            out.setdefault("prefill_flops", None)
            out["prefill_flops_note"] = once_facts.get("flops_note") or "measured in the case's first process"
        return out

    def step() -> None:  # one whole generation: what a profiled window runs
        greedy.run()

    reset_peak, read_memory = _device_memory(device)
    return Prepared(
        step=step,
        cold_start=cold_start,
        runtime=runtime,
        reset_peak_memory=reset_peak,
        device_memory=read_memory,
        model_facts=lambda: _model_facts(model, facts, serialized_bytes),
        context=context,
        fidelity=lambda: fid if reference is not None else same,
        generate=greedy.steps(gen_facts),
    )


def _safe(fn) -> dict:
    """A fidelity check's failure never fails the case: the record says why instead."""
    try:
        return fn()
    except Exception as e:
        return fidelity.unavailable(f"fidelity check failed: {type(e).__name__}: {e}"[:300])


def _generate_fidelity(case, model, fid_ids, v, sync, decode_call, reference) -> dict:
    """Greedy-token agreement with fp32 over the first tokens, and the logit differences with
    the fp32 tokens fed back (teacher forced)."""
    if reference is None:
        return {}
    n = reference["tokens"].shape[1]
    greedy = Greedy(model, fid_ids, n, sync, static=decode_call is not None, decode_call=decode_call)
    tokens = greedy.run()
    same = (tokens == reference["tokens"]).cpu()
    first_diff = [int(row.logical_not().nonzero()[0]) if not bool(row.all()) else n for row in same]
    logits = greedy.forced_logits(reference["tokens"])
    vocab = logits.shape[-1]
    out = fidelity.compare(
        reference["logits"].reshape(-1, vocab).numpy(),
        logits.reshape(-1, vocab).numpy(),
        seed=case.settings.seed + fidelity.SEED_OFFSET,
        method=(
            f"same seeded weights, {tokens.shape[0]} seeded prompts of {fid_ids.shape[1]} tokens: greedy tokens vs "
            f"fp32's over the first {n}; logits with fp32's tokens fed back through the same prefill and decode "
            "steps as timed (teacher forced), top-1 = next-token agreement at those positions"
        ),
    )
    out.update(
        greedy_token_agreement=float(same.float().mean()),
        first_divergence=first_diff,
        tokens_compared=n,
        sequences=int(tokens.shape[0]),
    )
    return out


def _forward_fidelity(case, model, call, fid_ids, ref, kind) -> dict:
    was = model.training
    model.eval()
    try:
        out = _first(call(input_ids=fid_ids))[:, -FIDELITY_POSITIONS:].float().cpu()
    finally:
        model.train(was)
    return fidelity.compare(
        ref.reshape(-1, ref.shape[-1]).numpy(),
        out.reshape(-1, out.shape[-1]).numpy(),
        seed=case.settings.seed + fidelity.SEED_OFFSET,
        method=f"same seeded weights, {ref.shape[0]} seeded sequences of {fid_ids.shape[1]} tokens, eval mode: "
        f"{'logits' if kind == 'decoder' else 'first outputs'} at the last {ref.shape[1]} positions, one row "
        "per position; top-1 = argmax agreement per position",
    )


def _model_facts(model, facts: dict, serialized_bytes) -> dict:
    out = dict(facts)
    out.update(weight_bytes(model))
    try:
        out["serialized_bytes"] = serialized_bytes(model)
        out["serialized_format"] = "torch.save(state_dict)"
    except Exception as e:  # a tensor subclass torch.save cannot write
        out["serialized_bytes"] = None
        out["serialized_reason"] = f"torch.save failed: {type(e).__name__}: {e}"[:300]
    return out


def _forward(case, model, ids, fid_ids, gen, v, sync, runtime, cold_start, facts, reference, once, kind, device,
             serialized_bytes, same):  # fmt: skip
    call = torch.compile(model, mode=v.compile_mode) if v.compile_mode is not None else model
    if case.mode == "inference":
        grad = torch.inference_mode

        def step():
            sync(call(input_ids=ids))

    else:
        model.train()
        labels = _mlm_labels(ids, gen) if kind == "encoder" else ids
        runtime["loss"] = (
            "masked-LM cross-entropy (15% of positions)" if kind == "encoder" else "causal-LM cross-entropy"
        )
        params = [p for p in model.parameters() if p.requires_grad]
        opt = (
            torch.optim.SGD(params, lr=1e-3, momentum=0.9)
            if case.optimizer == "sgd"
            else torch.optim.Adam(params, lr=1e-3)
        )
        runtime["optimizer"] = type(opt).__name__
        grad = contextlib.nullcontext

        def step():
            opt.zero_grad(set_to_none=True)
            loss = call(input_ids=ids, labels=labels).loss
            loss.backward()
            opt.step()
            sync(loss)

    def context():
        stack = contextlib.ExitStack()
        stack.enter_context(grad())
        stack.enter_context(v.context())
        return stack

    fid: dict = {}
    with torch.inference_mode(), v.context():
        if v.compile_mode is not None and case.mode == "inference":
            _compile_first(lambda: sync(call(input_ids=ids)), cold_start, "first call of torch.compile(model)")
        if once:
            runtime["sdpa"] = _sdpa(v, {"forward": lambda: call(input_ids=ids)})
        if reference is not None:
            fid = _safe(lambda: _forward_fidelity(case, model, call, fid_ids, reference["outputs"], kind))
    if v.compile_mode is not None and case.mode == "train":  # compiles with gradients on
        _compile_first(step, cold_start, "first train step of torch.compile(model)")
    reset_peak, read_memory = _device_memory(device)
    return Prepared(
        step=step,
        cold_start=cold_start,
        runtime=runtime,
        reset_peak_memory=reset_peak,
        device_memory=read_memory,
        model_facts=lambda: _model_facts(model, facts, serialized_bytes),
        context=context,
        fidelity=lambda: fid if reference is not None else same,
    )
