"""Shared helpers of the oracles: argument checks, pytree flattening, sort-based projections."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxspec._checks import as_float_array, check_matrix, check_positive

PyTree = Any


def check_radius(radius: Any, name: str = "radius") -> jax.Array:
    """A scalar radius as an array field; checked > 0 when concrete (tracers pass)."""
    check_positive(radius, name)
    r = jnp.asarray(radius)
    if r.ndim != 0:
        raise ValueError(f"`{name}` must be a scalar, got shape {tuple(r.shape)}.")
    if jnp.issubdtype(r.dtype, jnp.integer):
        r = r.astype(jnp.result_type(float))
    elif not jnp.issubdtype(r.dtype, jnp.floating):
        raise ValueError(f"`{name}` must be a positive real number, got dtype {r.dtype}.")
    return r


def optional_tol(tol: Any) -> jax.Array | None:
    """``None`` (the dtype's default) or a positive scalar tolerance as an array field."""
    if tol is None:
        return None
    return check_radius(tol, "tol")


def float_leaves(tree: PyTree, name: str) -> tuple[list[jax.Array], Any]:
    """Leaves of ``tree`` checked to be float arrays (ValueError naming ``name`` otherwise)."""
    leaves, treedef = jax.tree.flatten(tree)
    if not leaves:
        raise ValueError(f"`{name}` must contain at least one array.")
    return [as_float_array(x, name) for x in leaves], treedef


def matrix_leaves(tree: PyTree, name: str) -> tuple[list[jax.Array], Any]:
    """Leaves of ``tree`` checked to be float arrays of rank >= 2 (matrices on the last axes)."""
    leaves, treedef = jax.tree.flatten(tree)
    if not leaves:
        raise ValueError(f"`{name}` must contain at least one array.")
    return [check_matrix(x, name) for x in leaves], treedef


def ravel(tree: PyTree, name: str) -> tuple[jax.Array, Callable[[jax.Array], PyTree]]:
    """One flat vector of every leaf (promoted dtype) and the map back (original dtypes)."""
    leaves, treedef = float_leaves(tree, name)
    dtype = jnp.result_type(*leaves)
    sizes = [int(np.prod(x.shape)) for x in leaves]
    if sum(sizes) == 0:
        raise ValueError(f"`{name}` must not be empty.")
    flat = jnp.concatenate([x.reshape(-1).astype(dtype) for x in leaves])

    def unravel(v: jax.Array) -> PyTree:
        out, start = [], 0
        for x, size in zip(leaves, sizes):
            out.append(v[start : start + size].reshape(x.shape).astype(x.dtype))
            start += size
        return jax.tree.unflatten(treedef, out)

    return flat, unravel


def simplex_threshold(u: jax.Array, r: jax.Array) -> jax.Array:
    """``tau`` with ``sum(max(u - tau, 0)) = r`` for a flat ``u`` (sort-based, exact).

    The active set (the ``rho`` largest entries) is found on the sorted values; ``tau`` is then
    the closed form ``(sum of the active entries - r) / rho``, so autodiff through it gives the
    exact derivative in ``u`` and ``r`` (the active set is locally constant).
    """
    n = u.shape[0]
    order = jnp.argsort(-jax.lax.stop_gradient(u))
    us = u[order]
    csum = jnp.cumsum(us)
    count = jnp.arange(1, n + 1, dtype=u.dtype)
    r_ = jax.lax.stop_gradient(r)
    active = jax.lax.stop_gradient(us - (csum - r_) / count) > 0
    # The first entry is always active (u_1 - (u_1 - r) = r > 0).
    rho = jnp.max(jnp.where(active, jnp.arange(n), 0))
    return (csum[rho] - r) / (rho + 1).astype(u.dtype)


@functools.partial(jax.jit, static_argnames=("equality",))
def project_simplex_flat(y: jax.Array, r: jax.Array, equality: bool) -> jax.Array:
    """Projection onto ``{x >= 0, sum x = r}`` (or ``<= r``) of a flat vector."""
    tau = simplex_threshold(y, r)
    if not equality:
        tau = jnp.maximum(tau, 0)  # sum(max(y, 0)) <= r  <=>  tau <= 0: clip at zero instead
    return jnp.maximum(y - tau, 0)


@jax.jit
def project_l1_flat(y: jax.Array, r: jax.Array) -> jax.Array:
    """Projection onto ``{||x||_1 <= r}`` of a flat vector: soft thresholding at ``tau``."""
    a = jnp.abs(y)
    tau = jnp.maximum(simplex_threshold(a, r), 0)
    return jnp.sign(y) * jnp.maximum(a - tau, 0)


def capped_threshold(a: jax.Array, cap: jax.Array, total: jax.Array) -> jax.Array:
    """Smallest ``tau >= 0`` with ``sum(clip(a - tau, 0, cap)) <= total`` for flat ``a >= 0``.

    ``f(tau) = sum(clip(a - tau, 0, cap))`` is piecewise linear and non-increasing with
    breakpoints at ``a_i`` and ``a_i - cap``. The segment where ``f`` crosses ``total`` is found
    exactly by evaluating ``f`` at every breakpoint (sorted values and prefix sums, so
    ``O(n log n)``); on it the capped and the partial entries are fixed and ``tau`` has the
    closed form ``(sum(partial a) + cap * #capped - total) / #partial``, differentiable in
    ``a``, ``cap`` and ``total``.
    """
    n = a.shape[0]
    a0, cap0, total0 = (jax.lax.stop_gradient(v) for v in (a, cap, total))
    a_sorted = jnp.sort(a0)
    prefix = jnp.concatenate([jnp.zeros((1,), a.dtype), jnp.cumsum(a_sorted)])

    def f(t):
        # sum_{a > t} (a - t) - sum_{a > t + cap} (a - t - cap)
        i1 = jnp.searchsorted(a_sorted, t, side="right")
        i2 = jnp.searchsorted(a_sorted, t + cap0, side="right")
        above = (prefix[-1] - prefix[i1]) - (n - i1).astype(a.dtype) * t
        above_cap = (prefix[-1] - prefix[i2]) - (n - i2).astype(a.dtype) * (t + cap0)
        return above - above_cap

    zero = jnp.zeros((1,), a.dtype)
    points = jnp.sort(jnp.concatenate([zero, a_sorted, jnp.maximum(a_sorted - cap0, 0)]))
    values = f(points)
    # f(max a) = 0 < total, so the last point with f >= total has a successor.
    j = jnp.max(jnp.where(values >= total0, jnp.arange(points.shape[0]), 0))
    lo, hi = points[j], points[jnp.minimum(j + 1, points.shape[0] - 1)]
    mid = 0.5 * (lo + hi)
    partial = (a0 > mid) & (a0 < mid + cap0)
    capped = a0 >= mid + cap0
    num_partial = jnp.sum(partial)
    tau = (
        jnp.sum(jnp.where(partial, a, 0)) + cap * jnp.sum(capped).astype(a.dtype) - total
    ) / jnp.maximum(num_partial, 1).astype(a.dtype)
    tau = jnp.where(num_partial > 0, tau, lo)
    return jnp.where(values[0] <= total0, jnp.zeros((), a.dtype), tau)


@functools.partial(jax.jit, static_argnames=("k",))
def project_k_sparse_flat(y: jax.Array, r: jax.Array, k: int) -> jax.Array:
    """Projection onto ``{||x||_inf <= r, ||x||_1 <= k r}`` of a flat vector."""
    a = jnp.abs(y)
    tau = capped_threshold(a, r, k * r)
    return jnp.sign(y) * jnp.clip(a - tau, 0, r)


def safe_norm(sq: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(sqrt(sq), sq > 0)`` with a NaN-free gradient at zero."""
    positive = sq > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0), positive
