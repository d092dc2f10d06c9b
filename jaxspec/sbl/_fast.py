"""Tipping and Faul's fast sequential SBL with a fixed-capacity active set."""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular

from jaxspec._checks import check_int, check_positive
from jaxspec._status import Status
from jaxspec.sbl._common import (
    abs2,
    check_dictionary_and_data,
    check_noise_var,
    herm,
    real_dtype,
)
from jaxspec.sbl._solution import SBLSolution

_NOISE_FLOOR = 100.0  # learned noise_var >= _NOISE_FLOOR * eps * ||y||^2 / M


class _Model(NamedTuple):
    """The active set: ``capacity`` slots, each empty or holding one atom and its ``alpha``."""

    index: jax.Array  # (K,) int32 atom in each slot (0 when empty)
    occupied: jax.Array  # (K,) bool
    alpha: jax.Array  # (K,) precision 1/gamma of each slot (1 when empty)
    slot: jax.Array  # (N,) int32 slot of each atom, -1 when not in the model
    beta: jax.Array  # noise precision 1/noise_var


class _Stats(NamedTuple):
    mean: jax.Array  # (K,) posterior mean of the slots (0 when empty)
    cov_diag: jax.Array  # (K,) diag(Sigma) of the slots (0 when empty)
    chol: jax.Array  # (K, K) Cholesky factor of Sigma^{-1} (identity rows when empty)
    s: jax.Array  # (N,) sparsity factors s_m (excluding m)
    q: jax.Array  # (N,) quality factors q_m (excluding m)
    residual_sq: jax.Array  # ||y - A mu||^2


class _State(NamedTuple):
    model: _Model
    stats: _Stats
    step: jax.Array
    done: jax.Array  # no action improves the evidence by more than tol (at this noise)
    blocked: jax.Array  # an addition would help but the active set is full
    settled: jax.Array  # the last noise re-estimate moved log(noise_var) by at most tol


def _statistics(model: _Model, gram, diag_gram, aty, yy) -> _Stats:
    """Posterior of the active set and ``s``, ``q`` for every atom (Tipping and Faul 2003,
    eqs. 19-24), from the Gram matrix: ``O(K^2 N)``."""
    occ = model.occupied
    beta = model.beta
    rows = jnp.where(occ[:, None], gram[model.index, :], 0)  # (K, N): G_{A,:}
    g_aa = jnp.where(occ[None, :], rows[:, model.index], 0)  # (K, K)
    eye = jnp.eye(occ.shape[0], dtype=gram.dtype)
    precision = beta * g_aa + jnp.diag(jnp.where(occ, model.alpha, 1.0).astype(gram.dtype))
    precision = jnp.where(occ[:, None] & occ[None, :], precision, eye)
    chol = jnp.linalg.cholesky(precision)
    b_a = jnp.where(occ, aty[model.index], 0)
    tmp = solve_triangular(chol, b_a, lower=True)
    mean = beta * solve_triangular(herm(chol), tmp, lower=False)
    mean = jnp.where(occ, mean, 0)
    chol_inv = solve_triangular(chol, eye, lower=True)
    cov_diag = jnp.where(occ, jnp.sum(abs2(chol_inv), axis=0), 0)
    w = solve_triangular(chol, rows, lower=True)  # L^{-1} G_{A,:}, Sigma = L^{-H} L^{-1}
    big_s = beta * diag_gram - beta**2 * jnp.sum(abs2(w), axis=0)
    big_q = beta * (aty - herm(rows) @ mean)
    # Residual ||y - A_A mu||^2 = ||y||^2 - 2 Re(b_A^H mu) + mu^H G_AA mu.
    residual_sq = yy - 2 * jnp.real(jnp.vdot(b_a, mean)) + jnp.real(jnp.vdot(mean, g_aa @ mean))
    residual_sq = jnp.maximum(residual_sq, 0)
    in_model = model.slot >= 0
    alpha_m = jnp.where(in_model, model.alpha[jnp.maximum(model.slot, 0)], jnp.inf)
    denom = jnp.where(in_model, alpha_m - big_s, 1.0)
    s = jnp.where(in_model, alpha_m * big_s / denom, big_s)
    q = jnp.where(in_model, alpha_m * big_q / denom, big_q)
    return _Stats(mean, cov_diag, chol, s, q, residual_sq)


def _contribution(alpha, s, q2):
    """Evidence term of one atom, ``log alpha - log(alpha + s) + |q|^2 / (alpha + s)`` (its
    change decides the action; the real model has a factor 1/2 that does not change it)."""
    return jnp.log(alpha) - jnp.log(alpha + s) + q2 / (alpha + s)


def _choose(model: _Model, stats: _Stats, tol):
    """The best action over all atoms: ``(atom, new alpha, kind, gain, done, blocked)``; kind
    0 = add, 1 = re-estimate, 2 = delete."""
    in_model = model.slot >= 0
    alpha_m = jnp.where(in_model, model.alpha[jnp.maximum(model.slot, 0)], 1.0)
    s, q2 = stats.s, abs2(stats.q)
    theta = q2 - s
    relevant = theta > 0
    safe_theta = jnp.where(relevant, theta, 1.0)
    new_alpha = jnp.where(relevant, s**2 / safe_theta, jnp.inf)
    safe_new = jnp.where(relevant, new_alpha, 1.0)
    full = jnp.all(model.occupied)
    count = jnp.sum(model.occupied)
    add_gain = jnp.where(relevant, (q2 - s) / s + jnp.log(s / jnp.where(relevant, q2, 1.0)), 0)
    reest_gain = _contribution(safe_new, s, q2) - _contribution(alpha_m, s, q2)
    delete_gain = -_contribution(alpha_m, s, q2)
    neg = -jnp.inf
    gain_add = jnp.where(~in_model & relevant, add_gain, neg)
    gain_re = jnp.where(in_model & relevant, reest_gain, neg)
    gain_del = jnp.where(in_model & ~relevant & (count > 1), delete_gain, neg)
    allowed_add = jnp.where(full, neg, gain_add)
    gains = jnp.stack([allowed_add, gain_re, gain_del])  # (3, N)
    flat = jnp.argmax(gains)
    kind, atom = flat // gains.shape[1], flat % gains.shape[1]
    gain = gains[kind, atom]
    # Converged: no addition or deletion gains, and every re-estimate moves log(alpha) by at
    # most tol (SparseBayes' MinDeltaLogAlpha rule).
    log_change = jnp.where(in_model & relevant, jnp.abs(jnp.log(safe_new / alpha_m)), 0)
    structural = jnp.maximum(jnp.max(allowed_add), jnp.max(gain_del))
    done = (structural <= 0) & (jnp.max(log_change) <= tol)
    blocked = full & (jnp.max(gain_add) > 0)
    return atom, new_alpha[atom], kind, gain, done, blocked


def _apply(model: _Model, atom, new_alpha, kind) -> _Model:
    slot_of_atom = model.slot[atom]
    free = jnp.argmin(model.occupied)  # first empty slot
    target = jnp.where(kind == 0, free, jnp.maximum(slot_of_atom, 0))
    index = model.index.at[target].set(jnp.where(kind == 2, 0, atom).astype(jnp.int32))
    occupied = model.occupied.at[target].set(kind != 2)
    alpha = model.alpha.at[target].set(jnp.where(kind == 2, 1.0, new_alpha))
    slot = model.slot.at[atom].set(jnp.where(kind == 2, -1, target).astype(jnp.int32))
    return model._replace(index=index, occupied=occupied, alpha=alpha, slot=slot)


def fast_sbl(
    A: jax.typing.ArrayLike,
    y: jax.typing.ArrayLike,
    *,
    noise_var: jax.typing.ArrayLike | None = None,
    max_steps: int = 1000,
    tol: jax.typing.ArrayLike = 1e-3,
    capacity: int | None = None,
    noise_var0: jax.typing.ArrayLike | None = None,
    throw: bool = False,
) -> SBLSolution:
    r"""Fast marginal-likelihood SBL (Tipping and Faul 2003) with a fixed-capacity active set.

    The type-II likelihood separates into the contribution of one atom ``m``,
    ``l(alpha_m) = log alpha_m - log(alpha_m + s_m) + |q_m|^2 / (alpha_m + s_m)`` (times 1/2
    for real data), with the sparsity and quality factors ``s_m``, ``q_m`` measured without
    ``m``; it is maximized by ``alpha_m = s_m^2 / (|q_m|^2 - s_m)`` when ``|q_m|^2 > s_m`` and
    by ``alpha_m = inf`` (out of the model) otherwise. Each step computes ``s``, ``q`` for all
    atoms from the current model and takes the single action (add an atom, re-estimate its
    ``alpha`` or delete it) that increases the likelihood most. The model starts empty. When
    ``noise_var`` is learned, it is re-estimated
    (``||y - A mu||^2 / (M - sum_i (1 - alpha_i Sigma_ii))``) each time no action helps at
    the current level, and the run ends when that re-estimate moves ``log noise_var`` by at
    most ``tol``.

    The active set has ``capacity`` slots (static), so the step costs ``O(K^2 N)`` with
    ``K = capacity`` (the Gram matrix ``A^H A`` is formed once, ``O(M N^2)``) however many
    atoms are in the model, and the solve jits and vmaps. When an addition would still
    increase the likelihood but every slot is taken, the run ends with status
    ``ACTIVE_SET_FULL``: raise ``capacity``.

    Stopping (``CONVERGED``): no addition or deletion increases the likelihood and every
    re-estimate would change ``log alpha`` by at most ``tol`` (SparseBayes' rule).

    Args:
        A: dictionary ``(M, N)``, real or complex.
        y: measurements ``(M,)``.
        noise_var: fixed noise variance ``> 0`` (traceable) or ``None`` to learn it.
        max_steps: step budget (static); one step changes one atom.
        tol: threshold on ``|Delta log alpha|`` of re-estimates (and on the change of
            ``log noise_var`` when it is learned), ``> 0`` (traceable; SparseBayes' 1e-3).
        capacity: active-set slots (static); default ``min(M, N)``.
        noise_var0: initial noise variance when it is learned (default ``0.1 ||y||^2 / M``).
        throw: raise at run time unless the status is ``CONVERGED``.

    Returns:
        An :class:`SBLSolution` (``gamma = 1 / alpha`` in the model, 0 outside).

    Raises:
        ValueError: naming the argument for bad shapes/dtypes, ``noise_var <= 0``,
            ``tol <= 0``, ``capacity`` outside ``[1, N]`` or a negative ``max_steps``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxspec import sbl
        >>> A = jax.random.normal(jax.random.key(0), (20, 40))
        >>> x = jnp.zeros(40).at[jnp.array([3, 17, 31])].set(jnp.array([1.0, -2.0, 1.5]))
        >>> sol = sbl.fast_sbl(A, A @ x, capacity=10)
        >>> [int(i) for i in jnp.flatnonzero(sol.gamma)]
        [3, 17, 31]

    References:
        Tipping and Faul, "Fast marginal likelihood maximisation for sparse Bayesian
        models", AISTATS 2003.
        Tipping, "Sparse Bayesian learning and the relevance vector machine", JMLR 1, 2001.
    """
    a, y2, vector = check_dictionary_and_data(A, y)
    if not vector:
        raise ValueError(f"`y` must be one vector (M,) for fast_sbl, got {tuple(y2.shape)}.")
    m, n = a.shape
    capacity = min(m, n) if capacity is None else capacity
    capacity = check_int(capacity, "capacity", minimum=1)
    if capacity > n:
        raise ValueError(f"`capacity` must be <= N = {n}, got {capacity}.")
    max_steps = check_int(max_steps, "max_steps", minimum=0)
    check_noise_var(noise_var)
    check_positive(tol, "tol")
    if noise_var0 is not None:
        check_positive(noise_var0, "noise_var0")
    rdtype = real_dtype(a.dtype)
    yv = y2[:, 0]
    gram = herm(a) @ a
    diag_gram = jnp.real(jnp.diagonal(gram))
    aty = herm(a) @ yv
    yy = jnp.sum(abs2(yv))
    eps = jnp.finfo(rdtype).eps
    noise_floor = _NOISE_FLOOR * eps * yy / m
    learn = noise_var is None
    if learn:
        start = 0.1 * yy / m if noise_var0 is None else jnp.asarray(noise_var0, rdtype)
        noise0 = jnp.maximum(start, noise_floor)
    else:
        noise0 = jnp.asarray(noise_var, rdtype)
    tol = jnp.asarray(tol, rdtype)

    def stats_of(model):
        return _statistics(model, gram, diag_gram, aty, yy)

    def noise_update(model: _Model, stats: _Stats) -> _Model:
        if not learn:
            return model
        g = jnp.where(model.occupied, 1 - model.alpha * stats.cov_diag, 0)
        noise = stats.residual_sq / jnp.maximum(m - jnp.sum(g), 1.0)
        return model._replace(beta=1 / jnp.maximum(noise, noise_floor))

    model0 = _Model(
        index=jnp.zeros(capacity, jnp.int32),
        occupied=jnp.zeros(capacity, bool),
        alpha=jnp.ones(capacity, rdtype),
        slot=jnp.full(n, -1, jnp.int32),
        beta=(1 / noise0).astype(rdtype),
    )
    stats0 = stats_of(model0)
    _, _, _, _, done0, blocked0 = _choose(model0, stats0, tol)

    def body(st: _State) -> _State:
        # A step is one action on the atoms; once no action helps at the current noise level
        # (and the noise is learned) the step re-estimates the noise instead.
        atom, new_alpha, kind, _, _, _ = _choose(st.model, st.stats, tol)
        model = _apply(st.model, atom, new_alpha, kind)
        settled = jnp.bool_(True)
        if learn:
            renoised = noise_update(st.model, st.stats)
            settled = st.done & (jnp.abs(jnp.log(renoised.beta / st.model.beta)) <= tol)
            model = jax.tree.map(lambda r, m: jnp.where(st.done, r, m), renoised, model)
        stats = stats_of(model)
        _, _, _, _, done, blocked = _choose(model, stats, tol)
        return _State(model, stats, st.step + 1, done, blocked, settled)

    def running(st: _State) -> jax.Array:
        finite = jnp.all(jnp.isfinite(st.stats.mean)) & jnp.isfinite(st.model.beta)
        return (st.step < max_steps) & ~(st.done & st.settled) & ~st.blocked & finite

    init = _State(model0, stats0, jnp.int32(0), done0, blocked0, jnp.bool_(not learn))
    st = jax.lax.while_loop(running, body, init)
    model, stats = st.model, st.stats
    occ = model.occupied
    gamma_slots = jnp.where(occ, 1 / model.alpha, 0)
    gamma = jnp.zeros(n, rdtype).at[model.index].add(jnp.where(occ, gamma_slots, 0))
    mean = jnp.zeros(n, a.dtype).at[model.index].add(jnp.where(occ, stats.mean, 0))
    cov_diag = jnp.zeros(n, rdtype).at[model.index].add(jnp.where(occ, stats.cov_diag, 0))
    noise = 1 / model.beta
    # log|Sigma_y| = M log noise + sum log gamma_A + log|Sigma_A^{-1}|;
    # y^H Sigma_y^{-1} y = ||y - A mu||^2 / noise + sum alpha |mu|^2.
    logdet = (
        m * jnp.log(noise)
        + jnp.sum(jnp.where(occ, jnp.log(jnp.where(occ, gamma_slots, 1.0)), 0))
        + 2 * jnp.sum(jnp.log(jnp.real(jnp.diagonal(stats.chol))))
    )
    prior = jnp.sum(jnp.where(occ, model.alpha, 0) * abs2(stats.mean))
    cost = logdet + stats.residual_sq / noise + prior
    finite = jnp.all(jnp.isfinite(mean)) & jnp.isfinite(cost)
    status = jnp.where(
        ~finite,
        jnp.int32(Status.NONFINITE),
        jnp.where(
            st.done & st.settled,
            jnp.int32(Status.CONVERGED),
            jnp.where(st.blocked, jnp.int32(Status.ACTIVE_SET_FULL), jnp.int32(Status.MAX_STEPS)),
        ),
    )
    sol = SBLSolution(mean, gamma, noise, cost, cov_diag, st.step, status)
    if throw:
        mean = eqx.error_if(
            sol.mean, sol.status != Status.CONVERGED, "fast_sbl did not converge (status != 0)."
        )
        sol = sol._replace(mean=mean)
    return sol
