"""Small pytree arithmetic used by the Frank–Wolfe solvers (iterates may be any pytree)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

PyTree = Any


def vdot(a: PyTree, b: PyTree) -> jax.Array:
    """Real inner product ``<a, b>`` summed over all leaves."""
    leaves = jax.tree.leaves(jax.tree.map(lambda u, v: jnp.vdot(u, v).real, a, b))
    return sum(leaves[1:], leaves[0]) if leaves else jnp.zeros(())


def sub(a: PyTree, b: PyTree) -> PyTree:
    return jax.tree.map(jnp.subtract, a, b)


def axpy(alpha: jax.Array, x: PyTree, y: PyTree) -> PyTree:
    """``y + alpha * x`` leafwise (``alpha`` cast to each leaf's dtype)."""
    return jax.tree.map(lambda u, v: v + alpha.astype(v.dtype) * u, x, y)


def scale(alpha: jax.Array, x: PyTree) -> PyTree:
    return jax.tree.map(lambda u: alpha.astype(u.dtype) * u, x)


def where(pred: jax.Array, a: PyTree, b: PyTree) -> PyTree:
    return jax.tree.map(lambda u, v: jnp.where(pred, u, v), a, b)


def all_finite(x: PyTree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(x)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def real_dtype(x: PyTree):
    """The widest real dtype among the leaves (the dtype of scalars such as the gap)."""
    dtypes = [jnp.finfo(leaf.dtype).dtype for leaf in jax.tree.leaves(x)]
    return jnp.result_type(*dtypes)
