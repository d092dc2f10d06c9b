"""polar: meets its tolerance, agrees with the SVD factor, reports steps and status."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxspec import Status, spectral
from tests.spectral.helpers import matrix_with_singular_values, singular_values


@pytest.mark.parametrize("tol", [1e-6, 1e-10])
@pytest.mark.parametrize("shape", [(60, 60), (40, 90), (90, 40)])
@pytest.mark.parametrize("cond", [10.0, 1e3, 1e6])
def test_meets_tolerance_and_matches_svd(tol, shape, cond):
    rng = np.random.default_rng(0)
    sigma = np.geomspace(1.0 / cond, 1.0, min(shape)) * 7.0
    x = matrix_with_singular_values(rng, *shape, sigma)
    sol = spectral.polar(jnp.asarray(x), tol=tol)
    assert int(sol.status) == Status.CONVERGED and bool(sol.converged)
    q = np.asarray(sol.factor)
    small = q if shape[0] <= shape[1] else q.T
    gram_err = np.linalg.norm(small @ small.T - np.eye(min(shape)))
    assert gram_err <= tol and float(sol.error) == pytest.approx(gram_err, rel=1e-3, abs=1e-14)
    u, _, vh = np.linalg.svd(x, full_matrices=False)
    # ||Q - UV^T||_2 <= max |1 - s| <= ||QQ^T - I||_2 for the NS factor (same singular vectors).
    assert np.linalg.norm(q - u @ vh, 2) <= tol * 1.01 + 1e-13
    assert 0 < int(sol.num_steps) <= 30


def test_svd_method_is_reference():
    x = jax.random.normal(jax.random.key(0), (20, 30), dtype=jnp.float64)
    ref = spectral.polar(x, method="svd")
    ns = spectral.polar(x, tol=1e-12)
    np.testing.assert_allclose(ns.factor, ref.factor, atol=1e-11)
    assert int(ref.num_steps) == 0 and int(ref.status) == Status.CONVERGED


def test_float32_tolerance():
    x = jax.random.normal(jax.random.key(1), (128, 128), dtype=jnp.float32)
    sol = spectral.polar(x, tol=1e-4)
    assert sol.factor.dtype == jnp.float32 and bool(sol.converged)
    s = singular_values(sol.factor)
    assert np.abs(1 - s).max() < 1e-4


def test_rank_deficient_stagnates_and_small_budget_reports_max_steps():
    rng = np.random.default_rng(2)
    sigma = np.array([1.0, 0.5, 0.2, 0.0, 0.0])
    x = jnp.asarray(matrix_with_singular_values(rng, 5, 8, sigma))
    sol = spectral.polar(x, tol=1e-8)
    assert int(sol.status) == Status.STAGNATED and int(sol.num_steps) < 100
    short = spectral.polar(
        x * 0 + jnp.eye(5, 8) * jnp.arange(1, 6.0)[:, None], tol=1e-12, max_steps=2
    )
    assert int(short.status) == Status.MAX_STEPS and int(short.num_steps) == 2
    zero = spectral.polar(jnp.zeros((3, 3)))
    assert int(zero.status) == Status.STAGNATED and jnp.all(zero.factor == 0)


@pytest.mark.slow
def test_batched_equals_loop_and_vmap():
    x = jax.random.normal(jax.random.key(3), (2, 3, 10, 14), dtype=jnp.float64)
    sol = spectral.polar(x, tol=1e-9)
    assert sol.error.shape == (2, 3) and sol.num_steps.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            one = spectral.polar(x[i, j], tol=1e-9)
            np.testing.assert_allclose(sol.factor[i, j], one.factor, atol=1e-12)
            assert int(sol.num_steps[i, j]) == int(one.num_steps)
    vm = jax.jit(jax.vmap(lambda a: spectral.polar(a, tol=1e-9)))(x[0])
    np.testing.assert_allclose(vm.factor, sol.factor[0], atol=1e-12)


def test_traced_tolerance_is_accepted():
    x = jax.random.normal(jax.random.key(4), (8, 8), dtype=jnp.float64)
    steps = jax.vmap(lambda t: spectral.polar(x, tol=t).num_steps)(jnp.array([1e-2, 1e-12]))
    assert int(steps[0]) <= int(steps[1])


def test_bad_arguments():
    x = jnp.ones((3, 3))
    with pytest.raises(ValueError, match="tol"):
        spectral.polar(x, tol=0.0)
    with pytest.raises(ValueError, match="max_steps"):
        spectral.polar(x, max_steps=-1)
    with pytest.raises(ValueError, match="method"):
        spectral.polar(x, method="qdwh")
    with pytest.raises(ValueError, match="`x`"):
        spectral.polar(jnp.ones(3))


@pytest.mark.parametrize("method", ["newton_schulz", "svd"])
@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_half_precision_is_computed_in_float32(method, dtype):
    """float16 Gram sums overflowed (a zero factor, STAGNATED) and LAPACK has no half SVD."""
    x = np.random.default_rng(1).standard_normal((64, 128))
    xh = jnp.asarray(x, dtype)
    sol = spectral.polar(xh, tol=1e-3, method=method)
    assert sol.factor.dtype == dtype and int(sol.status) == Status.CONVERGED
    u, _, vh = np.linalg.svd(np.asarray(xh, np.float64), full_matrices=False)
    np.testing.assert_allclose(np.asarray(sol.factor, np.float64), u @ vh, atol=1e-2)
