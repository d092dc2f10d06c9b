"""Cayley / inverse Cayley (det -1 guard), logarithm on SO(n), Householder products."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg as sla
from jax.test_util import check_grads

from jaxspec import manifolds


def _rotation2(theta):
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, -s], [s, c]])


def _skew(n, seed, scale=1.0):
    a = np.random.default_rng(seed).standard_normal((n, n)) * scale
    return (a - a.T) / 2


def test_cayley_matches_the_dense_formula_and_the_half_angle_relation():
    a = _skew(5, 0)
    eye = np.eye(5)
    ref = np.linalg.inv(eye - a) @ (eye + a)
    np.testing.assert_allclose(manifolds.cayley(a), ref, atol=1e-13)
    assert float(manifolds.orthogonality_error(manifolds.cayley(a))) < 1e-13
    theta = 1.1  # rotation by theta <-> generator entry tan(theta / 2)
    gen = np.array([[0.0, -np.tan(theta / 2)], [np.tan(theta / 2), 0.0]])
    np.testing.assert_allclose(manifolds.cayley(gen), _rotation2(theta), atol=1e-13)


def test_inverse_cayley_round_trip_keeps_the_identity_signature_near_identity():
    a = _skew(6, 1, scale=0.5)
    r = manifolds.cayley(a)
    a_back, d = manifolds.inverse_cayley(r)
    np.testing.assert_array_equal(d, np.ones(6))
    np.testing.assert_allclose(a_back, a, atol=1e-12)
    a_plain, d_plain = manifolds.inverse_cayley(r, guard=False)
    np.testing.assert_allclose(a_plain, a, atol=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_inverse_cayley_guard_handles_determinant_minus_one(seed):
    o = manifolds.Orthogonal(7)
    r = np.asarray(o.random(jax.random.key(seed), (), jnp.float64))
    r = r if np.linalg.det(r) < 0 else r @ np.diag([1.0] * 6 + [-1.0])  # det -1: eigenvalue -1
    a, d = manifolds.inverse_cayley(r)
    assert np.all(np.isfinite(np.asarray(a)))
    assert set(np.asarray(d).tolist()) <= {-1.0, 1.0} and np.prod(np.asarray(d)) < 0
    np.testing.assert_allclose(
        np.asarray(d)[:, None] * np.asarray(manifolds.cayley(a)), r, atol=1e-9
    )
    # the pivots of r + diag(d) are bounded away from zero: I + D r is well conditioned
    assert np.linalg.cond(np.eye(7) + np.asarray(d)[:, None] * r) < 1e4


def test_inverse_cayley_batched_jit_vmap_and_gradient():
    a = np.stack([_skew(4, s, 0.4) for s in range(3)])
    r = manifolds.cayley(a)
    out = jax.jit(jax.vmap(lambda m: manifolds.inverse_cayley(m)[0]))(r)
    np.testing.assert_allclose(out, manifolds.inverse_cayley(r)[0], atol=1e-13)
    np.testing.assert_allclose(out, a, atol=1e-12)
    w = np.random.default_rng(0).standard_normal((4, 4))
    check_grads(lambda m: jnp.sum(w * manifolds.inverse_cayley(m)[0]), (r[0],), 1, modes=["rev"])
    check_grads(lambda s: jnp.sum(w * manifolds.cayley(s)), (a[0],), 1, modes=["rev"])


@pytest.mark.parametrize("n", [2, 3, 6])
def test_log_orthogonal_matches_scipy_logm_for_large_angles(n):
    o = manifolds.Orthogonal(n, special=True)
    for seed in range(4):
        r = np.asarray(o.random(jax.random.key(seed), (), jnp.float64))
        np.testing.assert_allclose(manifolds.log_orthogonal(r), np.real(sla.logm(r)), atol=1e-9)
    near_pi = _rotation2(np.pi - 1e-6)
    np.testing.assert_allclose(
        manifolds.log_orthogonal(near_pi), np.real(sla.logm(near_pi)), atol=1e-8
    )


def test_log_orthogonal_repeated_angles_and_identity():
    block = sla.block_diag(_rotation2(0.4), _rotation2(0.4), np.eye(1))
    np.testing.assert_allclose(
        manifolds.log_orthogonal(block), np.real(sla.logm(block)), atol=1e-12
    )
    np.testing.assert_allclose(manifolds.log_orthogonal(np.eye(3)), 0, atol=1e-15)


def test_log_orthogonal_raises_outside_its_domain():
    with pytest.raises(eqx.EquinoxRuntimeError, match="eigenvalue -1"):
        manifolds.log_orthogonal(np.diag([1.0, 1.0, -1.0]))
    # generic reflections: r + I is singular only up to round-off, and the result was finite
    # and wrong (||expm(a) - r|| ~ 2) with no error
    q = manifolds.Orthogonal(4).random(jax.random.key(3), (5,))
    q = np.where((np.linalg.det(q) > 0)[:, None, None], q * np.array([-1.0, 1, 1, 1]), q)
    assert np.all(np.linalg.det(q) < 0)
    for r in q:
        with pytest.raises(eqx.EquinoxRuntimeError, match="eigenvalue -1"):
            manifolds.log_orthogonal(r)
        with pytest.raises(eqx.EquinoxRuntimeError, match="eigenvalue -1"):
            manifolds.Orthogonal(4).log(np.eye(4), r)
    out = manifolds.log_orthogonal(np.concatenate([q[:1], np.eye(4)[None]]), throw=False)
    assert np.all(np.isnan(out[0])) and np.all(out[1] == 0)  # per matrix in a batch


def test_householder_product_equals_the_explicit_reflector_product():
    v = np.random.default_rng(0).standard_normal((6, 4))
    v[:, 2] = 0.0  # a zero vector is the identity
    ref = np.eye(6)
    for j in range(4):
        if np.any(v[:, j]):
            ref = ref @ (np.eye(6) - 2 * np.outer(v[:, j], v[:, j]) / (v[:, j] @ v[:, j]))
    np.testing.assert_allclose(manifolds.householder_product(v), ref, atol=1e-13)
    np.testing.assert_allclose(manifolds.householder_product(v, 3), ref[:, :3], atol=1e-13)
    batch = np.stack([v, 2 * v])
    np.testing.assert_allclose(manifolds.householder_product(batch)[1], ref, atol=1e-13)
    w = np.random.default_rng(1).standard_normal((6, 3))
    v[:, 2] = 1.0  # (a zero column is a point of discontinuity: test the gradient elsewhere)
    check_grads(lambda u: jnp.sum(w * manifolds.householder_product(u, 3)), (v,), 1, modes=["rev"])


def test_chart_bad_arguments():
    with pytest.raises(ValueError, match="`a`"):
        manifolds.cayley(np.ones((3, 4)))
    with pytest.raises(ValueError, match="`r`"):
        manifolds.inverse_cayley(np.ones((3,)))
    with pytest.raises(ValueError, match="`min_pivot`"):
        manifolds.inverse_cayley(np.eye(3), min_pivot=0.0)
    with pytest.raises(ValueError, match=r"`min_pivot` must be in \(0, 1\]"):
        manifolds.inverse_cayley(np.eye(3), min_pivot=2.5)  # gave a wrong chart, silently
    with pytest.raises(ValueError, match="`p`"):
        manifolds.householder_product(np.ones((3, 2)), 4)
    with pytest.raises(ValueError, match="`v`"):
        manifolds.householder_product(np.ones((3, 2), np.int32))
