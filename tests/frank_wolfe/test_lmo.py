"""Linear minimization oracles: vertices against LP/SVD references, projections against
independent solvers, Jacobians against finite differences, pytrees, vmap, jit, dtypes, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

from jaxspec import frank_wolfe
from jaxspec.frank_wolfe import lmo

RNG = np.random.default_rng


# ---------------------------------------------------------------------------------------------
# Independent references
# ---------------------------------------------------------------------------------------------


def _linprog(c, *, a_ub=None, b_ub=None, a_eq=None, b_eq=None, bounds=(0, None)):
    res = scipy.optimize.linprog(
        c, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs"
    )
    assert res.status == 0, res.message
    return res.x, res.fun


def lp_l1(g, r, k=None):
    """min <g, s> over {||s||_1 <= r} (k None) or the K-sparse polytope; s = p - q."""
    n = g.size
    c = np.concatenate([g, -g])
    total = r if k is None else k * r
    bounds = (0, None) if k is None else (0, r)
    x, fun = _linprog(c, a_ub=np.ones((1, 2 * n)), b_ub=[total], bounds=bounds)
    return x[:n] - x[n:], fun


def lp_simplex(g, r, equality):
    ones = np.ones((1, g.size))
    if equality:
        return _linprog(g, a_eq=ones, b_eq=[r])
    return _linprog(g, a_ub=ones, b_ub=[r])


def lp_box(g, lower, upper):
    lower, upper = np.broadcast_to(lower, g.shape), np.broadcast_to(upper, g.shape)
    return _linprog(g, bounds=list(zip(lower, upper)))


def slsqp_projection(y, constraints, x0):
    """argmin ||x - y||^2 subject to scipy constraint dicts (an independent solver)."""
    res = scipy.optimize.minimize(
        lambda x: 0.5 * np.sum((x - y) ** 2),
        x0,
        jac=lambda x: x - y,
        constraints=constraints,
        method="SLSQP",
        options={"ftol": 1e-14, "maxiter": 500},
    )
    return res.x


def _split(n):
    """Constraints on the lifted variable (x, t) with |x_i| <= t_i: l1-type sets as smooth LPs."""
    a = np.zeros((2 * n, 2 * n))
    a[:n, :n], a[:n, n:] = np.eye(n), np.eye(n)  # t + x >= 0
    a[n:, :n], a[n:, n:] = -np.eye(n), np.eye(n)  # t - x >= 0
    return {"type": "ineq", "fun": lambda z: a @ z, "jac": lambda z: a}


def slsqp_l1_like(y, r, k=None):
    """Projection onto the l1 ball (k None) or K-sparse polytope, lifted to (x, t)."""
    n = y.size
    total = r if k is None else k * r
    cons = [
        _split(n),
        {
            "type": "ineq",
            "fun": lambda z: total - np.sum(z[n:]),
            "jac": lambda z: -np.r_[0 * y, 1 + 0 * y],
        },
    ]
    if k is not None:
        cons.append(
            {
                "type": "ineq",
                "fun": lambda z: r - z[n:],
                "jac": lambda z: -np.c_[np.zeros((n, n)), np.eye(n)],
            }
        )
    obj_y = np.r_[y, 0 * y]
    mask = np.r_[np.ones(n), np.zeros(n)]
    res = scipy.optimize.minimize(
        lambda z: 0.5 * np.sum(mask * (z - obj_y) ** 2),
        np.zeros(2 * n),
        jac=lambda z: mask * (z - obj_y),
        constraints=cons,
        method="SLSQP",
        options={"ftol": 1e-15, "maxiter": 1000},
    )
    return res.x[:n]


# ---------------------------------------------------------------------------------------------
# Vertices of polytopes against linprog
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("radius", [0.5, 2.0])
def test_l1_vertex_matches_linprog(seed, radius):
    g = RNG(seed).standard_normal(6)
    s = np.asarray(lmo.l1_ball(radius)(jnp.asarray(g)))
    ref, fun = lp_l1(g, radius)
    assert g @ s == pytest.approx(fun, rel=1e-10) and g @ s == pytest.approx(
        -radius * np.abs(g).max()
    )
    np.testing.assert_allclose(s, ref, atol=1e-9)  # argmax |g| is unique for random g


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("equality", [True, False])
def test_simplex_vertex_matches_linprog(seed, equality):
    g = RNG(seed).standard_normal(6) + (0.0 if seed < 2 else 3.0)  # seed 2: all g > 0
    s = np.asarray(lmo.simplex(1.5, equality=equality)(jnp.asarray(g)))
    ref, fun = lp_simplex(g, 1.5, equality)
    assert g @ s == pytest.approx(fun, rel=1e-10, abs=1e-12)
    np.testing.assert_allclose(s, ref, atol=1e-9)
    if not equality and seed == 2:
        assert np.all(s == 0)


@pytest.mark.parametrize("seed", range(3))
def test_box_vertex_matches_linprog(seed):
    rng = RNG(seed)
    g = rng.standard_normal(6)
    lower = -rng.uniform(0.1, 2, 6)
    upper = rng.uniform(0.1, 2, 6)
    s = np.asarray(lmo.box(jnp.asarray(lower), jnp.asarray(upper))(jnp.asarray(g)))
    ref, fun = lp_box(g, lower, upper)
    assert g @ s == pytest.approx(fun, rel=1e-10)
    np.testing.assert_allclose(s, ref, atol=1e-9)
    s_inf = np.asarray(lmo.linf_ball(0.7)(jnp.asarray(g)))
    np.testing.assert_allclose(s_inf, -0.7 * np.sign(g))


def test_box_zero_gradient_convention():
    s = lmo.box(-1.0, 2.0)(jnp.zeros(3))
    np.testing.assert_array_equal(s, [2.0, 2.0, 2.0])


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("k", [1, 3, 10])
def test_k_sparse_vertex_matches_linprog(seed, k):
    g = RNG(seed).standard_normal(6)
    s = np.asarray(lmo.k_sparse(k, 0.8)(jnp.asarray(g)))
    ref, fun = lp_l1(g, 0.8, k=k)
    assert g @ s == pytest.approx(fun, rel=1e-10)
    np.testing.assert_allclose(s, ref, atol=1e-9)
    assert np.count_nonzero(s) == min(k, 6)


def test_l2_vertex_closed_form_and_zero():
    g = jnp.array([3.0, -4.0, 0.0, 0.0, 0.0, 0.0], jnp.float64)
    np.testing.assert_allclose(lmo.l2_ball(2.0)(g), -2.0 * np.asarray(g) / 5.0)
    zero = lmo.l2_ball(2.0)(jnp.zeros(6))
    assert np.all(np.asarray(zero) == 0)
    grad = jax.jit(jax.grad(lambda x: jnp.sum(lmo.l2_ball(1.0)(x))))(jnp.zeros(6))
    assert np.all(np.isfinite(np.asarray(grad)))


def test_zero_gradient_vertices_are_finite():
    for oracle in [lmo.l1_ball(), lmo.simplex(), lmo.k_sparse(2)]:
        s = oracle(jnp.zeros(6))
        assert np.all(np.isfinite(np.asarray(s)))
    for oracle in [
        lmo.nuclear_ball(),
        lmo.nuclear_ball(method="lanczos"),
        lmo.spectral_ball(method="polar"),
    ]:
        s = oracle(jnp.zeros((4, 5)))
        np.testing.assert_array_equal(s, 0.0)


# ---------------------------------------------------------------------------------------------
# Sparse vertices
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "oracle",
    [
        lmo.l1_ball(1.3),
        lmo.simplex(2.0),
        lmo.simplex(2.0, equality=False),
        lmo.k_sparse(3, 0.5),
        lmo.k_sparse(9),
    ],
    ids=["l1", "simplex", "simplex<=", "k_sparse", "k>n"],
)
@pytest.mark.parametrize("shift", [0.0, 5.0])
def test_sparse_minimize_matches_dense(oracle, shift):
    g = jnp.asarray(RNG(0).standard_normal(6) + shift)
    state = oracle.init(g)
    idx, val, _ = oracle.sparse_minimize(g, state)
    assert idx.dtype == jnp.int32 and idx.shape == val.shape == (oracle.vertex_nnz,)
    dense, _ = oracle.minimize(g, state)
    np.testing.assert_array_equal(jnp.zeros_like(g).at[idx].add(val), dense)


def test_sparse_minimize_rejects_non_vectors():
    with pytest.raises(ValueError, match="`grad`"):
        lmo.l1_ball().sparse_minimize(jnp.ones((2, 2)), ())
    with pytest.raises(ValueError, match="`grad`"):
        lmo.k_sparse(2).sparse_minimize({"a": jnp.ones(3)}, ())
    with pytest.raises(ValueError, match="`grad`"):
        lmo.simplex().sparse_minimize(jnp.arange(3), ())
    assert lmo.l2_ball().vertex_nnz is None and lmo.box(0, 1).vertex_nnz is None
    assert lmo.k_sparse(4).vertex_nnz == 4


# ---------------------------------------------------------------------------------------------
# Matrix oracles against numpy SVD
# ---------------------------------------------------------------------------------------------


def _with_singular_values(rng, m, n, sv):
    """An ``m x n`` matrix with singular values ``sv`` and random singular vectors."""
    u, _ = np.linalg.qr(rng.standard_normal((m, len(sv))))
    v, _ = np.linalg.qr(rng.standard_normal((n, len(sv))))
    return (u * sv) @ v.T


MATRIX_SHAPES = [(4, 5), (2, 5, 4)]


@pytest.mark.parametrize("shape", MATRIX_SHAPES)
@pytest.mark.parametrize("method", ["power", "lanczos", "svd"])
def test_nuclear_vertex_value_and_methods_agree(shape, method):
    g = RNG(1).standard_normal(shape)
    oracle = lmo.nuclear_ball(1.7, method=method)
    s, state = oracle.minimize(jnp.asarray(g), oracle.init(jnp.asarray(g)))
    value = np.sum(g * np.asarray(s), axis=(-2, -1))
    u, sv, vh = np.linalg.svd(g)
    np.testing.assert_allclose(value, -1.7 * sv[..., 0], rtol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(s), "nuc", axis=(-2, -1)), 1.7, rtol=1e-10)
    # The top pair of a random matrix is simple: the vertex is unique.
    np.testing.assert_allclose(s, -1.7 * u[..., :, :1] @ vh[..., :1, :], atol=1e-6)
    if method != "svd":
        assert state.vector.shape == shape[:-2] + (min(shape[-2:]),)
        assert state.num_iters.shape == shape[:-2] and np.all(np.asarray(state.num_iters) >= 1)


@pytest.mark.parametrize("method", ["power", "lanczos"])
def test_nuclear_warm_start_reduces_iterations(method):
    rng = RNG(2)
    if method == "power":
        g = jnp.asarray(rng.standard_normal((5, 4)))
    else:  # past Lanczos's first convergence check, with a slowly decaying spectrum
        g = jnp.asarray(_with_singular_values(rng, 90, 70, 0.99 ** np.arange(70)))
    oracle = lmo.nuclear_ball(1.0, method=method)
    cold = oracle.init(g)
    _, state = oracle.minimize(g, cold)
    g2 = g + 1e-7 * jnp.asarray(rng.standard_normal(g.shape))
    s_cold, cold2 = oracle.minimize(g2, cold)
    s_warm, warm2 = oracle.minimize(g2, state)
    # Lanczos from the old vector still has to damp its eps^(1/3) random component.
    assert int(warm2.num_iters) < (0.6 if method == "power" else 0.7) * int(cold2.num_iters)
    np.testing.assert_allclose(s_warm, s_cold, atol=1e-8)


def test_nuclear_warm_start_escapes_non_top_singular_vector():
    # In a Frank-Wolfe run the previous top vector is often an exact, lower singular vector of
    # the new gradient; pure power iteration (and Lanczos) from it would stay there.
    rng = RNG(3)
    q1, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    q2, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    sv = np.array([3.0, 2.0, 1.0, 0.5])
    g = jnp.asarray((q2 * sv) @ q1[:, :4].T)  # 4 x 5, smaller side 4: left vectors q2
    for method in ["power", "lanczos"]:
        oracle = lmo.nuclear_ball(1.0, method=method)
        trap = oracle.init(g)._replace(vector=jnp.asarray(q2[:, 1]))
        s, _ = oracle.minimize(g, trap)
        assert float(jnp.vdot(g, s)) == pytest.approx(-3.0, rel=1e-9)


def _fw(oracle, b, steps):
    """A tiny Frank-Wolfe loop for min 0.5 ||X - B||^2 (open-loop steps 2/(t+2))."""

    def body(t, carry):
        x, state = carry
        s, state = oracle.minimize(x - b, state)
        return x + 2.0 / (t + 2.0) * (s - x), state

    x0 = jnp.zeros_like(b)
    x, _ = jax.lax.fori_loop(0, steps, body, (x0, oracle.init(x0)))
    return 0.5 * jnp.sum((x - b) ** 2)


@pytest.mark.parametrize("method", ["power", "lanczos"])
def test_frank_wolfe_with_inexact_oracle_matches_svd(method):
    rng = RNG(4)
    spike = 6 * np.outer(rng.standard_normal(6), rng.standard_normal(5)) / np.sqrt(30)
    b = jnp.asarray(spike + 0.3 * rng.standard_normal((6, 5)))
    run = jax.jit(lambda o: _fw(o, b, 40))
    ref = run(lmo.nuclear_ball(1.5, method="svd"))
    assert float(run(lmo.nuclear_ball(1.5, method=method))) == pytest.approx(float(ref), rel=1e-8)


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_nuclear_lanczos_nearly_tied_top_singular_values(dtype):
    # sigma_2 / sigma_1 = 0.999: power iteration would need ~10^4 steps; early-stopped
    # Lanczos (the default) reaches the top pair to the Ritz-residual tolerance.
    rng = RNG(14)
    sv = np.concatenate([[1.0, 0.999, 0.998], 0.9 * 0.98 ** np.arange(57)])
    g = _with_singular_values(rng, 70, 80, sv)
    oracle = lmo.nuclear_ball(2.0)
    s, state = oracle.minimize(jnp.asarray(g, dtype), oracle.init(jnp.asarray(g, dtype)))
    assert s.dtype == dtype
    value = float(np.vdot(g, np.asarray(s, np.float64)))
    u, _, vh = np.linalg.svd(g)
    if dtype == jnp.float64:
        assert value == pytest.approx(-2.0, rel=1e-12)
        np.testing.assert_allclose(np.abs(np.asarray(state.vector) @ u[:, 0]), 1.0, atol=1e-8)
        np.testing.assert_allclose(s, -2.0 * np.outer(u[:, 0], vh[0]), atol=1e-7)
        assert int(state.num_iters) < 64
    else:
        assert value == pytest.approx(-2.0, rel=1e-5)


@pytest.mark.slow
def test_nuclear_frank_wolfe_completion_matches_svd():
    # A small nuclear-ball matrix completion (the benchmark's problem (c), scaled down):
    # near-tied top singular values of the gradient along the whole run.
    rng = RNG(15)
    n = 60
    truth = rng.standard_normal((n, 3)) @ rng.standard_normal((3, n))
    mask = jnp.asarray((rng.random((n, n)) < 0.3).astype(np.float64))
    target = jnp.asarray(truth)
    radius = float(np.linalg.svd(truth, compute_uv=False).sum())

    def loss(x):
        r = mask * (x - target)
        return 0.5 * jnp.vdot(r, r)

    def solve(method):
        sol = frank_wolfe.solve(
            loss,
            jnp.zeros_like(target),
            lmo.nuclear_ball(radius, method=method),
            step="short",
            lipschitz=1.0,
            max_steps=100,
            tol=0.0,
        )
        return float(loss(sol.x))

    ref = solve("svd")
    assert solve("lanczos") == pytest.approx(ref, rel=1e-8)


@pytest.mark.parametrize("shape", MATRIX_SHAPES)
def test_spectral_vertex_matches_svd(shape):
    g = RNG(5).standard_normal(shape)
    u, sv, vh = np.linalg.svd(g, full_matrices=False)
    exact = -0.6 * u @ vh
    for method, atol in [("svd", 1e-12), ("polar", 1e-8)]:
        s = np.asarray(lmo.spectral_ball(0.6, method=method)(jnp.asarray(g)))
        np.testing.assert_allclose(s, exact, atol=atol)
        np.testing.assert_allclose(np.sum(g * s, axis=(-2, -1)), -0.6 * sv.sum(-1), rtol=1e-8)
    s = np.asarray(lmo.spectral_ball(0.6, method="newton_schulz", steps=5)(jnp.asarray(g)))
    ratio = np.sum(g * s, axis=(-2, -1)) / (-0.6 * sv.sum(-1))
    assert np.all((ratio > 0.8) & (ratio < 1.15))  # approximate polar factor


# ---------------------------------------------------------------------------------------------
# Projections
# ---------------------------------------------------------------------------------------------

VECTOR_SETS = {
    "l1": lambda r: lmo.l1_ball(r),
    "simplex": lambda r: lmo.simplex(r),
    "simplex<=": lambda r: lmo.simplex(r, equality=False),
    "k_sparse": lambda r: lmo.k_sparse(2, r),
    "l2": lambda r: lmo.l2_ball(r),
    "linf": lambda r: lmo.linf_ball(r),
    "box": lambda r: lmo.box(jnp.array([-1.0, 0.0, -2.0, -0.5, 0.1, -1.0]), r),
}
MATRIX_SETS = {
    "nuclear": lambda r: lmo.nuclear_ball(r),
    "spectral": lambda r: lmo.spectral_ball(r),
}


def _feasible_points(name, r, rng, shape, count=6):
    """Random points of the set (independent constructions) and the LMO's vertices."""
    pts = []
    for _ in range(count):
        z = rng.standard_normal(shape)
        t = rng.uniform(0.2, 1.0)
        if name == "l1":
            z = t * r * z / np.abs(z).sum()
        elif name == "simplex":
            z = r * rng.dirichlet(np.ones(shape))
        elif name == "simplex<=":
            z = t * r * rng.dirichlet(np.ones(shape))
        elif name == "k_sparse":
            z = np.clip(z, -r, r)
            z = z * min(1.0, 2 * r / np.abs(z).sum())
        elif name == "l2":
            z = t * r * z / np.linalg.norm(z)
        elif name == "linf":
            z = rng.uniform(-r, r, shape)
        elif name == "box":
            z = rng.uniform([-1.0, 0.0, -2.0, -0.5, 0.1, -1.0], r)
        elif name == "nuclear":
            z = t * r * z / np.linalg.norm(z, "nuc")
        elif name == "spectral":
            z = t * r * z / np.linalg.norm(z, 2)
        pts.append(z)
    oracle = {**VECTOR_SETS, **MATRIX_SETS}[name](r)
    pts += [np.asarray(oracle(jnp.asarray(rng.standard_normal(shape)))) for _ in range(count)]
    return pts


@pytest.mark.parametrize("name", list(VECTOR_SETS) + list(MATRIX_SETS))
@pytest.mark.parametrize("scale", [0.3, 3.0])
def test_projection_variational_inequality(name, scale):
    rng = RNG(6)
    shape = (6,) if name in VECTOR_SETS else (4, 5)
    r = 1.3
    oracle = {**VECTOR_SETS, **MATRIX_SETS}[name](r)
    for _ in range(3):
        y = scale * rng.standard_normal(shape)
        p = np.asarray(oracle.project(jnp.asarray(y)))
        for z in _feasible_points(name, r, rng, shape):
            assert np.vdot(y - p, z - p) <= 1e-10
        # p itself is feasible: projecting it again changes nothing.
        np.testing.assert_allclose(oracle.project(jnp.asarray(p)), p, atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_vector_projections_match_slsqp(seed):
    rng = RNG(10 + seed)
    y = 1.5 * rng.standard_normal(6)
    r = 1.1
    ones = np.ones(6)
    checks = {
        "l1": slsqp_l1_like(y, r),
        "k_sparse": slsqp_l1_like(y, r, k=2),
        "simplex": slsqp_projection(
            y,
            [
                {"type": "eq", "fun": lambda x: x.sum() - r, "jac": lambda x: ones},
                {"type": "ineq", "fun": lambda x: x, "jac": lambda x: np.eye(6)},
            ],
            np.full(6, r / 6),
        ),
        "simplex<=": slsqp_projection(
            y,
            [
                {"type": "ineq", "fun": lambda x: r - x.sum(), "jac": lambda x: -ones},
                {"type": "ineq", "fun": lambda x: x, "jac": lambda x: np.eye(6)},
            ],
            np.zeros(6),
        ),
        "l2": slsqp_projection(
            y,
            [{"type": "ineq", "fun": lambda x: r**2 - x @ x, "jac": lambda x: -2 * x}],
            np.zeros(6),
        ),
    }
    for name, ref in checks.items():
        np.testing.assert_allclose(
            VECTOR_SETS[name](r).project(jnp.asarray(y)), ref, atol=1e-6, err_msg=name
        )


@pytest.mark.parametrize("seed", range(2))
def test_projections_match_cvxpy(seed):
    cp = pytest.importorskip("cvxpy")
    rng = RNG(20 + seed)
    r = 1.2
    y = 2.0 * rng.standard_normal(6)
    ym = 2.0 * rng.standard_normal((4, 5))
    x = cp.Variable(6)
    xm = cp.Variable((4, 5))
    sets = {
        "l1": (x, [cp.norm1(x) <= r]),
        "simplex": (x, [x >= 0, cp.sum(x) == r]),
        "simplex<=": (x, [x >= 0, cp.sum(x) <= r]),
        "k_sparse": (x, [cp.norm_inf(x) <= r, cp.norm1(x) <= 2 * r]),
        "l2": (x, [cp.norm2(x) <= r]),
        "linf": (x, [cp.norm_inf(x) <= r]),
        "nuclear": (xm, [cp.normNuc(xm) <= r]),
        "spectral": (xm, [cp.sigma_max(xm) <= r]),
    }
    for name, (var, cons) in sets.items():
        target = ym if name in MATRIX_SETS else y
        problem = cp.Problem(cp.Minimize(cp.sum_squares(var - target)), cons)
        problem.solve(solver="CLARABEL", tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
        ours = {**VECTOR_SETS, **MATRIX_SETS}[name](r).project(jnp.asarray(target))
        # The interior-point SDP for sigma_max is only accurate to a few 1e-6.
        atol = 2e-5 if name == "spectral" else 1e-7
        np.testing.assert_allclose(ours, var.value, atol=atol, err_msg=name)


def test_k_sparse_projection_special_cases():
    y = jnp.array([3.0, -0.2, 0.5, -4.0])
    # k >= n: the l-infinity ball; k = 1: the l1 ball.
    np.testing.assert_allclose(lmo.k_sparse(4, 1.0).project(y), jnp.clip(y, -1, 1))
    np.testing.assert_allclose(
        lmo.k_sparse(1, 1.5).project(y), lmo.l1_ball(1.5).project(y), atol=1e-12
    )
    # Inside the set nothing moves.
    inside = jnp.array([0.5, -0.5, 0.2, 0.0])
    np.testing.assert_array_equal(lmo.k_sparse(2, 1.0).project(inside), inside)


def _fd_jacobian(f, x, h=1e-6):
    """Central-difference Jacobian of f at x, shape out.shape + x.shape."""
    x = np.asarray(x, np.float64)
    cols = []
    for i in range(x.size):
        e = np.zeros(x.size)
        e[i] = h
        e = e.reshape(x.shape)
        cols.append(
            (np.asarray(f(jnp.asarray(x + e))) - np.asarray(f(jnp.asarray(x - e)))) / (2 * h)
        )
    return np.stack(cols, axis=-1).reshape(cols[0].shape + x.shape)


@pytest.mark.parametrize("name", list(VECTOR_SETS) + list(MATRIX_SETS))
def test_projection_jacobians_match_finite_differences(name):
    rng = RNG(7)
    factory = {**VECTOR_SETS, **MATRIX_SETS}[name]
    shape = (6,) if name in VECTOR_SETS else (4, 5)
    y = jnp.asarray(3.0 * rng.standard_normal(shape) + 1.0)  # outside every set
    r = jnp.asarray(1.4 if name != "box" else 1.4 + np.linspace(0, 1, 6))  # box: upper bounds
    project = jax.jit(lambda v, rr: factory(rr).project(v))
    # Reverse mode, as implicit differentiation uses it (forward mode: the contract suite).
    jac_y, jac_r = jax.jit(jax.jacrev(project, argnums=(0, 1)))(y, r)
    np.testing.assert_allclose(jac_y, _fd_jacobian(lambda v: project(v, r), y), atol=1e-7)
    np.testing.assert_allclose(jac_r, _fd_jacobian(lambda rr: project(y, rr), r), atol=1e-7)
    assert np.abs(jac_r).max() > 0.1  # the radius is active


# ---------------------------------------------------------------------------------------------
# Pytrees, vmap, jit, dtypes
# ---------------------------------------------------------------------------------------------

GLOBAL_SETS = {k: VECTOR_SETS[k] for k in ["l1", "simplex", "simplex<=", "k_sparse", "l2"]}


@pytest.mark.parametrize("name", list(GLOBAL_SETS) + ["linf"])
def test_pytree_equals_flattened_vector(name):
    rng = RNG(8)
    oracle = VECTOR_SETS[name](0.9)
    tree = {"a": jnp.asarray(rng.standard_normal((2, 2))), "b": jnp.asarray(rng.standard_normal(2))}
    flat = jnp.concatenate([tree["a"].reshape(-1), tree["b"]])
    for fn in [oracle, oracle.project]:
        out = fn(tree)
        np.testing.assert_allclose(
            jnp.concatenate([out["a"].reshape(-1), out["b"]]), fn(flat), atol=1e-14
        )
        assert out["a"].shape == (2, 2)


def test_box_per_leaf_bounds():
    tree = {"a": jnp.array([1.0, -1.0]), "b": jnp.array([[0.5], [-2.0]])}
    oracle = lmo.box(
        {"a": -1.0, "b": jnp.array([[-3.0], [0.0]])}, {"a": jnp.array([2.0, 3.0]), "b": 4.0}
    )
    s = oracle(tree)
    np.testing.assert_array_equal(s["a"], [-1.0, 3.0])
    np.testing.assert_array_equal(s["b"], [[-3.0], [4.0]])
    p = oracle.project({"a": jnp.array([5.0, -5.0]), "b": jnp.array([[-5.0], [-5.0]])})
    np.testing.assert_array_equal(p["a"], [2.0, -1.0])
    np.testing.assert_array_equal(p["b"], [[-3.0], [0.0]])


@pytest.mark.parametrize("method", ["power", "svd"])
def test_matrix_pytree_is_product_of_balls(method):
    rng = RNG(9)
    tree = {
        "w": jnp.asarray(rng.standard_normal((4, 5))),
        "v": jnp.asarray(rng.standard_normal((2, 5, 4))),
    }
    for oracle in [lmo.nuclear_ball(0.7, method=method), lmo.spectral_ball(0.7)]:
        out = oracle(tree)
        np.testing.assert_allclose(out["w"], oracle(tree["w"]), atol=1e-12)
        for i in range(2):
            np.testing.assert_allclose(out["v"][i], oracle(tree["v"][i]), atol=1e-12)
        proj = oracle.project(tree)
        np.testing.assert_allclose(proj["v"][1], oracle.project(tree["v"][1]), atol=1e-12)


ALL_ORACLES = {
    **{k: VECTOR_SETS[k] for k in VECTOR_SETS if k != "box"},
    "nuclear[power]": lambda r: lmo.nuclear_ball(r),
    "nuclear[lanczos]": lambda r: lmo.nuclear_ball(r, method="lanczos"),
    "spectral[polar]": lambda r: lmo.spectral_ball(r, method="polar"),
    "spectral[newton_schulz]": lambda r: lmo.spectral_ball(r, method="newton_schulz"),
}


@pytest.mark.parametrize(
    "name", ["l1", "simplex<=", "k_sparse", "l2", "nuclear[power]", "spectral[polar]"]
)
def test_vmap_over_radius_equals_loop_and_jit(name):  # every oracle: tests/contracts
    factory = ALL_ORACLES[name]
    shape = (6,) if name in VECTOR_SETS else (4, 5)
    rng = RNG(11)
    g = jnp.asarray(rng.standard_normal(shape))
    y = jnp.asarray(2 * rng.standard_normal(shape))
    radii = jnp.array([0.5, 1.0, 2.5])

    def both(r):
        return factory(r)(g), factory(r).project(y)

    vert, proj = jax.jit(jax.vmap(both))(radii)
    for i, r in enumerate([0.5, 1.0, 2.5]):
        v_ref, p_ref = both(r)
        np.testing.assert_allclose(vert[i], v_ref, atol=1e-12)
        np.testing.assert_allclose(proj[i], p_ref, atol=1e-12)


@pytest.mark.parametrize("name", ["l1", "nuclear[power]"])
def test_oracle_module_is_a_pytree(name):
    factory = ALL_ORACLES[name]
    shape = (6,) if name in VECTOR_SETS else (4, 5)
    g = jnp.asarray(RNG(13).standard_normal(shape))
    oracle = factory(1.0)
    np.testing.assert_allclose(jax.jit(lambda o, x: o(x))(oracle, g), oracle(g), atol=1e-12)
    radii = jnp.array([0.5, 2.5])
    stacked = jax.vmap(factory)(radii)
    out = jax.vmap(lambda o: o.project(3 * g))(stacked)
    np.testing.assert_allclose(out[1], factory(2.5).project(3 * g), atol=1e-12)


@pytest.mark.parametrize("name", ["l1", "k_sparse", "nuclear[power]", "spectral[polar]"])
def test_dtypes_are_kept(name):  # every oracle: tests/contracts
    factory = ALL_ORACLES[name]
    shape = (6,) if name in VECTOR_SETS else (4, 5)
    g64 = RNG(12).standard_normal(shape)
    oracle = factory(jnp.asarray(1.3, jnp.float64))  # a float64 radius does not promote
    run = jax.jit(lambda o, g: (o.minimize(g, o.init(g))[0], o.project(3 * g)))
    for dtype in [jnp.float32, jnp.float64]:
        s, p = run(oracle, jnp.asarray(g64, dtype))
        assert s.dtype == dtype and p.dtype == dtype
        if dtype == jnp.float32:
            ref = oracle(jnp.asarray(g64))
            np.testing.assert_allclose(s, ref, atol=2e-3 * max(1.0, float(jnp.abs(ref).max())))


def test_traced_radius_is_not_checked():
    g = jnp.ones(6)
    jax.jit(lambda r: lmo.l1_ball(r)(g))(-1.0)  # no ValueError under tracing
    jax.vmap(lambda r: lmo.linf_ball(r)(g))(jnp.array([1.0, 2.0]))


# ---------------------------------------------------------------------------------------------
# Argument errors
# ---------------------------------------------------------------------------------------------

RADIUS_FACTORIES = [
    lmo.l1_ball,
    lmo.simplex,
    lmo.l2_ball,
    lmo.linf_ball,
    lambda r: lmo.k_sparse(2, r),
    lmo.nuclear_ball,
    lmo.spectral_ball,
]


@pytest.mark.parametrize("factory", RADIUS_FACTORIES)
@pytest.mark.parametrize("radius", [0.0, -1.0, float("inf"), jnp.ones(2), "a"])
def test_bad_radius(factory, radius):
    with pytest.raises(ValueError, match="`radius`"):
        factory(radius)


def test_bad_static_arguments():
    for k in [0, 2.0, True, None]:
        with pytest.raises(ValueError, match="`k`"):
            lmo.k_sparse(k)
    with pytest.raises(ValueError, match="`method`"):
        lmo.nuclear_ball(method="qr")
    with pytest.raises(ValueError, match="`method`"):
        lmo.spectral_ball(method="power")
    with pytest.raises(ValueError, match="`max_iters`"):
        lmo.nuclear_ball(max_iters=0)
    with pytest.raises(ValueError, match="`steps`"):
        lmo.spectral_ball(method="newton_schulz", steps=0)
    with pytest.raises(ValueError, match="`tol`"):
        lmo.nuclear_ball(tol=0.0)
    with pytest.raises(ValueError, match="`tol`"):
        lmo.spectral_ball(method="polar", tol=-1e-3)
    with pytest.raises(ValueError, match="`equality`"):
        lmo.simplex(equality="yes")


def test_bad_box_bounds():
    with pytest.raises(ValueError, match="`lower`"):
        lmo.box(1.0, 1.0)
    with pytest.raises(ValueError, match="`lower`"):
        lmo.box(jnp.array([0.0, 2.0]), jnp.array([1.0, 1.0]))
    with pytest.raises(ValueError, match="`lower`"):
        lmo.box({"a": 0.0, "b": 0.0}, {"a": 1.0, "b": -1.0})
    with pytest.raises(ValueError, match="`upper`"):
        lmo.box(0.0, "x")
    with pytest.raises(ValueError, match="`lower`"):
        lmo.box({"a": 0.0}, 1.0)({"b": jnp.ones(2)})
    with pytest.raises(ValueError, match="`upper`"):
        lmo.box(0.0, jnp.ones(3))(jnp.ones(2))


def test_bad_gradients():
    for oracle in [lmo.l1_ball(), lmo.simplex(), lmo.l2_ball(), lmo.linf_ball(), lmo.k_sparse(2)]:
        with pytest.raises(ValueError, match="`grad`"):
            oracle.minimize(jnp.arange(3), oracle.init(jnp.ones(3)))
        with pytest.raises(ValueError, match="`y`"):
            oracle.project({"a": jnp.arange(3)})
    for oracle in [lmo.nuclear_ball(), lmo.nuclear_ball(method="svd"), lmo.spectral_ball()]:
        with pytest.raises(ValueError, match="`grad`"):
            oracle.minimize(jnp.ones(3), ())
        with pytest.raises(ValueError, match="`grad`"):
            oracle.minimize({"w": jnp.ones((2, 2), jnp.int32)}, ())
        with pytest.raises(ValueError, match="`y`"):
            oracle.project(jnp.ones(3))
    with pytest.raises(ValueError, match="`x`"):
        lmo.nuclear_ball().init(jnp.ones(3))
    with pytest.raises(ValueError, match="`state`"):
        lmo.nuclear_ball().minimize({"w": jnp.ones((2, 2))}, ())
