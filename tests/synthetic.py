"""Synthetic unit face vectors for the clustering tests."""

from __future__ import annotations

import numpy as np

DIM = 32


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def blobs(
    n_people: int, per_person: int, spread: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around random centres; spread is the per-coordinate noise."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.normal(size=(n_people, DIM)))
    truth = np.repeat(np.arange(n_people), per_person)
    x = centres[truth] + rng.normal(scale=spread, size=(len(truth), DIM))
    return unit(x), truth


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """True when two labelings group the non-noise items identically (noise equal too)."""
    if not np.array_equal(a == -1, b == -1):
        return False
    m = a != -1
    pairs = set(zip(a[m].tolist(), b[m].tolist(), strict=True))
    return len(pairs) == len({p[0] for p in pairs}) == len({p[1] for p in pairs})
