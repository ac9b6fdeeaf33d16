"""scikit-learn's bundled data sets as arrays to train on (mode ``fit``, feature models such
as seed_mlp). Framework-free: numpy batches that either framework turns into tensors.

The sets ship inside scikit-learn (``sklearn.datasets.load_*``): nothing is downloaded.
The split is :func:`benchbench.pipelines.split.assign` on the row index; features are
standardised with the training part's mean and standard deviation (never the
validation part's).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchbench.data_spec import SKLEARN_SETS
from benchbench.pipelines.split import METHOD, assign

LOADERS = {
    "digits": "load_digits",
    "breast_cancer": "load_breast_cancer",
    "iris": "load_iris",
    "wine": "load_wine",
}


def load(name: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(features float32 (n, f), labels int64 (n,), class names) of a bundled set."""
    if name not in LOADERS:
        raise ValueError(f"unknown scikit-learn data set {name!r}; known: {', '.join(LOADERS)}")
    try:
        from sklearn import datasets
    except ImportError:
        raise RuntimeError("scikit-learn is not installed: pip install scikit-learn") from None
    bunch = getattr(datasets, LOADERS[name])()
    names = [str(t) for t in getattr(bunch, "target_names", sorted(set(bunch.target.tolist())))]
    return bunch.data.astype(np.float32), bunch.target.astype(np.int64), names


@dataclass
class ArraySplit:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    classes: list[str]
    info: dict


def split(name: str, val_fraction: float, seed: int) -> ArraySplit:
    x, y, classes = load(name)
    is_val = np.array(assign([f"row-{i}" for i in range(len(y))], y.tolist(), val_fraction, seed))
    x_train, y_train, x_val, y_val = x[~is_val], y[~is_val], x[is_val], y[is_val]
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std[std == 0] = 1.0
    x_train = (x_train - mean) / std
    x_val = (x_val - mean) / std
    info = {
        "source": f"sklearn.datasets.{LOADERS[name]}",
        "features": int(x.shape[1]),
        "val_fraction": val_fraction,
        "seed": seed,
        "train": int(len(y_train)),
        "val": int(len(y_val)),
        "classes": classes,
        "method": METHOD,
        "scaling": "standardised with the training part's mean and standard deviation",
    }
    expect = SKLEARN_SETS.get(name)
    if expect is not None and (expect[0], expect[2]) != (x.shape[1], len(y)):
        info["warning"] = f"expected {expect[0]} features and {expect[2]} rows (data_spec.SKLEARN_SETS)"
    return ArraySplit(x_train.astype(np.float32), y_train, x_val.astype(np.float32), y_val, classes, info)


class ArrayBatches:
    """Shuffled batches of arrays, a new seeded permutation each epoch; full batches only
    (``drop_last``), as the image pipelines give. ``next()`` starts the next epoch itself."""

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, seed: int):
        if len(x) < batch_size:
            raise ValueError(f"{len(x)} training rows, fewer than one batch of {batch_size}")
        self.x, self.y, self.batch_size = x, y, batch_size
        self.rng = np.random.default_rng(seed)
        self.steps_per_epoch = len(x) // batch_size
        self._order: np.ndarray | None = None
        self._pos = 0
        self.epochs = 0

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        if self._order is None or self._pos + self.batch_size > len(self._order):
            self._order = self.rng.permutation(len(self.x))
            self._pos = 0
            self.epochs += 1
        idx = self._order[self._pos : self._pos + self.batch_size]
        self._pos += self.batch_size
        return self.x[idx], self.y[idx]

    def describe(self) -> dict:
        return {
            "loader": "in-memory numpy arrays (benchbench.pipelines.tabular.ArrayBatches)",
            "shuffle": "a seeded permutation per epoch",
            "drop_last": True,
        }
