"""Tests of classical SBL (EM, MacKay, fast sequential; M-SBL) against independent references.

References: dense NumPy posteriors (the textbook ``N x N`` formulas), scikit-learn's
``ARDRegression`` (the same MacKay fixed point), the first-order optimality conditions of the
type-II cost computed densely in NumPy, and finite differences for gradients.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.linear_model import ARDRegression

from jaxspec import Status, sbl
from jaxspec.sbl import _posterior
from jaxspec.sbl._classic import update_hyperparameters

F64 = jnp.float64


def sparse_problem(seed, m=30, n=60, k=5, snr_db=40.0, complex_=False, vectors=None):
    """Gaussian dictionary with unit-norm columns, ``k``-sparse truth, white noise at ``snr_db``."""
    rng = np.random.default_rng(seed)
    shape = (m, n)
    a = rng.standard_normal(shape)
    if complex_:
        a = (a + 1j * rng.standard_normal(shape)) / np.sqrt(2)
    a /= np.linalg.norm(a, axis=0)
    support = np.sort(rng.choice(n, k, replace=False))
    cols = () if vectors is None else (vectors,)
    x = np.zeros((n, *cols), a.dtype)
    vals = rng.standard_normal((k, *cols))
    if complex_:
        vals = (vals + 1j * rng.standard_normal((k, *cols))) / np.sqrt(2)
    x[support] = vals
    y0 = a @ x
    noise_var = np.mean(np.abs(y0) ** 2) / 10 ** (snr_db / 10)
    e = rng.standard_normal(y0.shape)
    if complex_:
        e = (e + 1j * rng.standard_normal(y0.shape)) / np.sqrt(2)
    return a, y0 + np.sqrt(noise_var) * e, x, support, noise_var


def dense_posterior(a, y, gamma, noise_var):
    """Textbook formulas on the active atoms (N x N inverse), in NumPy float64."""
    y = y.reshape(a.shape[0], -1)
    act = gamma > 0
    aa = a[:, act]
    sigma = np.linalg.inv(aa.conj().T @ aa / noise_var + np.diag(1 / gamma[act]))
    mean = np.zeros((a.shape[1], y.shape[1]), complex if np.iscomplexobj(a) else float)
    mean[act] = sigma @ aa.conj().T @ y / noise_var
    cov = np.zeros(a.shape[1])
    cov[act] = np.real(np.diag(sigma))
    sigma_y = noise_var * np.eye(a.shape[0]) + (a * gamma) @ a.conj().T
    _, logdet = np.linalg.slogdet(sigma_y)
    quad = np.real(np.trace(y.conj().T @ np.linalg.solve(sigma_y, y)))
    return mean, cov, y.shape[1] * logdet + quad


def cost_gradient(a, y, gamma, noise_var):
    """d cost / d gamma_i = L a_i^H Sigma_y^{-1} a_i - ||a_i^H Sigma_y^{-1} Y||^2 (dense)."""
    y = y.reshape(a.shape[0], -1)
    sigma_y = noise_var * np.eye(a.shape[0]) + (a * gamma) @ a.conj().T
    ci_a = np.linalg.solve(sigma_y, a)
    ci_y = np.linalg.solve(sigma_y, y)
    s = np.real(np.sum(a.conj() * ci_a, axis=0))
    q2 = np.sum(np.abs(a.conj().T @ ci_y) ** 2, axis=1)
    return y.shape[1] * s - q2, s, q2


@functools.partial(jax.jit, static_argnames=("update", "max_steps", "form", "capacity"))
def run(a, y, noise_var=None, **kwargs):
    return sbl.sbl(a, y, noise_var=noise_var, **kwargs)


# --------------------------------------------------------------------------- E-step


@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
@pytest.mark.parametrize("vectors", [None, 3], ids=["smv", "mmv"])
def test_woodbury_and_primal_forms_match_the_dense_posterior(complex_, vectors):
    a, y, _, _, _ = sparse_problem(0, m=12, n=20, complex_=complex_, vectors=vectors)
    rng = np.random.default_rng(1)
    gamma = rng.uniform(0.1, 2.0, 20)
    gamma[[2, 7, 11]] = 0.0  # pruned atoms
    noise = 0.05
    ref_mean, ref_cov, ref_cost = dense_posterior(a, y, gamma, noise)
    y2 = jnp.asarray(y).reshape(12, -1)
    for form in ("woodbury", "primal"):
        post = _posterior.posterior(
            jnp.asarray(a), y2, jnp.asarray(gamma), jnp.asarray(noise), form
        )
        np.testing.assert_allclose(post.mean, ref_mean, atol=1e-10)
        np.testing.assert_allclose(post.covariance_diag, ref_cov, atol=1e-10)
        np.testing.assert_allclose(post.cost, ref_cost, rtol=1e-10)
        resid = np.sum(np.abs(y.reshape(12, -1) - a @ ref_mean) ** 2)
        np.testing.assert_allclose(post.residual_sq, resid, rtol=1e-9)
        assert np.all(np.asarray(post.mean)[[2, 7, 11]] == 0)


def test_em_cost_never_increases():
    a, y, _, _, noise = sparse_problem(2, m=20, n=40, k=6, snr_db=25)
    a, y2 = jnp.asarray(a), jnp.asarray(y)[:, None]
    noise = jnp.asarray(noise)

    def step(gamma, _):
        post = _posterior.woodbury(a, y2, gamma, noise)
        new, _ = update_hyperparameters(
            post, gamma, noise, update="em", learn_noise=False, prune=0.0, m=20,
            noise_floor=0.0,
        )  # fmt: skip
        return new, post.cost

    _, costs = jax.lax.scan(step, jnp.ones(40, F64), None, length=300)
    costs = np.asarray(costs)
    assert np.all(np.diff(costs) <= 1e-10 * np.abs(costs[1:]))
    assert costs[-1] < costs[0] - 10  # and it does decrease


# --------------------------------------------------------------------------- solutions


@pytest.mark.parametrize("update", ["em", "mackay", "fast"])
def test_solution_is_a_stationary_point_of_the_type_ii_cost(update):
    a, y, x, support, noise = sparse_problem(3, snr_db=30)
    sol = run(jnp.asarray(a), jnp.asarray(y), noise, update=update, tol=1e-9, max_steps=5000)
    gamma = np.asarray(sol.gamma)
    grad, s, q2 = cost_gradient(a, y, gamma, noise)
    if update == "em":
        # EM drives irrelevant gamma to zero only like 1/t: it is still on its way after 5000
        # steps, but the relevant atoms are stationary and the vanishing ones could not help.
        assert int(sol.status) == Status.MAX_STEPS
        act = gamma > 1e-4 * gamma.max()
        off = gamma < 1e-6 * gamma.max()
        np.testing.assert_allclose(grad[act] / s[act], 0, atol=1e-4)
        assert np.all(q2[off] <= s[off] * (1 + 1e-3))
    else:
        assert int(sol.status) == Status.CONVERGED
        act = gamma > 0
        # active atoms: d cost / d gamma_i = 0 (relative to its two terms)
        np.testing.assert_allclose(grad[act] / s[act], 0, atol=1e-5)
        # pruned atoms: adding them cannot help, q_i^2 <= s_i (at gamma_i = 0 these are the
        # statistics without the atom)
        assert np.all(q2[~act] <= s[~act] * (1 + 1e-6))
    mean, cov, cost = dense_posterior(a, y, gamma, noise)
    np.testing.assert_allclose(sol.mean, mean[:, 0], atol=1e-9)
    np.testing.assert_allclose(sol.covariance_diag, cov, atol=1e-9)
    np.testing.assert_allclose(sol.cost, cost, rtol=1e-9)
    assert set(np.flatnonzero(act)) >= set(support)


@pytest.mark.slow
@pytest.mark.parametrize("update", ["em", "mackay"])
def test_active_set_compaction_gives_the_same_iterates(update):
    a, y, x, support, noise = sparse_problem(12, m=30, n=80, k=5, snr_db=30)
    a, y = jnp.asarray(a), jnp.asarray(y)
    # EM sheds atoms slowly: a larger prune and a looser tol let it compact and converge
    kw = dict(update=update, tol=1e-10 if update == "mackay" else 1e-6, max_steps=3000)
    kw["prune"] = 1e-6 if update == "mackay" else 1e-4
    full = run(a, y, noise, capacity=80, **kw)  # never compacts
    for capacity in (15, 40):
        compact = run(a, y, noise, capacity=capacity, **kw)
        assert int(compact.status) == int(full.status) == Status.CONVERGED
        assert int(compact.num_steps) == int(full.num_steps)
        np.testing.assert_allclose(compact.gamma, full.gamma, rtol=1e-8, atol=1e-14)
        np.testing.assert_allclose(compact.mean, full.mean, atol=1e-10)
    assert int(np.sum(np.asarray(full.gamma) > 0)) <= 15  # so both capacities compacted


def test_compaction_stages_halve_down_to_the_capacity():
    from jaxspec.sbl._classic import stage_sizes

    assert stage_sizes(80, 15) == (80, 40, 20, 15)  # the capacity-15 case above
    assert stage_sizes(256, 100) == (256, 128, 100)
    assert stage_sizes(512, 200) == (512, 256, 200)
    assert stage_sizes(100, 50) == (100, 50)
    assert stage_sizes(60, 60) == (60,)


def test_mackay_matches_scikit_learn_ard_at_a_fixed_noise_level():
    # An overdetermined regression (80 x 30, 6 relevant features), where MacKay's fixed point
    # is the same from both sides' starts. scikit-learn learns the noise precision under a
    # Gamma(alpha_1, alpha_2) prior: a sharp prior at 1 / noise pins it there, so both sides
    # run MacKay's update at one noise level.
    a, y, x, support, noise = sparse_problem(4, m=80, n=30, k=6, snr_db=20)
    sharp = 1e12
    ard = ARDRegression(
        fit_intercept=False, tol=1e-8, max_iter=3000, threshold_lambda=1e12,
        alpha_1=sharp / noise, alpha_2=sharp, lambda_1=1e-12, lambda_2=1e-12,
    )  # fmt: skip
    ard.fit(a, y)
    assert ard.n_iter_ < 3000  # scikit-learn converged
    np.testing.assert_allclose(1 / ard.alpha_, noise, rtol=1e-6)
    sol = run(jnp.asarray(a), jnp.asarray(y), noise, update="mackay", tol=1e-12, max_steps=5000)
    assert int(sol.status) == Status.CONVERGED
    ours = np.asarray(sol.mean)
    big = np.abs(ard.coef_) > 1e-3
    assert np.array_equal(big, np.abs(ours) > 1e-3)
    assert set(support) <= set(np.flatnonzero(big))
    np.testing.assert_allclose(ours[big], ard.coef_[big], rtol=5e-4)


@pytest.mark.slow  # over the unit budget; CI runs it in the slow step
def test_fast_and_dense_updates_reach_the_same_estimate():
    a, y, x, support, noise = sparse_problem(5, m=40, n=100, k=8, snr_db=35)
    dense = run(jnp.asarray(a), jnp.asarray(y), noise, update="mackay", tol=1e-10, max_steps=5000)
    fast = run(jnp.asarray(a), jnp.asarray(y), noise, update="fast", tol=1e-6, max_steps=5000)
    assert int(fast.status) == int(dense.status) == Status.CONVERGED
    # Two local optima of the same cost, close in value; both find the true support
    np.testing.assert_allclose(fast.cost, dense.cost, rtol=1e-2)
    for sol in (fast, dense):
        mean = np.asarray(sol.mean)
        assert set(support) <= set(np.flatnonzero(np.abs(mean) > 1e-3))
        assert np.sum((mean - x) ** 2) / np.sum(x**2) < 1e-2


@pytest.mark.parametrize("update", ["em", "mackay", "fast"])
def test_complex_data_recovers_the_support(update):
    a, y, x, support, noise = sparse_problem(6, m=30, n=60, k=5, snr_db=30, complex_=True)
    given = noise if update == "fast" else None  # fast with a learned noise: see the docs
    sol = run(jnp.asarray(a), jnp.asarray(y), given, update=update, max_steps=3000)
    assert sol.mean.dtype == jnp.complex128 and sol.gamma.dtype == F64
    assert int(sol.status) == Status.CONVERGED
    est = np.flatnonzero(np.abs(np.asarray(sol.mean)) > 0.05 * np.max(np.abs(x)))
    np.testing.assert_array_equal(est, support)
    nmse = np.sum(np.abs(np.asarray(sol.mean) - x) ** 2) / np.sum(np.abs(x) ** 2)
    assert nmse < 1e-2


@pytest.mark.slow
def test_msbl_shares_the_support_across_vectors():
    a, y, x, support, noise = sparse_problem(7, m=16, n=40, k=7, snr_db=30, vectors=4)
    sol = run(jnp.asarray(a), jnp.asarray(y), noise, update="em", tol=1e-8, max_steps=5000)
    assert sol.mean.shape == (40, 4)
    gamma = np.asarray(sol.gamma)
    np.testing.assert_array_equal(np.flatnonzero(gamma > 1e-2 * gamma.max()), support)
    grad, s, _ = cost_gradient(a, y, gamma, noise)
    act = gamma > 1e-2 * gamma.max()  # EM is still shedding the others (like 1/t)
    np.testing.assert_allclose(grad[act] / s[act], 0, atol=1e-4)
    # one vector alone at this sparsity (k = 7 of 16 rows) is worse
    single = run(jnp.asarray(a), jnp.asarray(y[:, 0]), noise, update="em", max_steps=5000)
    err_mmv = np.sum((np.asarray(sol.mean)[:, 0] - x[:, 0]) ** 2)
    err_smv = np.sum((np.asarray(single.mean) - x[:, 0]) ** 2)
    assert err_mmv < err_smv


# --------------------------------------------------------------------------- JAX contracts


@pytest.mark.slow  # over the unit budget; CI runs it in the slow step
@pytest.mark.parametrize("update", ["mackay", "fast"])
def test_vmap_equals_a_python_loop_and_noise_is_traceable(update):
    problems = [sparse_problem(s, m=20, n=40, k=4, snr_db=30) for s in range(3)]
    a = jnp.asarray(np.stack([p[0] for p in problems]))
    y = jnp.asarray(np.stack([p[1] for p in problems]))
    noise = jnp.asarray([p[4] for p in problems])
    solve = jax.jit(jax.vmap(lambda a, y, s: sbl.sbl(a, y, noise_var=s, update=update)))
    batched = solve(a, y, noise)
    for i in range(3):
        one = run(a[i], y[i], noise[i], update=update)
        np.testing.assert_allclose(batched.mean[i], one.mean, atol=1e-10)
        assert int(batched.num_steps[i]) == int(one.num_steps)
    sweep = jax.jit(jax.vmap(lambda s: sbl.sbl(a[0], y[0], noise_var=s, update=update)))(
        jnp.asarray([1e-4, 1e-2, 1.0])
    )
    active = np.sum(np.asarray(sweep.gamma) > 0, axis=1)
    assert active[0] >= active[2]  # more noise, sparser model


@pytest.mark.slow
@pytest.mark.parametrize("update", ["em", "mackay", "fast"])
def test_float32_agrees_with_float64(update):
    a, y, x, support, noise = sparse_problem(8, m=30, n=60, k=5, snr_db=30)
    tol = 1e-2 if update == "fast" else 1e-4  # fast: |Delta log alpha|, float32 round-off
    ref = run(jnp.asarray(a), jnp.asarray(y), noise, update=update, tol=tol)
    low = run(
        jnp.asarray(a, jnp.float32), jnp.asarray(y, jnp.float32), noise, update=update, tol=tol
    )
    assert low.mean.dtype == jnp.float32
    assert int(low.status) == Status.CONVERGED
    np.testing.assert_allclose(low.mean, ref.mean, atol=2e-3)


@pytest.mark.slow  # over the unit budget; CI runs it in the slow step
@pytest.mark.parametrize("update", ["em", "mackay"])
@pytest.mark.parametrize("m,n", [(15, 25), (30, 12)])  # Woodbury and primal E-steps
def test_gradients_of_the_mean_match_finite_differences(update, m, n):
    """(30, 12) once gave an all-NaN gradient: the primal form's sqrt(gamma) at a pruned atom."""
    a, y, _, _, noise = sparse_problem(9, m=m, n=n, k=3, snr_db=30)
    a, y = jnp.asarray(a), jnp.asarray(y)
    w = jnp.asarray(np.random.default_rng(0).standard_normal(n))

    def loss(a, y, s):
        sol = sbl.sbl(a, y, noise_var=s, update=update, tol=1e-13, max_steps=20000, prune=1e-6)
        return jnp.dot(w, sol.mean)

    loss_j = jax.jit(loss)
    grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(a, y, noise)
    rng = np.random.default_rng(1)
    for arg, g in enumerate(grads):
        base = [a, y, jnp.asarray(noise)]
        d = rng.standard_normal(np.shape(base[arg]))
        h = 1e-6 * (noise if arg == 2 else 1.0)
        plus, minus = list(base), list(base)
        plus[arg] = base[arg] + h * d
        minus[arg] = base[arg] - h * d
        fd = (loss_j(*plus) - loss_j(*minus)) / (2 * h)
        np.testing.assert_allclose(float(jnp.sum(g * d)), float(fd), rtol=2e-4, atol=1e-8)


@pytest.mark.slow  # over the unit budget; CI runs it in the slow step
def test_learned_noise_gradient_matches_finite_differences():
    a, y, _, _, _ = sparse_problem(10, m=15, n=25, k=3, snr_db=25)
    a, y = jnp.asarray(a), jnp.asarray(y)

    def loss(y):
        sol = sbl.sbl(a, y, update="mackay", tol=1e-13, max_steps=20000, prune=1e-6)
        return jnp.sum(sol.mean**2) + sol.noise_var

    g = jax.jit(jax.grad(loss))(y)
    d = np.random.default_rng(2).standard_normal(15)
    h = 1e-6
    fd = (jax.jit(loss)(y + h * d) - jax.jit(loss)(y - h * d)) / (2 * h)
    np.testing.assert_allclose(float(jnp.dot(g, d)), float(fd), rtol=2e-4)


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize(
    "shape, update",
    [((20, 40), "em"), ((20, 40), "mackay"), ((20, 40), "fast"), ((40, 20), "em")],
)  # (40, 20): the primal E-step, which EM and MacKay share
def test_a_zero_signal_converges_to_a_zero_mean(shape, update):
    """``y = 0`` (a padded signal in a batch) once gave NONFINITE (fixed noise) or a NaN mean
    (learned noise): the data scale ``||y||^2`` was 0 in the start and the noise floor."""
    a = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    y = np.zeros(shape[0], np.float32)
    for noise in (1e-3, None):
        sol = sbl.sbl(a, y, noise_var=noise, update=update)
        assert int(sol.status) == Status.CONVERGED, (noise, int(sol.status))
        assert int(sol.num_steps) <= 2
        np.testing.assert_array_equal(sol.mean, 0.0)
        assert np.isfinite(float(sol.cost)) and float(sol.noise_var) > 0


def test_fast_sbl_counts_the_noise_re_estimate_within_max_steps():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((20, 50))
    y = a[:, :8] @ rng.standard_normal(8) + 0.1 * rng.standard_normal(20)
    for max_steps in (1, 5):  # each budget ran one step over it
        sol = sbl.fast_sbl(a, y, max_steps=max_steps)
        assert int(sol.num_steps) == max_steps and int(sol.status) == Status.MAX_STEPS


@pytest.mark.slow  # over the unit budget; CI runs it in the slow step
def test_full_active_set_and_nonfinite_data_are_reported():
    a, y, _, _, noise = sparse_problem(11, m=30, n=60, k=8, snr_db=40)
    small = sbl.fast_sbl(jnp.asarray(a), jnp.asarray(y), noise_var=noise, capacity=3)
    assert int(small.status) == Status.ACTIVE_SET_FULL
    assert int(np.sum(np.asarray(small.gamma) > 0)) == 3
    bad = jnp.asarray(y).at[0].set(jnp.nan)
    for update in ("em", "mackay", "fast"):
        sol = sbl.sbl(jnp.asarray(a), bad, noise_var=noise, update=update)
        assert int(sol.status) == Status.NONFINITE


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"A": np.ones((4, 6), np.int32)}, "A"),
        ({"A": np.ones(6)}, "A"),
        ({"y": np.ones(5)}, "y"),
        ({"update": "gibbs"}, "update"),
        ({"form": "svd"}, "form"),
        ({"noise_var": 0.0}, "noise_var"),
        ({"noise_var": -1.0}, "noise_var"),
        ({"tol": 0.0}, "tol"),
        ({"prune": 1.0}, "prune"),
        ({"prune": -0.1}, "prune"),
        ({"max_steps": -1}, "max_steps"),
        ({"update": "em", "gamma0": np.ones(5)}, "gamma0"),
        ({"update": "em", "gamma0": -np.ones(6)}, "gamma0"),
        ({"update": "mackay", "gamma0": np.full(6, np.nan)}, "gamma0"),
        ({"noise_var": np.full(4, 0.1)}, "noise_var"),
        ({"update": "fast", "noise_var": np.full(4, 0.1)}, "noise_var"),
        ({"update": "fast", "y": np.ones((4, 2))}, "update"),
        ({"capacity": 0}, "capacity"),
        ({"capacity": 7}, "capacity"),
        ({"update": "em", "capacity": 0}, "capacity"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(kwargs, name):
    call = {"A": np.ones((4, 6)), "y": np.ones(4)} | kwargs
    with pytest.raises(ValueError, match=f"`{name}`"):
        sbl.sbl(call.pop("A"), call.pop("y"), **call)


@pytest.mark.slow
@pytest.mark.parametrize("complex_", [False, True])
def test_fast_rank_one_updates_equal_a_fresh_posterior(complex_):
    # Each add / re-estimate / delete updates Sigma, mu, S, Q and log det by rank-one formulas;
    # after a sequence of actions they must equal the statistics recomputed from scratch.
    from jaxspec.sbl import _fast

    a, y, _, _, noise = sparse_problem(12, m=25, n=50, k=6, snr_db=30, complex_=complex_)
    a, y = jnp.asarray(a), jnp.asarray(y)
    aty, diag = jnp.conj(a.T) @ y, jnp.sum(jnp.abs(a) ** 2, axis=0)
    model = _fast._Model(
        index=jnp.zeros(8, jnp.int32),
        occupied=jnp.zeros(8, bool),
        alpha=jnp.ones(8, F64),
        slot=jnp.full(50, -1, jnp.int32),
        beta=jnp.asarray(1 / noise, F64),
    )
    post = _fast._recompute(model, a, y, aty, diag)
    kinds = []
    for _ in range(14):
        action = _fast._choose(model, *_fast._factors(model, post), jnp.asarray(1e-12))
        kinds.append(int(action.kind))
        model, post = _fast._act(model, post, action, a)
    fresh = _fast._recompute(model, a, y, aty, diag)
    assert {0, 1} <= set(kinds)
    for name in ("sigma", "mean", "big_s", "big_q", "phi", "logdet"):
        np.testing.assert_allclose(getattr(post, name), getattr(fresh, name), rtol=1e-8, atol=1e-9)
    # and a deletion: force one by removing the first atom (alpha -> inf)
    atom = model.index[0]
    delete = _fast._Action(
        atom, jnp.asarray(jnp.inf), jnp.int32(2), jnp.bool_(False), jnp.bool_(False)
    )
    model, post = _fast._act(model, post, delete, a)
    fresh = _fast._recompute(model, a, y, aty, diag)
    assert int(model.slot[atom]) == -1
    for name in ("sigma", "mean", "big_s", "big_q", "phi", "logdet"):
        np.testing.assert_allclose(getattr(post, name), getattr(fresh, name), rtol=1e-8, atol=1e-9)
