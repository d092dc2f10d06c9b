"""Optax transforms: clip_updates, clip_gradients, spectra (update formula, warm-up rule)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxspec import spectral
from tests.spectral.helpers import singular_values


def tree(key, dtype=jnp.float64):
    k1, k2, k3 = jax.random.split(key, 3)
    return {
        "w": 3.0 * jax.random.normal(k1, (8, 12), dtype),
        "stack": 3.0 * jax.random.normal(k2, (2, 6, 4), dtype),
        "b": jax.random.normal(k3, (12,), dtype),
        "s": jnp.asarray(2.0, dtype),
    }


def test_clip_updates_clips_matrices_and_passes_vectors():
    g = tree(jax.random.key(0))
    tx = spectral.clip_updates(1.0)
    out, _ = jax.jit(tx.update)(g, tx.init(g))
    np.testing.assert_allclose(out["w"], spectral.soft_clip(g["w"], 1.0), atol=1e-12)
    for i in range(2):  # stacked matrices are clipped one by one
        np.testing.assert_allclose(
            out["stack"][i], spectral.soft_clip(g["stack"][i], 1.0), atol=1e-12
        )
    np.testing.assert_array_equal(out["b"], g["b"])
    np.testing.assert_array_equal(out["s"], g["s"])


@pytest.mark.parametrize("soft", [True, False])
def test_vector_rule_is_matrix_rule_on_a_row(soft):
    g = tree(jax.random.key(1))
    tx = spectral.clip_updates(0.5, soft=soft, clip_vectors=True)
    out, _ = tx.update(g, tx.init(g))
    row = g["b"][None, :]
    ref = (spectral.soft_clip(row, 0.5) if soft else spectral.hard_clip(row, 0.5))[0]
    np.testing.assert_allclose(out["b"], ref, rtol=1e-5)


def test_hard_post_clipping_bounds_spectral_norm_and_mask():
    g = tree(jax.random.key(2))
    tx = spectral.clip_updates(
        0.7, soft=False, mask={"w": True, "stack": False, "b": False, "s": False}
    )
    out, _ = tx.update(g, tx.init(g))
    assert singular_values(out["w"]).max() <= 0.7 * (1 + 1e-6)
    np.testing.assert_array_equal(out["stack"], g["stack"])


@pytest.mark.slow
def test_clip_gradients_before_adam():
    params = tree(jax.random.key(3))
    grads = tree(jax.random.key(4))
    opt = optax.chain(spectral.clip_gradients(0.1), optax.scale_by_adam())
    ref = optax.scale_by_adam()
    u, _ = opt.update(grads, opt.init(params), params)
    clipped = dict(
        grads, w=spectral.soft_clip(grads["w"], 0.1), stack=spectral.soft_clip(grads["stack"], 0.1)
    )
    u_ref, _ = ref.update(clipped, ref.init(params), params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-12), u, u_ref)


def test_spectra_update_formula():
    """update = -eta (alpha clip_c(U) + lambda X) on matrices, -eta U on the rest."""
    params = tree(jax.random.key(5))
    grads = tree(jax.random.key(6))
    eta, c, lam = 0.01, 0.5, 0.1
    opt = spectral.spectra(optax.identity(), eta, c, lam)
    u, state = jax.jit(opt.update)(grads, opt.init(params), params)
    alpha_stack = np.sqrt(6 / 4)  # rows > cols: Muon's shape factor
    np.testing.assert_allclose(
        u["w"], -eta * (spectral.soft_clip(grads["w"], c) + lam * params["w"]), atol=1e-12
    )
    np.testing.assert_allclose(
        u["stack"],
        -eta * (alpha_stack * spectral.soft_clip(grads["stack"], c) + lam * params["stack"]),
        atol=1e-12,
    )
    np.testing.assert_allclose(u["b"], -eta * grads["b"], atol=1e-15)
    assert int(state.count) == 1


def test_spectra_warmup_holds_c_eta_constant():
    """Hard clipping of a huge direction: ||update||_2 = eta_k c_k = eta_peak c in warm-up."""
    warmup, peak, c = 5, 0.1, 0.5
    sched = optax.linear_schedule(0.0, peak, warmup)
    opt = spectral.spectra(
        optax.identity(), sched, c, soft=False, shape_factor=False, warmup_steps=warmup
    )
    params = {"w": jnp.zeros((6, 6))}
    state = opt.init(params)
    norms = []
    for _ in range(8):
        g = {"w": 1e3 * jax.random.normal(jax.random.key(len(norms)), (6, 6), jnp.float64)}
        u, state = opt.update(g, state, params)
        norms.append(singular_values(u["w"]).max())
    np.testing.assert_allclose(norms[1:], peak * c, rtol=1e-4)  # step 0 has eta = 0


def test_spectra_aliases_train_a_least_squares_problem():
    a = jax.random.normal(jax.random.key(7), (32, 16))
    target = jax.random.normal(jax.random.key(8), (32, 8))

    def loss(p):
        return jnp.mean((a @ p["w"] - target) ** 2)

    for opt in (
        spectral.spectra_adamw(3e-2, c=1.0, weight_decay=0.0),
        spectral.spectra_signum(1e-2, c=1.0, weight_decay=0.0),
    ):
        params = {"w": jnp.zeros((16, 8))}
        state = opt.init(params)
        start = loss(params)

        @jax.jit
        def step(p, s, opt=opt):
            g = jax.grad(loss)(p)
            u, s = opt.update(g, s, p)
            return optax.apply_updates(p, u), s

        for _ in range(200):
            params, state = step(params, state)
        assert loss(params) < 0.5 * start


@pytest.mark.slow  # over the unit budget; CI runs it in the slow step
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_dtypes_preserved(dtype):
    params = jax.tree.map(lambda x: x.astype(dtype), tree(jax.random.key(9)))
    opt = spectral.spectra_adamw(1e-3)
    u, _ = opt.update(params, opt.init(params), params)
    jax.tree.map(
        lambda a, b: (a.dtype == b.dtype) or pytest.fail(f"{a.dtype} != {b.dtype}"), u, params
    )
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(u))


def test_bad_arguments():
    with pytest.raises(ValueError, match="`c`"):
        spectral.clip_updates(0.0)
    with pytest.raises(ValueError, match="method"):
        spectral.clip_updates(1.0, method="svd")
    with pytest.raises(ValueError, match="learning_rate"):
        spectral.spectra(optax.identity(), -1.0)
    with pytest.raises(ValueError, match="warmup_steps"):
        spectral.spectra(optax.identity(), 1e-3, warmup_steps=10)
    with pytest.raises(ValueError, match="`c`"):  # a schedule failed inside update()
        spectral.spectra(optax.identity(), 1e-3, c=lambda step: 1.0)
    with pytest.raises(ValueError, match="`c`"):
        spectral.clip_updates(lambda step: 1.0)
    with pytest.raises(ValueError, match="`weight_decay` must be >= 0"):
        spectral.spectra(optax.identity(), 1e-3, weight_decay=-0.1)
    opt = spectral.spectra(optax.identity(), 1e-3, weight_decay=0.1)
    p = {"w": jnp.ones((2, 2))}
    with pytest.raises(ValueError, match="params"):
        opt.update(p, opt.init(p))
