"""Sparse autoencoder modules and metrics: NumPy re-statements, MP-SAE semantics, jit/vmap."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxspec.pursuit._sae import (
    MPSAE,
    BatchTopKSAE,
    JumpReLUSAE,
    ReLUSAE,
    TopKSAE,
)
from jaxspec.pursuit._sae_metrics import reconstruction_metrics, sae_metrics
from jaxspec.pursuit._unrolled import unrolled_mp

D, K = 8, 16


def unit_atoms(seed=0, d=D, n_atoms=K):
    a = np.random.default_rng(seed).standard_normal((d, n_atoms))
    return a / np.linalg.norm(a, axis=0)


def sparse_data(n, seed=1, atoms=None, sparsity=2):
    rng = np.random.default_rng(seed)
    atoms = unit_atoms() if atoms is None else atoms
    z = np.zeros((n, atoms.shape[1]))
    for i in range(n):
        z[i, rng.choice(atoms.shape[1], sparsity, replace=False)] = rng.uniform(0.5, 1.5, sparsity)
    return z @ atoms.T


def perturbed(model, seed=3, scale=0.3):
    """The model with random biases (and decoder norms != 1), so every term is exercised."""
    rng = np.random.default_rng(seed)
    leaves, tree = jax.tree.flatten(model)
    leaves = [
        leaf + scale * rng.standard_normal(leaf.shape) if leaf.ndim else leaf for leaf in leaves
    ]
    return jax.tree.unflatten(tree, leaves)


def mp_sae_numpy(atoms, x, threshold):
    """The original MP-SAE encoder loop (Costa et al., ``MatchingPursuitSAE.get_acts``)."""
    w = atoms.T  # (K, d): the paper's W has atoms as rows
    b = x.shape[0]
    rows = np.arange(b)
    residual = x.copy()
    z = np.zeros((b, w.shape[0]))
    prev_support = np.zeros_like(z, bool)
    done = np.zeros(b, bool)
    while not done.all():
        corr = np.maximum(residual @ w.T, 0)
        idx = corr.argmax(1)
        z_ = np.zeros_like(z)
        z_[rows, idx] = corr[rows, idx]
        z = np.where(done[:, None], z, z + z_)
        residual = np.where(done[:, None], residual, residual - z_ @ w)
        support = z != 0
        converged = (support == prev_support).all(1) | (
            np.linalg.norm(residual, axis=1) < threshold
        )
        done = done | converged
        prev_support = support
    return z


# --------------------------------------------------------------------------------------------
# MP-SAE


@pytest.mark.parametrize("threshold", [0.05, 0.6])
def test_mpsae_encode_is_unrolled_mp_and_the_paper_loop(threshold):
    atoms = unit_atoms()
    x = sparse_data(12, sparsity=3) + 0.05 * np.random.default_rng(5).standard_normal((12, D))
    sae = MPSAE(atoms, threshold=threshold)
    assert sae.max_steps == K + 1  # the default budget covers the paper's loop
    codes = np.asarray(sae.encode(x))
    ref = unrolled_mp(
        atoms, x, K + 1, selection="relu", reselect=True, stop="both", threshold=threshold
    ).codes
    np.testing.assert_allclose(codes, np.asarray(ref), atol=1e-12)
    paper = mp_sae_numpy(atoms, x, threshold)
    np.testing.assert_allclose(codes, paper, atol=1e-12)
    l0 = (paper != 0).sum(1)
    assert l0.min() >= 1 and l0.max() > l0.min()  # sparsity adapts per sample
    # decode is D z (no pre-bias by default) and reproduces x - residual
    x_hat, codes2 = sae(x)
    np.testing.assert_allclose(np.asarray(x_hat), paper @ atoms.T, atol=1e-12)
    np.testing.assert_allclose(np.asarray(codes2), paper, atol=1e-12)


def test_mpsae_pre_bias_and_fixed_k():
    atoms = unit_atoms()
    x = sparse_data(6)
    b_pre = 0.1 * np.arange(D)
    sae = MPSAE(atoms, b_pre=b_pre, threshold=0.1, max_steps=K + 1)
    paper = mp_sae_numpy(atoms, x - b_pre, 0.1)
    x_hat, codes = sae(x)
    np.testing.assert_allclose(np.asarray(codes), paper, atol=1e-12)
    np.testing.assert_allclose(np.asarray(x_hat), paper @ atoms.T + b_pre, atol=1e-12)
    fixed = MPSAE(atoms, fixed_k=3)
    ref = unrolled_mp(atoms, x, 3, selection="relu", reselect=True, stop="none").codes
    np.testing.assert_allclose(np.asarray(fixed.encode(x)), np.asarray(ref), atol=1e-12)
    with pytest.raises(ValueError, match="fixed_k"):
        MPSAE(atoms, fixed_k=3, max_steps=4)


def test_mpsae_adaptive_sparsity():
    atoms = unit_atoms()
    x = sparse_data(40, sparsity=3)
    sae = MPSAE(atoms, max_steps=2 * K)
    thresholds = np.array([1.5, 1.0, 0.6, 0.3, 0.1, 0.02])
    errors, l0s = [], []
    for t in thresholds:
        x_hat = sae.decode(sae.encode(x, threshold=t))
        errors.append(np.sum((np.asarray(x_hat) - x) ** 2, axis=1))
        l0s.append(np.mean((np.asarray(sae.encode(x, threshold=t)) != 0).sum(1)))
    errors = np.array(errors)
    # per sample, a lower threshold never gives a larger error (MP with unit atoms is monotone)
    assert np.all(np.diff(errors, axis=0) <= 1e-12)
    assert errors[-1].sum() < 0.2 * errors[0].sum()
    assert l0s[-1] > l0s[0]
    # the model's own threshold is the default, and a traced threshold sweep equals the loop
    np.testing.assert_array_equal(
        np.asarray(sae.encode(x)), np.asarray(sae.encode(x, threshold=0.05))
    )
    swept = jax.jit(jax.vmap(lambda t: sae.encode(x, threshold=t)))(thresholds)
    loop = np.stack([np.asarray(sae.encode(x, threshold=t)) for t in thresholds])
    np.testing.assert_allclose(np.asarray(swept), loop, atol=1e-12)


def test_mpsae_lean_and_full_gradients_agree():
    atoms = unit_atoms()
    x = sparse_data(10, sparsity=3)
    grads = {}
    for mode in ("full", "lean", "decoder"):
        sae = MPSAE(atoms, threshold=0.1, max_steps=6, gradient=mode, b_pre=0.01 * np.ones(D))
        grads[mode] = eqx.filter_jit(jax.grad(lambda m: m.loss(x)[0]))(sae)
    np.testing.assert_allclose(grads["lean"].dictionary, grads["full"].dictionary, atol=1e-10)
    np.testing.assert_allclose(grads["lean"].b_pre, grads["full"].b_pre, atol=1e-10)
    assert np.linalg.norm(grads["full"].dictionary) > 1e-3
    # gradients through the pursuit matter: decoder-only gradients differ
    assert np.abs(grads["decoder"].dictionary - grads["full"].dictionary).max() > 1e-3
    # the threshold (state) gets no gradient
    assert float(grads["full"].threshold) == 0.0


# --------------------------------------------------------------------------------------------
# baselines


def all_models(dtype=jnp.float64):
    key = jax.random.key(0)
    return {
        "mp": MPSAE.init(key, D, K, dtype=dtype, use_b_pre=True),
        "relu": ReLUSAE.init(key, D, K, dtype=dtype),
        "topk": TopKSAE.init(key, D, K, k=3, dtype=dtype),
        "batchtopk": eqx.tree_at(
            lambda m: m.threshold,
            BatchTopKSAE.init(key, D, K, k=3, dtype=dtype),
            jnp.asarray(0.4, dtype),
        ),
        "jumprelu": JumpReLUSAE.init(key, D, K, threshold=0.3, dtype=dtype),
    }


@pytest.mark.parametrize("name", ["mp", "relu", "topk", "batchtopk", "jumprelu"])
def test_project_makes_unit_columns_and_init_is_tied(name):
    model = all_models()[name]
    field = type(model).decoder_field
    atoms = np.asarray(getattr(model, field))
    np.testing.assert_allclose(np.linalg.norm(atoms, axis=0), 1.0, atol=1e-12)
    if name != "mp":
        np.testing.assert_array_equal(np.asarray(model.w_enc), atoms.T)
    scaled = eqx.tree_at(lambda m: getattr(m, field), model, atoms * np.linspace(0.2, 3, K))
    projected = np.asarray(getattr(scaled.project(), field))
    if name == "relu":  # April-update ReLU SAE: unconstrained decoder unless asked
        np.testing.assert_array_equal(projected, atoms * np.linspace(0.2, 3, K))
        scaled = ReLUSAE(model.w_enc, model.b_enc, atoms * 2, model.b_dec, normalize_decoder=True)
        projected = np.asarray(scaled.project().decoder)
    np.testing.assert_allclose(np.linalg.norm(projected, axis=0), 1.0, atol=1e-12)
    np.testing.assert_allclose(projected, atoms, atol=1e-12)  # directions kept


def numpy_pre(model, x):
    return (x - np.asarray(model.b_dec)) @ np.asarray(model.w_enc).T + np.asarray(model.b_enc)


def test_topk_codes_equal_numpy_topk():
    model = perturbed(TopKSAE.init(jax.random.key(1), D, K, k=3))
    model = eqx.tree_at(lambda m: m.b_enc, model, model.b_enc - 0.8)  # some rows < k positive
    x = np.random.default_rng(2).standard_normal((30, D))
    pre = numpy_pre(model, x)
    ref = np.zeros_like(pre)
    for i, row in enumerate(pre):
        top = np.argsort(-row)[:3]
        ref[i, top] = np.maximum(row[top], 0)
    codes = np.asarray(model.encode(x))
    np.testing.assert_allclose(codes, ref, atol=1e-12)
    nnz, positive = (codes != 0).sum(1), (pre > 0).sum(1)
    np.testing.assert_array_equal(nnz, np.minimum(positive, 3))
    assert np.any(positive < 3) and np.any(positive >= 3)
    x_hat = np.asarray(model.decode(codes))
    np.testing.assert_allclose(x_hat, ref @ np.asarray(model.decoder).T + model.b_dec, atol=1e-12)


def test_batchtopk_training_and_inference_codes():
    model = perturbed(BatchTopKSAE.init(jax.random.key(1), D, K, k=3))
    x = np.random.default_rng(2).standard_normal((5, 4, D))  # two batch axes: 20 samples
    acts = np.maximum(numpy_pre(model, x), 0)
    batch = np.asarray(model.encode_batch(x))
    assert batch.shape == (5, 4, K)
    assert np.count_nonzero(batch) == 3 * 20
    cutoff = np.sort(acts.ravel())[-60]
    np.testing.assert_allclose(batch, np.where(acts >= cutoff, acts, 0), atol=1e-12)
    assert len(set(np.count_nonzero(batch.reshape(20, K), axis=1))) > 1  # not per sample
    # inference: one threshold, independent of the batch
    t = 0.4
    fitted = eqx.tree_at(lambda m: m.threshold, model, jnp.asarray(t))
    np.testing.assert_allclose(
        np.asarray(fitted.encode(x)), np.where(acts > t, acts, 0), atol=1e-12
    )
    np.testing.assert_allclose(
        np.asarray(model.encode(x, threshold=0.7)), np.where(acts > 0.7, acts, 0), atol=1e-12
    )
    # before a threshold is estimated (-1): per-sample top-k
    topk = TopKSAE(model.w_enc, model.b_enc, model.decoder, model.b_dec, k=3)
    np.testing.assert_allclose(np.asarray(model.encode(x)), np.asarray(topk.encode(x)))


def test_batchtopk_threshold_ema():
    model = BatchTopKSAE.init(jax.random.key(1), D, K, k=2, threshold_decay=0.9)
    codes1 = jnp.array([[0.0, 0.5, 2.0], [0.3, 0.0, 0.0]])
    codes2 = jnp.array([[0.0, 0.1, 2.0], [1.3, 0.0, 0.0]])
    m1 = model._after_step(codes1)
    assert float(m1.threshold) == pytest.approx(0.3)  # first estimate: smallest kept value
    m2 = m1._after_step(codes2)
    assert float(m2.threshold) == pytest.approx(0.9 * 0.3 + 0.1 * 0.1)
    m3 = m2._after_step(jnp.zeros((2, 3)))  # nothing kept: unchanged
    assert float(m3.threshold) == pytest.approx(float(m2.threshold))


def test_relu_loss_equals_numpy():
    model = perturbed(ReLUSAE.init(jax.random.key(1), D, K, l1_coeff=0.07))
    x = np.random.default_rng(2).standard_normal((9, D))
    codes = np.maximum(numpy_pre(model, x), 0)
    dec = np.asarray(model.decoder)
    x_hat = codes @ dec.T + np.asarray(model.b_dec)
    sse = np.mean(np.sum((x - x_hat) ** 2, axis=1))
    l1 = np.mean(np.sum(codes * np.linalg.norm(dec, axis=0), axis=1))
    loss, aux = model.loss(x)
    assert not np.allclose(np.linalg.norm(dec, axis=0), 1)  # the weighting is exercised
    assert float(loss) == pytest.approx(sse + 0.07 * l1, rel=1e-12)
    assert float(aux["l1"]) == pytest.approx(l1, rel=1e-12)
    assert float(aux["l0"]) == pytest.approx(np.mean((codes > 0).sum(1)))
    dev = x - x.mean(0)
    assert float(aux["fvu"]) == pytest.approx(np.sum((x - x_hat) ** 2) / np.sum(dev**2))


def numpy_aux_k(model, x, dead, aux_k):
    """(normalised aux MSE, main sse, d aux / d decoder with the residual held fixed)."""
    pre = numpy_pre(model, x)
    x_hat = np.asarray(model.decode(model.encode(x)))
    e = x - x_hat
    acts = np.where(dead, np.maximum(pre, 0), -np.inf)
    aux_codes = np.zeros_like(pre)
    for i, row in enumerate(acts):
        top = np.argsort(-row)[:aux_k]
        top = top[np.isfinite(row[top])]
        aux_codes[i, top] = row[top]
    e_hat = aux_codes @ np.asarray(model.decoder).T
    den = np.sum((e - e.mean(0)) ** 2)
    grad_decoder = -2 * (e - e_hat).T @ aux_codes / den
    return np.sum((e - e_hat) ** 2) / den, np.mean(np.sum(e**2, 1)), grad_decoder


@pytest.mark.parametrize("n_dead", [0, 2, 9])
def test_topk_aux_loss_equals_numpy(n_dead):
    model = perturbed(TopKSAE.init(jax.random.key(1), D, K, k=2, aux_k=4, aux_coeff=0.5))
    x = np.random.default_rng(2).standard_normal((11, D))
    dead = np.zeros(K, bool)
    dead[np.random.default_rng(4).choice(K, n_dead, replace=False)] = True
    loss, aux = model.loss(x, dead_mask=jnp.asarray(dead))
    nmse, sse, grad_decoder = numpy_aux_k(model, x, dead, 4)
    expected_aux = nmse if n_dead else 0.0
    assert float(aux["aux_loss"]) == pytest.approx(expected_aux, rel=1e-12, abs=1e-14)
    assert float(loss) == pytest.approx(sse + 0.5 * expected_aux, rel=1e-12)
    if n_dead:
        assert expected_aux > 0
    assert "aux_loss" not in model.loss(x)[1]
    # the residual is a detached target: the aux gradient in the decoder is only through e_hat
    g = eqx.filter_jit(jax.grad(lambda m: m.loss(x, dead_mask=dead)[0] - m.loss(x)[0]))(model)
    np.testing.assert_allclose(np.asarray(g.decoder), 0.5 * grad_decoder * (n_dead > 0), atol=1e-12)
    with pytest.raises(ValueError, match="dead_mask"):
        model.loss(x, dead_mask=jnp.ones(K - 1, bool))


def test_batchtopk_aux_loss_uses_the_same_rule():
    model = perturbed(BatchTopKSAE.init(jax.random.key(1), D, K, k=2, aux_k=3))
    x = np.random.default_rng(2).standard_normal((7, D))
    dead = np.arange(K) % 3 == 0
    _, aux = model.loss(x, dead_mask=jnp.asarray(dead))
    e = x - np.asarray(model.decode(model.encode_batch(x)))
    acts = np.where(dead, np.maximum(numpy_pre(model, x), 0), -np.inf)
    aux_codes = np.zeros_like(acts)
    for i, row in enumerate(acts):
        top = np.argsort(-row)[:3]
        aux_codes[i, top] = row[top]
    e_hat = aux_codes @ np.asarray(model.decoder).T
    ref = np.sum((e - e_hat) ** 2) / np.sum((e - e.mean(0)) ** 2)
    assert float(aux["aux_loss"]) == pytest.approx(ref, rel=1e-12)


def test_jumprelu_codes_and_straight_through_gradient():
    bandwidth, coeff = 0.4, 0.3
    model = perturbed(JumpReLUSAE.init(jax.random.key(1), D, K, threshold=0.5))
    model = JumpReLUSAE(
        model.w_enc,
        model.b_enc,
        model.decoder,
        model.b_dec,
        model.log_threshold,
        bandwidth=bandwidth,
        l0_coeff=coeff,
    )
    x = np.random.default_rng(2).standard_normal((13, D))
    pre = numpy_pre(model, x)
    theta = np.exp(np.asarray(model.log_threshold))
    codes = np.where(pre > theta, pre, 0)
    np.testing.assert_allclose(np.asarray(model.encode(x)), codes, atol=1e-12)
    loss, aux = model.loss(x)
    x_hat = codes @ np.asarray(model.decoder).T + np.asarray(model.b_dec)
    sse = np.mean(np.sum((x - x_hat) ** 2, 1))
    assert float(aux["l0_penalty"]) == pytest.approx(np.mean((pre > theta).sum(1)))
    assert float(loss) == pytest.approx(sse + coeff * np.mean((pre > theta).sum(1)), rel=1e-12)
    # pseudo-derivative in theta: reconstruction part and L0 part, times dtheta/dlog = theta
    window = (np.abs((pre - theta) / bandwidth) < 0.5).astype(float)
    g_codes = 2 * (x_hat - x) @ np.asarray(model.decoder) / x.shape[0]  # dL/dcodes
    g_theta = np.sum(g_codes * -(theta / bandwidth) * window, 0)
    g_theta += coeff * np.sum(-(1 / bandwidth) * window, 0) / x.shape[0]
    grad = eqx.filter_jit(jax.grad(lambda m: m.loss(x)[0]))(model)
    assert window.sum() > 3  # some pre-activations fall in the kernel window
    np.testing.assert_allclose(np.asarray(grad.log_threshold), g_theta * theta, atol=1e-10)
    # the encoder gets the exact H(z - theta) derivative (no L0 gradient)
    g_pre = g_codes * (pre > theta)
    np.testing.assert_allclose(np.asarray(grad.b_enc), g_pre.sum(0), atol=1e-10)


# --------------------------------------------------------------------------------------------
# metrics


def test_metrics_equal_numpy():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((20, D))
    x_hat = x + 0.3 * rng.standard_normal((20, D))
    x_hat[3] = 0.0  # a zero reconstruction: cosine 0
    codes = np.maximum(rng.standard_normal((20, K)) - 0.8, 0)
    codes[:, :3] = 0  # three dead latents
    codes[5] = 0  # an empty code
    m = reconstruction_metrics(x, x_hat, codes)
    fvu = np.sum((x - x_hat) ** 2) / np.sum((x - x.mean(0)) ** 2)
    l0 = (codes != 0).sum(1)
    cos = np.array(
        [
            a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) if np.linalg.norm(b) else 0.0
            for a, b in zip(x, x_hat)
        ]
    )
    assert float(m["fvu"]) == pytest.approx(fvu, rel=1e-12)
    assert float(m["explained_variance"]) == pytest.approx(1 - fvu, rel=1e-12)
    assert float(m["r2"]) == float(m["explained_variance"])
    assert float(m["mse"]) == pytest.approx(np.mean((x - x_hat) ** 2), rel=1e-12)
    assert float(m["sse"]) == pytest.approx(np.mean(np.sum((x - x_hat) ** 2, 1)), rel=1e-12)
    assert float(m["cosine"]) == pytest.approx(cos.mean(), rel=1e-12)
    assert int(m["l0_min"]) == 0 and int(m["l0_max"]) == l0.max()
    assert float(m["l0_mean"]) == pytest.approx(l0.mean())
    dead = np.mean(~(codes != 0).any(0))
    assert float(m["dead_fraction"]) == pytest.approx(dead) and dead >= 3 / K


def test_sae_metrics_on_models_and_thresholds():
    x = sparse_data(30)
    model = MPSAE(unit_atoms(), max_steps=K)
    m = sae_metrics(model, x)
    x_hat, codes = model(x)
    ref = reconstruction_metrics(x, x_hat, codes)
    for name in ref:
        np.testing.assert_allclose(np.asarray(m[name]), np.asarray(ref[name]), rtol=1e-12)
    loose = sae_metrics(model, x, threshold=1.0)
    assert float(loose["fvu"]) > float(m["fvu"]) and float(loose["l0_mean"]) < float(m["l0_mean"])
    # leading batch axes are flattened
    m3 = sae_metrics(model, x.reshape(5, 6, D))
    np.testing.assert_allclose(float(m3["fvu"]), float(m["fvu"]), rtol=1e-12)
    with pytest.raises(ValueError, match="threshold"):
        sae_metrics(TopKSAE.init(jax.random.key(0), D, K, k=2), x, threshold=0.1)


# --------------------------------------------------------------------------------------------
# transformations, dtypes and errors


@pytest.mark.parametrize("name", ["mp", "relu", "topk", "batchtopk", "jumprelu"])
def test_vmap_and_jit_equal_batched_calls_float32_runs(name):
    x = sparse_data(6)
    model = perturbed(all_models()[name], scale=0.05).project()
    batched = np.asarray(model.encode(x))
    per_sample = jax.jit(jax.vmap(model.encode))(x)
    loop = np.stack([np.asarray(model.encode(xi)) for xi in x])
    np.testing.assert_allclose(np.asarray(per_sample), batched, atol=1e-12)
    np.testing.assert_allclose(loop, batched, atol=1e-12)
    assert np.count_nonzero(batched) > 0
    loss64 = float(eqx.filter_jit(lambda m, x: m.loss(x)[0])(model, x))
    model32 = jax.tree.map(lambda a: a.astype(jnp.float32) if eqx.is_inexact_array(a) else a, model)
    codes32 = model32.encode(x.astype(np.float32))
    loss32, aux32 = model32.loss(x.astype(np.float32))
    assert codes32.dtype == jnp.float32 and loss32.dtype == jnp.float32
    assert aux32["fvu"].dtype == jnp.float32
    np.testing.assert_allclose(float(loss32), loss64, rtol=1e-4)


def test_bad_inputs_raise_naming_the_argument():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="`k`"):
        TopKSAE.init(key, D, K, k=K + 1)
    with pytest.raises(ValueError, match="`k`"):
        BatchTopKSAE.init(key, D, K, k=K + 1)
    with pytest.raises(ValueError, match="`aux_k`"):
        TopKSAE.init(key, D, K, k=2, aux_k=K + 1)
    with pytest.raises(ValueError, match="`num_latents`"):
        MPSAE.init(key, D, 0)
    with pytest.raises(ValueError, match="`gradient`"):
        MPSAE.init(key, D, K, gradient="implicit")
    with pytest.raises(ValueError, match="`threshold`"):
        MPSAE.init(key, D, K, threshold=-1.0)
    with pytest.raises(ValueError, match="`dtype`"):
        ReLUSAE.init(key, D, K, dtype=jnp.int32)
    for model in all_models().values():
        with pytest.raises(ValueError, match="`x`"):
            model.encode(np.ones((3, D + 1)))
        with pytest.raises(ValueError, match="`x`"):
            model.loss(np.ones((3, D), np.int32))
        with pytest.raises(ValueError, match="`codes`"):
            model.decode(np.ones((3, K - 1)))
    with pytest.raises(ValueError, match="`b_enc`"):
        m = TopKSAE.init(key, D, K, k=2)
        TopKSAE(m.w_enc, m.b_enc[:-1], m.decoder, m.b_dec, k=2)
