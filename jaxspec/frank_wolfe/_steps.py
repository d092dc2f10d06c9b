"""Step-size rules of the Frank–Wolfe solvers.

Each rule maps the quantities of one iteration to a step ``gamma`` in ``[0, gamma_max]``
along a direction ``d`` (``s - x`` for a Frank–Wolfe step). ``dir_gap = -<grad f(x), d>`` is
the directional gap (the Frank–Wolfe gap for a Frank–Wolfe direction).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

STEP_RULES = ("open_loop", "short", "exact", "backtracking")

# Pedregosa, Negiar, Askari, Jaggi (2020) constants, as copt uses them.
_LS_DECREASE = 0.9
_LS_INCREASE = 2.0
_LS_MAX_TRIES = 100


def open_loop(t: jax.Array, ell: jax.Array, gamma_max: jax.Array) -> jax.Array:
    """``ell / (t + ell)`` (``2/(t+2)`` for ``ell = 2``), capped at ``gamma_max``."""
    ell = ell.astype(gamma_max.dtype)
    return jnp.minimum(ell / (t.astype(gamma_max.dtype) + ell), gamma_max)


def short_step(
    dir_gap: jax.Array, norm2: jax.Array, lipschitz: jax.Array, gamma_max: jax.Array
) -> jax.Array:
    """Demyanov–Rubinov short step ``min(dir_gap / (L ||d||^2), gamma_max)`` (>= 0)."""
    positive = norm2 > 0
    gamma = dir_gap / jnp.where(positive, lipschitz * norm2, 1.0)
    return jnp.where(positive, jnp.clip(gamma, 0.0, gamma_max), 0.0)


def exact_step(dir_gap: jax.Array, curvature: jax.Array, gamma_max: jax.Array) -> jax.Array:
    """Exact minimizer of a quadratic along ``d``: ``dir_gap / <d, H d>`` clipped to range."""
    positive = curvature > 0
    gamma = dir_gap / jnp.where(positive, curvature, 1.0)
    return jnp.where(positive, jnp.clip(gamma, 0.0, gamma_max), gamma_max)


def warm_start_lipschitz(
    lipschitz: jax.Array,
    dir_gap: jax.Array,
    norm2: jax.Array,
    prev_value: jax.Array,
    value: jax.Array,
) -> jax.Array:
    """Pedregosa et al.'s estimate before the search: ``max(min(q, L), 0.9 L)``.

    ``q = dir_gap^2 / (2 (f_{t-1} - f_t) ||d||^2)`` uses the decrease of the previous step;
    at the first step (``prev_value`` not finite) ``L`` is kept.
    """
    decrease = prev_value - value
    ok = jnp.isfinite(prev_value) & (decrease > 0) & (norm2 > 0)
    q = dir_gap**2 / jnp.where(ok, 2.0 * decrease * norm2, 1.0)
    q = jnp.where(ok & jnp.isfinite(q), q, lipschitz)
    return jnp.maximum(jnp.minimum(q, lipschitz), _LS_DECREASE * lipschitz)


def backtracking(
    value_at: Callable[[jax.Array], jax.Array],
    value: jax.Array,
    dir_gap: jax.Array,
    norm2: jax.Array,
    lipschitz: jax.Array,
    gamma_max: jax.Array,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Adaptive step of Pedregosa et al. (2020): double ``L`` until sufficient decrease.

    Accepts ``gamma = min(dir_gap / (L ||d||^2), gamma_max)`` once
    ``f(x + gamma d) - f(x) <= -gamma dir_gap + gamma^2 L ||d||^2 / 2`` (the quadratic upper
    bound; ``-gamma dir_gap / 2`` for an interior step), doubling ``L`` otherwise, for at most
    100 tries. A relative slack of a few ulps of ``f`` keeps round-off near the optimum from
    doubling ``L`` forever.

    Returns:
        ``(gamma, L, f(x + gamma d))``.
    """
    eps = jnp.finfo(value.dtype).eps
    slack = 8 * eps * jnp.abs(value)

    def trial(lip):
        gamma = short_step(dir_gap, norm2, lip, gamma_max)
        bound = -gamma * dir_gap + 0.5 * gamma**2 * lip * norm2
        new_value = value_at(gamma)
        ok = (new_value - value <= bound + slack) | (norm2 <= 0)
        return gamma, new_value, ok

    def cond(carry):
        _, _, _, ok, tries = carry
        return ~ok & (tries < _LS_MAX_TRIES)

    def body(carry):
        lip, _, _, _, tries = carry
        lip = lip * _LS_INCREASE
        gamma, new_value, ok = trial(lip)
        return lip, gamma, new_value, ok, tries + 1

    gamma, new_value, ok = trial(lipschitz)
    lip, gamma, new_value, _, _ = jax.lax.while_loop(
        cond, body, (lipschitz, gamma, new_value, ok, jnp.int32(0))
    )
    return gamma, lip, new_value
