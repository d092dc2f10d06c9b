"""Objectives with structure the Frank–Wolfe solvers exploit: ``f(x) = loss(A x)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from jaxspec._checks import as_float_array


def _half_squared_error(z: jax.Array, b: jax.Array) -> jax.Array:
    r = z - b
    return 0.5 * jnp.vdot(r, r)


class LinearComposite(eqx.Module):
    r"""The objective ``f(x) = loss(A x, args)`` of a 1-D variable ``x``.

    It is an ordinary callable (``f(x)``), so every solver accepts it as ``fun``; the
    Frank–Wolfe solvers also recognise it and track the image ``z = A x`` instead of
    recomputing it. Each iteration then costs one product ``A^T grad loss(z)`` for the
    gradient; the image of the new vertex ``A s`` costs ``nnz(s)`` columns of ``A`` when the
    oracle has sparse vertices (the l1 ball, the simplex, k-sparse polytopes), and line
    searches (backtracking, exact) evaluate ``loss`` on ``z + gamma A d`` without touching
    ``A`` at all.

    Attributes:
        matrix: ``A``, shape ``(m, n)``.
        loss: ``loss(z, args) -> scalar`` for ``z`` of shape ``(m,)`` (static).
        args: pytree of arrays passed to ``loss`` (data such as ``b``; differentiable).
        gram_cache: number of cached rows of ``A^T A`` (static; least squares only, see
            :func:`least_squares`).

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxspec import frank_wolfe
        >>> f = frank_wolfe.LinearComposite(jnp.eye(2), lambda z, c: jnp.sum((z - c) ** 2),
        ...                                 jnp.array([1.0, 2.0]))
        >>> float(f(jnp.zeros(2)))
        5.0
    """

    matrix: jax.Array
    loss: Callable[[jax.Array, Any], jax.Array] = eqx.field(static=True)
    args: Any = None
    gram_cache: int = eqx.field(static=True, default=0)

    def __check_init__(self):
        if getattr(self.matrix, "ndim", 2) != 2:
            raise ValueError(
                f"`matrix` must be 2-D (m, n), got shape {tuple(jnp.shape(self.matrix))}."
            )
        if self.gram_cache and self.loss is not _half_squared_error:
            raise ValueError("`gram_cache` needs the least-squares loss (use least_squares).")

    def _check_x(self, x: jax.typing.ArrayLike) -> jax.Array:
        x = as_float_array(x, "x")
        n = jnp.shape(self.matrix)[1]
        if x.shape != (n,):
            raise ValueError(
                f"`x` must have shape ({n},) to match `matrix` {tuple(jnp.shape(self.matrix))}, "
                f"got {tuple(x.shape)}."
            )
        return x

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.loss(self.matrix @ self._check_x(x), self.args)

    def image(self, x: jax.Array) -> jax.Array:
        """``A x``."""
        return self.matrix @ self._check_x(x)

    def value_and_grad_from_image(self, z: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(loss(z), A^T grad loss(z))``: one transposed matrix-vector product."""
        value, gz = jax.value_and_grad(self.loss)(z, self.args)
        return value, gz @ self.matrix

    def value_from_image(self, z: jax.Array) -> jax.Array:
        return self.loss(z, self.args)

    def curvature_from_image(self, z: jax.Array, dz: jax.Array) -> jax.Array:
        """``<A d, H_loss(z) A d>`` for ``dz = A d`` (exact line search on quadratics)."""
        _, hdz = jax.jvp(lambda w: jax.grad(self.loss)(w, self.args), (z,), (dz,))
        return jnp.vdot(dz, hdz)


def least_squares(
    matrix: jax.typing.ArrayLike, target: jax.typing.ArrayLike, *, gram_cache: int = 0
) -> LinearComposite:
    r"""``f(x) = 1/2 ||A x - b||^2`` as a :class:`LinearComposite` (tracked residual).

    With ``gram_cache=K > 0``, vanilla Frank–Wolfe over a sparse-vertex oracle updates the
    gradient with cached rows ``A^T a_j`` of the Gram matrix instead of a product ``A^T r``:
    the gradient of ``(1 - gamma) x + gamma v e_j`` is
    ``(1 - gamma)(g + A^T b) + gamma v A^T a_j - A^T b``. Frank–Wolfe revisits few columns,
    so after the first steps an iteration costs ``O(m + n)`` instead of ``O(m n)`` (a miss
    costs one product ``a_j^T A``). It keeps ``K x n`` numbers; under ``vmap`` the cache
    lookup becomes a select that computes the product anyway, so leave it off for vmapped
    sweeps. Other variants and dense-vertex oracles ignore it.

    Args:
        matrix: ``A``, float array ``(m, n)``.
        target: ``b``, float array ``(m,)``.
        gram_cache: rows of ``A^T A`` to cache (static; 0 turns the cache off).

    Returns:
        A :class:`LinearComposite`; call it as ``f(x)`` or pass it to
        :func:`jaxspec.frank_wolfe.solve`, where each iteration costs one ``A^T r`` product
        with a sparse-vertex oracle.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxspec import frank_wolfe
        >>> f = frank_wolfe.least_squares(jnp.array([[1.0, 0.0], [0.0, 2.0]]), jnp.ones(2))
        >>> float(f(jnp.array([1.0, 0.0])))
        0.5

    References:
        Jaggi, "Revisiting Frank-Wolfe: Projection-Free Sparse Convex Optimization", ICML 2013.
    """
    a = as_float_array(matrix, "matrix", min_ndim=2)
    b = as_float_array(target, "target", min_ndim=1)
    if a.ndim != 2:
        raise ValueError(f"`matrix` must be 2-D (m, n), got shape {tuple(a.shape)}.")
    if b.shape != a.shape[:1]:
        raise ValueError(
            f"`target` must have shape ({a.shape[0]},) to match `matrix` {tuple(a.shape)}, "
            f"got {tuple(b.shape)}."
        )
    if isinstance(gram_cache, bool) or not isinstance(gram_cache, int) or gram_cache < 0:
        raise ValueError(f"`gram_cache` must be an int >= 0, got {gram_cache!r}.")
    return LinearComposite(a, _half_squared_error, b, gram_cache)
