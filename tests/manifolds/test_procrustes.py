"""Closed-form Procrustes against scipy and the Kabsch optimum."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg as sla

from jaxspec import manifolds


def test_procrustes_matches_scipy_and_is_batched():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 3, 20, 5))
    r = manifolds.procrustes(a, b)
    for k in range(3):
        np.testing.assert_allclose(r[k], sla.orthogonal_procrustes(a[k], b[k])[0], atol=1e-12)
    r32 = jax.jit(manifolds.procrustes)(a.astype(np.float32), b.astype(np.float32))
    assert r32.dtype == jnp.float32
    np.testing.assert_allclose(r32, r, atol=1e-4)
    out = jax.vmap(manifolds.procrustes)(jnp.asarray(a), jnp.asarray(b))
    np.testing.assert_allclose(out, r, atol=1e-13)


@pytest.mark.parametrize("seed", range(5))
def test_special_procrustes_reaches_the_kabsch_optimum(seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((12, 4))
    b = a @ np.diag([1.0, 1.0, 1.0, -1.0]) + 0.3 * rng.standard_normal((12, 4))
    r = np.asarray(manifolds.procrustes(a, b, special=True))
    assert np.linalg.det(r) == pytest.approx(1.0)
    s = np.linalg.svd(a.T @ b, compute_uv=False)
    u, _, vt = np.linalg.svd(a.T @ b)
    best_trace = s.sum() - (2 * s[-1] if np.linalg.det(u @ vt) < 0 else 0.0)
    np.testing.assert_allclose(np.trace(r.T @ a.T @ b), best_trace, rtol=1e-12)
    # and no random rotation does better
    so = manifolds.Orthogonal(4, special=True).random(jax.random.key(seed), (200,), jnp.float64)
    traces = np.einsum("kij,ij->k", np.asarray(so), a.T @ b)
    assert traces.max() <= best_trace + 1e-12


def test_procrustes_recovers_an_exact_rotation_and_rejects_bad_shapes():
    a = np.random.default_rng(1).standard_normal((9, 3))
    r0 = np.asarray(manifolds.Orthogonal(3).random(jax.random.key(4), (), jnp.float64))
    np.testing.assert_allclose(manifolds.procrustes(a, a @ r0), r0, atol=1e-12)
    with pytest.raises(ValueError, match="`b`"):
        manifolds.procrustes(a, a[:, :2])
    with pytest.raises(ValueError, match="`a`"):
        manifolds.procrustes(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="`special`"):
        manifolds.procrustes(a, a, special="yes")


@pytest.mark.parametrize("special", [False, True])
@pytest.mark.parametrize("shape", [(6, 4), (4, 4)])
def test_polar_factor_gradient_matches_finite_differences_at_repeated_singular_values(
    special, shape
):
    if special and shape[0] != shape[1]:
        pytest.skip("special is for square matrices")
    from jax.test_util import check_grads

    rng = np.random.default_rng(3)
    w = rng.standard_normal(shape)
    # on the manifold every singular value is 1: JAX's SVD rule would give NaN here
    y = np.asarray(manifolds.Stiefel(*shape).random(jax.random.key(0), (), jnp.float64))
    if special:
        y = (
            y
            if np.linalg.det(y) < 0
            else y @ np.diag([1.0, 1.0, 1.0, -1.0]) * np.array([1.0, 2.0, 3.0, 4.0])
        )
    f = lambda m: jnp.sum(w * manifolds.polar_factor(m, special))
    check_grads(f, (y,), order=1, modes=["fwd", "rev"], atol=1e-6, rtol=1e-6)
    g = jax.grad(f)(y)
    assert np.all(np.isfinite(np.asarray(g)))
