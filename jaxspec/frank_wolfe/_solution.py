"""The result type returned by every Frank–Wolfe solver."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

from jaxspec._status import Status


class Solution(NamedTuple):
    """Result of a Frank–Wolfe solve; under ``vmap`` every field gains the batch axes.

    Attributes:
        x: the final iterate (same pytree structure as ``x0``).
        value: the objective at ``x`` (for stochastic solvers: on the last minibatch).
        gap: the Frank–Wolfe gap ``<grad f(x), x - s>`` at ``x``, with ``s`` the oracle's
            vertex: an upper bound on ``f(x) - f*`` for convex ``f`` (the certificate). For
            stochastic solvers it is measured with the averaged gradient estimate.
        num_steps: iterations taken, int32.
        status: :class:`jaxspec.Status` code, int32.
        stats: solver-specific diagnostics (a dict of arrays: the final Lipschitz estimate of
            backtracking, the active-set size of away/pairwise variants, traces, ...).
    """

    x: Any
    value: jax.Array
    gap: jax.Array
    num_steps: jax.Array
    status: jax.Array
    stats: dict

    @property
    def converged(self) -> jax.Array:
        """Boolean array: whether ``gap <= tol`` was reached."""
        return self.status == Status.CONVERGED
