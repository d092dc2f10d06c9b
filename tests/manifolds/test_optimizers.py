"""Riemannian optax optimizers: riemannian_sgd, riemannian_adam and landing.

References: the closed-form Procrustes optimum (scipy.linalg.orthogonal_procrustes), Brockett's
closed form ``f* = sum_i mu_i lambda_i``, steps written out by hand in NumPy/SciPy (QR with sign
fix, SVD polar factor, Wen–Yin Cayley solve, ``expm``), and the landing safe-step bound.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.linalg

from jaxspec import manifolds

# --------------------------------------------------------------------------- helpers
# Test data comes from NumPy: jax.random would add a threefry compile per shape and dtype.


def random_point(rng, shape):
    """Haar point(s) of St(n, p) ``(..., n, p)`` (sign-fixed QR of a Gaussian, float64)."""
    q, r = np.linalg.qr(rng.standard_normal(shape))
    return q * np.where(np.diagonal(r, axis1=-2, axis2=-1) < 0, -1.0, 1.0)[..., None, :]


def procrustes_problem(n=10, seed=0, scale=1.0):
    """``min ||X A - B||_F^2`` over O(n): A, B, the scipy optimum X*, a start in X*'s component."""
    rng = np.random.default_rng(seed)
    a = scale * rng.standard_normal((n, n))
    b = scale * rng.standard_normal((n, n))
    # scipy solves min_R ||A' R - B'||; ||X A - B|| = ||A^T X^T - B^T||, so X* = R^T.
    r, _ = scipy.linalg.orthogonal_procrustes(a.T, b.T)
    x_star = r.T
    x0 = random_point(rng, (n, n))
    if np.linalg.det(x0) * np.linalg.det(x_star) < 0:  # retractions keep x0's component of O(n)
        x0[:, 0] *= -1
    return a, b, x_star, x0


def run_many(opts, loss, x0, steps, noise=None, noiseless=()):
    """Run every optimizer of ``opts`` for ``steps`` jitted steps in one ``lax.scan``.

    Returns ``{name: (final x, loss trace, max orthogonality error trace)}``.
    """

    def body(carry, xi):
        new, out = {}, {}
        for name, (x, state) in carry.items():
            g = jax.grad(loss)(x)
            if xi is not None and name not in noiseless:
                g = g + xi
            updates, state = opts[name].update(g, state, x)
            x = optax.apply_updates(x, updates)
            new[name] = (x, state)
            out[name] = (loss(x), jnp.max(manifolds.orthogonality_error(x)))
        return new, out

    @jax.jit
    def go(x0, xs):
        init = {name: (x0, opt.init(x0)) for name, opt in opts.items()}
        return jax.lax.scan(body, init, xs, length=steps)

    final, traces = go(x0, noise)
    return {
        name: (np.asarray(final[name][0]), np.asarray(traces[name][0]), np.asarray(traces[name][1]))
        for name in opts
    }


def hand_rgrad(x, g, metric="euclidean"):
    if metric == "canonical":
        return g - x @ g.T @ x
    xtg = x.T @ g
    return g - x @ (0.5 * (xtg + xtg.T))


def hand_project(x, v):
    xtv = x.T @ v
    return v - x @ (0.5 * (xtv + xtv.T))


def hand_retract(kind, x, u):
    if kind == "qr":
        q, r = np.linalg.qr(x + u)
        return q * np.where(np.diag(r) < 0, -1.0, 1.0)
    if kind == "polar":
        left, _, right = np.linalg.svd(x + u, full_matrices=False)
        return left @ right
    if kind == "cayley":  # Wen–Yin: (I - W/2)^{-1} (I + W/2) x, W = P u x^T - x u^T P
        n = x.shape[0]
        pu = u - 0.5 * x @ (x.T @ u)
        w = pu @ x.T - x @ pu.T
        return np.linalg.solve(np.eye(n) - 0.5 * w, (np.eye(n) + 0.5 * w) @ x)
    if kind == "exp":  # O(n) geodesic x expm(x^T u)
        omega = x.T @ u
        return x @ scipy.linalg.expm(0.5 * (omega - omega.T))
    raise AssertionError(kind)


def rel_gap(f, f_star):
    return abs(f - f_star) / abs(f_star)


# --------------------------------------------------------------------------- (1) Procrustes


PROCRUSTES_STEPS = 2000


@pytest.fixture(scope="module")
def procrustes_runs():
    a, b, x_star, x0 = procrustes_problem()
    lr = 1.0 / (2 * np.linalg.norm(a, 2) ** 2)  # 1 / Lipschitz constant of the gradient
    opts = {
        "sgd": manifolds.riemannian_sgd(lr),
        "sgd_nesterov_polar": manifolds.riemannian_sgd(
            lr, retraction="polar", momentum=0.9, nesterov=True
        ),
        "sgd_orthogonal_cayley": manifolds.riemannian_sgd(
            lr, manifold=manifolds.Orthogonal(10), momentum=0.5
        ),
        # the canonical gradient is twice the Euclidean one on O(n)
        "sgd_canonical_exp": manifolds.riemannian_sgd(
            lr / 2, manifold=manifolds.Stiefel(10, 10, metric="canonical", retraction="exp")
        ),
        "adam": manifolds.riemannian_adam(0.2),
        "adam_amsgrad": manifolds.riemannian_adam(0.2, amsgrad=True),
        "landing": manifolds.landing(lr),
    }
    loss = lambda x: jnp.sum((x @ a - b) ** 2)
    f_star = float(loss(x_star))
    return run_many(opts, loss, jnp.asarray(x0), PROCRUSTES_STEPS), x_star, f_star


@pytest.mark.parametrize(
    "name",
    [
        "sgd",
        "sgd_nesterov_polar",
        "sgd_orthogonal_cayley",
        "sgd_canonical_exp",
        "adam",
        "adam_amsgrad",
        "landing",
    ],
)
def test_procrustes_reaches_scipy_optimum(procrustes_runs, name):
    runs, x_star, f_star = procrustes_runs
    x, losses, errors = runs[name]
    assert rel_gap(losses[-1], f_star) < 1e-6
    # the gap is quadratic in the distance to X*: 1e-4 on X is a stronger check than 1e-6 on f
    np.testing.assert_allclose(x, x_star, atol=1e-4)
    assert manifolds.orthogonality_error(x) < 1e-10
    if name != "landing":  # feasible methods: on O(n) at every step
        assert errors.max() < 1e-12


# --------------------------------------------------------------------------- (2) feasibility

LONG_STEPS = 5000
# Stated tolerances on max_t ||X_t^T X_t - I||_F over 5000 float32 steps (batch of 2, n = 10,
# momentum 0.9, step norms about 0.15). QR and polar re-orthonormalize from scratch each step;
# Cayley and exp multiply by a numerically orthogonal factor, so round-off accumulates (about
# 1e-8 per step here; measured 6.5e-5 and 3.8e-5 at step 5000); iterative Cayley (2 fixed-point
# iterations) is only approximately feasible and is re-projected every 10 steps.
ORTHOGONALITY_TOL = {
    "qr": 1e-5,
    "polar": 1e-5,
    "polar_newton_schulz": 1e-5,
    "adam": 1e-5,
    "cayley": 1e-4,
    "exp": 1e-4,
    "iterative_cayley": 5e-3,
}
SAFE_STEP = 0.5
NOISY_SAFE_STEP = 0.1  # below the distance the noise alone would reach (about 0.4)


@pytest.fixture(scope="module")
def long_runs():
    n, batch = 10, 2
    rng = np.random.default_rng(1)
    a = jnp.asarray(rng.standard_normal((batch, n, n)) / np.sqrt(n), jnp.float32)
    b = jnp.asarray(rng.standard_normal((batch, n, n)) / np.sqrt(n), jnp.float32)
    noise = jnp.asarray(rng.standard_normal((LONG_STEPS, batch, n, n)), jnp.float32)
    x0 = jnp.asarray(random_point(rng, (batch, n, n)), jnp.float32)
    opts = {
        r: manifolds.riemannian_sgd(0.01, retraction=r, momentum=0.9)
        for r in manifolds.RETRACTIONS
        if r != "iterative_cayley"
    }
    opts["iterative_cayley"] = manifolds.riemannian_sgd(
        0.01, retraction="iterative_cayley", momentum=0.9, stabilize=10
    )
    opts["adam"] = manifolds.riemannian_adam(0.01)
    opts["landing_noisy"] = manifolds.landing(0.3, safe_step=NOISY_SAFE_STEP)
    opts["landing_exact"] = manifolds.landing(0.1, safe_step=SAFE_STEP)
    loss = lambda x: jnp.sum((x @ a - b) ** 2)
    return run_many(opts, loss, x0, LONG_STEPS, noise=noise, noiseless=("landing_exact",))


@pytest.mark.parametrize("name", [*manifolds.RETRACTIONS, "adam"])
def test_iterates_stay_on_manifold_over_5000_float32_steps(long_runs, name):
    x, losses, errors = long_runs[name]
    assert x.dtype == np.float32 and np.all(np.isfinite(losses))
    assert errors.max() < ORTHOGONALITY_TOL[name]
    if name == "iterative_cayley":  # the last step (5000) is a re-projection
        assert errors[-1] < 1e-5


def test_landing_distance_bounded_by_safe_step_and_vanishes(long_runs):
    _, _, noisy = long_runs["landing_noisy"]
    _, losses, exact = long_runs["landing_exact"]
    # the safe step is active (noisy gradients push the iterate to the bound) and holds
    assert 0.9 * NOISY_SAFE_STEP < noisy.max() <= NOISY_SAFE_STEP * (1 + 1e-5)
    assert exact.max() <= SAFE_STEP * (1 + 1e-5)
    # exact gradients: the distance goes to 0 (float32 floor)
    assert exact[-1] < 1e-5 and exact[-1] < 1e-3 * exact.max()


# --------------------------------------------------------------------------- (3) SGD by hand


@pytest.mark.parametrize(
    ("retraction", "shape", "metric", "momentum", "nesterov"),
    [
        ("qr", (10, 10), "euclidean", 0.0, False),
        ("qr", (7, 3), "euclidean", 0.0, False),
        ("polar", (10, 10), "euclidean", 0.0, False),
        ("cayley", (10, 10), "euclidean", 0.0, False),
        ("cayley", (7, 3), "euclidean", 0.0, False),  # Woodbury path in the library
        ("exp", (10, 10), "euclidean", 0.0, False),
        ("qr", (7, 3), "canonical", 0.0, False),
        ("qr", (7, 3), "euclidean", 0.5, False),
        ("polar", (7, 3), "euclidean", 0.5, True),
    ],
)
def test_sgd_matches_hand_steps(retraction, shape, metric, momentum, nesterov):
    rng = np.random.default_rng(2)
    n, p = shape
    grads = [rng.standard_normal(shape) for _ in range(3)]
    schedule = lambda count: 0.1 / (1.0 + count)  # checks the schedule is read at `count`
    m = manifolds.Stiefel(n, p, metric=metric)
    opt = manifolds.riemannian_sgd(
        schedule, manifold=m, retraction=retraction, momentum=momentum, nesterov=nesterov
    )
    x = random_point(rng, shape)
    state = opt.init(jnp.asarray(x))
    x_lib = jnp.asarray(x)
    buf = np.zeros(shape)
    for t, g in enumerate(grads):
        r = hand_rgrad(x, g, metric)
        buf = momentum * buf + r
        direction = r + momentum * buf if nesterov else (buf if momentum else r)
        y = hand_retract(retraction, x, -schedule(t) * direction)
        buf = hand_project(y, buf)
        x = y
        updates, state = opt.update(jnp.asarray(g), state, x_lib)
        x_lib = optax.apply_updates(x_lib, updates)
        np.testing.assert_allclose(x_lib, x, atol=1e-12)
    assert int(state.count) == 3 and state.count.dtype == jnp.int32


# --------------------------------------------------------------------------- (4) Adam by hand


@pytest.mark.parametrize(("metric", "amsgrad"), [("euclidean", False), ("canonical", True)])
def test_adam_matches_hand_steps(metric, amsgrad):
    rng = np.random.default_rng(3)
    n, p, lr, b1, b2, eps = 7, 3, 0.05, 0.8, 0.9, 1e-8
    # shrinking gradients: the running max of v differs from v (AMSGrad matters)
    grads = [s * rng.standard_normal((n, p)) for s in (3.0, 1.0, 0.5)]
    m = manifolds.Stiefel(n, p, metric=metric)
    opt = manifolds.riemannian_adam(lr, manifold=m, b1=b1, b2=b2, eps=eps, amsgrad=amsgrad)
    x = random_point(rng, (n, p))
    x_lib = jnp.asarray(x)
    state = opt.init(x_lib)
    mom, v, v_max = np.zeros((n, p)), 0.0, 0.0
    for t, g in enumerate(grads, start=1):
        r = hand_rgrad(x, g, metric)
        sq_norm = np.sum(r * r)
        if metric == "canonical":
            sq_norm -= 0.5 * np.sum((x.T @ r) ** 2)
        mom = b1 * mom + (1 - b1) * r
        v = b2 * v + (1 - b2) * sq_norm
        v_max = max(v_max, v)
        v_used = v_max if amsgrad else v
        step = (mom / (1 - b1**t)) / (np.sqrt(v_used / (1 - b2**t)) + eps)
        if t == 1:  # first step: unit direction along -grad in the metric norm
            np.testing.assert_allclose(step, r / (np.sqrt(sq_norm) + eps), atol=1e-14)
        y = hand_retract("qr", x, -lr * step)
        mom = hand_project(y, mom)
        x = y
        updates, state = opt.update(jnp.asarray(g), state, x_lib)
        x_lib = optax.apply_updates(x_lib, updates)
        np.testing.assert_allclose(x_lib, x, atol=1e-12)
        np.testing.assert_allclose(state.nu, v, rtol=1e-12)
    assert state.nu.shape == () and int(state.count) == 3


# --------------------------------------------------------------------------- (5) Brockett


@pytest.fixture(scope="module")
def brockett_runs():
    n, p = 20, 4
    rng = np.random.default_rng(4)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    eigenvalues = np.arange(1.0, n + 1)
    mu = np.array([4.0, 3.0, 2.0, 1.0])
    a = jnp.asarray(q @ np.diag(eigenvalues) @ q.T)
    big_n = jnp.asarray(np.diag(mu))
    # rearrangement: the largest mu pairs with the smallest eigenvalue
    f_star = float(np.sum(mu * eigenvalues[:p]))
    lr = 1.0 / (2 * n * mu[0])  # 1 / Lipschitz constant
    opts = {
        "sgd": manifolds.riemannian_sgd(lr),
        "sgd_momentum_cayley": manifolds.riemannian_sgd(lr, retraction="cayley", momentum=0.9),
        "adam": manifolds.riemannian_adam(0.05),
        "landing": manifolds.landing(lr),
    }
    loss = lambda x: jnp.trace(x.T @ a @ x @ big_n)
    x0 = jnp.asarray(random_point(rng, (n, p)))
    return run_many(opts, loss, x0, 2000), f_star, q[:, :p]


@pytest.mark.parametrize("name", ["sgd", "sgd_momentum_cayley", "adam", "landing"])
def test_brockett_reaches_closed_form(brockett_runs, name):
    runs, f_star, bottom = brockett_runs
    x, losses, _ = runs[name]
    assert rel_gap(losses[-1], f_star) < 1e-6
    assert manifolds.orthogonality_error(x) < (1e-9 if name == "landing" else 1e-12)
    # columns span the eigenvectors of the p smallest eigenvalues
    np.testing.assert_allclose(x @ x.T, bottom @ bottom.T, atol=1e-3)


# --------------------------------------------------------------------------- (6) partition


def test_partition_routes_matrix_leaf_to_riemannian_optimizer():
    a, b, x_star, x0 = procrustes_problem(seed=3)
    rng = np.random.default_rng(3)
    z, target = rng.standard_normal((20, 10)), rng.standard_normal((20, 3))
    params = {"rotation": jnp.asarray(x0), "dense": {"w": jnp.zeros((10, 3)), "b": jnp.zeros(3)}}
    labels = {"rotation": "orth", "dense": {"w": "rest", "b": "rest"}}
    lr = 1.0 / (2 * np.linalg.norm(a, 2) ** 2)

    def dense_loss(d):
        return jnp.sum((z @ d["w"] + d["b"] - target) ** 2)

    def loss(p):
        return jnp.sum((p["rotation"] @ a - b) ** 2) + dense_loss(p["dense"])

    def make_sgd():
        return manifolds.riemannian_sgd(lr, momentum=0.5)

    def train(opt, loss_fn, p0, steps=300):
        def body(carry, _):
            p, state = carry
            updates, state = opt.update(jax.grad(loss_fn)(p), state, p)
            return (optax.apply_updates(p, updates), state), None

        return jax.jit(lambda p: jax.lax.scan(body, (p, opt.init(p)), None, steps)[0][0])(p0)

    transforms = {"orth": make_sgd(), "rest": optax.adam(1e-2)}
    out = train(optax.partition(transforms, labels), loss, params)
    out_mt = train(optax.multi_transform(transforms, labels), loss, params)
    # the same trajectories as each optimizer alone on its own leaves
    alone_rotation = train(make_sgd(), lambda x: jnp.sum((x @ a - b) ** 2), params["rotation"])
    alone_dense = train(optax.adam(1e-2), dense_loss, params["dense"])
    np.testing.assert_allclose(out["rotation"], alone_rotation, atol=1e-12)
    np.testing.assert_allclose(out["dense"]["w"], alone_dense["w"], atol=1e-12)
    np.testing.assert_allclose(out["dense"]["b"], alone_dense["b"], atol=1e-12)
    jax.tree.map(lambda u, v: np.testing.assert_array_equal(u, v), out, out_mt)
    np.testing.assert_allclose(out["rotation"], x_star, atol=1e-6)
    assert manifolds.orthogonality_error(out["rotation"]) < 1e-12
    # without the partition, the bias vector is rejected
    with pytest.raises(ValueError, match="params"):
        make_sgd().init(params)


# --------------------------------------------------------------------------- (7) bad inputs


@pytest.mark.parametrize(
    ("factory", "kwargs", "name"),
    [
        (manifolds.riemannian_sgd, {"learning_rate": 0.0}, "learning_rate"),
        (manifolds.riemannian_sgd, {"learning_rate": -1.0}, "learning_rate"),
        (manifolds.riemannian_adam, {"learning_rate": 0.0}, "learning_rate"),
        (manifolds.landing, {"learning_rate": -0.1}, "learning_rate"),
        (manifolds.riemannian_sgd, {"learning_rate": 0.1, "momentum": 1.0}, "momentum"),
        (manifolds.riemannian_sgd, {"learning_rate": 0.1, "momentum": -0.1}, "momentum"),
        (manifolds.riemannian_adam, {"learning_rate": 0.1, "b1": 1.0}, "b1"),
        (manifolds.riemannian_adam, {"learning_rate": 0.1, "b2": -0.5}, "b2"),
        (manifolds.riemannian_adam, {"learning_rate": 0.1, "eps": -1.0}, "eps"),
        (manifolds.landing, {"learning_rate": 0.1, "lambda_": 0.0}, "lambda_"),
        (manifolds.landing, {"learning_rate": 0.1, "lambda_": -1.0}, "lambda_"),
        (manifolds.landing, {"learning_rate": 0.1, "safe_step": 0.0}, "safe_step"),
        (manifolds.landing, {"learning_rate": 0.1, "safe_step": -0.5}, "safe_step"),
        (manifolds.riemannian_sgd, {"learning_rate": 0.1, "stabilize": 0}, "stabilize"),
        (manifolds.landing, {"learning_rate": 0.1, "stabilize": 1.5}, "stabilize"),
        (manifolds.riemannian_sgd, {"learning_rate": 0.1, "retraction": "svd"}, "retraction"),
        (manifolds.riemannian_adam, {"learning_rate": 0.1, "manifold": "stiefel"}, "manifold"),
    ],
)
def test_bad_hyperparameters_raise(factory, kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        factory(**kwargs)


OPTIMIZERS = {
    "sgd": lambda: manifolds.riemannian_sgd(0.1, momentum=0.5),
    "adam": lambda: manifolds.riemannian_adam(0.1),
    "landing": lambda: manifolds.landing(0.1),
}


@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
@pytest.mark.parametrize(
    "leaf",
    [jnp.zeros(4), jnp.asarray(1.0), jnp.eye(3, 5), jnp.eye(3, dtype=jnp.int32)],
    ids=["vector", "scalar", "wide", "integer"],
)
def test_non_matrix_leaves_raise_naming_params(opt_name, leaf):
    opt = OPTIMIZERS[opt_name]()
    with pytest.raises(ValueError, match="`params`"):
        opt.init({"w": jnp.eye(4), "b": leaf})
    bad = {"w": leaf}
    with pytest.raises(ValueError, match="`params`"):
        opt.update(bad, opt.init({"w": jnp.eye(4)}), bad)


@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
def test_update_without_params_raises(opt_name):
    opt = OPTIMIZERS[opt_name]()
    x = jnp.eye(4)
    with pytest.raises(ValueError, match="`params`"):
        opt.update(x, opt.init(x))


def test_manifold_shape_mismatch_names_params():
    opt = manifolds.riemannian_sgd(0.1, manifold=manifolds.Stiefel(5, 2))
    with pytest.raises(ValueError, match="`params`"):
        opt.init({"x": jnp.eye(4)[:, :2]})


# --------------------------------------------------------------------------- contracts


def _tree(dtype):
    rng = np.random.default_rng(6)
    return {
        "stack": jnp.asarray(random_point(rng, (3, 5, 2)), dtype),
        "square": jnp.asarray(random_point(rng, (4, 4)), dtype),
    }


def _grads(params):
    rng = np.random.default_rng(8)
    return {k: jnp.asarray(rng.standard_normal(v.shape), v.dtype) for k, v in params.items()}


@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_jit_dtypes_and_state(opt_name, dtype):
    opt = OPTIMIZERS[opt_name]()
    params = _tree(dtype)
    grads = _grads(params)
    state = opt.init(params)
    assert isinstance(state, tuple) and hasattr(state, "_fields")  # a NamedTuple
    assert state.count.dtype == jnp.int32
    jitted, jitted_state = jax.jit(opt.update)(grads, state, params)
    tol = 1e-5 if dtype == jnp.float32 else 1e-12
    for k in params:
        assert jitted[k].dtype == dtype
        new = optax.apply_updates(params, jitted)[k]
        if opt_name != "landing":
            assert np.max(manifolds.orthogonality_error(new)) < 10 * tol
    for leaf in jax.tree.leaves(jitted_state):
        assert leaf.dtype in (dtype, jnp.int32)


@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
def test_stacked_leaf_equals_per_matrix(opt_name):
    """Leading axes are independent problems: per-matrix second moment and safe step."""
    opt = OPTIMIZERS[opt_name]()
    rng = np.random.default_rng(9)
    x = jnp.asarray(random_point(rng, (3, 5, 2)))
    x = x.at[1].multiply(1.05)  # one matrix off the manifold (landing's safe step differs)
    g = jnp.asarray(rng.standard_normal(x.shape) * np.array([1.0, 10.0, 0.1])[:, None, None])
    update = jax.jit(opt.update)
    stacked, _ = update(g, opt.init(x), x)
    for i in range(3):
        single, _ = update(g[i], opt.init(x[i]), x[i])
        np.testing.assert_allclose(stacked[i], single, atol=1e-13)


def _sweep_problem():
    a, b, _, x0 = procrustes_problem(n=5, seed=11, scale=0.5)
    return (lambda x: jnp.sum((x @ a - b) ** 2)), jnp.asarray(x0)


SWEEPS = {
    "sgd": (
        lambda h: manifolds.riemannian_sgd(h[0], momentum=h[1]),
        np.array([[0.05, 0.0], [0.1, 0.5], [0.02, 0.9]]),
    ),
    "adam": (
        lambda h: manifolds.riemannian_adam(h[0], b1=h[1]),
        np.array([[0.05, 0.9], [0.1, 0.5], [0.2, 0.0]]),
    ),
    "landing": (
        lambda h: manifolds.landing(h[0], lambda_=h[1]),
        np.array([[0.05, 1.0], [0.1, 0.3], [0.3, 2.0]]),
    ),
}


@pytest.mark.parametrize("opt_name", sorted(SWEEPS))
def test_vmap_over_problems_and_hyperparameters_equals_loop(opt_name):
    """One vmapped run over (hyperparameters, problem data, start) equals a Python loop."""
    make, hparams = SWEEPS[opt_name]
    problems = [procrustes_problem(n=5, seed=20 + i, scale=0.5) for i in range(len(hparams))]
    a, b, _, x0 = (jnp.asarray(np.stack(arrays)) for arrays in zip(*problems))

    def run(h, a, b, x0):
        opt = make(h)
        loss = lambda x: jnp.sum((x @ a - b) ** 2)

        def body(carry, _):
            x, state = carry
            updates, state = opt.update(jax.grad(loss)(x), state, x)
            return (optax.apply_updates(x, updates), state), None

        return jax.lax.scan(body, (x0, opt.init(x0)), None, 20)[0][0]

    hparams = jnp.asarray(hparams)
    swept = jax.jit(jax.vmap(run))(hparams, a, b, x0)
    run_one = jax.jit(run)
    for i in range(len(hparams)):
        single = run_one(hparams[i], a[i], b[i], x0[i])
        np.testing.assert_allclose(swept[i], single, atol=1e-12)


@pytest.mark.parametrize(
    ("factory", "kwargs"),
    [
        (manifolds.riemannian_sgd, {"learning_rate": 0.1, "momentum": 0.5, "stabilize": 2}),
        (manifolds.riemannian_adam, {"learning_rate": 0.1, "b1": 0.8, "eps": 1e-6}),
        (manifolds.landing, {"learning_rate": 0.1, "lambda_": 2.0, "safe_step": 0.3}),
    ],
)
def test_inject_hyperparams(factory, kwargs):
    loss, x0 = _sweep_problem()
    plain = factory(**kwargs)
    injected = optax.inject_hyperparams(factory)(**kwargs)

    def steps(opt, state, n=3):
        x = x0
        step = jax.jit(opt.update)
        for _ in range(n):
            updates, state = step(jax.grad(loss)(x), state, x)
            x = optax.apply_updates(x, updates)
        return x, state

    x_plain, plain_state = steps(plain, plain.init(x0))
    x_inj, state = steps(injected, injected.init(x0))
    np.testing.assert_allclose(x_inj, x_plain, atol=1e-12)
    # the injected learning rate is live state: changing it acts on the next step
    state.hyperparams["learning_rate"] = jnp.asarray(0.05)
    x0_next = x_inj

    def one_step(opt, st):
        updates, _ = jax.jit(opt.update)(jax.grad(loss)(x0_next), st, x0_next)
        return optax.apply_updates(x0_next, updates)

    x_half = one_step(injected, state)
    x_ref = one_step(factory(**{**kwargs, "learning_rate": 0.05}), plain_state)
    np.testing.assert_allclose(x_half, x_ref, atol=1e-12)


@pytest.mark.parametrize("opt_name", ["sgd", "adam", "landing"])
def test_stabilize_projects_every_k_steps(opt_name):
    k = 3
    factories = {
        "sgd": lambda s: manifolds.riemannian_sgd(0.3, retraction="iterative_cayley", stabilize=s),
        "adam": lambda s: manifolds.riemannian_adam(
            0.3, retraction="iterative_cayley", stabilize=s
        ),
        "landing": lambda s: manifolds.landing(0.3, stabilize=s),
    }
    loss, x0 = _sweep_problem()
    stab, free = factories[opt_name](k), factories[opt_name](None)
    x, state = x0, stab.init(x0)
    grad, update_stab, update_free = (
        jax.jit(jax.grad(loss)),
        jax.jit(stab.update),
        jax.jit(free.update),
    )
    for t in range(1, 2 * k + 1):
        g = grad(x)
        u_free, _ = update_free(g, state, x)  # the same step without the projection
        u_stab, state = update_stab(g, state, x)
        y_free = optax.apply_updates(x, u_free)
        x = optax.apply_updates(x, u_stab)
        if t % k:
            np.testing.assert_allclose(x, y_free, atol=1e-14)
            assert manifolds.orthogonality_error(x) > 1e-8  # approximately feasible in between
        else:
            left, _, right = np.linalg.svd(np.asarray(y_free))
            np.testing.assert_allclose(x, left @ right, atol=1e-12)
            assert manifolds.orthogonality_error(x) < 1e-13


# --------------------------------------------------------------------------- landing formulas


def test_landing_field_matches_ablin_peyre_form():
    """On O(n) the Stiefel field equals [psi + lambda (X X^T - I)] X with psi = skew(G X^T)."""
    rng = np.random.default_rng(12)
    n, lam = 6, 0.7
    x = (
        scipy.linalg.expm(0.1 * rng.standard_normal((n, n)))
        @ np.linalg.qr(rng.standard_normal((n, n)))[0]
    )  # off the manifold
    g = rng.standard_normal((n, n))
    psi = 0.5 * (g @ x.T - x @ g.T)
    expected = (psi + lam * (x @ x.T - np.eye(n))) @ x
    field, delta = manifolds.landing_field(x, g, lam)
    np.testing.assert_allclose(field, expected, atol=1e-12)
    np.testing.assert_allclose(delta, x.T @ x - np.eye(n), atol=1e-12)
    # Stiefel case against its definition, and the two terms are Frobenius-orthogonal
    xs, gs = x[:, :3], g[:, :3]
    field, _ = manifolds.landing_field(xs, gs, lam)
    tangential = 0.5 * (gs @ xs.T - xs @ gs.T) @ xs
    normal = xs @ (xs.T @ xs - np.eye(3))
    np.testing.assert_allclose(field, tangential + lam * normal, atol=1e-12)
    assert abs(np.sum(tangential * normal)) < 1e-12


@pytest.mark.parametrize("shape", [(6, 6), (8, 3)])
def test_landing_safe_step_keeps_distance(shape):
    """For random X within eps and any gradient, the capped step keeps ||X+^T X+ - I|| <= eps."""
    n, p = shape
    eps, lam, draws = 0.5, 1.0, 200
    rng = np.random.default_rng(13)
    q = np.linalg.qr(rng.standard_normal((draws, n, p)))[0]
    sym = rng.standard_normal((draws, p, p))
    sym = sym + np.swapaxes(sym, -1, -2)
    # X = Q (I + S): ||X^T X - I|| = ||2 S + S^2||, spread over about [0, 0.45]
    scale = rng.uniform(0.0, 0.45, draws) / np.linalg.norm(2 * sym, axis=(-2, -1))
    x = jnp.asarray(q @ (np.eye(p) + scale[:, None, None] * sym))
    g = jnp.asarray(10.0 * rng.standard_normal((draws, n, p)))
    opt = manifolds.landing(1e6, lambda_=lam, safe_step=eps)  # the cap decides every step

    @jax.jit
    def distances(x, g):
        updates, _ = opt.update(g, opt.init(x), x)
        err = manifolds.orthogonality_error
        return err(x), err(x + updates), err(x + 2 * updates)

    before, after, doubled = distances(x, g)
    assert np.all(before < eps)
    assert np.all(after <= eps + 1e-12)
    # the bound is not vacuous: twice the safe step leaves the eps-ball for some draws
    assert np.any(doubled > eps)


@pytest.mark.parametrize("retraction", ["exp", "cayley", "qr"])
def test_float32_sgd_stays_on_the_stiefel_manifold(retraction):
    """The p < n exponential map once compounded round-off about 4x per step: float32
    riemannian_sgd reached an orthogonality error of 0.35 after 50 steps and a loss of -8.9."""
    a = jnp.diag(jnp.arange(1.0, 7.0))

    def loss(x):
        return -jnp.trace(x.T @ a @ x)

    opt = manifolds.riemannian_sgd(0.1, retraction=retraction)
    x = manifolds.Stiefel(6, 2).random(jax.random.key(0))
    state = opt.init(x)

    @jax.jit
    def step(x, state):
        u, state = opt.update(jax.grad(loss)(x), state, x)
        return optax.apply_updates(x, u), state

    for _ in range(200):
        x, state = step(x, state)
    assert x.dtype == jnp.float32
    assert float(manifolds.orthogonality_error(x)) < 2e-6
    np.testing.assert_allclose(float(loss(x)), -11.0, rtol=1e-5)  # f* = -(6 + 5)
