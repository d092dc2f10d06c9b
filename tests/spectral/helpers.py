"""Matrices with prescribed singular values, and SVD references."""

from __future__ import annotations

import numpy as np


def matrix_with_singular_values(
    rng: np.random.Generator, m: int, n: int, sigma: np.ndarray, complex_: bool = False
) -> np.ndarray:
    """``U diag(sigma) V^H`` with Haar-random orthonormal ``U`` (m x k), ``V`` (n x k)."""
    k = min(m, n)
    assert len(sigma) == k

    def haar(size: int) -> np.ndarray:
        a = rng.standard_normal((size, size))
        if complex_:
            a = a + 1j * rng.standard_normal((size, size))
        q, r = np.linalg.qr(a)
        return q * (np.diag(r) / np.abs(np.diag(r)))

    u = haar(m)[:, :k]
    v = haar(n)[:, :k]
    return (u * sigma) @ v.conj().T


def singular_values(x) -> np.ndarray:
    """Singular values in float64, descending, over the last two axes."""
    return np.linalg.svd(
        np.asarray(x, dtype=np.complex128 if np.iscomplexobj(x) else np.float64), compute_uv=False
    )
