"""PyTorch models by name: the seed models, torchvision, timm, a user's callable.

All random weights: nothing is downloaded. Imported only inside a worker process.
"""

from __future__ import annotations

import importlib
import importlib.util

import torch
from torch import nn

from benchbench.registry import SEED_MODELS, TIMM_PREFIX, model_kind


def _conv_block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel_size=3), nn.ReLU(), nn.MaxPool2d(2)]


def _after_blocks(size: int, blocks: int) -> int:
    for _ in range(blocks):
        size = (size - 2) // 2  # 3×3 'valid' conv, then 2×2 max-pool
    return size


def seed_cnn(input_shape=(3, 224, 224), blocks: int = 3) -> nn.Module:
    """DESIGN.md's seed_cnn (blocks=3) and seed_cnn4 (blocks=4): Keras-equivalent
    'valid' 3×3 convolutions, Dense 512 ReLU, Dense 1 sigmoid."""
    c, h, w = input_shape
    widths = [32, 64, 128, 128][:blocks]
    layers: list[nn.Module] = []
    cin = c
    for cout in widths:
        layers += _conv_block(cin, cout)
        cin = cout
    hh, ww = _after_blocks(h, blocks), _after_blocks(w, blocks)
    if hh < 1 or ww < 1:
        raise ValueError(f"input {h}×{w} is too small for {blocks} conv+pool blocks")
    layers += [nn.Flatten(), nn.Linear(cin * hh * ww, 512), nn.ReLU(), nn.Linear(512, 1), nn.Sigmoid()]
    return nn.Sequential(*layers)


def seed_mlp(input_shape=(10,)) -> nn.Module:
    (features,) = input_shape
    return nn.Sequential(nn.Linear(features, 128), nn.ReLU(), nn.Linear(128, 10), nn.Softmax(dim=1))


def _seed(name: str, input_shape) -> nn.Module:
    if name == "seed_cnn":
        return seed_cnn(input_shape, 3)
    if name == "seed_cnn4":
        return seed_cnn(input_shape, 4)
    if name == "seed_mlp":
        return seed_mlp(input_shape)
    raise KeyError(name)


def _user(spec: str, input_shape) -> nn.Module:
    module_name, attr = spec.split(":", 1)
    module = importlib.import_module(module_name)
    factory = getattr(module, attr)
    try:
        model = factory(input_shape=tuple(input_shape))
    except TypeError:
        model = factory()
    if not isinstance(model, nn.Module):
        raise TypeError(f"{spec} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def build(name: str, input_shape) -> nn.Module:
    """A model with random weights, on the CPU, in fp32."""
    kind = model_kind(name)
    if kind == "seed":
        return _seed(name, input_shape)
    if kind == "user":
        return _user(name, input_shape)
    if kind == "timm":
        import timm

        return timm.create_model(name[len(TIMM_PREFIX) :], pretrained=False)
    import torchvision

    return torchvision.models.get_model(name, weights=None)


def loss_for(name: str):
    """(loss name, fn(output, target)) and a target maker for train mode."""
    seed = SEED_MODELS.get(name)
    if seed and seed.loss == "binary cross-entropy":
        bce = nn.BCELoss()

        def targets(out_shape, gen, device):
            return torch.randint(0, 2, out_shape, generator=gen).float().to(device)

        return "binary cross-entropy", bce, targets
    if seed and seed.loss == "sparse categorical cross-entropy":

        def sparse_cce(probs, y):  # the model ends in softmax, as in Keras
            return nn.functional.nll_loss(torch.log(probs.clamp_min(1e-7)), y)

        def targets(out_shape, gen, device):
            return torch.randint(0, out_shape[-1], out_shape[:1], generator=gen).to(device)

        return "sparse categorical cross-entropy", sparse_cce, targets
    ce = nn.CrossEntropyLoss()

    def targets(out_shape, gen, device):
        if len(out_shape) != 2:
            raise ValueError(f"train mode needs (batch, classes) outputs; got {tuple(out_shape)}")
        return torch.randint(0, out_shape[-1], out_shape[:1], generator=gen).to(device)

    return "cross-entropy", ce, targets


def zoo_names() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def timm_names() -> list[str] | None:
    if importlib.util.find_spec("timm") is None:
        return None
    import timm

    return sorted(timm.list_models())


__all__ = ["build", "loss_for", "zoo_names", "timm_names", "seed_cnn", "seed_mlp"]
