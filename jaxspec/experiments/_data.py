"""Offline data shared by experiments (nothing is downloaded at run time)."""

from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=8)
def _sample_images() -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_sample_images

    return tuple(img.astype(np.float64).mean(axis=2) / 255.0 for img in load_sample_images().images)


def image_patches(count: int, size: int, seed: int = 0) -> np.ndarray:
    """Random ``size x size`` grayscale patches of scikit-learn's bundled sample images.

    The two images (china, flower) alternate; each patch's corner is drawn uniformly by
    ``numpy.random.default_rng(seed)``. Pixel values are in ``[0, 1]``; no normalization.

    Args:
        count: number of patches.
        size: patch side in pixels.
        seed: seed of the corner positions.

    Returns:
        A ``(count, size * size)`` float64 array (rows are raveled patches).
    """
    rng = np.random.default_rng(seed)
    images = _sample_images()
    out = np.empty((count, size * size))
    for i in range(count):
        img = images[i % len(images)]
        r = rng.integers(0, img.shape[0] - size)
        c = rng.integers(0, img.shape[1] - size)
        out[i] = img[r : r + size, c : c + size].ravel()
    return out
