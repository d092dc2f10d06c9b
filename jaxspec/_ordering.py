"""Force an order between independent computations inside one XLA program.

jaxlib's batched CPU LAPACK kernels (QR, SVD, eigh, LU solves) split a batch over XLA's thread
pool and block until it is done; two of them running concurrently on a small pool can deadlock
(seen with jax 0.10.2 on 2 cores: both pool threads waiting inside ``ParallelBatchMap``).
XLA's CPU runtime runs independent operations concurrently, so code that calls two batched
decompositions with no data dependency between them can hang. ``lax.optimization_barrier``
does not help on CPU (its output aliases its input buffer, so the thunk scheduler sees no
dependency); adding an exact zero computed from the earlier result does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


def zero_from(tree: Any) -> jax.Array:
    """A scalar 0 that XLA cannot fold away and that is only known once ``tree`` is computed."""
    firsts = [jax.lax.stop_gradient(leaf).ravel()[0] for leaf in jax.tree.leaves(tree)]
    zero = jnp.minimum(jnp.abs(jnp.stack(firsts)), 0).sum()  # depends on every leaf
    return jnp.where(zero == zero, zero, 0)  # NaN in `tree` does not leak into the result


def after(x: Any, previous: Any) -> Any:
    """``x`` (a pytree of arrays), made to wait until ``previous`` has been computed."""
    if previous is None or not jax.tree.leaves(previous):
        return x
    zero = zero_from(previous)
    return jax.tree.map(lambda leaf: leaf + zero.astype(leaf.dtype), x)


def serialized(items: list[Any], fn: Callable[[Any], Any]) -> list[Any]:
    """``[fn(x) for x in items]``, each call ordered after the previous call's result."""
    out: list[Any] = []
    for x in items:
        out.append(fn(after(x, out[-1] if out else None)))
    return out
