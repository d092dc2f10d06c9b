"""Geometry of Stiefel / O(n): projections, Riemannian gradients, retractions, transports.

References are the defining properties (tangency, metric duality, first/second-order
agreement with the geodesic, the geodesic ODE) and scipy (polar, expm).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg as sla
from jax.test_util import check_grads

from jaxspec import manifolds

SHAPES = [(7, 3), (5, 5)]


def _point_and_tangent(n, p, seed=0, batch=(), scale=0.3, dtype=jnp.float64):
    st = manifolds.Stiefel(n, p)
    x = st.random(jax.random.key(seed), batch, dtype)
    u = scale * st.random_tangent(jax.random.key(seed + 1), x)
    return x, u


def _skew_error(x, u):
    a = jnp.swapaxes(x, -1, -2) @ u
    return float(jnp.abs(a + jnp.swapaxes(a, -1, -2)).max())


@pytest.mark.slow  # over the unit budget; CI runs it in the slow step
@pytest.mark.parametrize(("n", "p"), SHAPES)
def test_random_points_are_orthonormal_and_batched(n, p):
    st = manifolds.Stiefel(n, p)
    x = st.random(jax.random.key(0), (4, 2), jnp.float64)
    assert x.shape == (4, 2, n, p)
    assert float(manifolds.orthogonality_error(x).max()) < 1e-13
    so = manifolds.Orthogonal(n, special=True).random(jax.random.key(1), (16,), jnp.float64)
    np.testing.assert_allclose(np.linalg.det(np.asarray(so)), 1.0, atol=1e-12)
    o = manifolds.Orthogonal(n).random(jax.random.key(1), (64,), jnp.float64)
    dets = np.linalg.det(np.asarray(o))
    assert (dets < 0).any() and (dets > 0).any()  # Haar on O(n) hits both components


@pytest.mark.parametrize(("n", "p"), SHAPES)
def test_projection_is_orthogonal_projection_onto_tangent_space(n, p):
    st = manifolds.Stiefel(n, p)
    x = st.random(jax.random.key(0), (3,), jnp.float64)
    g = jax.random.normal(jax.random.key(1), x.shape, jnp.float64)
    h = jax.random.normal(jax.random.key(2), x.shape, jnp.float64)
    pg = st.project(x, g)
    assert _skew_error(x, pg) < 1e-13
    np.testing.assert_allclose(st.project(x, pg), pg, atol=1e-13)  # idempotent
    # the residual is orthogonal to every tangent vector
    np.testing.assert_allclose(jnp.sum((g - pg) * st.project(x, h), axis=(-2, -1)), 0, atol=1e-12)


@pytest.mark.parametrize("metric", ["euclidean", "canonical"])
@pytest.mark.parametrize(("n", "p"), SHAPES)
def test_riemannian_gradient_represents_the_differential(metric, n, p):
    """<grad f, v>_metric = Df(x)[v] = tr(g^T v) for every tangent v."""
    st = manifolds.Stiefel(n, p, metric=metric)
    x = st.random(jax.random.key(0), (), jnp.float64)
    g = jax.random.normal(jax.random.key(1), x.shape, jnp.float64)
    rgrad = st.egrad_to_rgrad(x, g)
    assert _skew_error(x, rgrad) < 1e-13
    for k in range(4):
        v = st.random_tangent(jax.random.key(10 + k), x)
        np.testing.assert_allclose(st.inner(x, rgrad, v), jnp.sum(g * v), rtol=1e-12)
    assert float(st.norm(x, st.random_tangent(jax.random.key(3), x))) == pytest.approx(1.0)


@pytest.mark.parametrize("retraction", manifolds.RETRACTIONS)
@pytest.mark.parametrize(("n", "p"), SHAPES)
def test_retraction_is_feasible_centred_and_first_order(retraction, n, p):
    st = manifolds.Stiefel(n, p, retraction=retraction)
    x, u = _point_and_tangent(n, p, batch=(2,))
    y = st.retract(x, u)
    tol = 2e-3 if retraction == "iterative_cayley" else 1e-13  # approximate by design
    assert float(manifolds.orthogonality_error(y).max()) < tol
    np.testing.assert_allclose(st.retract(x, 0 * u), x, atol=1e-14)
    _, velocity = jax.jvp(lambda t: st.retract(x, t * u), (0.0,), (1.0,))
    np.testing.assert_allclose(velocity, u, atol=1e-12)


@pytest.mark.parametrize(
    ("retraction", "n", "p"),
    [("polar", 7, 3), ("polar_newton_schulz", 7, 3), ("polar", 5, 5), ("cayley", 5, 5)],
)
def test_second_order_retractions_match_the_geodesic_to_third_order(retraction, n, p):
    """Polar is second order on St(n, p); Cayley on O(n) (for p < n the Wen–Yin curve has a
    different acceleration from the embedded-metric geodesic)."""
    st = manifolds.Stiefel(n, p, retraction=retraction)
    x, u = _point_and_tangent(n, p, scale=1.0)
    errs = [float(jnp.abs(st.retract(x, t * u) - st.exp(x, t * u)).max()) for t in (1e-1, 5e-2)]
    assert errs[0] / errs[1] > 7.0  # O(t^3): halving t divides the error by ~8


def test_qr_retraction_is_only_first_order():
    st = manifolds.Stiefel(7, 3, retraction="qr")
    x, u = _point_and_tangent(7, 3, scale=1.0)
    errs = [float(jnp.abs(st.retract(x, t * u) - st.exp(x, t * u)).max()) for t in (1e-1, 5e-2)]
    assert 3.0 < errs[0] / errs[1] < 5.0


@pytest.mark.parametrize(("n", "p"), SHAPES)
def test_polar_retraction_against_scipy_polar(n, p):
    x, u = _point_and_tangent(n, p, scale=2.0)
    ref = sla.polar(np.asarray(x + u))[0]
    np.testing.assert_allclose(manifolds.polar_retraction(x, u), ref, atol=1e-12)
    ns = manifolds.polar_retraction(x, u, method="newton_schulz")
    np.testing.assert_allclose(ns, ref, atol=1e-10)
    ns32 = manifolds.polar_retraction(
        x.astype(jnp.float32), u.astype(jnp.float32), method="newton_schulz"
    )
    np.testing.assert_allclose(ns32, ref, atol=2e-5)


@pytest.mark.parametrize(("n", "p"), [(9, 2), (6, 3), (5, 5)])
def test_cayley_forms_agree_with_the_dense_formula(n, p):
    x, u = _point_and_tangent(n, p, scale=1.5)
    xn, un = np.asarray(x), np.asarray(u)
    pu = un - 0.5 * xn @ (xn.T @ un)
    w = pu @ xn.T - xn @ pu.T
    eye = np.eye(n)
    ref = np.linalg.inv(eye - w / 2) @ (eye + w / 2) @ xn
    for method in ("solve", "woodbury"):
        np.testing.assert_allclose(
            manifolds.cayley_retraction(x, u, method=method), ref, atol=1e-12
        )
    # the iterative form converges to it geometrically
    errs = [
        float(
            jnp.abs(
                manifolds.iterative_cayley_retraction(x, 0.2 * u, iterations=s)
                - (manifolds.cayley_retraction(x, 0.2 * u))
            ).max()
        )
        for s in (1, 3, 6)
    ]
    assert errs[0] > errs[1] > errs[2] and errs[2] < 1e-5


def test_exp_on_orthogonal_group_against_scipy_expm():
    o = manifolds.Orthogonal(5)
    x = o.random(jax.random.key(0), (), jnp.float64)
    u = 2.0 * o.random_tangent(jax.random.key(1), x)
    omega = np.asarray(x).T @ np.asarray(u)
    np.testing.assert_allclose(o.exp(x, u), np.asarray(x) @ sla.expm(omega), atol=1e-12)


@pytest.mark.slow
def test_stiefel_exp_solves_the_geodesic_equation():
    """Euclidean-metric geodesics satisfy Y'' + Y (Y'^T Y') = 0 (Edelman et al. 1998, 2.2)."""
    st = manifolds.Stiefel(8, 3)
    x, u = _point_and_tangent(8, 3, scale=1.3)
    curve = lambda t: st.exp(x, t * u)
    for t in (0.7,):  # (t = 0 is covered by the first-order test; this one is the slowest)
        y = curve(t)
        vel = jax.jacfwd(curve)(t)
        acc = jax.jacfwd(jax.jacfwd(curve))(t)
        np.testing.assert_allclose(acc + y @ (vel.T @ vel), 0, atol=1e-10)
        assert float(manifolds.orthogonality_error(y)) < 1e-13


@pytest.mark.parametrize(
    "retract",
    [
        manifolds.qr_retraction,
        lambda x, u: manifolds.polar_retraction(x, u, method="newton_schulz"),
        lambda x, u: manifolds.cayley_retraction(x, u, method="solve"),
        lambda x, u: manifolds.cayley_retraction(x, u, method="woodbury"),
        manifolds.exp_retraction,
        manifolds.iterative_cayley_retraction,
    ],
    ids=["qr", "polar_ns", "cayley_solve", "cayley_woodbury", "exp", "iterative_cayley"],
)
@pytest.mark.parametrize(("n", "p"), [(7, 3), (4, 4)])
def test_gradients_through_retractions_match_finite_differences(retract, n, p):
    x, u = _point_and_tangent(n, p, scale=0.5)
    w = jax.random.normal(jax.random.key(7), x.shape, jnp.float64)
    f = lambda x, u: jnp.sum(w * retract(x, u))
    check_grads(f, (x, u), order=1, modes=["rev"], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("retraction", manifolds.RETRACTIONS)
def test_retractions_jit_vmap_and_float32(retraction):
    st = manifolds.Stiefel(6, 2, retraction=retraction)
    x, u = _point_and_tangent(6, 2, batch=(3,))
    out = jax.jit(jax.vmap(st.retract))(x, u)
    loop = jnp.stack([st.retract(x[i], u[i]) for i in range(3)])
    np.testing.assert_allclose(out, loop, atol=1e-13)
    np.testing.assert_allclose(st.retract(x, u), loop, atol=1e-13)  # leading batch axes
    y32 = jax.jit(st.retract)(x.astype(jnp.float32), u.astype(jnp.float32))
    assert y32.dtype == jnp.float32
    np.testing.assert_allclose(y32, loop, atol=1e-5)


def test_transport_lands_in_the_tangent_space_of_the_target():
    st = manifolds.Stiefel(7, 3, retraction="cayley")
    x, u = _point_and_tangent(7, 3)
    y = st.retract(x, u)
    v = st.random_tangent(jax.random.key(5), x)
    tv = st.transport(x, y, v)
    assert _skew_error(y, tv) < 1e-13
    assert float(st.norm(y, tv)) <= 1.0 + 1e-12  # projection never increases the norm


@pytest.mark.slow
def test_orthogonal_group_log_inverts_exp_and_matches_scipy_logm():
    o = manifolds.Orthogonal(6, special=True)
    x = o.random(jax.random.key(0), (3,), jnp.float64)
    u = 1.5 * o.random_tangent(jax.random.key(1), x)
    y = o.exp(x, u)
    np.testing.assert_allclose(o.log(x, y), u, atol=1e-10)
    r = np.asarray(x[0]).T @ np.asarray(y[0])
    np.testing.assert_allclose(manifolds.log_orthogonal(r), np.real(sla.logm(r)), atol=1e-10)


def test_special_orthogonal_iterates_keep_determinant_one():
    for retraction in ("qr", "polar", "cayley", "exp"):
        so = manifolds.Orthogonal(4, special=True, retraction=retraction)
        x = so.random(jax.random.key(2), (), jnp.float64)
        for k in range(20):
            x = so.retract(x, 0.5 * so.random_tangent(jax.random.key(k), x))
        assert float(jnp.linalg.det(x)) == pytest.approx(1.0, abs=1e-10)


def test_bad_arguments_raise_value_errors_naming_them():
    with pytest.raises(ValueError, match="`p`"):
        manifolds.Stiefel(3, 4)
    with pytest.raises(ValueError, match="`n`"):
        manifolds.Stiefel(0, 0)
    with pytest.raises(ValueError, match="`metric`"):
        manifolds.Stiefel(4, 2, metric="riemann")
    with pytest.raises(ValueError, match="`retraction`"):
        manifolds.Orthogonal(4, retraction="svd")
    with pytest.raises(ValueError, match="`special`"):
        manifolds.Orthogonal(4, special=1)
    st = manifolds.Stiefel(5, 2)
    with pytest.raises(ValueError, match="`x`"):
        st.project(jnp.ones((5, 3)), jnp.ones((5, 3)))
    with pytest.raises(ValueError, match="`u`"):
        st.retract(jnp.ones((5, 2)), jnp.ones((4, 2)))
    with pytest.raises(ValueError, match="`x`"):
        st.retract(jnp.ones((5, 2), jnp.int32), jnp.ones((5, 2)))
    with pytest.raises(ValueError, match="`x`"):
        manifolds.qr_retraction(jnp.ones((2, 5)), jnp.ones((2, 5)))
    with pytest.raises(ValueError, match="`method`"):
        manifolds.cayley_retraction(jnp.ones((5, 2)), jnp.ones((5, 2)), method="lu")
    with pytest.raises(ValueError, match="`iterations`"):
        manifolds.iterative_cayley_retraction(jnp.ones((5, 2)), jnp.ones((5, 2)), iterations=0)
    with pytest.raises(ValueError, match="`x`"):
        manifolds.orthogonality_error(jnp.ones((2, 5)))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_exp_stays_on_the_manifold_for_long_steps(dtype):
    st = manifolds.Stiefel(30, 5)
    x = st.random(jax.random.key(0), (), jnp.float64)
    u = st.random_tangent(jax.random.key(1), x)
    tol = {jnp.float32: 2e-4, jnp.float64: 1e-11}[dtype]
    for scale in (1.0, 100.0, 1e4):
        y = st.exp(x.astype(dtype), (scale * u).astype(dtype))
        assert float(manifolds.orthogonality_error(y)) < tol * max(1.0, scale / 100)
