"""A thin SVD that cannot hang on an infinite entry.

LAPACK's divide-and-conquer SVD (``gesdd``, behind ``jnp.linalg.svd`` on CPU) can loop
forever on a matrix with an infinite entry. Every SVD in jaxspec goes through :func:`svd`:
matrices with a non-finite entry are decomposed as zeros and their factors returned as NaN,
so a bad input ends as NaN (which the callers report or propagate) instead of a hung process.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def svd(x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Thin SVD ``(u, s, vh)`` of ``(..., m, n)`` matrices; NaN factors for non-finite ones."""
    finite = jnp.all(jnp.isfinite(x), axis=(-2, -1), keepdims=True)
    u, s, vh = jnp.linalg.svd(jnp.where(finite, x, jnp.zeros((), x.dtype)), full_matrices=False)
    nan = jnp.asarray(jnp.nan, s.dtype)
    return (
        jnp.where(finite, u, nan.astype(u.dtype)),
        jnp.where(finite[..., 0], s, nan),
        jnp.where(finite, vh, nan.astype(vh.dtype)),
    )
