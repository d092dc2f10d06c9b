"""Solver status codes shared by every jaxspec solver.

A solver returns its status as an ``int32`` array (so it can live inside ``jit``/``vmap``)
holding one of the codes below. :func:`status_message` turns a code into text on the host.
"""

from __future__ import annotations

import enum

import jax
import jax.numpy as jnp
import numpy as np


class Status(enum.IntEnum):
    """Outcome of an iterative solve (stored as an ``int32`` array in solutions)."""

    CONVERGED = 0
    """The optimality measure met the requested tolerance."""
    MAX_STEPS = 1
    """The step budget ran out before the tolerance was met."""
    NONFINITE = 2
    """A non-finite value (NaN/Inf) appeared in the iterate or its optimality measure."""
    STAGNATED = 3
    """The optimality measure stopped improving before meeting the tolerance (usually the
    floating-point floor of the working dtype, or a rank-deficient input)."""
    ACTIVE_SET_FULL = 4
    """An active-set solver needed a new atom but its fixed-capacity active set was full
    (raise its ``active_set_size``)."""


def status_message(status: jax.typing.ArrayLike) -> str | list[str]:
    """Human-readable message for one status code, or a list for a batch of them."""
    arr = np.asarray(status)
    if arr.ndim == 0:
        return Status(int(arr)).name.lower()
    return [Status(int(s)).name.lower() for s in arr.reshape(-1)]


def classify(
    converged: jax.Array, error: jax.Array, stagnated: jax.Array | bool = False
) -> jax.Array:
    """Status code from a convergence flag and the final optimality measure (traceable)."""
    not_converged = jnp.where(stagnated, jnp.int32(Status.STAGNATED), jnp.int32(Status.MAX_STEPS))
    return jnp.where(
        ~jnp.isfinite(error),
        jnp.int32(Status.NONFINITE),
        jnp.where(converged, jnp.int32(Status.CONVERGED), not_converged),
    )
