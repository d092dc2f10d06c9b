"""OrthoMerge, orthogonal-residual decoupling and task arithmetic against independent NumPy /
SciPy references (closed forms in a 2-plane, the magnitude rule written out, Procrustes)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg as sla

from jaxspec import manifolds

# Jitted entry points: one compile per shape and option instead of eager op-by-op dispatch.
OPTIONS = ("chart", "theta_agg", "direction_weight")
merge = jax.jit(manifolds.orthomerge, static_argnames=(*OPTIONS, "scope"))
merge_weights = jax.jit(
    manifolds.orthomerge_weights, static_argnames=(*OPTIONS, "residual_merge", "mask")
)
# ----------------------------------------------------------------------------- references


def np_skew(a):
    return 0.5 * (a - np.swapaxes(a, -1, -2))


def np_cayley(a):
    eye = np.eye(a.shape[-1])
    return np.linalg.solve(eye - a, eye + a)


def np_random_orthogonal(rng, n, det=1.0):
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    q = q * np.sign(np.diag(r))
    if np.sign(np.linalg.det(q)) != det:
        q[:, 0] = -q[:, 0]
    return q


def np_small_rotation(rng, n, scale):
    return np_cayley(scale * np_skew(rng.standard_normal((n, n))))


def np_merge(qs, theta_agg="mean", direction_weight="theta"):
    """The paper's rule for one matrix, written out: agg(||Q_i||) * dir / ||dir||."""
    norms = np.array([np.linalg.norm(q) for q in qs])
    weights = norms if direction_weight == "theta" else np.ones_like(norms)
    direction = sum(w * q / n for w, q, n in zip(weights, qs, norms))
    magnitude = {"mean": np.mean, "median": np.median, "max": np.max}[theta_agg](norms)
    return magnitude * direction / np.linalg.norm(direction)


def plane_rotation(angle, basis):
    """Rotation by ``angle`` in the plane of the first two columns of orthogonal ``basis``."""
    n = basis.shape[0]
    g = np.eye(n)
    g[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    return basis @ g @ basis.T


def rotation_angle(r, basis):
    g = basis.T @ r @ basis
    return np.arctan2(g[1, 0], g[0, 0])


def hyperspherical_energy(w):
    """Sum over pairs of rows of 1 / ||w_i/|w_i| - w_j/|w_j|||."""
    u = w / np.linalg.norm(w, axis=1, keepdims=True)
    d = np.linalg.norm(u[:, None, :] - u[None, :, :], axis=-1)
    iu = np.triu_indices(len(w), 1)
    return np.sum(1.0 / d[iu])


# ----------------------------------------------------------------------------- orthomerge


@pytest.mark.parametrize("chart", ["cayley", "exp"])
@pytest.mark.parametrize("det", [1.0, -1.0])
def test_single_task_returns_its_matrix(chart, det):
    rng = np.random.default_rng(0)
    r = np_random_orthogonal(rng, 6, det)
    sol = merge(jnp.asarray(r[None]), chart=chart)
    np.testing.assert_allclose(sol.rotation, r, atol=1e-12)
    assert bool(sol.signatures_agree)
    assert np.all(np.isfinite(sol.generator))


@pytest.mark.parametrize("angles", [(0.3, 1.1), (0.5, -0.2), (2.4, 2.9)])
def test_two_tasks_in_one_plane(angles):
    rng = np.random.default_rng(1)
    basis = np_random_orthogonal(rng, 5)
    rs = jnp.asarray(np.stack([plane_rotation(t, basis) for t in angles]))
    t1, t2 = np.tan(np.asarray(angles) / 2)
    # Cayley chart: generator magnitudes tan(theta/2), direction the sign of their sum.
    expected = 2 * np.arctan(np.sign(t1 + t2) * (abs(t1) + abs(t2)) / 2)
    cay = merge(rs, chart="cayley").rotation
    assert rotation_angle(np.asarray(cay), basis) == pytest.approx(expected, abs=1e-12)
    # exp chart: magnitudes |theta_i|; for angles of one sign that is the mean angle.
    mags = np.abs(angles)
    expected_exp = np.sign(sum(angles)) * mags.mean()
    ex = merge(rs, chart="exp").rotation
    assert rotation_angle(np.asarray(ex), basis) == pytest.approx(expected_exp, abs=1e-11)
    # The rest of the space is untouched.
    for r in (cay, ex):
        g = basis.T @ np.asarray(r) @ basis
        np.testing.assert_allclose(g[2:, 2:], np.eye(3), atol=1e-12)


@pytest.mark.parametrize("theta_agg", ["mean", "median", "max"])
@pytest.mark.parametrize("direction_weight", ["theta", "uniform"])
def test_merge_generators_options(theta_agg, direction_weight):
    rng = np.random.default_rng(2)
    qs = [s * np_skew(rng.standard_normal((7, 7))) for s in (0.05, 0.1, 0.2, 0.15)]
    out = manifolds.merge_generators(
        jnp.asarray(np.stack(qs)), theta_agg=theta_agg, direction_weight=direction_weight
    )
    np.testing.assert_allclose(out, np_merge(qs, theta_agg, direction_weight), atol=1e-12)


def test_magnitude_corrected_rule_cayley():
    rng = np.random.default_rng(2)
    qs = [s * np_skew(rng.standard_normal((7, 7))) for s in (0.05, 0.1, 0.2, 0.15)]
    rs = jnp.asarray(np.stack([np_cayley(q) for q in qs]))
    sol = merge(rs, theta_agg="median", direction_weight="uniform")
    ref = np_merge(qs, "median", "uniform")
    np.testing.assert_allclose(sol.generator, ref, atol=1e-12)
    np.testing.assert_allclose(sol.rotation, np_cayley(ref), atol=1e-12)
    # Defaults: norm == mean of norms; direction == normalized plain sum.
    g = np.asarray(merge(rs).generator)
    assert np.linalg.norm(g) == pytest.approx(np.mean([np.linalg.norm(q) for q in qs]))
    total = sum(qs)
    np.testing.assert_allclose(g / np.linalg.norm(g), total / np.linalg.norm(total), atol=1e-12)
    # Plain averaging shrinks the update (the paper's "collapse"); the rule does not.
    assert np.linalg.norm(total / len(qs)) < 0.7 * np.linalg.norm(g)


def test_magnitude_corrected_rule_exp_chart():
    rng = np.random.default_rng(3)
    qs = [s * np_skew(rng.standard_normal((6, 6))) for s in (0.3, 0.6, 0.45)]
    rs = jnp.asarray(np.stack([sla.expm(q) for q in qs]))
    sol = merge(rs, chart="exp")
    ref = np_merge(qs)
    np.testing.assert_allclose(sol.generator, ref, atol=1e-11)
    np.testing.assert_allclose(sol.rotation, sla.expm(ref), atol=1e-11)


def test_scope_leaf_takes_one_norm_per_leaf():
    rng = np.random.default_rng(4)
    blocks = 0.1 * np_skew(rng.standard_normal((3, 4, 5, 5)))  # (T, blocks, b, b)
    blocks[:, 1] *= 4.0  # blocks of different sizes: per-matrix and per-leaf rules differ
    rs = jnp.asarray(np_cayley(blocks))
    leaf = merge(rs, scope="leaf").generator
    flat = np_merge([q.reshape(-1) for q in blocks]).reshape(blocks.shape[1:])
    np.testing.assert_allclose(leaf, flat, atol=1e-12)
    per_matrix = merge(rs, scope="matrix").generator
    for k in range(4):
        np.testing.assert_allclose(per_matrix[k], np_merge(list(blocks[:, k])), atol=1e-12)
    assert not np.allclose(leaf, per_matrix, atol=1e-3)


def test_merge_generators_matches_and_cancels():
    rng = np.random.default_rng(5)
    q = np_skew(rng.standard_normal((4, 4)))
    qs = jnp.asarray(np.stack([q, -q]))
    merged = manifolds.merge_generators(qs)
    np.testing.assert_array_equal(merged, np.zeros((4, 4)))  # directions cancel: no rotation
    grad = jax.jit(jax.grad(lambda x: jnp.sum(manifolds.merge_generators(x) ** 2)))(qs)
    assert np.all(np.isfinite(grad))
    sol = merge(jnp.asarray(np.stack([np_cayley(q), np_cayley(-q)])))
    np.testing.assert_allclose(sol.rotation, np.eye(4), atol=1e-12)


def test_merge_generators_gradient_matches_finite_differences():
    rng = np.random.default_rng(6)
    qs = jnp.asarray(np_skew(rng.standard_normal((3, 4, 4))))
    weights = jnp.asarray(rng.standard_normal((4, 4)))

    def f(x):
        return jnp.sum(weights * manifolds.merge_generators(x, theta_agg="max"))

    direction = jnp.asarray(np_skew(rng.standard_normal((3, 4, 4))))
    eps = 1e-6
    f = jax.jit(f)
    fd = (f(qs + eps * direction) - f(qs - eps * direction)) / (2 * eps)
    grad = jax.jit(jax.grad(f))(qs)
    assert float(jnp.vdot(grad, direction)) == pytest.approx(float(fd), rel=1e-6)


# ----------------------------------------------------------------------------- det -1 guard


def test_det_minus_one_tasks_with_a_shared_signature():
    rng = np.random.default_rng(7)
    flip = np.diag([1.0, -1.0, 1.0, 1.0, 1.0])
    qs = [0.1 * np_skew(rng.standard_normal((5, 5))) for _ in range(3)]
    rs = np.stack([flip @ np_cayley(q) for q in qs])  # det -1: the plain inverse map fails
    assert np.all(np.linalg.det(rs) < 0)
    for chart in ("cayley", "exp"):
        sol = merge(jnp.asarray(rs), chart=chart)
        r = np.asarray(sol.rotation)
        assert np.all(np.isfinite(r)) and bool(sol.signatures_agree)
        np.testing.assert_allclose(r.T @ r, np.eye(5), atol=1e-12)
        assert np.linalg.det(r) == pytest.approx(-1.0)
        if chart == "cayley":
            np.testing.assert_allclose(sol.signature, np.diag(flip), atol=0)
            np.testing.assert_allclose(r, flip @ np_cayley(np_merge(qs)), atol=1e-12)
    plain = manifolds.inverse_cayley(jnp.asarray(rs[0]), guard=False)[0]
    # What the guard avoids: without it the generator is garbage (singular solve).
    assert not np.allclose(np_cayley(np.asarray(plain)), rs[0], atol=1e-2)


def test_disagreeing_signatures_are_reported_not_nan():
    rng = np.random.default_rng(8)
    near = np_small_rotation(rng, 4, 0.1)
    reflected = np.diag([-1.0, 1.0, 1.0, 1.0]) @ np_small_rotation(rng, 4, 0.1)
    rs = jnp.asarray(np.stack([near, near, reflected]))
    sol = jax.jit(manifolds.orthomerge)(rs)
    r = np.asarray(sol.rotation)
    assert np.all(np.isfinite(r)) and not bool(sol.signatures_agree)
    np.testing.assert_allclose(r.T @ r, np.eye(4), atol=1e-12)
    np.testing.assert_allclose(sol.signature, np.ones(4))  # majority: two of three tasks
    # A rotation by exactly pi (eigenvalue -1 in SO(n)) is also guarded.
    half_turn = np.diag([-1.0, -1.0, 1.0])
    pi_sol = merge(jnp.asarray(half_turn[None]))
    np.testing.assert_allclose(pi_sol.rotation, half_turn, atol=1e-12)


# ----------------------------------------------------------------------------- weights


def np_orthomerge_weights(w0, ws, lam, reduce="sum"):
    """Independent reference: SciPy Procrustes, NumPy Cayley charts, the paper's formula."""
    rs = [sla.orthogonal_procrustes(w0, w)[0] for w in ws]
    eye = np.eye(w0.shape[1])
    qs = [np_skew(np.linalg.solve(r + eye, r - eye)) for r in rs]
    residual = sum(w - w0 @ r for w, r in zip(ws, rs))
    if reduce == "mean":
        residual = residual / len(ws)
    return w0 @ np_cayley(np_merge(qs)) + lam * residual


def _model(rng, rows=9, cols=6):
    return {"w": rng.standard_normal((rows, cols)), "b": rng.standard_normal(rows)}


def _finetune(rng, base, tasks, rot_scale, noise):
    w = np.stack([
        base["w"] @ np_small_rotation(rng, base["w"].shape[1], rot_scale)
        + noise * rng.standard_normal(base["w"].shape)
        for _ in range(tasks)
    ])  # fmt: skip
    b = base["b"] + 0.1 * rng.standard_normal((tasks, *base["b"].shape))
    return {"w": w, "b": b}


@pytest.mark.parametrize("reduce", ["sum", "mean"])
def test_orthomerge_weights_matches_reference(reduce):
    rng = np.random.default_rng(9)
    base = _model(rng)
    tuned = _finetune(rng, base, 3, 0.2, 0.05)
    out = merge_weights(base, tuned, residual_scale=0.3, residual_merge=reduce)
    ref = np_orthomerge_weights(base["w"], tuned["w"], 0.3, reduce)
    np.testing.assert_allclose(out["w"], ref, atol=1e-10)
    bias_delta = (tuned["b"] - base["b"]).sum(0) / (3 if reduce == "mean" else 1)
    np.testing.assert_allclose(out["b"], base["b"] + 0.3 * bias_delta, atol=1e-12)


def test_pure_rotations_have_zero_residual_and_lambda_zero_is_rotation_only():
    rng = np.random.default_rng(10)
    base = _model(rng)
    tuned = _finetune(rng, base, 3, 0.3, 0.0)  # W_i = W_0 R_i exactly
    rs = np.stack([sla.orthogonal_procrustes(base["w"], w)[0] for w in tuned["w"]])
    residuals = tuned["w"] - base["w"] @ rs
    assert np.abs(residuals).max() < 1e-12
    zero = merge_weights(base, tuned, residual_scale=0.0)
    big = merge_weights(base, tuned, residual_scale=5.0)
    np.testing.assert_allclose(zero["w"], big["w"], atol=1e-11)  # the residual is 0
    r_merged = merge(jnp.asarray(rs)).rotation
    np.testing.assert_allclose(zero["w"], base["w"] @ np.asarray(r_merged), atol=1e-11)
    np.testing.assert_allclose(zero["b"], base["b"], atol=0)


def test_single_task_with_lambda_one_reconstructs_the_task():
    rng = np.random.default_rng(11)
    base = _model(rng)
    tuned = _finetune(rng, base, 1, 0.4, 0.2)
    out = merge_weights(base, tuned, residual_scale=1.0)
    np.testing.assert_allclose(out["w"], tuned["w"][0], atol=1e-11)
    np.testing.assert_allclose(out["b"], tuned["b"][0], atol=1e-12)


def test_rotation_part_preserves_spectrum_and_hyperspherical_energy():
    rng = np.random.default_rng(12)
    base = _model(rng)
    tuned = _finetune(rng, base, 3, 0.5, 0.3)
    merged = np.asarray(merge_weights(base, tuned, residual_scale=0.0)["w"])
    s0 = np.linalg.svd(base["w"], compute_uv=False)
    np.testing.assert_allclose(np.linalg.svd(merged, compute_uv=False), s0, rtol=1e-12)
    he0 = hyperspherical_energy(base["w"])
    assert hyperspherical_energy(merged) == pytest.approx(he0, rel=1e-12)
    # Task arithmetic on the same experts changes both.
    ta = np.asarray(manifolds.task_arithmetic(base, tuned, 1.0 / 3)["w"])
    assert abs(np.linalg.svd(ta, compute_uv=False)[0] / s0[0] - 1) > 1e-3
    assert abs(hyperspherical_energy(ta) / he0 - 1) > 1e-4


def test_mask_selects_leaves():
    rng = np.random.default_rng(13)
    base = {"a": rng.standard_normal((7, 5)), "b": rng.standard_normal((7, 5))}
    tuned = {k: np.stack([v + 0.1 * rng.standard_normal(v.shape) for _ in range(2)])
             for k, v in base.items()}  # fmt: skip
    flags = {"a": True, "b": False}
    out = jax.jit(functools.partial(manifolds.orthomerge_weights, mask=flags))(
        base, tuned, residual_scale=0.5
    )
    same = merge_weights(base, tuned, residual_scale=0.5, mask=lambda p: flags)
    ta = manifolds.task_arithmetic(base, tuned, 0.5)
    np.testing.assert_allclose(out["b"], ta["b"], atol=0)
    np.testing.assert_allclose(out["a"], same["a"], atol=0)
    np.testing.assert_allclose(out["a"], np_orthomerge_weights(base["a"], tuned["a"], 0.5),
                               atol=1e-10)  # fmt: skip


def test_task_arithmetic_reference():
    rng = np.random.default_rng(14)
    base = [rng.standard_normal((3, 4)), rng.standard_normal(2)]
    tuned = [rng.standard_normal((5, 3, 4)), rng.standard_normal((5, 2))]
    out = manifolds.task_arithmetic(base, tuned, 0.4)
    mean = manifolds.task_arithmetic(base, tuned, 1.0, reduce="mean")
    for b, t, o, m in zip(base, tuned, out, mean):
        np.testing.assert_allclose(o, b + 0.4 * (t - b).sum(0), atol=1e-12)
        np.testing.assert_allclose(m, t.mean(0), atol=1e-12)


# ----------------------------------------------------------------------------- transforms


def test_jit_and_vmap_over_layers_equal_the_loop():
    rng = np.random.default_rng(15)
    rs = np.stack([[np_small_rotation(rng, 5, 0.3) for _ in range(3)] for _ in range(4)])
    rs = jnp.asarray(rs)  # (layers=4, T=3, 5, 5)
    batched = jax.jit(jax.vmap(manifolds.orthomerge))(rs)
    stacked = merge(jnp.swapaxes(rs, 0, 1))  # (T, layers, 5, 5): layers as batch axes
    for layer in range(4):
        single = merge(rs[layer])
        np.testing.assert_allclose(batched.rotation[layer], single.rotation, atol=1e-12)
        np.testing.assert_allclose(stacked.rotation[layer], single.rotation, atol=1e-12)
    base = {"w": jnp.asarray(rng.standard_normal((4, 8, 5)))}
    tuned = {"w": jnp.asarray(base["w"][None] @ np.asarray(jnp.swapaxes(rs, 0, 1)))}
    fn = jax.jit(lambda b, t, lam: merge_weights(b, t, residual_scale=lam))
    vm = jax.vmap(fn, in_axes=({"w": 0}, {"w": 1}, None))(base, tuned, 0.2)
    for layer in range(4):
        one = fn({"w": base["w"][layer]}, {"w": tuned["w"][:, layer]}, 0.2)
        np.testing.assert_allclose(vm["w"][layer], one["w"], atol=1e-11)


@pytest.mark.slow
def test_float32_agrees_with_float64():
    rng = np.random.default_rng(16)
    rs = np.stack([np_small_rotation(rng, 8, 0.2) for _ in range(3)])
    r64 = merge(jnp.asarray(rs), chart="exp").rotation
    r32 = merge(jnp.asarray(rs, jnp.float32), chart="exp").rotation
    assert r64.dtype == jnp.float64 and r32.dtype == jnp.float32
    np.testing.assert_allclose(r32, r64, atol=2e-5)
    base = _model(rng)
    tuned = _finetune(rng, base, 3, 0.2, 0.05)
    w64 = merge_weights(base, tuned)["w"]
    w32 = merge_weights(*jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), (base, tuned)))["w"]
    assert w32.dtype == jnp.float32
    np.testing.assert_allclose(w32, w64, atol=2e-4)


# ----------------------------------------------------------------------------- bad inputs


def test_bad_inputs_raise_naming_the_argument():
    r = jnp.eye(3)[None].repeat(2, 0)
    for kwargs, name in [
        ({"chart": "log"}, "chart"),
        ({"theta_agg": "sum"}, "theta_agg"),
        ({"direction_weight": "norm"}, "direction_weight"),
        ({"scope": "layer"}, "scope"),
    ]:
        with pytest.raises(ValueError, match=name):
            manifolds.orthomerge(r, **kwargs)
    with pytest.raises(ValueError, match="rotations"):
        manifolds.orthomerge(jnp.eye(3))  # no task axis
    with pytest.raises(ValueError, match="rotations"):
        manifolds.orthomerge(jnp.ones((2, 3, 4)))  # not square
    with pytest.raises(ValueError, match="rotations"):
        manifolds.orthomerge(jnp.ones((2, 3, 3), jnp.int32))
    with pytest.raises(ValueError, match="rotations"):
        manifolds.orthomerge({"a": r, "b": jnp.eye(3)[None].repeat(3, 0)})  # T differs
    with pytest.raises(ValueError, match="generators"):
        manifolds.merge_generators(jnp.zeros((3, 3)))
    base = {"w": jnp.ones((4, 3)), "b": jnp.ones(4)}
    tuned = {"w": jnp.ones((2, 4, 3)), "b": jnp.ones((2, 4))}
    with pytest.raises(ValueError, match="finetuned"):
        manifolds.orthomerge_weights(base, {"w": tuned["w"]})
    with pytest.raises(ValueError, match="finetuned"):
        manifolds.orthomerge_weights(base, {"w": jnp.ones((2, 3, 4)), "b": tuned["b"]})
    with pytest.raises(ValueError, match="residual_scale"):
        manifolds.orthomerge_weights(base, tuned, residual_scale=-0.1)
    with pytest.raises(ValueError, match="residual_merge"):
        manifolds.orthomerge_weights(base, tuned, residual_merge="ties")
    with pytest.raises(ValueError, match="mask"):
        manifolds.orthomerge_weights(base, tuned, mask={"w": True, "b": True})
    with pytest.raises(ValueError, match="mask"):
        manifolds.orthomerge_weights(base, tuned, mask={"w": True})
    with pytest.raises(ValueError, match="scale"):
        manifolds.task_arithmetic(base, tuned, -1.0)
    with pytest.raises(ValueError, match="reduce"):
        manifolds.task_arithmetic(base, tuned, 1.0, reduce="max")
