"""ISTA/FISTA against scikit-learn's lasso, brute-force l0 minimisation and their own map."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.linear_model import Lasso

from jaxspec import Status
from jaxspec.pursuit._ista import fista, ista
from jaxspec.pursuit._thresholds import THRESHOLDS, hard_threshold


def problem(seed=0, d=20, n_atoms=30, batch=3, sparsity=3, noise=0.05):
    rng = np.random.default_rng(seed)
    dic = rng.standard_normal((d, n_atoms))
    dic /= np.linalg.norm(dic, axis=0)
    x = np.zeros((batch, n_atoms))
    for i in range(batch):
        x[i, rng.choice(n_atoms, sparsity, replace=False)] = rng.choice([-1, 1], sparsity) * (
            1 + rng.random(sparsity)
        )
    y = x @ dic.T + noise * rng.standard_normal((batch, d))
    return dic, y


def objective(dic, y, z, name, lam):
    """1/2 |y - D z|^2 + lam * penalty(z), written independently of the library."""
    r = y - dic @ z
    a = np.linalg.norm(dic, axis=0)
    pen = {
        "soft": lam * np.abs(z),
        "hard": lam * (z != 0),
        "half": lam * np.sqrt(np.abs(z)),
        "cel0": lam - 0.5 * np.maximum(np.sqrt(2 * lam) - a * np.abs(z), 0) ** 2,
    }[name]
    return 0.5 * r @ r + pen.sum()


def test_soft_ista_and_fista_equal_scikit_learn_lasso_and_fista_is_faster():
    dic, y = problem(n_atoms=40, sparsity=5)
    # a coherent dictionary (a shared component), where momentum pays off; on well-conditioned
    # problems restart-free FISTA can need more steps than ISTA to a tight tolerance
    common = np.random.default_rng(9).standard_normal(dic.shape[0])
    dic = dic + 0.7 * common[:, None] / np.linalg.norm(common)
    dic /= np.linalg.norm(dic, axis=0)
    d = dic.shape[0]
    lam = 0.1
    ref = np.stack(
        [
            Lasso(alpha=lam / d, fit_intercept=False, tol=1e-12, max_iter=10**5).fit(dic, yi).coef_
            for yi in y
        ]
    )
    slow = ista(dic, y, lam, max_steps=50000, tol=1e-10)
    fast = fista(dic, y, lam, max_steps=50000, tol=1e-10)
    for sol in (slow, fast):
        assert np.all(np.asarray(sol.status) == Status.CONVERGED)
        np.testing.assert_allclose(np.asarray(sol.codes), ref, atol=1e-6)
        for i in range(len(y)):
            want = objective(dic, y[i], np.asarray(sol.codes[i]), "soft", lam)
            np.testing.assert_allclose(float(sol.objective[i]), want, rtol=1e-12)
    assert np.all(np.count_nonzero(ref, axis=1) > 5)  # non-trivial lasso solutions
    assert np.all(np.asarray(fast.num_steps) < np.asarray(slow.num_steps))
    # the stopping rule as documented: |z_{t+1} - x_t| / step <= tol |D^T y|
    assert np.all(np.asarray(slow.residual_norm) <= 1e-10 * np.linalg.norm(y @ dic, axis=1))


@pytest.mark.parametrize("name", THRESHOLDS)
def test_ista_objective_is_monotone_and_restarts_reproduce_the_run(name):
    dic, y = problem(seed=1, batch=2)
    lam = 0.1
    one_step = jax.jit(
        lambda z: ista(dic, y, lam, threshold=name, max_steps=1, tol=0.0, init=z).codes
    )
    z = jnp.zeros((2, dic.shape[1]))
    history = [[objective(dic, y[i], np.zeros(dic.shape[1]), name, lam) for i in range(2)]]
    for _ in range(30):
        z = one_step(z)
        history.append([objective(dic, y[i], np.asarray(z[i]), name, lam) for i in range(2)])
    history = np.array(history)
    assert np.all(np.diff(history, axis=0) <= 1e-12 * history[:-1])
    assert np.all(history[-1] < 0.5 * history[0])  # it did descend
    # ISTA has no memory: 30 single steps from the previous codes == one 30-step run
    full = ista(dic, y, lam, threshold=name, max_steps=30, tol=0.0)
    np.testing.assert_allclose(np.asarray(full.codes), np.asarray(z), atol=1e-12)
    np.testing.assert_allclose(np.asarray(full.objective), history[-1], rtol=1e-10)
    assert np.all(np.asarray(full.num_steps) == 30)


def test_iht_reaches_a_fixed_point_of_its_map():
    dic, y = problem(seed=2, batch=2)
    lam = 0.05
    sol = ista(dic, y, lam, threshold="hard", max_steps=5000, tol=1e-13)
    assert np.all(np.asarray(sol.status) == Status.CONVERGED)
    z = np.asarray(sol.codes)
    step = 1 / np.linalg.norm(dic, 2) ** 2
    mapped = np.asarray(hard_threshold(z - step * (z @ dic.T - y) @ dic, step * lam))
    np.testing.assert_allclose(mapped, z, atol=1e-10)
    for i in range(2):  # a fixed point of IHT is least squares on its support
        support = np.flatnonzero(z[i])
        assert 0 < support.size < dic.shape[0]
        coef, *_ = np.linalg.lstsq(dic[:, support], y[i], rcond=None)
        np.testing.assert_allclose(z[i, support], coef, atol=1e-9)


def l0_brute_force(dic, y, lam):
    """Global minimum of 1/2 |y - D z|^2 + lam |z|_0 over all supports."""
    d, n_atoms = dic.shape
    best_val, best = 0.5 * y @ y, np.zeros(n_atoms)
    for k in range(1, d + 1):
        for support in itertools.combinations(range(n_atoms), k):
            support = list(support)
            coef, *_ = np.linalg.lstsq(dic[:, support], y, rcond=None)
            z = np.zeros(n_atoms)
            z[support] = coef
            r = y - dic @ z
            if 0.5 * r @ r + lam * k < best_val:
                best_val, best = 0.5 * r @ r + lam * k, z
    return best_val, best


def test_cel0_has_the_l0_global_minimum_and_finds_it_where_iht_does_not():
    rng = np.random.default_rng(0)
    d, n_atoms, lam = 5, 8, 0.1
    dic = rng.standard_normal((d, n_atoms))
    dic *= rng.uniform(0.5, 1.5, n_atoms) / np.linalg.norm(dic, axis=0)  # unequal atom norms
    x = np.zeros(n_atoms)
    x[rng.choice(n_atoms, 2, replace=False)] = rng.choice([-1, 1], 2) * rng.uniform(1, 2, 2)
    y = dic @ x + 0.1 * rng.standard_normal(d)
    best_val, best = l0_brute_force(dic, y, lam)
    assert np.count_nonzero(best) == 2

    # At the l0 minimiser the CEL0 objective equals the l0 objective (Soubies et al. 2015),
    # and it is a fixed point of CEL0-ISTA (a global minimiser; step < 1/L makes it strict).
    step = 0.9 / np.linalg.norm(dic, 2) ** 2
    at_best = ista(dic, y, lam, threshold="cel0", step=step, max_steps=1, tol=0.0, init=best)
    np.testing.assert_allclose(np.asarray(at_best.codes), best, atol=1e-12)
    np.testing.assert_allclose(float(at_best.objective), best_val, rtol=1e-12)
    np.testing.assert_allclose(objective(dic, y, best, "cel0", lam), best_val, rtol=1e-12)

    # Multi-start CEL0-ISTA never goes below the l0 minimum, and reaches it from zero here;
    # IHT from zero stops at a worse fixed point on this instance.
    inits = np.concatenate([np.zeros((1, n_atoms)), rng.standard_normal((7, n_atoms))])
    ys = np.broadcast_to(y, (8, d))
    cel0 = ista(dic, ys, lam, threshold="cel0", max_steps=20000, tol=1e-12, init=inits)
    iht = ista(dic, ys, lam, threshold="hard", max_steps=20000, tol=1e-12, init=inits)
    assert np.all(np.asarray(cel0.status) == Status.CONVERGED)
    assert np.all(np.asarray(cel0.objective) >= best_val - 1e-10)
    np.testing.assert_allclose(float(cel0.objective[0]), best_val, rtol=1e-9)
    np.testing.assert_allclose(np.asarray(cel0.codes[0]), best, atol=1e-6)
    assert float(iht.objective[0]) > best_val + 0.1
    assert np.all(np.asarray(iht.objective) >= best_val - 1e-10)


def test_batch_axes_vmap_and_a_loop_agree():
    dic, y = problem(seed=3, batch=6)
    y = y.reshape(2, 3, -1)
    lam = 0.1

    def solve(s):
        return ista(dic, s, lam, threshold="half", max_steps=3000, tol=1e-9)

    batched = solve(y)
    mapped = jax.tree.map(
        lambda x: x.reshape((2, 3) + x.shape[1:]), jax.vmap(solve)(y.reshape(6, -1))
    )
    one = jax.jit(solve)  # one compile for the loop
    assert batched.codes.shape == (2, 3, dic.shape[1]) and batched.status.shape == (2, 3)
    for i, j in itertools.product(range(2), range(3)):
        ref = one(y[i, j])
        for got in (batched, mapped):
            for field in ("codes", "objective", "num_steps", "status"):
                np.testing.assert_allclose(
                    np.asarray(getattr(got, field)[i, j]),
                    np.asarray(getattr(ref, field)),
                    atol=1e-12,
                )
    assert np.all(np.asarray(batched.status) == Status.CONVERGED)
    # signals stop on their own: the step counts differ across the batch
    assert len(set(np.asarray(batched.num_steps).ravel().tolist())) > 1


def test_traced_lam_sweep_and_per_signal_lam():
    dic, y = problem(seed=4, batch=1)
    y = y[0]
    lams = jnp.array([0.02, 0.1, 0.5])
    sweep = jax.jit(jax.vmap(lambda lam: fista(dic, y, lam, max_steps=5000, tol=1e-10)))(lams)
    one = jax.jit(lambda lam: fista(dic, y, lam, max_steps=5000, tol=1e-10))
    loop = [one(lam) for lam in lams]
    for i, one in enumerate(loop):
        np.testing.assert_allclose(np.asarray(sweep.codes[i]), np.asarray(one.codes), atol=1e-12)
        assert int(sweep.num_steps[i]) == int(one.num_steps)
    sizes = [np.count_nonzero(np.asarray(one.codes)) for one in loop]
    assert sizes[0] > sizes[1] > sizes[2]  # the sweep does sweep
    # per-signal lam through a trailing axis, as a batch
    per_signal = fista(
        dic, np.broadcast_to(y, (3, y.size)), lams[:, None], max_steps=5000, tol=1e-10
    )
    np.testing.assert_allclose(np.asarray(per_signal.codes), np.asarray(sweep.codes), atol=1e-12)


def test_status_max_steps_zero_signal_and_nonfinite():
    dic, y = problem(seed=5, batch=2)
    short = ista(dic, y, 0.1, max_steps=3)
    assert np.all(np.asarray(short.status) == Status.MAX_STEPS)
    assert np.all(np.asarray(short.num_steps) == 3)
    assert np.all(np.asarray(short.residual_norm) > 0)
    zero = ista(dic, np.zeros(dic.shape[0]), 0.1)
    assert int(zero.status) == Status.CONVERGED and not np.any(np.asarray(zero.codes))
    bad = y.copy()
    bad[1, 4] = np.nan
    for name in THRESHOLDS:
        sol = ista(dic, bad, 0.1, threshold=name, max_steps=2000, tol=1e-8)
        assert sol.status.tolist() == [Status.CONVERGED, Status.NONFINITE], name
        assert int(sol.num_steps[1]) == 1  # the NaN signal stopped at once
    # a NaN penalty weight reached under jit (no trace-time check possible)
    sol = jax.jit(lambda lam: ista(dic, y, lam, threshold="hard", max_steps=50))(jnp.nan)
    assert np.all(np.asarray(sol.status) == Status.NONFINITE)


def test_bad_inputs():
    dic, y = problem(batch=2)
    with pytest.raises(ValueError, match="`dictionary`"):
        ista(dic[None], y, 0.1)
    with pytest.raises(ValueError, match="`y`"):
        ista(dic, y[:, :-1], 0.1)
    with pytest.raises(ValueError, match="`y`"):
        ista(dic, np.ones(dic.shape[0], int), 0.1)
    with pytest.raises(ValueError, match="`lam`"):
        ista(dic, y, -0.1)
    with pytest.raises(ValueError, match="`lam`"):
        ista(dic, y, np.full(3, 0.1))  # neither (K,) nor (..., 1)
    with pytest.raises(ValueError, match="`threshold`"):
        ista(dic, y, 0.1, threshold="l1")
    with pytest.raises(ValueError, match="`step`"):
        ista(dic, y, 0.1, step=0.0)
    with pytest.raises(ValueError, match="`tol`"):
        ista(dic, y, 0.1, tol=-1.0)
    with pytest.raises(ValueError, match="`max_steps`"):
        fista(dic, y, 0.1, max_steps=0)
    with pytest.raises(ValueError, match="`init`"):
        ista(dic, y, 0.1, init=np.zeros(dic.shape[1] + 1))
    with pytest.raises(ValueError, match="`accelerate`"):
        ista(dic, y, 0.1, accelerate="yes")
