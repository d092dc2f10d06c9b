"""Full-batch solvers ``manifolds.minimize`` (Riemannian steepest descent and CG).

References: Brockett's closed form ``f* = sum_i mu_i lambda_i`` (mu descending, lambda
ascending: the rearrangement inequality), ``scipy.linalg.orthogonal_procrustes``, Kabsch's
rotation through ``scipy.spatial.transform.Rotation.align_vectors``, the dominant eigenspace
from ``numpy.linalg.eigh``, and pymanopt 2.2.1's SteepestDescent / ConjugateGradient run on
the same instance (its NumPy backend with the gradient written out).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from scipy.spatial.transform import Rotation

from jaxspec import Status, manifolds

F64 = jnp.float64
F32 = jnp.float32
METHODS = ("gd", "cg")

# --------------------------------------------------------------------------- problems


def brockett_data(n=30, p=5, dtype=F64):
    """``A = diag(1..n)``, ``N = diag(1..p)``: ``f* = sum mu_desc * lambda_asc = 35`` for 30, 5."""
    return jnp.diag(jnp.arange(1.0, n + 1, dtype=dtype)), jnp.diag(
        jnp.arange(1.0, p + 1, dtype=dtype)
    )


def brockett(x, data):
    a, nn = data
    return jnp.trace(x.T @ a @ x @ nn)


def brockett_optimum(a, nn) -> float:
    lam = np.sort(np.linalg.eigvalsh(np.asarray(a, np.float64)))
    mu = np.sort(np.diag(np.asarray(nn, np.float64)))[::-1]
    return float(np.sum(mu * lam[: mu.size]))


def procrustes_loss(x, data):
    """``||a x - b||_F^2 / 2`` (scipy's convention: ``orthogonal_procrustes(a, b)``)."""
    a, b = data
    r = a @ x - b
    return 0.5 * jnp.vdot(r, r)


def procrustes_problem(seed, n=6, m=12):
    """Data and a start in the component of O(n) that holds scipy's optimum (retractions keep
    the component of their start point)."""
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((m, n)), rng.standard_normal((m, n))
    r_star, _ = scipy.linalg.orthogonal_procrustes(a, b)
    x0 = np.linalg.qr(rng.standard_normal((n, n)))[0]
    if np.linalg.det(x0) * np.linalg.det(r_star) < 0:
        x0[:, 0] *= -1
    return (a, b), r_star, x0


@functools.partial(
    jax.jit,
    static_argnums=(0, 2),
    static_argnames=("method", "beta", "max_steps", "has_aux", "linesearch"),
)
def run(f, x0, manifold, args=None, *, tol=1e-6, rtol=0.0, contraction=0.5, **static):
    """``minimize`` under one cached ``jit`` per (f, manifold, static options); the float
    hyperparameters are always passed (traced), so tests that differ only in them share a
    compilation."""
    return manifolds.minimize(
        f, x0, manifold, args=args, tol=tol, rtol=rtol, contraction=contraction, **static
    )


# --------------------------------------------------------------------------- closed forms


def test_brockett_reference_value_and_the_saddle_at_55():
    a, nn = brockett_data()
    assert brockett_optimum(a, nn) == 35.0
    st = manifolds.Stiefel(30, 5)
    e = jnp.eye(30, 5, dtype=F64)  # columns e_1..e_5: f = sum i^2 = 55, a critical point
    sol = run(brockett, e, st, args=(a, nn))
    assert float(sol.value) == 55.0 and float(sol.grad_norm) == 0.0
    assert int(sol.num_steps) == 0 and int(sol.status) == Status.CONVERGED
    # ... but not a minimum: a small perturbation descends to 35.
    x0 = st.retract(e, 1e-3 * st.random_tangent(jax.random.key(0), e))
    sol = run(brockett, x0, st, args=(a, nn), tol=1e-5)
    assert int(sol.status) == Status.CONVERGED
    assert abs(float(sol.value) - 35.0) < 1e-9


@pytest.mark.parametrize("dtype", [F64, F32], ids=["f64", "f32"])
@pytest.mark.parametrize("method", METHODS)
def test_brockett_closed_form(method, dtype):
    data = brockett_data(dtype=dtype)
    st = manifolds.Stiefel(30, 5)
    x0 = st.random(jax.random.key(1), dtype=dtype)
    tol = 1e-5 if dtype == F64 else 1e-3
    sol = run(brockett, x0, st, data, method=method, tol=tol, max_steps=3000)
    assert sol.x.dtype == dtype and sol.value.dtype == dtype
    err = abs(float(sol.value) - 35.0) / 35.0
    if dtype == F64:
        assert int(sol.status) == Status.CONVERGED and float(sol.grad_norm) <= tol
        assert err < 1e-11
        assert float(manifolds.orthogonality_error(sol.x)) < 1e-13
    else:  # the float32 floor: the line search stops finding decrease (STAGNATED) near 1e-2
        assert int(sol.status) in (Status.CONVERGED, Status.STAGNATED)
        assert err < 1e-5
        assert float(manifolds.orthogonality_error(sol.x)) < 2e-6


@pytest.mark.parametrize("beta", manifolds.BETA_RULES[1:])  # the default: closed-form tests
def test_beta_rules_reach_the_brockett_optimum(beta):
    st = manifolds.Stiefel(30, 5)
    x0 = st.random(jax.random.key(2), dtype=F64)
    sol = run(brockett, x0, st, args=brockett_data(), beta=beta, tol=1e-4, max_steps=3000)
    assert int(sol.status) == Status.CONVERGED
    assert abs(float(sol.value) - 35.0) < 1e-8


@pytest.mark.parametrize("retraction, metric", [("polar", "euclidean"), ("cayley", "canonical")])
def test_other_retractions_and_metrics(retraction, metric):
    st = manifolds.Stiefel(30, 5, retraction=retraction, metric=metric)
    x0 = st.random(jax.random.key(3), dtype=F64)
    sol = run(brockett, x0, st, args=brockett_data(), tol=1e-5)
    assert int(sol.status) == Status.CONVERGED
    assert abs(float(sol.value) - 35.0) < 1e-9


@pytest.mark.parametrize("method", METHODS)
def test_procrustes_matches_scipy(method):
    data, r_star, x0 = procrustes_problem(0)
    sol = run(procrustes_loss, x0, manifolds.Orthogonal(6), data, method=method, tol=1e-6)
    assert int(sol.status) == Status.CONVERGED
    np.testing.assert_allclose(sol.x, r_star, atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_kabsch_on_so3_applies_the_determinant_fix(method):
    rng = np.random.default_rng(4)
    p = rng.standard_normal((20, 3))
    r0 = Rotation.random(random_state=5).as_matrix()
    # A reflected target: the best orthogonal map has det -1, the best rotation differs.
    q = p @ np.diag([1.0, 1.0, -1.0]) @ r0 + 0.05 * rng.standard_normal((20, 3))
    r_o3, _ = scipy.linalg.orthogonal_procrustes(p, q)
    assert np.linalg.det(r_o3) < 0
    # align_vectors(a, b) minimizes sum ||a_i - R b_i||^2; rows here map as q_i = R^T p_i.
    rot, _ = Rotation.align_vectors(q, p)
    r_ref = rot.as_matrix().T
    so3 = manifolds.Orthogonal(3, special=True)
    sol = run(procrustes_loss, jnp.eye(3, dtype=F64), so3, args=(p, q), method=method, tol=1e-6)
    assert int(sol.status) == Status.CONVERGED
    assert abs(float(np.linalg.det(sol.x)) - 1.0) < 1e-12
    np.testing.assert_allclose(sol.x, r_ref, atol=1e-6)
    assert float(procrustes_loss(sol.x, (p, q))) > float(procrustes_loss(r_o3, (p, q)))


@pytest.mark.parametrize("method", METHODS)
def test_dominant_invariant_subspace_matches_eigh(method):
    rng = np.random.default_rng(6)
    q = np.linalg.qr(rng.standard_normal((20, 20)))[0]
    lam = np.concatenate([[10.0, 9.0, 8.0], np.linspace(-3.0, 5.0, 17)])
    a = (q * lam) @ q.T
    st = manifolds.Stiefel(20, 3)
    sol = run(
        lambda x, a: -jnp.trace(x.T @ a @ x),
        st.random(jax.random.key(7), dtype=F64),
        st,
        args=a,
        method=method,
        tol=1e-6,
    )
    w, v = np.linalg.eigh(a)
    top = v[:, -3:]
    assert int(sol.status) == Status.CONVERGED
    np.testing.assert_allclose(float(sol.value), -np.sum(w[-3:]), rtol=1e-13)
    np.testing.assert_allclose(sol.x @ sol.x.T, top @ top.T, atol=1e-6)


# --------------------------------------------------------------------------- pymanopt


def _pymanopt_brockett(x0, a, nn):
    pymanopt = pytest.importorskip("pymanopt")
    manifold = pymanopt.manifolds.Stiefel(*x0.shape)

    @pymanopt.function.numpy(manifold)
    def cost(x):
        return np.trace(x.T @ a @ x @ nn)

    @pymanopt.function.numpy(manifold)
    def egrad(x):
        return a @ x @ nn + a.T @ x @ nn.T

    return pymanopt, pymanopt.Problem(manifold, cost, euclidean_gradient=egrad)


def test_conjugate_gradient_matches_pymanopt_step_for_step():
    """Same defaults (Hestenes–Stiefel, adaptive Armijo search, QR retraction, projection
    transport): the same iterates up to round-off; pymanopt counts one more iteration (the
    one that checks the gradient norm)."""
    a, nn = (np.asarray(m) for m in brockett_data())
    st = manifolds.Stiefel(30, 5)
    x0 = np.asarray(st.random(jax.random.key(0), dtype=F64))
    pymanopt, problem = _pymanopt_brockett(x0, a, nn)
    tol = 1e-5
    ref = pymanopt.optimizers.ConjugateGradient(verbosity=0, min_gradient_norm=tol).run(
        problem, initial_point=x0.copy()
    )
    sol = run(brockett, jnp.asarray(x0), st, args=(a, nn), method="cg", tol=tol)
    assert ref.iterations == int(sol.num_steps) + 1
    assert abs(ref.cost - float(sol.value)) < 1e-10
    np.testing.assert_allclose(sol.x, ref.point, atol=1e-6)


@pytest.mark.optimized
def test_steepest_descent_matches_pymanopt():
    """The first 10 iterates agree to round-off. Later the trajectories part: the initial
    step ``4 (f_k - f_{k-1}) / <g, d>`` divides a difference of nearly equal numbers, so
    round-off (1e-16) grows to 1e-6 within about 20 steps and flips Armijo decisions;
    both still reach the optimum."""
    a, nn = (np.asarray(m) for m in brockett_data())
    st = manifolds.Stiefel(30, 5)
    x0 = np.asarray(st.random(jax.random.key(0), dtype=F64))
    pymanopt, problem = _pymanopt_brockett(x0, a, nn)

    def run_ref(**kw):
        opt = pymanopt.optimizers.SteepestDescent(verbosity=0, **kw)
        return opt.run(problem, initial_point=x0.copy())

    ref = run_ref(max_iterations=10, min_gradient_norm=1e-12)  # returns x_10
    sol = run(brockett, x0, st, args=(a, nn), method="gd", max_steps=10)
    np.testing.assert_allclose(sol.x, ref.point, atol=1e-10)
    assert abs(ref.cost - float(sol.value)) < 1e-10

    ref = run_ref(min_gradient_norm=1e-5, max_iterations=5000)
    sol = run(brockett, x0, st, args=(a, nn), method="gd", tol=1e-5, max_steps=3000)
    assert int(sol.status) == Status.CONVERGED
    assert abs(ref.cost - 35.0) < 1e-9 and abs(float(sol.value) - 35.0) < 1e-9


# --------------------------------------------------------------------------- jit / vmap


@pytest.mark.parametrize("method", METHODS)
def test_vmap_over_problems_equals_a_python_loop(method):
    problems = [procrustes_problem(seed) for seed in range(4)]
    a = np.stack([p[0][0] for p in problems])
    b = np.stack([p[0][1] for p in problems])
    x0 = np.stack([p[2] for p in problems])
    on = manifolds.Orthogonal(6)

    def one_problem(x, d):
        return run(procrustes_loss, x, on, d, method=method, tol=1e-6)

    batched = jax.jit(jax.vmap(one_problem))(x0, (a, b))
    single = one_problem
    for i, (_, r_star, _) in enumerate(problems):
        one = single(x0[i], (a[i], b[i]))
        np.testing.assert_allclose(batched.x[i], one.x, atol=1e-12)
        assert int(batched.num_steps[i]) == int(one.num_steps)
        assert int(batched.status[i]) == int(one.status) == Status.CONVERGED
        np.testing.assert_allclose(one.x, r_star, atol=1e-6)
    assert len(set(np.asarray(batched.num_steps).tolist())) > 1  # problems stop on their own


def test_jit_equals_eager_and_hyperparameters_are_traceable():
    data = brockett_data()
    st = manifolds.Stiefel(30, 5)
    x0 = st.random(jax.random.key(8), dtype=F64)
    eager = manifolds.minimize(brockett, x0, st, args=data, tol=1e-4, contraction=0.6)
    jitted = run(brockett, x0, st, data, tol=1e-4, contraction=0.6)
    # Entries of an orthogonal matrix are O(1): agreement to 1e-10 absolute is round-off.
    np.testing.assert_allclose(jitted.x, eager.x, atol=1e-10)
    assert int(jitted.num_steps) == int(eager.num_steps)
    tols = jnp.array([1e-1, 1e-3, 1e-5])
    sweep = jax.vmap(lambda t: run(brockett, x0, st, data, tol=t))(tols)
    steps = np.asarray(sweep.num_steps)
    assert np.all(np.asarray(sweep.grad_norm) <= np.asarray(tols))
    assert steps[0] < steps[1] < steps[2]
    assert np.all(np.asarray(sweep.status) == Status.CONVERGED)


def test_leading_axes_are_a_product_manifold():
    problems = [procrustes_problem(seed) for seed in range(3)]
    a = jnp.stack([p[0][0] for p in problems])
    b = jnp.stack([p[0][1] for p in problems])
    x0 = jnp.stack([p[2] for p in problems])
    sol = run(procrustes_loss, x0, manifolds.Orthogonal(6), args=(a, b), tol=1e-6)
    assert sol.x.shape == (3, 6, 6) and sol.value.shape == ()
    for i, (_, r_star, _) in enumerate(problems):
        np.testing.assert_allclose(sol.x[i], r_star, atol=1e-6)


# --------------------------------------------------------------------------- options


def test_has_aux_args_rtol_and_max_steps():
    data = brockett_data()
    st = manifolds.Stiefel(30, 5)
    x0 = st.random(jax.random.key(9), dtype=F64)

    def with_aux(x, d):
        return brockett(x, d), {"diag": jnp.diag(x.T @ d[0] @ x)}

    sol = run(with_aux, x0, st, args=data, has_aux=True, tol=1e-5)
    np.testing.assert_allclose(sol.aux["diag"], jnp.diag(sol.x.T @ data[0] @ sol.x), rtol=1e-12)
    closure = manifolds.minimize(lambda x: brockett(x, data), x0, st, tol=1e-5)
    np.testing.assert_allclose(closure.value, sol.value, rtol=1e-12)

    none = run(brockett, x0, st, args=data, max_steps=0)
    assert int(none.num_steps) == 0 and int(none.status) == Status.MAX_STEPS
    np.testing.assert_array_equal(none.x, x0)
    rel = run(brockett, x0, st, args=data, rtol=1e-3)
    assert int(rel.status) == Status.CONVERGED
    assert 1e-6 < float(rel.grad_norm) <= 1e-3 * float(none.grad_norm)


def test_float32_floor_is_reported_as_stagnated():
    data = brockett_data(dtype=F32)
    st = manifolds.Stiefel(30, 5)
    sol = run(
        brockett, st.random(jax.random.key(1)), st, data, method="gd", tol=1e-9, max_steps=3000
    )
    assert int(sol.status) == Status.STAGNATED
    assert abs(float(sol.value) - 35.0) < 1e-3


def nan_everywhere(x):
    return jnp.nan * jnp.sum(x)


def test_nonfinite_objective_or_gradient_gives_nonfinite_status():
    st = manifolds.Stiefel(30, 5)
    x0 = st.random(jax.random.key(10), dtype=F64)
    data = brockett_data()
    sol = run(nan_everywhere, x0, st)
    assert int(sol.status) == Status.NONFINITE and int(sol.num_steps) == 0
    np.testing.assert_array_equal(sol.x, x0)
    with pytest.raises(Exception, match="did not converge"):
        jax.block_until_ready(manifolds.minimize(nan_everywhere, x0, st, throw=True).x)
    # finite value, NaN gradient (d sqrt(u)/du at u = 0, times 0)
    sol = manifolds.minimize(lambda x: brockett(x, data) + jnp.sqrt(0.0 * x[0, 0]), x0, st)
    assert int(sol.status) == Status.NONFINITE


def test_line_search_contracts_past_nan_trials():
    """NaN outside a ball around the optimum: a first trial of length 10 lands there, the
    search contracts back inside and the solve converges."""
    st = manifolds.Stiefel(30, 5)
    data = brockett_data()
    x_star = jnp.eye(30, 5, dtype=F64)[:, ::-1]  # mu_i = i pairs with lambda = 6 - i
    x0 = st.retract(x_star, 0.2 * st.random_tangent(jax.random.key(11), x_star))

    def f(x):
        return jnp.where(jnp.sum((x - x_star) ** 2) > 0.5, jnp.nan, brockett(x, data))

    sol = manifolds.minimize(f, x0, st, initial_step=10.0, tol=1e-5)
    assert int(sol.status) == Status.CONVERGED
    assert abs(float(sol.value) - 35.0) < 1e-9


# --------------------------------------------------------------------------- Barzilai-Borwein


def _numpy_bb_descent(a, nn, x, steps, *, c=1e-4, contraction=0.5, eta=0.85, budget=25):
    """Independent float64 NumPy transcription of steepest descent with Barzilai-Borwein steps
    and the Zhang-Hager non-monotone Armijo rule (Wen and Yin 2013, Alg. 2) on the QR
    retraction, for ``tr(x^T a x nn)`` with symmetric ``a``, ``nn``."""

    def value(y):
        return float(np.trace(y.T @ a @ y @ nn))

    def rgrad(y):
        g = 2 * a @ y @ nn
        s = y.T @ g
        return g - y @ (s + s.T) / 2

    def retract(y, u):
        q, r = np.linalg.qr(y + u)
        return q * np.where(np.diag(r) < 0, -1.0, 1.0)

    f, g = value(x), rgrad(x)
    ref, weight, alpha = f, 1.0, 1.0 / np.linalg.norm(g)
    for k in range(steps):
        slope = -np.sum(g * g)
        trial = alpha
        for _ in range(budget + 1):
            y = retract(x, -trial * g)
            fy = value(y)
            if fy <= ref + c * trial * slope:
                break
            trial *= contraction
        gy = rgrad(y)
        s, dy = y - x, gy - g
        sy = abs(np.sum(s * dy))
        alpha = np.sum(s * s) / sy if k % 2 == 0 else sy / np.sum(dy * dy)
        x, f, g = y, fy, gy
        weight_new = eta * weight + 1
        ref, weight = (eta * weight * ref + f) / weight_new, weight_new
    return x, f


def test_barzilai_borwein_matches_a_numpy_transcription():
    data = brockett_data()
    st = manifolds.Stiefel(30, 5)
    x0 = st.random(jax.random.key(4), dtype=F64)
    for steps in (1, 2, 25):
        sol = run(brockett, x0, st, data, method="gd", linesearch="bb", max_steps=steps, tol=1e-12)
        x_ref, f_ref = _numpy_bb_descent(*(np.asarray(d) for d in data), np.asarray(x0), steps)
        assert int(sol.num_steps) == steps
        np.testing.assert_allclose(sol.x, x_ref, atol=1e-10)
        np.testing.assert_allclose(float(sol.value), f_ref, rtol=1e-12)


@pytest.mark.parametrize("dtype", [F64, F32], ids=["f64", "f32"])
def test_barzilai_borwein_reaches_the_brockett_optimum_in_fewer_steps(dtype):
    data = brockett_data(dtype=dtype)
    st = manifolds.Stiefel(30, 5)
    x0 = st.random(jax.random.key(1), dtype=dtype)
    tol = 1e-5 if dtype == F64 else 1e-3
    bb = run(brockett, x0, st, data, method="gd", linesearch="bb", tol=tol, max_steps=3000)
    plain = run(brockett, x0, st, data, method="gd", tol=tol, max_steps=3000)
    assert bb.x.dtype == dtype
    assert int(bb.status) in (Status.CONVERGED, Status.STAGNATED)
    assert abs(float(bb.value) - 35.0) / 35.0 < (1e-11 if dtype == F64 else 1e-5)
    assert float(manifolds.orthogonality_error(bb.x)) < (1e-13 if dtype == F64 else 2e-6)
    if dtype == F64:
        assert int(bb.status) == Status.CONVERGED
        assert int(bb.num_steps) * 3 < int(plain.num_steps)


def test_barzilai_borwein_vmaps_like_a_loop_and_monotone_weight_zero():
    problems = [procrustes_problem(seed) for seed in range(3)]
    a = np.stack([p[0][0] for p in problems])
    b = np.stack([p[0][1] for p in problems])
    x0 = np.stack([p[2] for p in problems])
    on = manifolds.Orthogonal(6)

    def one_problem(x, d, eta):
        return manifolds.minimize(
            procrustes_loss, x, on, args=d, method="gd", linesearch="bb", nonmonotone=eta
        )

    for eta in (0.85, 0.0):
        batched = jax.jit(jax.vmap(one_problem, in_axes=(0, 0, None)))(x0, (a, b), eta)
        for i, (_, r_star, _) in enumerate(problems):
            one = jax.jit(one_problem)(x0[i], (a[i], b[i]), eta)
            np.testing.assert_allclose(batched.x[i], one.x, atol=1e-12)
            assert int(batched.num_steps[i]) == int(one.num_steps)
            assert int(one.status) == Status.CONVERGED
            np.testing.assert_allclose(one.x, r_star, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"method": "newton"}, "method"),
        ({"beta": "dai_yuan"}, "beta"),
        ({"linesearch": "wolfe"}, "linesearch"),
        ({"linesearch": "bb", "method": "cg"}, "linesearch"),
        ({"linesearch": "bb", "method": "gd", "nonmonotone": 1.0}, "nonmonotone"),
        ({"linesearch": "bb", "method": "gd", "nonmonotone": -0.5}, "nonmonotone"),
        ({"tol": 0.0}, "tol"),
        ({"tol": -1e-3}, "tol"),
        ({"rtol": -1.0}, "rtol"),
        ({"max_steps": -1}, "max_steps"),
        ({"max_steps": 2.5}, "max_steps"),
        ({"contraction": 1.0}, "contraction"),
        ({"sufficient_decrease": 0.0}, "sufficient_decrease"),
        ({"initial_step": -1.0}, "initial_step"),
        ({"max_linesearch_steps": -1}, "max_linesearch_steps"),
        ({"x0": jnp.zeros((30, 4))}, "x0"),
        ({"x0": jnp.zeros((30, 5), jnp.int32)}, "x0"),
        ({"manifold": "stiefel"}, "manifold"),
        ({"manifold": manifolds.Stiefel(30, 5, retraction="iterative_cayley")}, "manifold"),
        ({"f": lambda x: x}, "f"),
        ({"f": 3.0}, "f"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(kwargs, name):
    st = manifolds.Stiefel(30, 5)
    call = {"f": lambda x: jnp.sum(x**2), "x0": jnp.eye(30, 5), "manifold": st} | kwargs
    f, x0, manifold = call.pop("f"), call.pop("x0"), call.pop("manifold")
    with pytest.raises(ValueError, match=f"`{name}`"):
        manifolds.minimize(f, x0, manifold, **call)
