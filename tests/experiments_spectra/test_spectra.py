"""Fast checks of the `spectra` experiment: model, loss, optimizers, config (tiny sizes)."""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tests._experiments import EXPERIMENTS, load_experiment

pytestmark = pytest.mark.slow  # an experiment end to end: CI's slow step

exp = load_experiment("spectra")
model_lib = exp.model_lib

TINY = exp.ModelConfig(d_model=32, n_layers=1, n_heads=4, seq_len=16, mlp_ratio=2)


def _tiny_config(name: str, lr: float, steps: int = 8) -> exp.Config:
    return exp.Config(
        data=exp.DataConfig(budget_bytes=200_000, val_bytes=20_000),
        model=TINY,
        train=exp.TrainConfig(
            steps=steps, batch_size=8, warmup_steps=2, eval_every=4, eval_batches=1
        ),
        optimizer=exp.OptimizerConfig(name=name, lr=lr),
    )


def test_forward_is_causal():
    model = exp.make_model(TINY, jax.random.key(0))
    tokens = jax.random.randint(jax.random.key(1), (TINY.seq_len,), 0, 256)
    changed = tokens.at[10].set((tokens[10] + 1) % 256)
    a, b = jax.jit(jax.vmap(model))(jnp.stack([tokens, changed]))
    assert a.shape == (TINY.seq_len, 256)
    np.testing.assert_array_equal(np.asarray(a[:10]), np.asarray(b[:10]))
    assert not np.allclose(np.asarray(a[10:]), np.asarray(b[10:]))


def test_loss_at_init_is_log_vocab():
    model = exp.make_model(TINY, jax.random.key(0))
    windows = jax.random.randint(jax.random.key(2), (4, TINY.seq_len + 1), 0, 256)
    loss = float(jax.jit(model_lib.next_byte_loss)(model, windows))
    assert abs(loss - math.log(256)) < 0.05


def test_params_are_float32_and_matrices_are_named():
    model = exp.make_model(TINY, jax.random.key(0))
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(model))
    matrices = model.named_matrices()
    assert len(matrices) == 3 + 6 * TINY.n_layers
    n_matrix_leaves = sum(leaf.ndim >= 2 for leaf in jax.tree.leaves(model))
    assert n_matrix_leaves == len(matrices)


def test_corpus_is_deterministic_and_split():
    train, val, digest = model_lib.load_corpus(100_000, 10_000)
    assert train.dtype == np.uint8 and train.size == 90_000 and val.size == 10_000
    model_lib.load_corpus.cache_clear()
    assert model_lib.load_corpus(100_000, 10_000)[2] == digest


LRS = {"adamw": 1e-2, "spectra_adamw": 1e-2, "signum": 3e-3, "spectra_signum": 3e-2}


@pytest.mark.parametrize("name", exp.OPTIMIZERS)
def test_few_steps_reduce_loss(name):
    train, val, _ = model_lib.load_corpus(200_000, 20_000)
    train, val = jnp.asarray(train), jnp.asarray(val)
    params = exp.make_model(TINY, jax.random.key(0))
    sched = exp.lr_schedule(LRS[name], 20, 2, 0.1)
    opt = exp.make_optimizer(exp.OptimizerConfig(name=name, lr=LRS[name]), sched, 2)
    state = opt.init(params)
    held_out = exp.sample_windows(val, jax.random.key(1), 16, TINY.seq_len)

    @jax.jit
    def step(params, state, key):
        batch = exp.sample_windows(train, key, 8, TINY.seq_len)
        grads = jax.grad(model_lib.next_byte_loss)(params, batch)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    before = float(model_lib.next_byte_loss(params, held_out))
    for k in range(12):
        params, state = step(params, state, jax.random.key(100 + k))
    after = float(model_lib.next_byte_loss(params, held_out))
    assert np.isfinite(after) and after < before - 0.3


def test_run_end_to_end():
    cfg = _tiny_config("spectra_signum", 3e-2)
    out = jax.jit(functools.partial(exp.run, cfg))(jax.random.key(0))
    val = np.asarray(out["val_loss"])
    assert val.shape == (3,) and np.all(np.isfinite(val))
    assert val[-1] < val[0] - 0.3
    np.testing.assert_array_equal(np.asarray(out["step"]), [0, 4, 8])
    ratio = np.asarray(out["clip"]["clip_ratio"])
    assert np.all((ratio > 0) & (ratio <= 1 + 1e-4))
    names = set(exp.make_model(TINY, jax.random.key(0)).named_matrices())
    assert set(out["spectral_norm"]) == names == set(out["frobenius_norm"])
    for name in names:
        assert 0 < out["spectral_norm"][name] <= out["frobenius_norm"][name] * (1 + 1e-5)


def test_clip_diagnostics_recover_the_clip():
    """The ratio read from the applied update equals ||H_c(U)||_F / ||U||_F from an SVD."""

    @jax.jit
    def measure(c):
        ocfg = exp.OptimizerConfig(name="spectra_adamw", c=c)
        params = exp.make_model(TINY, jax.random.key(0))
        grads = jax.tree.map(lambda x: jnp.cos(3.0 * x) * 1e-2, params)
        sched = exp.lr_schedule(1e-2, 10, 0, 0.1)
        opt = exp.make_optimizer(ocfg, sched, 0)
        updates, state = opt.update(grads, opt.init(params), params)
        sig, ratio = exp.clip_diagnostics(ocfg, updates, params, state, sched(0), 30)
        return sig, ratio, state.base_state[1].direction.named_matrices()

    names = list(exp.make_model(TINY, jax.random.key(0)).named_matrices())  # sig's order
    for c in (1e6, 0.05):
        sig, ratio, raw = jax.device_get(measure(jnp.float32(c)))  # raw: a dict, keys sorted
        svals = [np.linalg.svd(np.asarray(raw[n], np.float64), compute_uv=False) for n in names]
        clipped = [s / np.sqrt(1 + (s / c) ** 2) for s in svals]  # SPECTRA's h_c(sigma)
        expected = [np.linalg.norm(h) / np.linalg.norm(s) for h, s in zip(clipped, svals)]
        np.testing.assert_allclose(ratio, expected, rtol=2e-3)
        np.testing.assert_allclose(sig, [s[0] / c for s in svals], rtol=2e-2)
        if c > 1e3:
            np.testing.assert_allclose(ratio, 1.0, atol=1e-3)
        else:
            assert np.all(ratio < 0.9)


def test_spectral_norms_match_svd():
    rng = np.random.default_rng(0)
    shapes = {"b": (8, 5), "a": (5, 8), "c": (6, 6), "d": (5, 8)}
    mats = {name: rng.normal(size=shape) for name, shape in shapes.items()}
    out = jax.jit(exp.spectral_norms, static_argnums=1)(mats, 100)
    for name, m in mats.items():
        np.testing.assert_allclose(float(out[name]), np.linalg.norm(m, 2), rtol=1e-4)


def test_spectra_with_huge_c_matches_adamw_on_unstretched_matrices():
    """No clipping and shape factor 1: SPECTRA-AdamW's update equals AdamW's."""
    params = {"w": jax.random.normal(jax.random.key(0), (6, 8)), "b": jnp.ones(8)}
    grads = jax.tree.map(lambda x: 0.1 * jnp.cos(x), params)
    sched = exp.lr_schedule(1e-2, 10, 0, 0.1)
    ocfg = exp.OptimizerConfig(name="spectra_adamw", c=1e6)
    spectra_opt = exp.make_optimizer(ocfg, sched, 0)
    adamw = exp.make_optimizer(dataclasses.replace(ocfg, name="adamw"), sched, 0)
    u1, _ = jax.jit(spectra_opt.update)(grads, spectra_opt.init(params), params)
    u2, _ = jax.jit(adamw.update)(grads, adamw.init(params), params)
    for a, b in zip(jax.tree.leaves(u1), jax.tree.leaves(u2)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-7)


def test_schedule_warmup_then_cosine():
    sched = exp.lr_schedule(1.0, 100, 10, 0.1)
    values = np.asarray([float(sched(jnp.asarray(k))) for k in range(100)])
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert values[10] == pytest.approx(1.0) and values[-1] == pytest.approx(0.1, abs=1e-3)
    assert np.all(values > 0) and np.all(np.diff(values[10:]) <= 1e-7)


def test_config_loads():
    experiments = pytest.importorskip("jaxspec.experiments")
    for quick in (False, True):
        experiment, resolved = experiments.load_config(
            "spectra", quick=quick, experiments_dir=EXPERIMENTS
        )
        assert experiment.name == "spectra"
        points = resolved.points()
        names = {p["optimizer.name"] for p in points}
        assert names == set(exp.OPTIMIZERS)
        assert len(points) == 4 * (2 if quick else 3)
        assert resolved.base.train.steps % resolved.base.train.eval_every == 0
        if quick:
            assert resolved.base.model.d_model == 64
