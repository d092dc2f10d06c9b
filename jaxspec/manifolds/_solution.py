"""The result type of the full-batch manifold solvers (:func:`jaxspec.manifolds.minimize`)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

from jaxspec._status import Status


class ManifoldSolution(NamedTuple):
    """Result of :func:`jaxspec.manifolds.minimize`; under ``vmap`` every field gains the batch
    axes.

    Attributes:
        x: the final iterate, same shape and dtype as ``x0`` (``(..., n, p)``).
        value: the objective at ``x``, a real scalar of ``x``'s dtype.
        grad_norm: the Riemannian gradient norm at ``x`` in the manifold's metric (summed over
            the leading axes of a product of manifolds), the optimality measure.
        num_steps: iterations taken, int32 (line-search trials are not counted).
        status: :class:`jaxspec.Status` code, int32: ``CONVERGED`` (gradient norm at most the
            tolerance), ``MAX_STEPS``, ``NONFINITE`` (NaN/Inf in the value, gradient or
            iterate) or ``STAGNATED`` (the line search found no decrease along the negative
            gradient: usually the floating-point floor of the working dtype).
        aux: the auxiliary output of ``f`` at ``x`` when ``has_aux=True``, else ``None``.
    """

    x: jax.Array
    value: jax.Array
    grad_norm: jax.Array
    num_steps: jax.Array
    status: jax.Array
    aux: Any = None

    @property
    def converged(self) -> jax.Array:
        """Boolean array: whether the gradient-norm tolerance was met."""
        return self.status == Status.CONVERGED
