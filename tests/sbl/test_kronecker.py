"""Kronecker-structured SBL ``kronecker_sbl`` (KroSBL: SVD, AM and pattern-coupled AM).

References: the dense Gaussian posterior and type-II cost built with ``np.kron``;
``scipy.optimize.minimize`` on the M-step objective in log-variables (convex there, so its
minimum is global); a NumPy sequential rank-1 SVD; ``scipy.optimize.nnls``; oracle least
squares on the true support.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

from jaxspec import Status
from jaxspec.sbl._kronecker import _am_step, _estep, _nnls, _svd_step, kronecker_sbl

F64 = jnp.float64
F32 = jnp.float32

# --------------------------------------------------------------------------- shared compiles

solve = jax.jit(kronecker_sbl, static_argnames=("method", "inner_steps", "throw"))


@functools.partial(jax.jit, static_argnames=("method", "inner_steps"))
def solve_batch(factors, y, noise_var, method="svd", **options):
    """``kronecker_sbl`` vmapped over problems (factors, y, noise_var stacked on axis 0)."""

    def one(f, yy, s2):
        return kronecker_sbl(f, yy, method=method, noise_var=s2, **options)

    return jax.vmap(one)(factors, y, noise_var)


@functools.partial(jax.jit, static_argnames=("method",))
def solve_steps(factors, y, noise_var, steps, method="am", prune=0.0):
    """One problem solved with each step budget in ``steps`` (traced ``max_steps``)."""

    def one(k):
        return kronecker_sbl(
            factors, y, method=method, noise_var=noise_var, max_steps=k, tol=1e-12, prune=prune
        )

    return jax.vmap(one)(steps)


nnls_batch = jax.jit(jax.vmap(_nnls))

# --------------------------------------------------------------------------- problems


def kron_all(mats):
    return functools.reduce(np.kron, mats)


def random_factors(rng, shape_m, shape_n, complex_=False):
    out = []
    for m, n in zip(shape_m, shape_n):
        a = rng.standard_normal((m, n))
        if complex_:
            a = (a + 1j * rng.standard_normal((m, n))) / np.sqrt(2)
        out.append(a)
    return out


def kron_problem(
    seed,
    shape_m=(8, 6, 10),
    shape_n=(10, 10, 10),
    k=2,
    snr_db=30.0,
    complex_=False,
    clusters=None,
):
    """``x = x_1 kron ... kron x_I``, each ``x_i`` with ``k`` Gaussian nonzeros at random
    positions (or a run of ``clusters[i]`` consecutive ones where that is not None); noise at
    ``snr_db``. Returns factors, y, noise variance, x, and the oracle least-squares x."""
    rng = np.random.default_rng(seed)
    factors = random_factors(rng, shape_m, shape_n, complex_)
    parts = []
    for i, n in enumerate(shape_n):
        xi = np.zeros(n, complex if complex_ else float)
        width = None if clusters is None else clusters[i]
        if width is None:
            pos = rng.choice(n, k, replace=False)
        else:
            start = rng.integers(0, n - width + 1)
            pos = np.arange(start, start + width)
        xi[pos] = rng.standard_normal(pos.size)
        if complex_:
            xi[pos] = (xi[pos] + 1j * rng.standard_normal(pos.size)) / np.sqrt(2)
        parts.append(xi)
    x = kron_all(parts)
    a = kron_all(factors)
    y0 = a @ x
    s2 = np.mean(np.abs(y0) ** 2) / 10 ** (snr_db / 10)
    noise = rng.standard_normal(y0.shape)
    if complex_:
        noise = (noise + 1j * rng.standard_normal(y0.shape)) / np.sqrt(2)
    y = y0 + np.sqrt(s2) * noise
    support = np.flatnonzero(x)
    oracle = np.zeros_like(x)
    oracle[support] = np.linalg.lstsq(a[:, support], y, rcond=None)[0]
    return factors, y, s2, x, oracle


SMALL = {"shape_m": (4, 3, 5), "shape_n": (5, 4, 6), "k": 2}


def small_problem(seed, dtype=F64):
    factors, y, s2, x, _ = kron_problem(seed, **SMALL)
    return tuple(jnp.asarray(a, dtype) for a in factors), jnp.asarray(y, dtype), s2, x


def stack_problems(problems):
    factors = tuple(jnp.asarray(np.stack(fs)) for fs in zip(*[p[0] for p in problems]))
    y = jnp.asarray(np.stack([p[1] for p in problems]))
    s2 = jnp.asarray(np.array([p[2] for p in problems]))
    return factors, y, s2


def nmse(estimate, x):
    return float(np.linalg.norm(np.asarray(estimate) - x) ** 2 / np.linalg.norm(x) ** 2)


def db(ratio):
    return 10 * np.log10(ratio)


def dense_posterior(factors, gammas, y, s2):
    a = kron_all(factors)
    g = kron_all(gammas)
    sigma = np.linalg.inv(a.conj().T @ a / s2 + np.diag(1 / g))
    mu = sigma @ (a.conj().T @ y) / s2
    sigma_y = s2 * np.eye(a.shape[0]) + (a * g) @ a.conj().T
    cost = np.linalg.slogdet(sigma_y)[1] + np.real(y.conj() @ np.linalg.solve(sigma_y, y))
    return mu, np.real(np.diag(sigma)), cost


# --------------------------------------------------------------------------- 1. E-step

ESTEP_SHAPES = {
    "3 modes": ((3, 2, 3), (4, 5, 3)),
    "2 modes": ((4, 3), (6, 5)),
    "4 modes": ((2, 3, 2, 2), (3, 2, 3, 2)),
}


@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
@pytest.mark.parametrize("shapes", list(ESTEP_SHAPES.values()), ids=list(ESTEP_SHAPES))
def test_estep_matches_dense_posterior(shapes, complex_):
    shape_m, shape_n = shapes
    rng = np.random.default_rng(1)
    factors = random_factors(rng, shape_m, shape_n, complex_)
    gammas = [rng.uniform(0.2, 2.0, n) for n in shape_n]
    m = int(np.prod(shape_m))
    y = rng.standard_normal(m) + (1j * rng.standard_normal(m) if complex_ else 0)
    s2 = 0.3
    post = _estep([jnp.asarray(a) for a in factors], [jnp.asarray(g) for g in gammas], y, s2)
    mu, var, cost = dense_posterior(factors, gammas, y, s2)
    assert np.max(np.abs(np.asarray(post.mean) - mu)) < 1e-10 * np.max(np.abs(mu))
    assert np.max(np.abs(np.asarray(post.covariance_diag) - var)) < 1e-10 * np.max(var)
    assert abs(float(post.cost) - cost) < 1e-10 * abs(cost)


def test_estep_with_pruned_entries_matches_reduced_dense_posterior():
    """A zero variance removes its slice: the rest is the dense posterior on the kept columns."""
    rng = np.random.default_rng(2)
    shape_m, shape_n = (3, 4, 3), (4, 5, 3)
    factors = random_factors(rng, shape_m, shape_n)
    gammas = [rng.uniform(0.2, 2.0, n) for n in shape_n]
    gammas[0][1] = 0.0
    gammas[2][2] = 0.0
    y = rng.standard_normal(int(np.prod(shape_m)))
    post = _estep([jnp.asarray(a) for a in factors], [jnp.asarray(g) for g in gammas], y, 0.1)
    keep = [np.flatnonzero(g) for g in gammas]
    mu, var, cost = dense_posterior(
        [a[:, k] for a, k in zip(factors, keep)], [g[k] for g, k in zip(gammas, keep)], y, 0.1
    )
    on = kron_all(gammas) > 0
    np.testing.assert_allclose(np.asarray(post.mean)[on], mu, rtol=0, atol=1e-10)
    np.testing.assert_allclose(np.asarray(post.covariance_diag)[on], var, rtol=0, atol=1e-10)
    assert np.all(np.asarray(post.mean)[~on] == 0)
    assert np.all(np.asarray(post.covariance_diag)[~on] == 0)
    assert abs(float(post.cost) - cost) < 1e-10 * abs(cost)


# --------------------------------------------------------------------------- 2. M-steps


def m_objective_log(theta, lam, active):
    """``sum_active Lambda / gamma + log gamma`` with ``gamma = kron(exp(theta_i))`` and its
    gradient, over the active entries only (``theta`` packs the active entries per mode)."""
    sizes = [int(m.sum()) for m in active]
    parts = np.split(theta, np.cumsum(sizes)[:-1])
    lam_a = lam[np.ix_(*[np.flatnonzero(m) for m in active])]
    s = functools.reduce(np.add.outer, parts)
    e = lam_a * np.exp(-s)
    value = np.sum(e + s)
    grad = []
    for i in range(lam.ndim):
        axes = tuple(k for k in range(lam.ndim) if k != i)
        grad.append(np.sum(1 - e, axis=axes))
    return value, np.concatenate(grad)


@pytest.mark.parametrize("pruned", [False, True], ids=["dense", "pruned"])
def test_am_step_minimizes_the_m_step_objective(pruned):
    rng = np.random.default_rng(3)
    shape_n = (3, 4, 2)
    lam = rng.uniform(0.05, 2.0, shape_n)
    active = [np.ones(n, bool) for n in shape_n]
    if pruned:
        active[1][2] = False
        lam[:, 2, :] = 0.0  # the E-step gives Lambda = 0 on pruned slices
    gammas = [jnp.where(m, 1 / np.sqrt(m.sum()), 0.0) for m in active[:-1]]
    gammas.append(jnp.where(active[-1], 1.0, 0.0))
    out = _am_step(
        jnp.asarray(lam),
        gammas,
        [jnp.asarray(m) for m in active],
        inner_steps=5000,
        inner_tol=1e-13,
    )
    out = [np.asarray(g) for g in out]
    theta_am = np.concatenate([np.log(g[m]) for g, m in zip(out, active)])
    value_am, grad_am = m_objective_log(theta_am, lam, active)
    ref = scipy.optimize.minimize(
        m_objective_log,
        np.zeros(theta_am.size),
        args=(lam, active),
        jac=True,
        method="BFGS",
        options={"gtol": 1e-12, "maxiter": 10_000},
    )
    assert abs(value_am - ref.fun) < 1e-8 * abs(ref.fun)
    assert np.max(np.abs(grad_am)) < 1e-6
    for g in out[:-1]:  # scale normalisation
        assert abs(np.linalg.norm(g) - 1) < 1e-12
    for g, m in zip(out, active):
        assert np.all(g[~m] == 0) and np.all(g[m] > 0)


def svd_reference(lam):
    dims = lam.shape
    rest = lam.reshape(dims[0], -1)
    out = []
    for i in range(len(dims) - 1):
        u, s, vh = np.linalg.svd(rest, full_matrices=False)
        out.append(np.abs(u[:, 0]))
        rest = (s[0] * vh[0]).reshape(dims[i + 1], -1)
    out.append(np.abs(rest.ravel()))
    return out


@pytest.mark.parametrize("shape_n", [(4, 3, 5), (5, 6), (2, 3, 2, 3)])
def test_svd_step_matches_numpy_sequential_rank1(shape_n):
    rng = np.random.default_rng(4)
    lam = rng.uniform(0.0, 1.0, shape_n)
    active = [jnp.ones(n, bool) for n in shape_n]
    out = _svd_step(jnp.asarray(lam), active)
    for g, r in zip(out, svd_reference(lam)):
        np.testing.assert_allclose(np.asarray(g), r, rtol=1e-10, atol=1e-12)
    # A nonnegative rank-1 tensor is reproduced exactly.
    vs = [rng.uniform(0.1, 1.0, n) for n in shape_n]
    out = _svd_step(jnp.asarray(functools.reduce(np.multiply.outer, vs)), active)
    np.testing.assert_allclose(kron_all([np.asarray(g) for g in out]), kron_all(vs), rtol=1e-12)


# --------------------------------------------------------------------------- 3. recovery

SEEDS = range(5)


def recovery_report(problems, sol):
    mean = np.asarray(sol.mean)
    factors = [np.asarray(f) for f in sol.factors]
    errors, oracle_errors, supports = [], [], []
    for b, (_, _, _, x, oracle) in enumerate(problems):
        errors.append(nmse(mean[b], x))
        oracle_errors.append(nmse(oracle, x))
        # the true per-mode supports are the nonzero slices of x
        xt = np.abs(x).reshape([f.shape[1] for f in factors])
        ok = all(
            np.array_equal(
                factors[i][b] > 0,
                np.any(xt != 0, axis=tuple(k for k in range(xt.ndim) if k != i)),
            )
            for i in range(xt.ndim)
        )
        supports.append(ok)
    return np.median(errors), np.median(oracle_errors), np.mean(supports)


@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
@pytest.mark.parametrize("method", ["svd", "am"])
def test_recovery_near_oracle_at_30db(method, complex_):
    problems = [kron_problem(seed, complex_=complex_) for seed in SEEDS]
    sol = solve_batch(*stack_problems(problems), method=method)
    assert np.all(np.asarray(sol.status) == Status.CONVERGED)
    assert sol.mean.shape == (len(SEEDS), 1000) and sol.factors[1].shape == (len(SEEDS), 10)
    err, oracle_err, support_rate = recovery_report(problems, sol)
    assert db(err / oracle_err) < 2.0, (db(err), db(oracle_err))
    assert support_rate >= 0.8
    check_pruned_solution(sol)


def check_pruned_solution(sol):
    """Pruning zeroes whole slices and keeps static shapes; ``gamma`` is the Kronecker product
    of the normalised factors."""
    for b in range(sol.mean.shape[0]):
        factors = [np.asarray(g[b]) for g in sol.factors]
        pruned = [g == 0 for g in factors]
        assert all(p.any() for p in pruned)
        off = kron_all([~p for p in pruned]) == 0
        for field in (sol.mean, sol.gamma, sol.covariance_diag):
            assert np.all(np.asarray(field[b])[off] == 0)
        np.testing.assert_allclose(np.asarray(sol.gamma[b]), kron_all(factors), rtol=1e-14)
        for g in factors[:-1]:
            assert abs(np.linalg.norm(g) - 1) < 1e-12


def test_learned_noise_variance():
    problems = [kron_problem(seed, snr_db=20.0) for seed in SEEDS]
    factors, y, s2 = stack_problems(problems)
    sol = solve_batch(factors, y, None, method="svd")
    assert np.all(np.asarray(sol.status) == Status.CONVERGED)
    ratio = np.asarray(sol.noise_var) / np.asarray(s2)
    assert np.all((ratio > 0.5) & (ratio < 2.0)), ratio
    err, oracle_err, _ = recovery_report(problems, sol)
    assert db(err / oracle_err) < 3.0, (db(err), db(oracle_err))


# --------------------------------------------------------------------------- 4. EM properties


def test_am_cost_is_nonincreasing_and_prune_zero_keeps_entries_positive():
    factors, y, s2, _ = small_problem(0)
    sol = solve_steps(factors, y, s2, jnp.arange(13))
    cost = np.asarray(sol.cost)
    assert np.array_equal(np.asarray(sol.num_steps), np.arange(13))
    assert np.all(np.diff(cost) <= 1e-10 * np.abs(cost[1:])), np.diff(cost)
    assert cost[-1] < cost[0] - 1.0
    for g in sol.factors:
        assert np.all(np.asarray(g) > 0)


# --------------------------------------------------------------------------- 5. JAX contracts


def test_jit_matches_eager():
    factors, y, s2, _ = small_problem(0)
    eager = kronecker_sbl(factors, y, noise_var=s2)
    jitted = solve(factors, y, noise_var=s2)
    assert int(eager.num_steps) == int(jitted.num_steps)
    np.testing.assert_allclose(np.asarray(jitted.mean), np.asarray(eager.mean), atol=1e-10)
    np.testing.assert_allclose(np.asarray(jitted.cost), np.asarray(eager.cost), rtol=1e-10)


def test_vmap_matches_loop_over_y_and_over_noise_var():
    problems = [small_problem(seed) for seed in range(3)]
    factors = problems[0][0]
    ys = jnp.stack([p[1] for p in problems])
    tiled = tuple(jnp.broadcast_to(a, (3, *a.shape)) for a in factors)
    s2 = problems[0][2]
    batch = solve_batch(tiled, ys, jnp.full(3, s2))
    for b in range(3):
        one = solve(factors, ys[b], noise_var=s2)
        np.testing.assert_allclose(np.asarray(batch.mean[b]), np.asarray(one.mean), atol=1e-10)
        assert int(batch.num_steps[b]) == int(one.num_steps)
    sweep = jnp.asarray([0.3, 1.0, 3.0]) * s2
    batch = solve_batch(tiled, jnp.broadcast_to(ys[0], ys.shape), sweep)
    for b in range(3):
        one = solve(factors, ys[0], noise_var=sweep[b])
        np.testing.assert_allclose(np.asarray(batch.mean[b]), np.asarray(one.mean), atol=1e-10)
        np.testing.assert_allclose(float(batch.noise_var[b]), float(sweep[b]))


def test_float32_agrees_with_float64():
    factors, y, s2, x = small_problem(0)
    sol64 = solve(factors, y, noise_var=s2)
    f32 = tuple(a.astype(F32) for a in factors)
    sol32 = solve(f32, y.astype(F32), noise_var=np.float32(s2))
    assert sol32.mean.dtype == F32 and sol32.gamma.dtype == F32
    assert int(sol32.status) == Status.CONVERGED
    diff = np.linalg.norm(np.asarray(sol32.mean, np.float64) - np.asarray(sol64.mean))
    assert diff < 1e-3 * np.linalg.norm(np.asarray(sol64.mean))


# --------------------------------------------------------------------------- 6. NNLS, PC


def test_nnls_matches_scipy():
    rng = np.random.default_rng(5)
    n = 10
    tall = rng.standard_normal((8, 14, n))[:, :, :n]
    tall_b = rng.standard_normal((8, 14))
    off = np.eye(n, k=1) + np.eye(n, k=-1)
    betas = np.linspace(0.0, 0.9, 8)
    tri = np.stack([np.eye(n) + b * off for b in betas])
    tri = np.concatenate([tri, np.zeros((8, 4, n))], axis=1)  # same shape as `tall`
    tri_b = np.concatenate([rng.uniform(-0.5, 2.0, (8, n)), np.zeros((8, 4))], axis=1)
    a, b = np.concatenate([tall, tri]), np.concatenate([tall_b, tri_b])
    x = np.asarray(nnls_batch(jnp.asarray(a), jnp.asarray(b)))
    for k in range(a.shape[0]):
        ref, rnorm = scipy.optimize.nnls(a[k], b[k])
        assert np.all(x[k] >= 0)
        np.testing.assert_allclose(x[k], ref, atol=1e-10)
        np.testing.assert_allclose(np.linalg.norm(a[k] @ x[k] - b[k]), rnorm, rtol=1e-10)


def steering(m, n):
    """Uniform linear array responses on an ``n``-point grid of ``[-1, 1)`` (coherent columns)."""
    u = -1 + 2 * np.arange(n) / n
    return np.exp(1j * np.pi * np.outer(np.arange(m), u)) / np.sqrt(m)


def clustered_problem(seed, snr_db=10.0, shape_m=(8, 4, 8), shape_n=(16, 6, 16), width=3):
    """IRS-like block sparsity (He and Joseph's PC-KroSBL setting, scaled down): steering
    dictionaries on modes 1 and 3 with a run of ``width`` adjacent unit-modulus coefficients
    (random phases), a complex Gaussian mode 2 with 2 random atoms."""
    rng = np.random.default_rng(seed)
    factors = [
        steering(shape_m[0], shape_n[0]),
        random_factors(rng, shape_m[1:2], shape_n[1:2], complex_=True)[0],
        steering(shape_m[2], shape_n[2]),
    ]
    parts = []
    for i, n in enumerate(shape_n):
        if i == 1:
            pos = rng.choice(n, 2, replace=False)
        else:
            start = rng.integers(0, n - width + 1)
            pos = np.arange(start, start + width)
        xi = np.zeros(n, complex)
        xi[pos] = np.exp(2j * np.pi * rng.uniform(size=pos.size))
        parts.append(xi)
    x = kron_all(parts)
    y0 = kron_all(factors) @ x
    s2 = np.mean(np.abs(y0) ** 2) / 10 ** (snr_db / 10)
    noise = (rng.standard_normal(y0.shape) + 1j * rng.standard_normal(y0.shape)) / np.sqrt(2)
    return factors, y0 + np.sqrt(s2) * noise, s2, x


@pytest.mark.slow  # over the unit budget; CI runs it in the slow step
def test_pattern_coupling_helps_on_clustered_supports():
    """At 10 dB, coupling (beta = 0.8 on the clustered modes) lowers the NMSE of AM on every
    seed. (At 15 dB and above, uncoupled AM does better on these instances: the coupled
    variances keep a halo around each cluster.)"""
    problems = [clustered_problem(seed) for seed in range(6)]
    stacked = stack_problems(problems)
    plain = solve_batch(*stacked, method="am")
    coupled = solve_batch(*stacked, method="am", coupling=(0.8, None, 0.8))
    assert np.all(np.isin(np.asarray(coupled.status), [Status.CONVERGED, Status.MAX_STEPS]))
    err_plain = db([nmse(m, p[3]) for m, p in zip(np.asarray(plain.mean), problems)])
    err_coupled = db([nmse(m, p[3]) for m, p in zip(np.asarray(coupled.mean), problems)])
    assert np.median(err_coupled) < np.median(err_plain) - 1.0, (err_coupled, err_plain)
    assert np.sum(err_coupled < err_plain) >= 5, (err_coupled, err_plain)
    for g in coupled.factors:
        assert np.all(np.asarray(g) >= 0)


# --------------------------------------------------------------------------- 7. bad inputs

BAD = {
    "one factor": (lambda f, y: ((f[0],), y[:4]), {}, "factors"),
    "not a tuple": (lambda f, y: (f[0], y), {}, "factors"),
    "3-D factor": (lambda f, y: ((f[0][None], f[1], f[2]), y), {}, "factors[0]"),
    "integer factor": (lambda f, y: ((np.ones((4, 5), int), f[1], f[2]), y), {}, "factors[0]"),
    "integer y": (lambda f, y: (f, np.ones(y.shape, int)), {}, "y"),
    "y length": (lambda f, y: (f, y[:-1]), {}, "y"),
    "method": (lambda f, y: (f, y), {"method": "em"}, "method"),
    "noise_var": (lambda f, y: (f, y), {"noise_var": 0.0}, "noise_var"),
    "tol": (lambda f, y: (f, y), {"tol": 0.0}, "tol"),
    "prune negative": (lambda f, y: (f, y), {"prune": -0.1}, "prune"),
    "prune one": (lambda f, y: (f, y), {"prune": 1.0}, "prune"),
    "coupling length": (lambda f, y: (f, y), {"method": "am", "coupling": (0.5,)}, "coupling"),
    "coupling beta": (
        lambda f, y: (f, y),
        {"method": "am", "coupling": (1.0, None, None)},
        "coupling",
    ),
    "coupling svd": (lambda f, y: (f, y), {"coupling": (0.5, None, None)}, "coupling"),
    "max_steps": (lambda f, y: (f, y), {"max_steps": -1}, "max_steps"),
    "inner_steps": (lambda f, y: (f, y), {"inner_steps": 0}, "inner_steps"),
    "prune per mode length": (lambda f, y: (f, y), {"prune": (0.1, 0.1)}, "prune"),
    "prune per mode value": (lambda f, y: (f, y), {"prune": (0.1, 1.0, 0.1)}, "prune"),
    "gamma0 length": (lambda f, y: (f, y), {"gamma0": (np.ones(5),)}, "gamma0"),
    "gamma0 shape": (
        lambda f, y: (f, y),
        {"gamma0": tuple(np.ones(n + 1) for n in SMALL["shape_n"])},
        "gamma0[0]",
    ),
}


@pytest.mark.parametrize("case", list(BAD.values()), ids=list(BAD))
def test_bad_inputs_raise_naming_the_argument(case):
    make, options, name = case
    factors, y, s2, _ = small_problem(0)
    factors = tuple(np.asarray(a) for a in factors)
    factors, y = make(factors, np.asarray(y))
    kwargs = {"noise_var": s2, **options}
    with pytest.raises(ValueError, match=f"`{name}`".replace("[", r"\[").replace("]", r"\]")):
        kronecker_sbl(factors, y, **kwargs)


def test_nonfinite_y_gives_nonfinite_status():
    factors, y, s2, _ = small_problem(0)
    sol = solve(factors, y.at[3].set(jnp.nan), noise_var=s2)
    assert int(sol.status) == Status.NONFINITE
    assert int(sol.num_steps) == 0


@pytest.mark.slow
def test_per_mode_prune_and_gamma0():
    # A scalar prune equals the same ratio given per mode; the default start equals the same
    # variances given explicitly; a per-mode ratio prunes only where it is asked to.
    factors, y, s2, _ = small_problem(0)
    sizes = [a.shape[1] for a in factors]
    base = kronecker_sbl(factors, y, noise_var=s2, method="am", prune=1e-2)
    same = kronecker_sbl(factors, y, noise_var=s2, method="am", prune=(1e-2,) * 3)
    np.testing.assert_array_equal(np.asarray(base.mean), np.asarray(same.mean))
    start = [np.full(n, 1 / np.sqrt(n)) for n in sizes[:-1]]
    start.append(np.full(sizes[-1], np.prod(np.sqrt(sizes[:-1]))))
    given = kronecker_sbl(factors, y, noise_var=s2, method="am", prune=1e-2, gamma0=start)
    np.testing.assert_allclose(np.asarray(given.mean), np.asarray(base.mean), rtol=1e-12)
    only_first = kronecker_sbl(factors, y, noise_var=s2, method="am", prune=(1e-2, 0, 0))
    assert np.any(np.asarray(only_first.factors[0]) == 0)
    assert np.all(np.asarray(only_first.factors[1]) > 0)
    assert np.all(np.asarray(only_first.factors[2]) > 0)
    # the start matters: a tiny one (far below the noise) stalls the first steps
    tiny = [np.asarray(g) * 1e-12 for g in start]
    other = kronecker_sbl(factors, y, noise_var=s2, method="am", gamma0=tiny, max_steps=1)
    one = kronecker_sbl(factors, y, noise_var=s2, method="am", max_steps=1)
    assert not np.allclose(np.asarray(other.mean), np.asarray(one.mean))
