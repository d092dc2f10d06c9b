"""frank_wolfe.solve against independent references: closed forms, scipy and cvxpy optima."""

import cvxpy as cp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

from jaxspec import Status, frank_wolfe
from jaxspec.frank_wolfe import lmo

STEPS = ("open_loop", "short", "exact", "backtracking")
VARIANTS = ("vanilla", "away", "pairwise")


def simplex_projection(y, radius=1.0):
    """Sort-based Euclidean projection onto {x >= 0, sum x = radius} (NumPy reference)."""
    u = np.sort(y)[::-1]
    css = np.cumsum(u) - radius
    k = np.arange(1, y.size + 1)
    rho = k[u - css / k > 0][-1]
    return np.maximum(y - css[rho - 1] / rho, 0.0)


def lasso_data(m=30, n=60, nnz=5, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, n))
    truth = np.zeros(n)
    truth[rng.choice(n, nnz, replace=False)] = rng.standard_normal(nnz)
    b = a @ truth + 0.01 * rng.standard_normal(m)
    return a, b, truth


def cvxpy_l1_least_squares(a, b, radius):
    x = cp.Variable(a.shape[1])
    prob = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(a @ x - b)), [cp.norm1(x) <= radius])
    prob.solve()
    return x.value, prob.value


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("step", STEPS)
def test_simplex_quadratic_equals_projection(variant, step):
    # FW on 1/2 ||x - theta||^2 over the simplex converges to the simplex projection.
    theta = np.array([0.6, 0.3, -0.2, 0.25, 0.05])
    f = lambda x: 0.5 * jnp.sum((x - theta) ** 2)  # noqa: E731
    sol = frank_wolfe.solve(
        f, jnp.eye(5)[0], lmo.simplex(1.0), variant=variant, step=step, lipschitz=1.0,
        tol=1e-9, max_steps=20000,
    )  # fmt: skip
    expected = simplex_projection(theta)
    tol = 2e-4 if (step == "open_loop" and variant != "pairwise") else 1e-6
    np.testing.assert_allclose(sol.x, expected, atol=tol)
    assert float(sol.value) == pytest.approx(0.5 * np.sum((expected - theta) ** 2), abs=tol)
    if step != "open_loop":
        assert int(sol.status) == Status.CONVERGED and float(sol.gap) <= 1e-9


@pytest.mark.parametrize("variant", VARIANTS)
def test_simplex_norm_anchor(variant):
    # FrankWolfe.jl's anchor: min ||p||^2 over the probability simplex, f* = 1/n.
    n = 50
    sol = frank_wolfe.solve(
        lambda p: jnp.sum(p**2), jnp.eye(n)[0], lmo.simplex(1.0), variant=variant,
        step="exact", tol=1e-12, max_steps=2000,
    )  # fmt: skip
    assert int(sol.status) == Status.CONVERGED
    assert float(sol.value) == pytest.approx(1.0 / n, abs=1e-12)
    np.testing.assert_allclose(sol.x, np.full(n, 1.0 / n), atol=1e-7)
    if variant != "vanilla":
        assert int(sol.stats["active_set_size"]) == n
        np.testing.assert_allclose(np.sum(sol.stats["weights"]), 1.0, atol=1e-12)


def test_away_and_pairwise_converge_linearly_where_vanilla_stalls():
    # The projection of theta lies on a face of the simplex: vanilla FW zig-zags (O(1/t)),
    # away/pairwise steps converge linearly (Lacoste-Julien and Jaggi 2015).
    n = 30
    theta = jnp.asarray(0.3 * np.random.default_rng(0).standard_normal(n))
    steps = {}
    for variant in VARIANTS:
        sol = frank_wolfe.solve(
            lambda p: 0.5 * jnp.sum((p - theta) ** 2), jnp.eye(n)[0], lmo.simplex(1.0),
            variant=variant, step="exact", tol=1e-10, max_steps=3000,
        )  # fmt: skip
        steps[variant] = (int(sol.num_steps), int(sol.status))
    assert steps["vanilla"] == (3000, Status.MAX_STEPS)
    assert steps["away"][1] == steps["pairwise"][1] == Status.CONVERGED
    assert steps["away"][0] < 200 and steps["pairwise"][0] < 200


@pytest.mark.parametrize("step", ("short", "exact", "backtracking"))
@pytest.mark.parametrize("composite", (True, False))
def test_l1_least_squares_matches_cvxpy(step, composite):
    a, b, truth = lasso_data()
    radius = 0.9 * np.abs(truth).sum()
    x_ref, f_ref = cvxpy_l1_least_squares(a, b, radius)
    fun = frank_wolfe.least_squares(a, b)
    if not composite:
        fun = lambda x, fun=fun: fun(x)  # noqa: E731 - a plain callable: the generic path
    lip = np.linalg.norm(a, 2) ** 2
    sol = frank_wolfe.solve(
        fun, jnp.zeros(a.shape[1]), lmo.l1_ball(radius), variant="pairwise", step=step,
        lipschitz=lip, tol=1e-9, max_steps=5000,
    )  # fmt: skip
    assert int(sol.status) == Status.CONVERGED
    assert float(sol.value) == pytest.approx(f_ref, rel=1e-6, abs=1e-8)
    assert float(jnp.abs(sol.x).sum()) <= radius * (1 + 1e-10)
    # The gap certifies suboptimality: f(x) - f* <= gap.
    assert float(sol.value) - f_ref <= float(sol.gap) + 1e-7
    np.testing.assert_allclose(sol.x, x_ref, atol=1e-3)


@pytest.mark.optimized
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("gram_cache", (0, 3))
def test_composite_path_equals_generic_path(variant, step, gram_cache):
    a, b, truth = lasso_data(seed=1)
    radius = 0.5 * np.abs(truth).sum()
    ls = frank_wolfe.least_squares(a, b, gram_cache=gram_cache)
    kw = dict(
        variant=variant, step=step, lipschitz=np.linalg.norm(a, 2) ** 2, tol=0.0, max_steps=40
    )
    # A 3-row Gram cache over 40 steps exercises hits, misses and evictions; k-sparse
    # vertices have 3 non-zeros.
    oracle = lmo.l1_ball(radius) if variant != "vanilla" else lmo.k_sparse(3, radius / 3)
    fast = frank_wolfe.solve(ls, jnp.zeros(a.shape[1]), oracle, **kw)
    slow = frank_wolfe.solve(lambda x: ls(x), jnp.zeros(a.shape[1]), oracle, **kw)
    np.testing.assert_allclose(fast.x, slow.x, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(fast.value, slow.value, rtol=1e-10)
    np.testing.assert_allclose(fast.gap, slow.gap, rtol=1e-8, atol=1e-10)


def test_logistic_regression_l1_ball_matches_scipy():
    rng = np.random.default_rng(3)
    feats = rng.standard_normal((80, 10))
    labels = np.sign(feats @ rng.standard_normal(10) + 0.3 * rng.standard_normal(80))
    radius = 2.0

    def loss(w):
        return jnp.mean(jnp.logaddexp(0.0, -labels * (feats @ w)))

    sol = frank_wolfe.solve(
        loss, jnp.zeros(10), lmo.l1_ball(radius), variant="away", step="backtracking",
        tol=1e-10, max_steps=5000,
    )  # fmt: skip
    # Reference: x = u - v with u, v >= 0 and sum(u + v) <= radius, solved by SLSQP.
    f_np = lambda w: np.mean(np.logaddexp(0.0, -labels * (feats @ w)))  # noqa: E731
    res = scipy.optimize.minimize(
        lambda uv: f_np(uv[:10] - uv[10:]), np.full(20, 0.01), method="SLSQP",
        bounds=[(0, None)] * 20,
        constraints=[{"type": "ineq", "fun": lambda uv: radius - uv.sum()}],
        options={"ftol": 1e-14, "maxiter": 1000},
    )  # fmt: skip
    assert int(sol.status) == Status.CONVERGED
    assert float(sol.value) <= res.fun + 1e-9
    assert float(sol.value) == pytest.approx(res.fun, abs=1e-8)


def test_box_least_squares_matches_scipy_lsq_linear():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((40, 12))
    b = 3 * rng.standard_normal(40)
    ref = scipy.optimize.lsq_linear(a, b, bounds=(-0.5, 1.0), tol=1e-14, method="bvls")
    sol = frank_wolfe.solve(
        frank_wolfe.least_squares(a, b), jnp.full(12, -0.5), lmo.box(-0.5, 1.0),
        variant="away", step="exact", tol=1e-10, max_steps=5000,
    )  # fmt: skip
    assert int(sol.status) == Status.CONVERGED
    np.testing.assert_allclose(sol.x, ref.x, atol=1e-6)


def test_l2_ball_closed_form_and_backtracking_lipschitz_bounded():
    theta = jnp.array([3.0, -4.0, 0.0])
    sol = frank_wolfe.solve(
        lambda x: jnp.sum((x - theta) ** 2), jnp.zeros(3), lmo.l2_ball(2.0), step="backtracking",
        tol=1e-10, max_steps=2000,
    )  # fmt: skip
    np.testing.assert_allclose(sol.x, [1.2, -1.6, 0.0], atol=1e-6)
    # Doubling stops once sufficient decrease holds, which the true L = 2 guarantees.
    assert float(sol.stats["lipschitz"]) <= 2 * 2.0 + 1e-9


def test_nuclear_ball_denoising_equals_singular_value_projection():
    # min 1/2 ||X - Y||_F^2 over ||X||_* <= r: project the singular values of Y onto the
    # (capped) simplex of radius r.
    rng = np.random.default_rng(5)
    y = rng.standard_normal((6, 5))
    u, s, vt = np.linalg.svd(y, full_matrices=False)
    r = 0.5 * s.sum()
    x_ref = (u * simplex_projection(s, r)) @ vt
    sol = frank_wolfe.solve(
        lambda x: 0.5 * jnp.sum((x - y) ** 2), jnp.zeros((6, 5)), lmo.nuclear_ball(r),
        step="exact", tol=1e-7, max_steps=3000,
    )  # fmt: skip
    # The optimum has rank > 1 on the boundary: vanilla FW is sublinear here, so check the
    # certificates: f(x) - f* <= gap, and ||x - x*||^2 <= 2 (f(x) - f*) (1-strong convexity).
    f_ref = 0.5 * np.sum((x_ref - y) ** 2)
    gap = float(sol.gap)
    assert gap < 1e-2
    assert -1e-12 <= float(sol.value) - f_ref <= gap
    assert np.sum((np.asarray(sol.x) - x_ref) ** 2) <= 2 * (float(sol.value) - f_ref) + 1e-12
    assert np.linalg.svd(np.asarray(sol.x), compute_uv=False).sum() <= r * (1 + 1e-9)


def test_pytree_variable_equals_flat_vector():
    rng = np.random.default_rng(6)
    theta = rng.standard_normal(7)
    tree0 = {"a": jnp.zeros(3), "b": jnp.zeros((2, 2))}
    flatten = lambda t: jnp.concatenate([t["a"], t["b"].ravel()])  # noqa: E731

    def f_tree(t):
        return 0.5 * jnp.sum((flatten(t) - theta) ** 2)

    kw = dict(step="exact", tol=0.0, max_steps=30)
    tree_sol = frank_wolfe.solve(f_tree, tree0, lmo.l1_ball(1.5), **kw)
    flat_sol = frank_wolfe.solve(
        lambda x: 0.5 * jnp.sum((x - theta) ** 2), jnp.zeros(7), lmo.l1_ball(1.5), **kw
    )
    np.testing.assert_allclose(flatten(tree_sol.x), flat_sol.x, atol=1e-12)
    assert float(tree_sol.gap) == pytest.approx(float(flat_sol.gap), abs=1e-12)


def test_status_codes_and_throw():
    theta = jnp.array([0.6, 0.3, -0.2])
    f = lambda x: 0.5 * jnp.sum((x - theta) ** 2)  # noqa: E731
    x0 = jnp.eye(3)[0]
    short = frank_wolfe.solve(f, x0, lmo.simplex(1.0), step="open_loop", max_steps=3, tol=1e-12)
    assert int(short.status) == Status.MAX_STEPS and int(short.num_steps) == 3
    with pytest.raises(Exception, match="did not converge"):
        jax.block_until_ready(
            frank_wolfe.solve(
                f, x0, lmo.simplex(1.0), step="open_loop", max_steps=3, tol=1e-12, throw=True
            ).x
        )
    nan = frank_wolfe.solve(lambda x: jnp.log(x[0] - 2.0), x0, lmo.simplex(1.0), tol=1e-9)
    assert int(nan.status) == Status.NONFINITE
    full = frank_wolfe.solve(
        lambda p: jnp.sum(p**2), jnp.eye(8)[0], lmo.simplex(1.0), variant="away", step="exact",
        active_set_size=3, tol=1e-12,
    )  # fmt: skip
    assert int(full.status) == Status.ACTIVE_SET_FULL
    assert int(full.stats["active_set_size"]) == 3
    np.testing.assert_allclose(np.sum(full.x), 1.0, atol=1e-12)


@pytest.mark.parametrize("seed", [7, 18])
def test_a_full_active_set_keeps_its_atoms_on_away_steps(seed):
    """The projection of theta onto the simplex has 4 nonzeros; 3 slots cannot hold it. Away
    steps (which add no atom) once wrote the new vertex over slot 0 when no slot was free, so
    ``sum w_i a_i`` stopped being ``x``: seed 7 ended at MAX_STEPS after 300 steps, seed 18
    CONVERGED with weights that did not represent ``x``."""
    theta = np.random.default_rng(seed).normal(size=8) * 0.5 + 1.0 / 8
    f = lambda x: 0.5 * jnp.sum((x - theta) ** 2)  # noqa: E731
    sol = frank_wolfe.solve(
        f, jnp.eye(8)[0], lmo.simplex(1.0), variant="away", step="exact", max_steps=300,
        tol=1e-10, active_set_size=3,
    )  # fmt: skip
    assert int(sol.status) == Status.ACTIVE_SET_FULL and int(sol.num_steps) < 300
    # the atoms are distinct vertices e_j, so x's nonzeros are exactly the positive weights
    x, w = np.asarray(sol.x), np.asarray(sol.stats["weights"])
    np.testing.assert_allclose(np.sort(x[x > 0]), np.sort(w[w > 0]), atol=1e-12)


def test_an_away_step_with_no_free_slot_leaves_the_atoms():
    from jaxspec.frank_wolfe import _active_set as aset
    from jaxspec.frank_wolfe import _solve

    atoms, x = jnp.eye(3)[:2], jnp.array([0.5, 0.5, 0.0])
    state = _solve._State(
        x=x, z=(), value=0.0, grad=jnp.zeros(3), vertex=jnp.eye(3)[2], vertex_image=(),
        lmo_state=(), gap=0.0, t=0, lipschitz=1.0, prev_value=0.0,
        active=aset.ActiveSet(atoms, jnp.array([0.5, 0.5])), full=False,
    )  # fmt: skip
    # an away step of 0.2 from atom 1: x + 0.2 (x - a_1), no atom added
    active, full = _solve._update_active(state, 0.2, 1.0, 1, True, "away")
    assert not bool(full)
    np.testing.assert_array_equal(active.atoms, atoms)
    np.testing.assert_allclose(active.weights @ active.atoms, x + 0.2 * (x - atoms[1]))


@pytest.mark.parametrize("variant", ["vanilla", "pairwise"])
@pytest.mark.parametrize("gram_cache", [0, 4])
def test_a_float32_start_with_a_float64_composite_promotes(variant, gram_cache):
    """The gradient ``A^T r`` of a float64 LinearComposite is float64; a float32 ``x0`` once
    made the while_loop's carry change dtype (a TypeError from deep inside lax)."""
    a = np.random.default_rng(0).normal(size=(10, 5))
    b = np.ones(10)
    kwargs = dict(variant=variant, step="exact", tol=1e-10, max_steps=500)
    mixed = frank_wolfe.solve(
        frank_wolfe.least_squares(a, b, gram_cache=gram_cache),
        jnp.zeros(5, jnp.float32), lmo.l1_ball(1.0), **kwargs,
    )  # fmt: skip
    same = frank_wolfe.solve(
        frank_wolfe.least_squares(a, b), jnp.zeros(5), lmo.l1_ball(1.0), **kwargs
    )
    assert mixed.x.dtype == jnp.float64
    np.testing.assert_allclose(mixed.x, same.x, atol=1e-8)


def test_gram_cache_is_for_vanilla_only_as_documented():
    """least_squares says other variants ignore ``gram_cache``. They used the Gram path, where
    ``f = <x, A^T A x>/2 - <A^T b, x> + |b|^2/2`` cancels near the optimum: pairwise with
    backtracking then cycled at a gap of 1.8e-8 until max_steps (285 steps without it)."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(30, 12)), rng.normal(size=30)
    oracle = lmo.k_sparse(3, 0.3)
    x0 = oracle(jnp.asarray(a.T @ b))
    kwargs = dict(variant="pairwise", step="backtracking", max_steps=3000, tol=1e-9)
    plain = frank_wolfe.solve(frank_wolfe.least_squares(a, b), x0, oracle, **kwargs)
    cached = frank_wolfe.solve(frank_wolfe.least_squares(a, b, gram_cache=8), x0, oracle, **kwargs)
    assert int(plain.status) == int(cached.status) == Status.CONVERGED
    assert int(cached.num_steps) == int(plain.num_steps) < 3000
    np.testing.assert_array_equal(cached.x, plain.x)


def test_vmap_over_radius_and_data_equals_loop_and_jit():
    a, b, truth = lasso_data(seed=7)
    lip = np.linalg.norm(a, 2) ** 2

    def solve(radius, target):
        return frank_wolfe.solve(
            frank_wolfe.least_squares(a, target), jnp.zeros(a.shape[1]), lmo.l1_ball(radius),
            step="short", lipschitz=lip, tol=1e-6, max_steps=300,
        )  # fmt: skip

    radii = jnp.array([0.3, 0.7, 1.1]) * np.abs(truth).sum()
    targets = jnp.stack([b, 0.5 * b, -b])
    batched = jax.jit(jax.vmap(solve))(radii, targets)
    for k in range(3):
        one = solve(radii[k], targets[k])
        np.testing.assert_allclose(batched.x[k], one.x, rtol=1e-10, atol=1e-12)
        assert int(batched.num_steps[k]) == int(one.num_steps)
        assert int(batched.status[k]) == int(one.status)


def test_traced_hyperparameters_vmap():
    theta = jnp.array([0.6, 0.3, -0.2])
    f = lambda x: 0.5 * jnp.sum((x - theta) ** 2)  # noqa: E731

    def run(ell, lip):
        sol = frank_wolfe.solve(f, jnp.eye(3)[0], lmo.simplex(1.0), step="open_loop", ell=ell,
                                tol=0.0, max_steps=25)  # fmt: skip
        sol2 = frank_wolfe.solve(f, jnp.eye(3)[0], lmo.simplex(1.0), step="short", lipschitz=lip,
                                 tol=0.0, max_steps=25)  # fmt: skip
        return sol.x, sol2.x

    ells, lips = jnp.array([1.0, 2.0, 5.0]), jnp.array([1.0, 3.0, 10.0])
    out = jax.vmap(run)(ells, lips)
    for k in range(3):
        ref = run(ells[k], lips[k])
        np.testing.assert_allclose(out[0][k], ref[0], rtol=1e-12)
        np.testing.assert_allclose(out[1][k], ref[1], rtol=1e-12)


@pytest.mark.parametrize("dtype", (jnp.float32, jnp.float64))
def test_dtypes_kept(dtype):
    theta = jnp.array([0.6, 0.3, -0.2], dtype)
    sol = frank_wolfe.solve(
        lambda x: 0.5 * jnp.sum((x - theta) ** 2), jnp.eye(3, dtype=dtype)[0], lmo.simplex(1.0),
        step="short", lipschitz=1.0, tol=1e-5,
    )  # fmt: skip
    assert sol.x.dtype == dtype and sol.value.dtype == dtype and sol.gap.dtype == dtype
    np.testing.assert_allclose(sol.x, [0.65, 0.35, 0.0], atol=1e-5)


# ---------------------------------------------------------------- differentiation


@pytest.mark.parametrize("variant", VARIANTS)
def test_implicit_jacobian_equals_simplex_projection_jacobian(variant):
    # Closed form: x*(theta) = P(theta) and dP/dtheta = diag(m) - m m^T / |S| on the support S.
    theta0 = jnp.array([0.5, 0.4, -0.3, 0.2, 0.0, -0.1])

    def x_star(theta):
        f = lambda x: 0.5 * jnp.sum((x - theta) ** 2)  # noqa: E731
        return frank_wolfe.solve(
            f, jnp.eye(6)[0], lmo.simplex(1.0), variant=variant, step="exact", tol=1e-12,
            max_steps=5000,
        ).x  # fmt: skip

    p = simplex_projection(np.asarray(theta0))
    mask = (p > 0).astype(float)
    expected = np.diag(mask) - np.outer(mask, mask) / mask.sum()
    np.testing.assert_allclose(jax.jacrev(x_star)(theta0), expected, atol=1e-9)


def test_implicit_gradients_match_finite_differences_data_and_radius():
    a, b, truth = lasso_data(m=20, n=15, seed=8)
    lip = np.linalg.norm(a, 2) ** 2
    w = np.random.default_rng(9).standard_normal(15)

    def objective(target, radius):
        sol = frank_wolfe.solve(
            frank_wolfe.least_squares(a, target), jnp.zeros(15), lmo.l1_ball(radius),
            variant="pairwise", step="exact", lipschitz=lip, tol=1e-13, max_steps=20000,
        )  # fmt: skip
        return jnp.vdot(w, sol.x) + sol.value

    radius = 0.6 * np.abs(truth).sum()
    objective = jax.jit(objective)  # one compile for the five finite-difference solves
    gb, gr = jax.grad(objective, argnums=(0, 1))(jnp.asarray(b), radius)
    h = 1e-5
    direction = np.random.default_rng(10).standard_normal(b.shape)
    fd_b = (objective(b + h * direction, radius) - objective(b - h * direction, radius)) / (2 * h)
    fd_r = (objective(b, radius + h) - objective(b, radius - h)) / (2 * h)
    assert float(jnp.vdot(gb, direction)) == pytest.approx(float(fd_b), rel=1e-4, abs=1e-6)
    assert float(gr) == pytest.approx(float(fd_r), rel=1e-4, abs=1e-6)


def test_implicit_gradient_through_closure_and_args():
    theta0 = jnp.array([0.5, 0.4, -0.3])

    def via_closure(theta):
        return frank_wolfe.solve(
            lambda x: 0.5 * jnp.sum((x - theta) ** 2), jnp.eye(3)[0], lmo.simplex(1.0),
            step="exact", tol=1e-12,
        ).value  # fmt: skip

    def via_args(theta):
        return frank_wolfe.solve(
            lambda x, t: 0.5 * jnp.sum((x - t) ** 2), jnp.eye(3)[0], lmo.simplex(1.0),
            args=theta, step="exact", tol=1e-12,
        ).value  # fmt: skip

    # Envelope theorem: d f(x*(theta), theta) / d theta = theta - x*.
    expected = theta0 - simplex_projection(np.asarray(theta0))
    np.testing.assert_allclose(jax.grad(via_closure)(theta0), expected, atol=1e-9)
    np.testing.assert_allclose(jax.grad(via_args)(theta0), expected, atol=1e-9)


def test_unrolled_gradient_matches_finite_differences_of_the_unrolled_map():
    theta0 = jnp.array([0.5, 0.4, -0.3, 0.2])
    w = jnp.array([1.0, -2.0, 0.5, 3.0])

    def g(theta):
        f = lambda x: 0.5 * jnp.sum((x - theta) ** 2)  # noqa: E731
        sol = frank_wolfe.solve(
            f, jnp.eye(4)[0], lmo.simplex(1.0), step="exact", tol=0.0, max_steps=15,
            adjoint="unroll",
        )  # fmt: skip
        return jnp.vdot(w, sol.x)

    g = jax.jit(g)
    grad = jax.grad(g)(theta0)
    h = 1e-6
    for i in range(4):
        e = jnp.zeros(4).at[i].set(h)
        assert float(grad[i]) == pytest.approx(float((g(theta0 + e) - g(theta0 - e)) / (2 * h)),
                                               rel=1e-5, abs=1e-7)  # fmt: skip


def test_unrolled_away_steps_approach_closed_form_jacobian():
    theta0 = jnp.array([0.5, 0.4, -0.3, 0.2, 0.0, -0.1])

    def x_star(theta):
        f = lambda x: 0.5 * jnp.sum((x - theta) ** 2)  # noqa: E731
        return frank_wolfe.solve(
            f, jnp.eye(6)[0], lmo.simplex(1.0), variant="away", step="exact", tol=1e-12,
            max_steps=100, adjoint="unroll",
        ).x  # fmt: skip

    p = simplex_projection(np.asarray(theta0))
    mask = (p > 0).astype(float)
    expected = np.diag(mask) - np.outer(mask, mask) / mask.sum()
    np.testing.assert_allclose(jax.jacrev(x_star)(theta0), expected, atol=1e-6)


# ---------------------------------------------------------------- argument errors


def test_bad_arguments_raise_named_value_errors():
    f = lambda x: jnp.sum(x**2)  # noqa: E731
    x0 = jnp.eye(3)[0]
    simplex = lmo.simplex(1.0)
    cases = [
        (dict(step="nope"), "step"),
        (dict(variant="nope"), "variant"),
        (dict(adjoint="nope"), "adjoint"),
        (dict(step="short"), "lipschitz"),
        (dict(step="short", lipschitz=-1.0), "lipschitz"),
        (dict(tol=-1.0), "tol"),
        (dict(max_steps=-1), "max_steps"),
        (dict(ell=0.0), "ell"),
        (dict(variant="away", active_set_size=0), "active_set_size"),
    ]
    for kwargs, name in cases:
        with pytest.raises(ValueError, match=name):
            frank_wolfe.solve(f, x0, simplex, **kwargs)
    with pytest.raises(ValueError, match="x0"):
        frank_wolfe.solve(f, jnp.array([1, 0, 0]), simplex)
    with pytest.raises(ValueError, match="fun"):
        frank_wolfe.solve(lambda x: x, x0, simplex)
    with pytest.raises(ValueError, match="lmo"):
        frank_wolfe.solve(f, x0, lambda g: -g)
    ls = frank_wolfe.least_squares(np.ones((2, 3)), np.ones(2))
    with pytest.raises(ValueError, match="x0"):
        frank_wolfe.solve(ls, jnp.zeros(4), simplex)
    with pytest.raises(ValueError, match="args"):
        frank_wolfe.solve(ls, jnp.zeros(3), simplex, args=1.0)
    with pytest.raises(ValueError, match="target"):
        frank_wolfe.least_squares(np.ones((2, 3)), np.ones(3))
    with pytest.raises(ValueError, match="gram_cache"):
        frank_wolfe.least_squares(np.ones((2, 3)), np.ones(2), gram_cache=-1)


def test_implicit_without_projection_raises_when_differentiated():
    class NoProjection(lmo.LinearMinimizationOracle):
        def minimize(self, grad, state):
            return jnp.zeros_like(grad).at[jnp.argmin(grad)].set(1.0), state

    def value(theta):
        return frank_wolfe.solve(
            lambda x: jnp.sum((x - theta) ** 2), jnp.eye(3)[0], NoProjection(), step="exact"
        ).x.sum()

    value(jnp.ones(3))  # the forward solve is fine
    with pytest.raises(ValueError, match="unroll"):
        jax.grad(value)(jnp.ones(3))
