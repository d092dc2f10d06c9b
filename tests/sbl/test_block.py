"""Block SBL ``sbl.block_sbl`` (BSBL-BO / BSBL-EM with AR(1) intra-block correlation).

References: the dense posterior ``Sigma = (A^H A / lambda + Sigma_0^{-1})^{-1}``,
``mu = Sigma A^H y / lambda`` and the literal update formulas of Zhang and Rao (2013), with
``B^{-1}``, ``sqrtm(B)`` and ``H = A^H Sigma_y^{-1}`` formed densely in NumPy/SciPy; classical
per-coefficient SBL (``block_size=1``, ``correlation=0``) as the recovery baseline, on a
scaled-down BSBL-FM demo setup.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from threadpoolctl import threadpool_limits

from jaxspec import Status
from jaxspec.sbl._block import _ar1, _covariance, _posterior, _prepare, _step, block_sbl

F64 = jnp.float64
F32 = jnp.float32

solve = jax.jit(block_sbl, static_argnames=("block_size", "method", "correlation", "max_steps"))
posterior = jax.jit(_posterior)
step_fn = jax.jit(_step, static_argnames=("method", "learn_corr", "learn_noise"))


@pytest.fixture(autouse=True, scope="module")
def _single_threaded_blas():
    """jaxlib's CPU trsm/potrf call scipy's OpenBLAS, whose worker threads make a 64 x 64
    triangular solve ~100x slower on a loaded 2-core machine; one thread for this module."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


# --------------------------------------------------------------------------- problems


def toeplitz_ar1(r, d):
    return r ** np.abs(np.arange(d)[:, None] - np.arange(d)[None, :])


def block_problem(seed, m=64, n=128, d=8, k=4, r=0.9, snr_db=20.0, complex_=False):
    """Unit-norm Gaussian columns; ``k`` random blocks of AR(1) (``r``) coefficients."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, n))
    if complex_:
        a = a + 1j * rng.standard_normal((m, n))
    a /= np.linalg.norm(a, axis=0)
    support = np.sort(rng.choice(n // d, k, replace=False))
    chol = np.linalg.cholesky(toeplitz_ar1(r, d))
    x = np.zeros(n, a.dtype)
    for i in support:
        z = rng.standard_normal(d)
        if complex_:
            z = (z + 1j * rng.standard_normal(d)) / np.sqrt(2)
        x[i * d : (i + 1) * d] = chol @ z
    y0 = a @ x
    y = y0
    if snr_db is not None:
        sigma = np.linalg.norm(y0) / np.sqrt(m) * 10 ** (-snr_db / 20)
        e = rng.standard_normal(m)
        if complex_:
            e = (e + 1j * rng.standard_normal(m)) / np.sqrt(2)
        y = y0 + sigma * e
    return a, y, x, support


def stack_problems(seeds, **kw):
    probs = [block_problem(s, **kw) for s in seeds]
    return tuple(np.stack([p[i] for p in probs]) for i in range(3)), [p[3] for p in probs]


def nmse_db(x_hat, x):
    err = np.sum(np.abs(np.asarray(x_hat) - x) ** 2, axis=-1) / np.sum(np.abs(x) ** 2, axis=-1)
    return 10 * np.log10(np.mean(err))


# --------------------------------------------------------------------------- 1. E-step, M-step


def dense_reference(a, y, gamma, r, lam, d):
    """Dense posterior, cost and the literal BSBL updates (NumPy, float64/complex128)."""
    m, n = a.shape
    b = toeplitz_ar1(r, d)
    sigma0 = np.kron(np.diag(gamma), b)
    sigma = np.linalg.inv(a.conj().T @ a / lam + np.linalg.inv(sigma0))
    mu = sigma @ a.conj().T @ y / lam
    sigma_y = lam * np.eye(m) + a @ sigma0 @ a.conj().T
    cost = np.linalg.slogdet(sigma_y)[1] + np.real(y.conj() @ np.linalg.solve(sigma_y, y))
    h = a.conj().T @ np.linalg.inv(sigma_y)
    hy, ha = h @ y, h @ a
    b_inv, b_half = np.linalg.inv(b), scipy.linalg.sqrtm(b)
    em, bo, b_tilde, spread = [], [], np.zeros((d, d), a.dtype), 0.0
    for i in range(n // d):
        s = slice(i * d, (i + 1) * d)
        cov_i = sigma[s, s] + np.outer(mu[s], mu[s].conj())
        em.append(np.real(np.trace(b_inv @ cov_i)) / d)
        bo.append(
            gamma[i] * np.linalg.norm(b_half @ hy[s]) / np.sqrt(np.real(np.trace(ha[s, s] @ b)))
        )
        b_tilde += cov_i / gamma[i]
        spread += np.real(np.trace(a[:, s] @ sigma[s, s] @ a[:, s].conj().T))
    r_new = np.mean(np.real(np.diag(b_tilde, 1))) / np.mean(np.real(np.diag(b_tilde)))
    lam_new = (np.linalg.norm(y - a @ mu) ** 2 + spread) / m
    return {
        "mean": mu,
        "covariance_diag": np.real(np.diag(sigma)),
        "cost": cost,
        "em": np.array(em),
        "bo": np.array(bo),
        "corr": r_new,
        "noise_var": lam_new,
    }


def small_problem(complex_, seed=0, m=12, n=24, d=4):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, n))
    y = rng.standard_normal(m)
    if complex_:
        a = a + 1j * rng.standard_normal((m, n))
        y = y + 1j * rng.standard_normal(m)
    gamma = rng.uniform(0.3, 2.0, n // d)
    return a, y, gamma


@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
def test_posterior_and_updates_match_dense_formulas(complex_):
    d, r, lam = 4, 0.6, 0.3
    a, y, gamma = small_problem(complex_)
    ref = dense_reference(a, y, gamma, r, lam, d)
    m, n = a.shape
    b = _ar1(jnp.asarray(r), d, F64)
    np.testing.assert_allclose(b, toeplitz_ar1(r, d), rtol=1e-15)
    post = posterior(jnp.asarray(a).reshape(m, n // d, d), jnp.asarray(y), gamma, b, lam)
    cov_diag = np.real(np.diagonal(_covariance(jnp.asarray(gamma), b, post.hah), 0, 1, 2))
    np.testing.assert_allclose(post.mean, ref["mean"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(cov_diag.reshape(n), ref["covariance_diag"], rtol=1e-10)
    np.testing.assert_allclose(post.cost, ref["cost"], rtol=1e-10)

    # One step from that E-step, without pruning: gamma (both rules), r and noise_var.
    data, st = _prepare(jnp.asarray(a), jnp.asarray(y), d, None, "learn", 0.0)
    st = st._replace(
        gamma=jnp.asarray(gamma), corr=jnp.asarray(r), noise_var=jnp.asarray(lam), post=post
    )
    for method in ("em", "bo"):
        new = step_fn(st, data, method=method, learn_corr=True, learn_noise=True)
        np.testing.assert_allclose(new.gamma, ref[method], rtol=1e-10)
        np.testing.assert_allclose(new.corr, ref["corr"], rtol=1e-10)
        np.testing.assert_allclose(new.noise_var, ref["noise_var"], rtol=1e-10)
        assert int(new.step) == 1


def test_pruned_block_is_exactly_zero_and_drops_out():
    """gamma_i = 0: mean and covariance zero there, the rest equals the problem without it."""
    d, r, lam = 4, -0.5, 0.2
    a, y, gamma = small_problem(False, seed=1)
    gamma[2] = 0.0
    m, n = a.shape
    b = _ar1(jnp.asarray(r), d, F64)
    post = posterior(jnp.asarray(a).reshape(m, n // d, d), jnp.asarray(y), gamma, b, lam)
    cov = np.real(np.diagonal(_covariance(jnp.asarray(gamma), b, post.hah), 0, 1, 2))
    keep = np.ones(n, bool)
    keep[2 * d : 3 * d] = False
    ref = dense_reference(a[:, keep], y, np.delete(gamma, 2), r, lam, d)
    assert np.all(np.asarray(post.mean)[~keep] == 0) and np.all(cov.reshape(n)[~keep] == 0)
    np.testing.assert_allclose(np.asarray(post.mean)[keep], ref["mean"], rtol=1e-10)
    np.testing.assert_allclose(cov.reshape(n)[keep], ref["covariance_diag"], rtol=1e-10)
    np.testing.assert_allclose(post.cost, ref["cost"], rtol=1e-10)


# --------------------------------------------------------------------------- 2. recovery


@pytest.mark.slow  # over the unit budget; CI runs it in the slow step
def test_recovery_beats_classical_sbl_and_learns_correlation():
    """64 x 128, 4 of 16 blocks of 8 with AR(1) r = 0.9, 20 dB, noise learned; 3 trials."""
    (a, y, x), _ = stack_problems((0, 1, 2), snr_db=20.0)
    runs = {
        "bo": lambda a, y: block_sbl(a, y, 8, method="bo"),
        "em": lambda a, y: block_sbl(a, y, 8, method="em"),
        "sbl": lambda a, y: block_sbl(a, y, 1, method="em", correlation=0.0),
    }
    sols = {k: jax.jit(jax.vmap(f))(a, y) for k, f in runs.items()}
    nmse = {k: nmse_db(sol.mean, x) for k, sol in sols.items()}
    for method in ("bo", "em"):
        sol = sols[method]
        assert np.all(np.asarray(sol.status) != Status.NONFINITE), sol.status
        assert nmse[method] < nmse["sbl"] - 3.0, nmse
        assert nmse[method] < -15.0, nmse
        assert abs(float(np.mean(sol.correlation)) - 0.9) < 0.2, sol.correlation


@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
def test_noiseless_recovers_the_support(complex_):
    (a, y, x), supports = stack_problems((10, 11, 12), snr_db=None, complex_=complex_)
    scale = np.mean(np.abs(y) ** 2)
    sols = jax.jit(jax.vmap(lambda a, y: block_sbl(a, y, 8, noise_var=1e-10 * scale)))(a, y)
    assert np.all(np.asarray(sols.status) == Status.CONVERGED), sols.status
    for i, support in enumerate(supports):
        np.testing.assert_array_equal(np.flatnonzero(np.asarray(sols.gamma[i])), support)
        err = np.linalg.norm(np.asarray(sols.mean[i]) - x[i]) / np.linalg.norm(x[i])
        assert err < 1e-4, err


# --------------------------------------------------------------------------- 3. EM monotone


@pytest.mark.slow
def test_em_cost_is_non_increasing_and_bo_is_faster():
    """Fixed noise_var and r, no pruning: every EM step lowers the type-II cost (up to
    round-off); the public loop runs the same steps; BO stops at a similar cost sooner."""
    a, y, _, _ = block_problem(5, m=48, n=96, snr_db=20.0)
    lam, r = 0.1 * np.mean(y**2), 0.8
    kw = dict(noise_var=lam, correlation=r, max_steps=3000, tol=1e-6, prune=0.0)
    em = solve(a, y, 8, method="em", **kw)
    bo = solve(a, y, 8, method="bo", **kw)
    assert int(em.status) == int(bo.status) == Status.CONVERGED, (em.status, bo.status)
    assert int(bo.num_steps) < int(em.num_steps) / 2, (bo.num_steps, em.num_steps)
    # EM's slow tail (gamma of dropped blocks decays geometrically) stops it a little above
    # BO's cost: BO must be at least as low and within 1%.
    gap = float(bo.cost) - float(em.cost)
    assert -1e-2 * abs(float(em.cost)) < gap < 1e-6 * abs(float(em.cost)), (bo.cost, em.cost)

    data, st = _prepare(jnp.asarray(a), jnp.asarray(y), 8, lam, r, 0.0)
    step = jax.jit(
        functools.partial(_step, data=data, method="em", learn_corr=False, learn_noise=False)
    )
    costs = [float(st.post.cost)]
    for _ in range(int(em.num_steps)):
        st = step(st)
        costs.append(float(st.post.cost))
    costs = np.array(costs)
    increase = np.max(np.diff(costs))
    assert increase <= 1e-12 * np.max(np.abs(costs)), increase
    assert costs[-1] < costs[0] - 1.0, costs[[0, -1]]
    np.testing.assert_allclose(em.cost, costs[-1], rtol=1e-12)
    np.testing.assert_allclose(em.gamma, st.gamma, rtol=1e-10, atol=1e-14)


# --------------------------------------------------------------------------- 4. JAX contracts


@pytest.mark.slow  # over the unit budget; CI runs it in the slow step
def test_jit_equals_eager():
    a, y, _, _ = block_problem(7, m=24, n=48, d=4, k=2, complex_=True)
    eager = block_sbl(a, y, 4, max_steps=300)
    jitted = solve(a, y, 4, max_steps=300)
    assert int(eager.status) != Status.NONFINITE
    for name in ("mean", "gamma", "correlation", "noise_var", "cost", "covariance_diag"):
        np.testing.assert_allclose(
            getattr(jitted, name), getattr(eager, name), rtol=1e-7, atol=1e-10, err_msg=name
        )
    assert abs(int(jitted.num_steps) - int(eager.num_steps)) <= 1


def test_vmap_over_problems_equals_loop():
    (a, y, _), _ = stack_problems((20, 21, 22), m=24, n=48, d=4, k=2)
    batched = jax.jit(jax.vmap(lambda a, y: block_sbl(a, y, 4, max_steps=300)))(a, y)
    for i in range(len(a)):
        one = solve(a[i], y[i], 4, max_steps=300)
        for name in one._fields:
            np.testing.assert_allclose(
                getattr(batched, name)[i], getattr(one, name), rtol=1e-9, atol=1e-12, err_msg=name
            )


def test_vmap_over_noise_var_equals_loop():
    a, y, _, _ = block_problem(8, m=24, n=48, d=4, k=2)
    lams = np.array([1e-3, 1e-2, 1e-1]) * np.mean(y**2)
    batched = jax.jit(jax.vmap(lambda lam: block_sbl(a, y, 4, noise_var=lam, max_steps=300)))(lams)
    np.testing.assert_allclose(batched.noise_var, lams, rtol=1e-15)
    for i, lam in enumerate(lams):
        one = solve(a, y, 4, noise_var=float(lam), max_steps=300)
        np.testing.assert_allclose(batched.mean[i], one.mean, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(batched.cost[i], one.cost, rtol=1e-9)
        assert int(batched.num_steps[i]) == int(one.num_steps)


def test_float32_agrees_with_float64():
    a, y, x, _ = block_problem(9, m=48, n=96, snr_db=25.0)
    s64 = solve(a, y, 8)
    s32 = solve(a.astype(np.float32), y.astype(np.float32), 8, tol=1e-5)
    assert s32.mean.dtype == F32 and s32.gamma.dtype == F32 and s32.cost.dtype == F32
    assert int(s32.status) == int(s64.status) == Status.CONVERGED, (s32.status, s64.status)
    np.testing.assert_array_equal(np.flatnonzero(s32.gamma > 0), np.flatnonzero(s64.gamma > 0))
    rel = np.linalg.norm(np.asarray(s32.mean, np.float64) - s64.mean) / np.linalg.norm(s64.mean)
    assert rel < 1e-2, rel
    assert abs(float(s32.correlation) - float(s64.correlation)) < 1e-2


# --------------------------------------------------------------------------- 5. inputs


A8 = np.ones((4, 8))
Y4 = np.ones(4)
BAD = [
    ("A", lambda: block_sbl(np.ones(8), Y4, 2)),
    ("A", lambda: block_sbl(np.ones((4, 8), np.int32), Y4, 2)),
    ("y", lambda: block_sbl(A8, np.ones(5), 2)),
    ("y", lambda: block_sbl(A8, np.ones((4, 1)), 2)),
    ("y", lambda: block_sbl(A8, np.ones(4, np.int64), 2)),
    ("block_size", lambda: block_sbl(A8, Y4, 3)),
    ("block_size", lambda: block_sbl(A8, Y4, 0)),
    ("block_size", lambda: block_sbl(A8, Y4, 2.0)),
    ("method", lambda: block_sbl(A8, Y4, 2, method="fm")),
    ("noise_var", lambda: block_sbl(A8, Y4, 2, noise_var=0.0)),
    ("noise_var", lambda: block_sbl(A8, Y4, 2, noise_var=-1.0)),
    ("correlation", lambda: block_sbl(A8, Y4, 2, correlation=1.0)),
    ("correlation", lambda: block_sbl(A8, Y4, 2, correlation=-1.5)),
    ("correlation", lambda: block_sbl(A8, Y4, 2, correlation="fixed")),
    ("tol", lambda: block_sbl(A8, Y4, 2, tol=0.0)),
    ("prune", lambda: block_sbl(A8, Y4, 2, prune=1.0)),
    ("prune", lambda: block_sbl(A8, Y4, 2, prune=-0.1)),
    ("max_steps", lambda: block_sbl(A8, Y4, 2, max_steps=-1)),
]


@pytest.mark.parametrize(("name", "call"), BAD, ids=[f"{n}-{i}" for i, (n, _) in enumerate(BAD)])
def test_bad_inputs_raise_naming_the_argument(name, call):
    with pytest.raises(ValueError, match=f"`{name}`"):
        call()


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_data_gives_nonfinite_status(bad):
    a, y, _, _ = block_problem(3, m=24, n=48, d=4, k=2)
    y = y.copy()
    y[3] = bad
    sol = solve(a, y, 4, max_steps=300)
    assert int(sol.status) == Status.NONFINITE
    assert int(sol.num_steps) == 0
