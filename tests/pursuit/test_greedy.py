"""Batched MP and OMP against scikit-learn's OMP and NumPy least squares."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.linear_model import orthogonal_mp_gram

from jaxspec import Status, pursuit


def problem(seed=0, d=40, n_atoms=100, batch=64, sparsity=5, unit=True):
    rng = np.random.default_rng(seed)
    dic = rng.standard_normal((d, n_atoms))
    if unit:
        dic /= np.linalg.norm(dic, axis=0)
    x = np.zeros((batch, n_atoms))
    for i in range(batch):
        x[i, rng.choice(n_atoms, sparsity, replace=False)] = rng.standard_normal(sparsity)
    return dic, x @ dic.T, x


@pytest.mark.parametrize("unit", [True, False])
def test_omp_equals_scikit_learn(unit):
    dic, y, _ = problem(unit=unit)
    y = y + 0.05 * np.random.default_rng(1).standard_normal(y.shape)  # supports are not exact
    # scikit-learn assumes unit-norm atoms; ours selects by |d_j^T r| / |d_j|, which is
    # scikit-learn on the normalized dictionary with the codes rescaled.
    norms = np.linalg.norm(dic, axis=0)
    unit_dic = dic / norms
    ref = orthogonal_mp_gram(unit_dic.T @ unit_dic, unit_dic.T @ y.T, n_nonzero_coefs=8).T / norms
    got = np.asarray(pursuit.omp(dic, y, 8))
    np.testing.assert_array_equal(got != 0, ref != 0)
    np.testing.assert_allclose(got, ref, atol=1e-10)


def test_omp_coefficients_are_least_squares_on_the_support_and_residual_is_tracked():
    dic, y, _ = problem(seed=2, batch=8)
    y = y + 0.1 * np.random.default_rng(3).standard_normal(y.shape)
    sol = pursuit.omp_solve(dic, y, 6)
    for i in range(8):
        s = np.asarray(sol.support[i])
        coef, *_ = np.linalg.lstsq(dic[:, s], y[i], rcond=None)
        np.testing.assert_allclose(np.asarray(sol.codes[i])[s], coef, atol=1e-10)
        resid = y[i] - dic @ np.asarray(sol.codes[i])
        np.testing.assert_allclose(float(sol.residual_sq[i]), resid @ resid, rtol=1e-9)
    assert np.all(np.asarray(sol.status) == Status.MAX_STEPS)
    assert np.all(np.asarray(sol.num_atoms) == 6)


def test_omp_recovers_exact_sparse_codes_and_stops_on_an_orthogonal_residual():
    dic, y, x = problem(seed=4, batch=16, sparsity=4)
    sol = pursuit.omp_solve(dic, y, 10)
    np.testing.assert_allclose(np.asarray(sol.codes), x, atol=1e-10)
    assert np.all(np.asarray(sol.num_atoms) == 4)  # residual 0 after the true support
    assert np.all(np.asarray(sol.status) == Status.CONVERGED)


def test_omp_tol_stops_each_signal_like_scikit_learn():
    dic, y, _ = problem(seed=5, batch=16)
    y = y + 0.05 * np.random.default_rng(6).standard_normal(y.shape)
    tol = 0.2
    sol = pursuit.omp_solve(dic, y, 40, tol=tol)
    ref = orthogonal_mp_gram(
        dic.T @ dic, dic.T @ y.T, tol=tol, norms_squared=np.sum(y * y, axis=1)
    ).T
    np.testing.assert_allclose(np.asarray(sol.codes), ref, atol=1e-10)
    assert np.all(np.asarray(sol.residual_sq) <= tol)
    assert np.all(np.asarray(sol.status) == Status.CONVERGED)
    # Per-signal tolerances: a looser one stops earlier.
    loose = pursuit.omp_solve(dic, y, 40, tol=jnp.where(jnp.arange(16) < 8, 1.0, tol))
    assert np.all(np.asarray(loose.num_atoms[:8]) <= np.asarray(sol.num_atoms[:8]))
    np.testing.assert_array_equal(loose.num_atoms[8:], sol.num_atoms[8:])


def test_omp_on_a_rank_deficient_dictionary_stops_at_the_least_squares_fit():
    rng = np.random.default_rng(7)
    base = rng.standard_normal((6, 3))
    dic = np.concatenate([base, base @ rng.standard_normal((3, 5))], axis=1)  # rank 3
    y = rng.standard_normal(6)  # not in the span: the residual never vanishes
    sol = pursuit.omp_solve(dic, y, 6)
    # Three atoms span the column space; the residual is then orthogonal to every atom.
    assert int(sol.num_atoms) == 3
    assert int(sol.status) == Status.CONVERGED
    fit, *_ = np.linalg.lstsq(dic, y, rcond=None)
    resid = y - dic @ fit
    np.testing.assert_allclose(float(sol.residual_sq), resid @ resid, rtol=1e-10)
    np.testing.assert_allclose(dic @ np.asarray(sol.codes), dic @ fit, atol=1e-10)


def test_mp_residual_never_increases_and_matches_a_numpy_loop():
    dic, y, _ = problem(seed=8, batch=4)
    k = 30
    sol = pursuit.mp_solve(dic, y, k)
    for i in range(4):
        r, z, prev = y[i].copy(), np.zeros(dic.shape[1]), np.inf
        for _ in range(k):
            c = dic.T @ r
            j = int(np.argmax(np.abs(c)))
            z[j] += c[j]
            r = r - c[j] * dic[:, j]
            assert r @ r <= prev + 1e-12
            prev = r @ r
        np.testing.assert_allclose(np.asarray(sol.codes[i]), z, atol=1e-10)
        np.testing.assert_allclose(float(sol.residual_sq[i]), r @ r, rtol=1e-8, atol=1e-14)


def test_mp_tol_and_status():
    dic, y, _ = problem(seed=9, batch=8)
    sol = pursuit.mp_solve(dic, y, 100, tol=1e-2)
    assert np.all(np.asarray(sol.residual_sq) <= 1e-2)
    assert np.all(np.asarray(sol.status) == Status.CONVERGED)
    assert np.all(np.asarray(sol.num_atoms) < 100)


@pytest.mark.parametrize("fn", [pursuit.omp, pursuit.mp])
def test_jit_vmap_batch_axes_and_float32(fn):
    dic, y, _ = problem(seed=10, batch=6)
    batched = np.asarray(fn(dic, y, 5))
    loop = np.stack([np.asarray(fn(dic, y[i], 5)) for i in range(6)])
    np.testing.assert_allclose(batched, loop, atol=1e-12)
    vm = jax.vmap(lambda v: fn(dic, v, 5))(y)
    np.testing.assert_allclose(np.asarray(vm), loop, atol=1e-12)
    jitted = jax.jit(fn, static_argnums=2)(dic, y.reshape(2, 3, -1), 5)
    np.testing.assert_allclose(np.asarray(jitted).reshape(6, -1), loop, atol=1e-12)
    f32 = fn(dic.astype(np.float32), y.astype(np.float32), 5)
    assert f32.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(f32), loop, atol=2e-4)


def test_bad_inputs_raise_value_errors():
    dic, y, _ = problem(batch=2)
    with pytest.raises(ValueError, match="`dictionary`"):
        pursuit.omp(dic[None], y, 3)
    with pytest.raises(ValueError, match="`y` must have last axis"):
        pursuit.omp(dic, y[:, :-1], 3)
    with pytest.raises(ValueError, match="`k` must be <="):
        pursuit.omp(dic, y, dic.shape[1] + 1)
    with pytest.raises(ValueError, match="`k`"):
        pursuit.mp(dic, y, 0)
    with pytest.raises(ValueError, match="`tol`"):
        pursuit.omp(dic, y, 3, tol=-1.0)
    with pytest.raises(ValueError, match="`y`"):
        pursuit.omp(dic, np.ones((2, 40), int), 3)


@pytest.mark.slow
def test_omp_beyond_the_unrolled_range_uses_the_loop_and_still_equals_scikit_learn():
    # k > 32 runs a fori_loop over the full active-set width instead of unrolled steps.
    dic, y, _ = problem(seed=11, d=60, n_atoms=90, batch=6, sparsity=40)
    k = 36
    ref = orthogonal_mp_gram(dic.T @ dic, dic.T @ y.T, n_nonzero_coefs=k).T
    got = np.asarray(pursuit.omp(dic, y, k))
    np.testing.assert_array_equal(got != 0, ref != 0)
    np.testing.assert_allclose(got, ref, atol=1e-8)


def test_argmax_ties_go_to_the_lowest_index_like_numpy():
    from jaxspec.pursuit._greedy import _argmax_nonneg

    rng = np.random.default_rng(12)
    score = np.abs(rng.standard_normal((50, 300)))
    score[:, 17] = score[:, 200] = score.max(axis=1) + 1.0  # exact ties
    score[:10] = 0.0  # all tied
    for dtype in (np.float64, np.float32):
        got = np.asarray(_argmax_nonneg(jnp.asarray(score, dtype)))
        np.testing.assert_array_equal(got, np.argmax(score.astype(dtype), axis=1))


def test_per_signal_max_atoms_equals_separate_calls_and_is_traced():
    dic, y, _ = problem(seed=13, batch=6, sparsity=8)
    caps = np.array([0, 1, 3, 5, 8, 8])
    run = jax.jit(lambda c: pursuit.omp_solve(dic, y, 8, max_atoms=c))
    sol = run(caps)
    np.testing.assert_array_equal(np.asarray(sol.num_atoms), caps)
    for i, cap in enumerate(caps):
        if cap == 0:
            assert not np.any(np.asarray(sol.codes[i]))
            continue
        ref = np.asarray(pursuit.omp(dic, y[i], int(cap)))
        np.testing.assert_allclose(np.asarray(sol.codes[i]), ref, atol=1e-12)
    mp_sol = pursuit.mp_solve(dic, y, 8, max_atoms=caps)
    np.testing.assert_array_equal(np.asarray(mp_sol.num_atoms), caps)
    with pytest.raises(ValueError, match="`max_atoms`"):
        pursuit.omp(dic, y, 8, max_atoms=-1)


def test_omp_reports_a_nearly_dependent_atom_as_stagnated():
    # Atom 2 = atom 0 + atom 1 + 1e-8 e3. After atoms 0 and 1 the residual is e3, whose only
    # correlation (1e-8 / sqrt 2, far above round-off) is with atom 2, which adds no numerically
    # new direction: OMP stops there (scikit-learn warns "linear dependence" and stops too).
    dic = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [0.0, 0.0, 1e-8]])
    sol = pursuit.omp_solve(dic, np.array([1.0, -1.0, 1.0]), 3)
    assert int(sol.status) == Status.STAGNATED
    assert int(sol.num_atoms) == 2
    np.testing.assert_allclose(np.asarray(sol.codes), [1.0, -1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(float(sol.residual_sq), 1.0, rtol=1e-12)


def test_nonfinite_input_is_reported_not_hidden():
    dic, y, _ = problem(seed=14, batch=3)
    y = y.copy()
    y[1, 0] = np.nan
    for solve in (pursuit.omp_solve, pursuit.mp_solve):
        sol = solve(dic, y, 4)
        status = np.asarray(sol.status)
        assert status[1] == Status.NONFINITE
        assert np.all(status[[0, 2]] != Status.NONFINITE)


def test_mp_may_take_more_steps_than_atoms():
    dic, y, _ = problem(seed=15, d=8, n_atoms=10, batch=2, sparsity=3)
    sol = pursuit.mp_solve(dic, y, 25)
    assert int(np.max(np.asarray(sol.num_atoms))) > 10
    assert np.all(np.asarray(sol.residual_sq) < 0.5 * np.sum(y * y, axis=1))


def test_omp_gram_equals_scikit_learn_and_omp_solve():
    dic, y, _ = problem(seed=16, batch=10)
    y = y + 0.05 * np.random.default_rng(17).standard_normal(y.shape)
    gram, dty, norms = dic.T @ dic, y @ dic, np.sum(y * y, axis=1)
    sol = pursuit.omp_gram(gram, dty, norms, 6)
    ref = orthogonal_mp_gram(gram, dty.T, n_nonzero_coefs=6).T
    np.testing.assert_allclose(np.asarray(sol.codes), ref, atol=1e-10)
    full = pursuit.omp_solve(dic, y, 6)
    np.testing.assert_allclose(np.asarray(sol.residual_sq), np.asarray(full.residual_sq), rtol=1e-9)
    tol_sol = pursuit.omp_gram(gram, dty, norms, 20, tol=0.05)
    ref_tol = orthogonal_mp_gram(gram, dty.T, tol=0.05, norms_squared=norms).T
    np.testing.assert_array_equal(np.asarray(tol_sol.codes) != 0, ref_tol != 0)
    with pytest.raises(ValueError, match="`gram`"):
        pursuit.omp_gram(gram[:, :-1], dty, norms, 3)
    with pytest.raises(ValueError, match="`dty`"):
        pursuit.omp_gram(gram, dty[:, :-1], norms, 3)
    with pytest.raises(ValueError, match="`norms_squared`"):
        pursuit.omp_gram(gram, dty, norms[:3], 3)
    with pytest.raises(ValueError, match="`k`"):
        pursuit.omp_gram(gram, dty, norms, gram.shape[0] + 1)


def test_float32_omp_keeps_atoms_well_above_round_off():
    """The 'residual orthogonal to every atom' floor was 1e3 eps |y| max|d_j| (1.2e-4 |y| in
    float32): an atom carrying 5e-5 of |y| was dropped with status CONVERGED, and 5 % of
    16-sparse codes with a 10:1 coefficient range stopped short (code error 4e-3)."""
    sol = pursuit.omp_solve(np.eye(4, dtype=np.float32), np.float32([1000.0, 0.05, 0, 0]), 2)
    np.testing.assert_allclose(sol.codes, [1000.0, 0.05, 0, 0], rtol=1e-6)
    assert int(sol.num_atoms) == 2
    rng = np.random.default_rng(0)
    dic = rng.normal(size=(64, 128)).astype(np.float32)
    dic /= np.linalg.norm(dic, axis=0)
    codes = np.zeros((200, 128), np.float32)
    for row in codes:
        row[rng.choice(128, 16, replace=False)] = rng.normal(size=16) * rng.choice([1, 10], 16)
    sol = pursuit.omp_solve(dic, codes @ dic.T, 32)
    assert sol.codes.dtype == jnp.float32
    np.testing.assert_allclose(sol.codes, codes, atol=2e-4)  # 3.5e-3 with the old floor
