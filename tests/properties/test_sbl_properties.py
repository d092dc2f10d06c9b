"""Property-based tests of :mod:`jaxspec.sbl`: the EM updates never increase the type-II
cost ``log|Sigma_y| + y^H Sigma_y^{-1} y`` (the negative log evidence up to constants), and
the reported cost is that cost, recomputed densely in NumPy.

* classical SBL (``update="em"``, fixed noise, no pruning; one and several measurement
  vectors): chained ``max_steps=1`` solves through ``gamma0`` (the iteration is a map of
  ``gamma`` alone, so this is its own trajectory, one compile);
* Kronecker SBL (``method="am"``, documented generalised EM without pruning): ``max_steps``
  is traceable, so one vmapped solve gives the whole trajectory;
* block SBL (``method="em"``, fixed ``r`` and noise, no pruning): the one-iteration map
  that the public loop runs (as in ``tests/sbl/test_block.py``), and the public solve ends
  on the same cost.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxspec import sbl
from jaxspec.sbl._block import _prepare, _step

SEEDS = st.integers(0, 2**31 - 1)
SETTINGS = settings(max_examples=15, deadline=None, database=None, derandomize=True)
LOG_SNR = st.floats(0.0, 4.0)  # 0 to 40 dB


def type_ii_cost(a, y, gamma_cov, noise_var):
    """``L log|Sigma_y| + tr(Y^H Sigma_y^{-1} Y)``, ``Sigma_y = s2 I + A Gamma A^H`` (dense)."""
    y = y.reshape(a.shape[0], -1)
    sigma_y = noise_var * np.eye(a.shape[0]) + a @ gamma_cov @ a.conj().T
    _, logdet = np.linalg.slogdet(sigma_y)
    return y.shape[1] * logdet + np.real(np.trace(y.conj().T @ np.linalg.solve(sigma_y, y)))


def sparse_data(rng, m, n, k, vectors, log_snr):
    a = rng.standard_normal((m, n))
    a /= np.linalg.norm(a, axis=0)
    x = np.zeros((n, vectors))
    x[rng.choice(n, k, replace=False)] = rng.standard_normal((k, vectors))
    y0 = a @ x
    noise_var = np.mean(y0**2) / 10.0**log_snr
    y = y0 + np.sqrt(noise_var) * rng.standard_normal(y0.shape)
    return a, y, noise_var


def assert_nonincreasing(costs):
    costs = np.asarray(costs)
    assert np.all(np.isfinite(costs))
    bound = 1e-10 * np.maximum(1.0, np.abs(costs[1:]))
    assert np.all(np.diff(costs) <= bound), np.diff(costs)


# --------------------------------------------------------------------------- classical SBL


@jax.jit
def em_step(a, y, noise_var, gamma):
    return sbl.sbl(
        a, y, noise_var=noise_var, update="em", max_steps=1, tol=1e-30, prune=0.0,
        gamma0=gamma, capacity=a.shape[1],
    )  # fmt: skip


@SETTINGS
@given(
    shape=st.sampled_from([(6, 12)]),  # M < N (Woodbury form)
    vectors=st.sampled_from([1, 3]),  # SBL and M-SBL
    seed=SEEDS,
    log_snr=LOG_SNR,
    log_gamma0=st.floats(-3.0, 2.0),
)
def test_em_sbl_cost_never_increases(shape, vectors, seed, log_snr, log_gamma0):
    m, n = shape
    rng = np.random.default_rng(seed)
    a, y, noise_var = sparse_data(rng, m, n, 3, vectors, log_snr)
    y_in = y[:, 0] if vectors == 1 else y
    gamma = jnp.asarray(10.0**log_gamma0 * rng.uniform(0.5, 2.0, n))
    aj, yj = jnp.asarray(a), jnp.asarray(y_in)
    costs = [type_ii_cost(a, y, np.diag(np.asarray(gamma)), noise_var)]
    for _ in range(12):
        sol = em_step(aj, yj, noise_var, gamma)
        gamma = sol.gamma
        g = np.asarray(gamma)
        assert np.all(g > 0) and int(sol.num_steps) == 1
        ref = type_ii_cost(a, y, np.diag(g), noise_var)
        assert abs(float(sol.cost) - ref) <= 1e-9 * (1 + abs(ref)), (float(sol.cost), ref)
        costs.append(ref)
    assert_nonincreasing(costs)


# --------------------------------------------------------------------------- Kronecker SBL

KRON_STEPS = 15


@jax.jit
def kron_trajectory(a1, a2, y, noise_var, g1, g2):
    def one(k):
        return sbl.kronecker_sbl(
            (a1, a2), y, method="am", noise_var=noise_var, max_steps=k, tol=1e-300,
            prune=0.0, gamma0=(g1, g2),
        )  # fmt: skip

    return jax.vmap(one)(jnp.arange(KRON_STEPS + 1))


@SETTINGS
@given(seed=SEEDS, log_snr=LOG_SNR, log_gamma0=st.floats(-2.0, 1.0))
def test_am_kronecker_sbl_cost_never_increases(seed, log_snr, log_gamma0):
    """Documented: "Without pruning, each EM step does not increase the type-II cost"."""
    rng = np.random.default_rng(seed)
    a1, a2 = rng.standard_normal((3, 4)), rng.standard_normal((4, 3))
    x1, x2 = np.zeros(4), np.zeros(3)
    x1[rng.choice(4, 2, replace=False)] = rng.standard_normal(2)
    x2[rng.integers(3)] = rng.standard_normal()
    a = np.kron(a1, a2)
    y0 = a @ np.kron(x1, x2)
    noise_var = max(np.mean(y0**2), 1e-3) / 10.0**log_snr
    y = y0 + np.sqrt(noise_var) * rng.standard_normal(y0.shape)
    g1 = 10.0**log_gamma0 * rng.uniform(0.5, 2.0, 4)
    g2 = rng.uniform(0.5, 2.0, 3)
    sol = kron_trajectory(*map(jnp.asarray, (a1, a2, y, noise_var, g1, g2)))
    assert np.array_equal(np.asarray(sol.num_steps), np.arange(KRON_STEPS + 1))
    costs = np.asarray(sol.cost)
    for k in (0, KRON_STEPS // 2, KRON_STEPS):
        gamma = np.asarray(sol.gamma[k])
        np.testing.assert_allclose(
            gamma, np.kron(np.asarray(sol.factors[0][k]), np.asarray(sol.factors[1][k])),
            rtol=1e-12,
        )  # fmt: skip
        ref = type_ii_cost(a, y, np.diag(gamma), noise_var)
        assert abs(costs[k] - ref) <= 1e-9 * (1 + abs(ref)), (k, costs[k], ref)
    assert_nonincreasing(costs)


# --------------------------------------------------------------------------- block SBL

BLOCK = 2


@jax.jit
def block_em_step(st_, data):
    return _step(st_, data, method="em", learn_corr=False, learn_noise=False)


# ``correlation`` is a traced number here (a static one would recompile per example)
block_solve = jax.jit(sbl.block_sbl, static_argnames=("block_size", "method", "max_steps"))


def ar1(r, d):
    return r ** np.abs(np.arange(d)[:, None] - np.arange(d)[None, :])


@SETTINGS
@given(seed=SEEDS, log_snr=LOG_SNR, r=st.floats(-0.9, 0.9))
def test_em_block_sbl_cost_never_increases(seed, log_snr, r):
    """Documented: with ``r`` and ``noise_var`` fixed, BSBL-EM never increases the cost."""
    rng = np.random.default_rng(seed)
    m, n = 6, 10
    a = rng.standard_normal((m, n))
    a /= np.linalg.norm(a, axis=0)
    x = np.zeros(n)
    blk = rng.integers(n // BLOCK)
    x[BLOCK * blk : BLOCK * (blk + 1)] = rng.standard_normal(BLOCK)
    y0 = a @ x
    noise_var = np.mean(y0**2) / 10.0**log_snr
    y = y0 + np.sqrt(noise_var) * rng.standard_normal(m)
    aj, yj = jnp.asarray(a), jnp.asarray(y)
    data, state = _prepare(aj, yj, BLOCK, noise_var, r, 0.0)
    costs = [float(state.post.cost)]
    for _ in range(20):
        state = block_em_step(state, data)
        costs.append(float(state.post.cost))
    gamma = np.asarray(state.gamma)
    cov = np.kron(np.diag(gamma), ar1(r, BLOCK))
    ref = type_ii_cost(a, y, cov, noise_var)
    assert abs(costs[-1] - ref) <= 1e-9 * (1 + abs(ref)), (costs[-1], ref)
    assert_nonincreasing(costs)
    public = block_solve(
        aj, yj, BLOCK, method="em", noise_var=noise_var, correlation=r, max_steps=20,
        tol=1e-300, prune=0.0,
    )  # fmt: skip
    assert int(public.num_steps) == 20
    np.testing.assert_allclose(float(public.cost), costs[-1], rtol=1e-10, atol=1e-10)


# About 45 s of worker time in all: CI runs the property suites in its slow step.
pytestmark = pytest.mark.slow
