"""Armijo backtracking along a retraction curve, as a ``lax.while_loop`` (jit/vmap-able).

The search looks for a step ``alpha`` on the curve ``alpha -> R_x(alpha d)`` that satisfies
the Armijo sufficient-decrease condition ``f(R_x(alpha d)) <= f(x) + c alpha <grad f(x), d>``
(Absil, Mahony, Sepulchre 2008, Def. 4.2.2; Boumal 2023, Sec. 4.5). Trials start at an
initial guess and are multiplied by ``contraction`` until the condition holds or the budget of
contractions is spent. Two rules pick the initial guess (both as in Manopt/pymanopt, so the
iterates of :func:`jaxspec.manifolds.minimize` can be compared with theirs):

* ``"backtracking"``: the minimizer of the quadratic through ``f(x_{k-1})``, ``f(x_k)`` and
  the slope, ``2 (f(x_k) - f(x_{k-1})) / <grad f(x_k), d_k>`` (Nocedal and Wright 2006,
  eq. 3.60), times an ``optimism`` factor (2); the first search starts at
  ``initial_step / ||d||`` (a step of length ``initial_step``).
* ``"adaptive"``: the previous accepted ``alpha``, doubled unless exactly one contraction was
  needed; the first search starts at ``initial_step / ||d||``.

A third rule, ``"bb"`` (steepest descent only), is not Manopt's: the Barzilai–Borwein step
from the last displacement ``s = x_k - x_{k-1}`` and gradient change ``y = g_k - g_{k-1}``
(differences in the embedding space, Euclidean inner products), alternating
``<s, s> / |<s, y>|`` (odd steps) and ``|<s, y>| / <y, y>`` (even steps), with the
non-monotone Armijo condition of Zhang and Hager (2004): the reference value is the weighted
average ``C_k = (eta Q_{k-1} C_{k-1} + f_k) / Q_k``, ``Q_k = eta Q_{k-1} + 1``, instead of
``f(x_k)``. This is the feasible method of Wen and Yin (2013) on a general retraction; it
typically needs far fewer steps than the monotone rules, but its iterates differ from
pymanopt's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

LINESEARCHES: tuple[str, ...] = ("backtracking", "adaptive", "bb")
_BB_CLIP = (1e-20, 1e20)  # Wen and Yin (2013) keep the BB step in this range


class LineSearchResult(NamedTuple):
    """Outcome of one search: the last trial, and whether it may be taken."""

    alpha: jax.Array  # the last trial multiplier of the direction
    x: jax.Array  # R_x(alpha d)
    value: jax.Array  # f at the trial point
    evaluations: jax.Array  # objective evaluations, int32 (contractions + 1)
    accepted: jax.Array  # Armijo holds, or the last trial still strictly decreases f


def armijo_backtracking(
    value_fn: Callable[[jax.Array], jax.Array],
    retract: Callable[[jax.Array, jax.Array], jax.Array],
    x: jax.Array,
    d: jax.Array,
    f0: jax.Array,
    df0: jax.Array,
    alpha0: jax.Array,
    *,
    contraction: jax.Array,
    sufficient_decrease: jax.Array,
    max_contractions: int,
    reference: jax.Array | None = None,
) -> LineSearchResult:
    """Backtrack from ``alpha0`` until ``f(R_x(alpha d)) <= reference + c alpha df0``.

    A non-finite trial value never satisfies the condition (the search contracts past it).
    When the budget of ``max_contractions`` runs out, the last trial is still accepted if it
    strictly decreases ``f`` (as Manopt does); otherwise the step is rejected and the caller
    keeps ``x``.

    Args:
        value_fn: the objective on points ``(..., n, p)``, returning a real scalar.
        retract: the retraction ``(x, u) -> R_x(u)``.
        x: current point.
        d: search direction, a tangent vector at ``x`` with ``df0 < 0``.
        f0: ``f(x)``.
        df0: the directional derivative ``<grad f(x), d>``.
        alpha0: first trial multiplier (positive).
        contraction: factor in ``(0, 1)`` applied after each failed trial (traceable).
        sufficient_decrease: Armijo constant ``c`` in ``(0, 1)`` (traceable).
        max_contractions: static budget; at most ``max_contractions + 1`` evaluations.
        reference: the value the Armijo condition compares with (a non-monotone average,
            ``>= f0``); ``None`` is ``f0`` (monotone). The budget fallback still requires a
            strict decrease of ``f0``.

    Returns:
        A :class:`LineSearchResult`.
    """

    def trial(alpha):
        y = retract(x, alpha * d)
        return y, value_fn(y)

    ref = f0 if reference is None else reference

    def armijo(alpha, value):
        return jnp.isfinite(value) & (value <= ref + sufficient_decrease * alpha * df0)

    def cond(state):
        k, alpha, _, value = state
        return (k < max_contractions) & ~armijo(alpha, value)

    def body(state):
        k, alpha, _, _ = state
        alpha = contraction * alpha
        y, value = trial(alpha)
        return k + 1, alpha, y, value

    y0, v0 = trial(alpha0)
    k, alpha, y, value = jax.lax.while_loop(cond, body, (jnp.int32(0), alpha0, y0, v0))
    accepted = armijo(alpha, value) | (jnp.isfinite(value) & (value < f0))
    return LineSearchResult(alpha, y, value, k + 1, accepted)


def initial_alpha(
    rule: str,
    *,
    f0: jax.Array,
    prev_value: jax.Array,
    df0: jax.Array,
    prev_alpha: jax.Array,
    direction_norm: jax.Array,
    initial_step: jax.Array,
    optimism: jax.Array,
) -> jax.Array:
    """First trial multiplier of a search (see the module docstring for the rules).

    ``"adaptive"`` and ``"bb"`` start from ``prev_alpha``. ``prev_value``/``prev_alpha`` are
    NaN when there is no history (first step, or after a rejected step); a guess that is not
    finite and positive falls back to ``initial_step / direction_norm``.
    """
    default = initial_step / direction_norm
    if rule == "backtracking":
        guess = optimism * 2 * (f0 - prev_value) / df0
    else:
        guess = prev_alpha
    return jnp.where(jnp.isfinite(guess) & (guess > 0), guess, default)


def barzilai_borwein(s: jax.Array, y: jax.Array, step: jax.Array, accepted: jax.Array) -> jax.Array:
    """The ``"bb"`` rule's next guess from ``s = x_{k+1} - x_k`` and ``y = g_{k+1} - g_k``:
    ``<s, s> / |<s, y>|`` after an even ``step`` (the k-th, counted from 0), else
    ``|<s, y>| / <y, y>``, clipped to ``[1e-20, 1e20]``; NaN (the default restart) if the step
    was rejected or the ratio is undefined."""
    sy = jnp.abs(jnp.sum(s * y))
    long = jnp.sum(s * s) / sy
    short = sy / jnp.sum(y * y)
    guess = jnp.clip(jnp.where(step % 2 == 0, long, short), *_BB_CLIP)
    return jnp.where(accepted & (sy > 0) & jnp.isfinite(guess), guess, jnp.nan)


def next_alpha(rule: str, result: LineSearchResult) -> jax.Array:
    """History kept for the next search: the ``"adaptive"`` rule's next guess (NaN if the step
    was rejected; unused by ``"backtracking"``, which keeps the previous value instead, and by
    ``"bb"``, see :func:`barzilai_borwein`)."""
    if rule != "adaptive":
        return jnp.full_like(result.alpha, jnp.nan)
    keep = jnp.where(result.evaluations == 2, result.alpha, 2 * result.alpha)
    return jnp.where(result.accepted, keep, jnp.nan)
