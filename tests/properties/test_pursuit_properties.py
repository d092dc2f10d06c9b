"""Property-based tests of :mod:`jaxspec.pursuit`.

* matching pursuit: the residual norm never increases from one selection to the next, and
  each step removes exactly the largest normalized squared correlation (greedy optimality);
* OMP: the residual is orthogonal to the selected atoms and the codes are the least-squares
  fit on the support (NumPy ``lstsq``);
* ISTA with step ``<= 1/L``: the objective never increases, for all four thresholds;
* every threshold is the exact proximal map of its penalty (brute force over a fine grid).

Residuals and objectives are recomputed in NumPy from the returned codes.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxspec import pursuit

SEEDS = st.integers(0, 2**31 - 1)
DICT_SHAPES = st.sampled_from([(5, 8), (8, 6)])  # (d, K): overcomplete and undercomplete
THRESHOLDS = ("soft", "hard", "half", "cel0")
SETTINGS = settings(max_examples=25, deadline=None, database=None, derandomize=True)
STEPS = 6  # pursuit budget k (static)


def dictionary(rng, d, n_atoms, unit):
    a = rng.standard_normal((d, n_atoms))
    a /= np.linalg.norm(a, axis=0)
    if not unit:
        a *= rng.uniform(0.3, 3.0, n_atoms)
    return a


@functools.partial(jax.jit, static_argnames=("k", "orthogonal"))
def pursue(d, y, caps, *, k, orthogonal):
    solve = pursuit.omp_solve if orthogonal else pursuit.mp_solve
    return solve(d, y, k, max_atoms=caps)


@functools.partial(jax.jit, static_argnames=("threshold",))
def ista_step(d, y, lam, step, z, *, threshold):
    """One ISTA step from ``z`` (``tol=0``: never stops early)."""
    return pursuit.ista(d, y, lam, threshold=threshold, step=step, max_steps=1, tol=0.0, init=z)


def objective(threshold, d, y, z, lam):
    """``1/2 |y - D z|^2 + penalty`` in NumPy (CEL0 with the atom norms)."""
    fit = 0.5 * np.sum((y - d @ z) ** 2)
    if threshold == "soft":
        return fit + lam * np.sum(np.abs(z))
    if threshold == "hard":
        return fit + lam * np.count_nonzero(z)
    if threshold == "half":
        return fit + lam * np.sum(np.sqrt(np.abs(z)))
    a = np.linalg.norm(d, axis=0)
    return fit + np.sum(lam - 0.5 * np.maximum(np.sqrt(2 * lam) - a * np.abs(z), 0) ** 2)


# --------------------------------------------------------------------------- greedy pursuit


@SETTINGS
@given(shape=DICT_SHAPES, seed=SEEDS, unit=st.booleans())
def test_matching_pursuit_residual_never_increases_and_steps_are_greedy(shape, seed, unit):
    """Stopping MP after 0, 1, ..., k selections (the traced ``max_atoms`` cap, one compile):
    ``|r_{t+1}|^2 = |r_t|^2 - max_j <d_j, r_t>^2 / |d_j|^2 <= |r_t|^2``."""
    d_, n_atoms = shape
    rng = np.random.default_rng(seed)
    d = dictionary(rng, d_, n_atoms, unit)
    y = rng.standard_normal(d_) * 10.0 ** rng.uniform(-2, 2)
    caps = np.arange(STEPS + 1)
    sol = pursue(
        jnp.asarray(d), jnp.asarray(np.tile(y, (STEPS + 1, 1))), jnp.asarray(caps),
        k=STEPS, orthogonal=False,
    )  # fmt: skip
    codes = np.asarray(sol.codes)
    resid = y[None, :] - codes @ d.T
    rsq = np.sum(resid**2, axis=1)
    scale = 1e-12 * np.sum(y**2)
    np.testing.assert_allclose(np.asarray(sol.residual_sq), rsq, rtol=1e-9, atol=scale)
    assert np.all(np.diff(rsq) <= scale), np.diff(rsq)
    norms = np.linalg.norm(d, axis=0)
    for t in range(STEPS):
        best = np.max((d.T @ resid[t]) ** 2 / norms**2)
        assert abs((rsq[t] - rsq[t + 1]) - best) <= 1e-9 * np.sum(y**2), (t, rsq, best)


@SETTINGS
@given(shape=DICT_SHAPES, seed=SEEDS, unit=st.booleans(), sparse=st.booleans())
def test_omp_residual_is_orthogonal_to_the_selected_atoms(shape, seed, unit, sparse):
    """After every number of selections: ``D_S^T r = 0``, the codes are the least-squares fit
    on ``S`` (zero elsewhere) and the residual never increases."""
    d_, n_atoms = shape
    rng = np.random.default_rng(seed)
    d = dictionary(rng, d_, n_atoms, unit)
    if sparse:
        x = np.zeros(n_atoms)
        x[rng.choice(n_atoms, 3, replace=False)] = rng.standard_normal(3)
        y = d @ x + 1e-3 * rng.standard_normal(d_)
    else:
        y = rng.standard_normal(d_)
    k = min(d_, n_atoms, STEPS)
    caps = np.arange(k + 1)
    sol = pursue(
        jnp.asarray(d), jnp.asarray(np.tile(y, (k + 1, 1))), jnp.asarray(caps),
        k=k, orthogonal=True,
    )  # fmt: skip
    codes = np.asarray(sol.codes)
    support = np.asarray(sol.support)
    rsq = []
    for t in range(k + 1):
        sel = support[t][support[t] >= 0]
        assert len(set(sel.tolist())) == len(sel)  # OMP never re-selects an atom
        off = np.setdiff1d(np.arange(n_atoms), sel)
        assert np.all(codes[t][off] == 0)
        r = y - d @ codes[t]
        rsq.append(r @ r)
        if len(sel):
            corr = d[:, sel].T @ r
            assert np.abs(corr).max() <= 1e-9 * np.linalg.norm(y) * np.abs(d).max(), corr
            ls, *_ = np.linalg.lstsq(d[:, sel], y, rcond=None)
            np.testing.assert_allclose(codes[t][sel], ls, rtol=1e-7, atol=1e-9 * np.abs(ls).max())
    rsq = np.array(rsq)
    np.testing.assert_allclose(np.asarray(sol.residual_sq), rsq, rtol=1e-8, atol=1e-12 * (y @ y))
    assert np.all(np.diff(rsq) <= 1e-12 * (y @ y)), np.diff(rsq)


# --------------------------------------------------------------------------- ISTA


@settings(max_examples=16, deadline=None, database=None, derandomize=True)
@given(
    shape=DICT_SHAPES,
    seed=SEEDS,
    threshold=st.sampled_from(THRESHOLDS),
    log_lam=st.floats(-3.0, 0.5),
    step_factor=st.floats(0.1, 1.0),
)
def test_ista_objective_never_increases_with_step_at_most_one_over_L(
    shape, seed, threshold, log_lam, step_factor
):
    """Documented: with ``step <= 1/L``, ``L = |D|_2^2``, every threshold is an exact prox,
    so ISTA decreases ``F`` monotonically for all four penalties. ISTA is memoryless, so
    ``max_steps=1`` solves chained through ``init`` walk its trajectory (one compile)."""
    d_, n_atoms = shape
    rng = np.random.default_rng(seed)
    d = dictionary(rng, d_, n_atoms, unit=bool(rng.integers(2)))
    y = rng.standard_normal(d_)
    lam = 10.0**log_lam
    step = step_factor / np.linalg.norm(d, 2) ** 2
    z = jnp.zeros(n_atoms)
    values = [objective(threshold, d, y, np.zeros(n_atoms), lam)]
    dj, yj = jnp.asarray(d), jnp.asarray(y)
    for _ in range(15):
        sol = ista_step(dj, yj, lam, step, z, threshold=threshold)
        z = sol.codes
        f = objective(threshold, d, y, np.asarray(z), lam)
        assert abs(float(sol.objective) - f) <= 1e-10 * (1 + abs(f))
        values.append(f)
    values = np.array(values)
    assert np.all(np.diff(values) <= 1e-12 * (1 + values[:-1])), np.diff(values)


# --------------------------------------------------------------------------- thresholds


@functools.partial(jax.jit, static_argnames=("name",))
def apply_threshold(v, lam, a, step, *, name):
    if name == "cel0":
        return pursuit.cel0_threshold(v, lam, a, step)
    return pursuit.get_threshold(name)(v, lam)


def prox_objective(name, x, v, lam, a, step):
    """``1/2 (x - v)^2 + penalty(x)`` for the map each threshold claims to minimise."""
    quad = 0.5 * (x - v) ** 2
    if name == "soft":
        return quad + lam * np.abs(x)
    if name == "hard":
        return quad + lam * (x != 0)
    if name == "half":
        return quad + lam * np.sqrt(np.abs(x))
    return quad + step * (lam - 0.5 * np.maximum(np.sqrt(2 * lam) - a * np.abs(x), 0) ** 2)


@settings(max_examples=40, deadline=None, database=None, derandomize=True)
@given(
    name=st.sampled_from(THRESHOLDS),
    seed=SEEDS,
    log_lam=st.floats(-3.0, 1.0),
    log_a=st.floats(-1.0, 1.0),
    log_step=st.floats(-2.0, 0.5),
)
def test_thresholds_are_exact_proximal_maps(name, seed, log_lam, log_a, log_step):
    """Each output value is no worse than any point of a 40001-point grid around ``v`` (and
    than 0): it is the global minimiser of the (possibly nonconvex) prox subproblem."""
    rng = np.random.default_rng(seed)
    lam, a, step = 10.0**log_lam, 10.0**log_a, 10.0**log_step
    v = rng.standard_normal(16) * 3 * max(lam, 1.0)
    x = np.asarray(apply_threshold(jnp.asarray(v), lam, a, step, name=name))
    for vi, xi in zip(v, x):
        grid = np.concatenate([np.linspace(-abs(vi) - 1, abs(vi) + 1, 40001), [0.0, vi]])
        best = prox_objective(name, grid, vi, lam, a, step).min()
        got = prox_objective(name, xi, vi, lam, a, step)
        assert got <= best + 1e-12 * (1 + abs(best)), (vi, xi, got, best)


# About 45 s of worker time in all: CI runs the property suites in its slow step.
pytestmark = pytest.mark.slow
