"""Unrolled matching pursuit against NumPy re-statements, finite differences and memory."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxspec import pursuit


def problem(seed=0, d=8, n_atoms=12, batch=5):
    rng = np.random.default_rng(seed)
    dic = rng.standard_normal((d, n_atoms))
    dic /= np.linalg.norm(dic, axis=0)
    return dic, rng.standard_normal((batch, d))


def numpy_mp(dic, x, steps, selection, reselect, stop, thr):
    """Per-sample, per-step reference: codes, residual, steps applied, stopped."""
    codes = np.zeros(dic.shape[1])
    r = x.copy()
    applied, stopped = 0, False
    for _ in range(steps):
        c = dic.T @ r
        score = {"relu": np.maximum(c, 0), "abs": np.abs(c), "signed": c}[selection].copy()
        if not reselect:
            score[codes != 0] = -np.inf
        j = int(np.argmax(score))
        v = max(c[j], 0.0) if selection == "relu" else c[j]
        before = codes != 0
        codes[j] += v
        r = r - v * dic[:, j]
        applied += 1
        unchanged = np.array_equal(before, codes != 0)
        small = np.linalg.norm(r) < thr if thr is not None else False
        if (stop in ("support", "both") and unchanged) or (stop in ("residual", "both") and small):
            stopped = True
            break
    return codes, r, applied, stopped


@pytest.mark.parametrize(
    "selection,reselect,stop",
    list(
        itertools.product(
            ("relu", "abs", "signed"), (True, False), ("both", "support", "residual", "none")
        )
    ),
)
def test_equals_a_numpy_loop(selection, reselect, stop):
    dic, x = problem()
    thr = 0.6 if stop in ("residual", "both") else None
    steps = 10
    out = pursuit.unrolled_mp(
        dic, x, steps, selection=selection, reselect=reselect, stop=stop, threshold=thr
    )
    for i in range(x.shape[0]):
        codes, r, applied, stopped = numpy_mp(dic, x[i], steps, selection, reselect, stop, thr)
        np.testing.assert_allclose(np.asarray(out.codes[i]), codes, atol=1e-12)
        np.testing.assert_allclose(np.asarray(out.residual[i]), r, atol=1e-12)
        assert int(out.num_steps[i]) == applied
        assert bool(out.stopped[i]) == stopped


def test_equals_the_mp_sae_reference_loop():
    # The MP-SAE paper's encoder, re-stated on the whole batch with W = D^T (atoms as rows).
    dic, x = problem(seed=1, batch=16)
    w, thr = dic.T, 0.3
    z = np.zeros((16, w.shape[0]))
    r = x.copy()
    done = np.zeros(16, bool)
    prev = z != 0
    while not done.all():
        c = np.maximum(r @ w.T, 0)
        j = c.argmax(1)
        step = np.zeros_like(z)
        step[np.arange(16), j] = c[np.arange(16), j]
        z = np.where(done[:, None], z, z + step)
        r = np.where(done[:, None], r, r - step @ w)
        support = z != 0
        done |= (support == prev).all(1) | (np.linalg.norm(r, axis=1) < thr)
        prev = support
    out = pursuit.unrolled_mp(dic, x, 50, threshold=thr)
    np.testing.assert_allclose(np.asarray(out.codes), z, atol=1e-12)
    np.testing.assert_allclose(np.asarray(out.residual), r, atol=1e-12)
    assert np.all(np.asarray(out.stopped))


def test_residual_never_grows_and_drops_by_the_squared_values():
    dic, x = problem(seed=2, batch=6)
    prev = np.sum(x * x, axis=1)
    for t in range(1, 15):
        out = pursuit.unrolled_mp(dic, x, t, selection="abs", stop="none")
        energy = np.sum(np.asarray(out.residual) ** 2, axis=1)
        assert np.all(energy <= prev + 1e-12)
        prev = energy
    # |x|^2 - |r|^2 = sum of squared step values = the code energy when atoms never repeat
    out = pursuit.unrolled_mp(dic, x, 6, selection="abs", reselect=False, stop="none")
    np.testing.assert_allclose(
        np.sum(x * x, 1) - np.sum(np.asarray(out.residual) ** 2, 1),
        np.sum(np.asarray(out.codes) ** 2, 1),
        rtol=1e-10,
    )


def _loss(gradient, selection="relu"):
    def loss(dic, x):
        out = pursuit.unrolled_mp(dic, x, 6, selection=selection, stop="none", gradient=gradient)
        recon = out.codes @ dic.T
        return jnp.sum((recon - 0.5 * x) ** 2) + jnp.sum(out.codes**3)

    return loss


@pytest.mark.parametrize("selection", ["relu", "abs"])
def test_full_and_lean_gradients_agree_and_match_finite_differences(selection):
    dic, x = problem(seed=3, batch=3)
    dic, x = jnp.asarray(dic), jnp.asarray(x)
    g_full = jax.grad(_loss("full", selection), argnums=(0, 1))(dic, x)
    g_lean = jax.grad(_loss("lean", selection), argnums=(0, 1))(dic, x)
    for a, b in zip(g_full, g_lean):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-12)
    rng = np.random.default_rng(4)
    f = _loss("lean", selection)
    for _ in range(3):
        u, v = rng.standard_normal(dic.shape), rng.standard_normal(x.shape)
        h = 1e-6
        fd = (f(dic + h * u, x + h * v) - f(dic - h * u, x - h * v)) / (2 * h)
        an = jnp.sum(g_lean[0] * u) + jnp.sum(g_lean[1] * v)
        np.testing.assert_allclose(float(fd), float(an), rtol=1e-6)


def test_decoder_mode_blocks_gradients_through_the_codes():
    dic, x = problem(seed=5, batch=3)
    dic, x = jnp.asarray(dic), jnp.asarray(x)

    def codes_sum(dic, x):
        return jnp.sum(pursuit.unrolled_mp(dic, x, 5, stop="none", gradient="decoder").codes)

    gd, gx = jax.grad(codes_sum, argnums=(0, 1))(dic, x)
    assert not np.any(np.asarray(gd)) and not np.any(np.asarray(gx))

    def recon(dic):
        codes = pursuit.unrolled_mp(dic, x, 5, stop="none", gradient="decoder").codes
        return jnp.sum((codes @ dic.T - x) ** 2)

    fixed = pursuit.unrolled_mp(dic, x, 5, stop="none").codes
    expected = jax.grad(lambda d: jnp.sum((fixed @ d.T - x) ** 2))(dic)
    np.testing.assert_allclose(np.asarray(jax.grad(recon)(dic)), np.asarray(expected), atol=1e-12)


def test_lean_mode_keeps_far_less_memory_for_backward():
    rng = np.random.default_rng(6)
    dic = rng.standard_normal((16, 1024)).astype(np.float32)
    dic /= np.linalg.norm(dic, axis=0)
    x = rng.standard_normal((256, 16)).astype(np.float32)

    def temp_bytes(gradient):
        def loss(dic):
            out = pursuit.unrolled_mp(dic, x, 32, threshold=1e-3, gradient=gradient)
            return jnp.sum(out.residual**2)

        analysis = jax.jit(jax.grad(loss)).lower(dic).compile().memory_analysis()
        if analysis is None:
            pytest.skip("memory_analysis is unavailable on this backend")
        return analysis.temp_size_in_bytes

    full, lean = temp_bytes("full"), temp_bytes("lean")
    # full keeps a (256, 1024) float32 activation per step: 32 MiB over 32 steps
    assert lean < full / 4, (full, lean)


def test_jit_vmap_batch_axes_float32_and_per_sample_threshold():
    dic, x = problem(seed=7, batch=6)
    thr = np.linspace(0.2, 1.2, 6)
    out = pursuit.unrolled_mp(dic, x, 8, threshold=thr)
    loop = [pursuit.unrolled_mp(dic, x[i], 8, threshold=thr[i]) for i in range(6)]
    np.testing.assert_allclose(np.asarray(out.codes), np.stack([o.codes for o in loop]), atol=1e-12)
    vm = jax.vmap(lambda v, t: pursuit.unrolled_mp(dic, v, 8, threshold=t).codes)(x, thr)
    np.testing.assert_allclose(np.asarray(vm), np.asarray(out.codes), atol=1e-12)
    jitted = jax.jit(lambda v: pursuit.unrolled_mp(dic, v, 8, threshold=0.5).codes)
    batched = jitted(x.reshape(2, 3, -1))
    assert batched.shape == (2, 3, dic.shape[1])
    np.testing.assert_allclose(
        np.asarray(batched).reshape(6, -1),
        np.asarray(pursuit.unrolled_mp(dic, x, 8, threshold=0.5).codes),
        atol=1e-12,
    )
    f32 = pursuit.unrolled_mp(dic.astype(np.float32), x.astype(np.float32), 8, threshold=0.5)
    assert f32.codes.dtype == jnp.float32
    np.testing.assert_allclose(
        np.asarray(f32.codes), np.asarray(pursuit.unrolled_mp(dic, x, 8, threshold=0.5).codes),
        atol=1e-4,
    )  # fmt: skip


def test_bad_inputs_raise_value_errors():
    dic, x = problem(batch=2)
    with pytest.raises(ValueError, match="`dictionary`"):
        pursuit.unrolled_mp(dic[None], x, 3, threshold=0.1)
    with pytest.raises(ValueError, match="`x`"):
        pursuit.unrolled_mp(dic, x[:, :-1], 3, threshold=0.1)
    with pytest.raises(ValueError, match="`x`"):
        pursuit.unrolled_mp(dic, np.ones((2, 8), int), 3, threshold=0.1)
    with pytest.raises(ValueError, match="`threshold` is required"):
        pursuit.unrolled_mp(dic, x, 3)
    with pytest.raises(ValueError, match="`threshold`"):
        pursuit.unrolled_mp(dic, x, 3, threshold=0.0)
    with pytest.raises(ValueError, match="`max_steps`"):
        pursuit.unrolled_mp(dic, x, 0, stop="none")
    for arg, bad in [("selection", "max"), ("stop", "never"), ("gradient", "none")]:
        with pytest.raises(ValueError, match=f"`{arg}`"):
            pursuit.unrolled_mp(dic, x, 3, threshold=0.1, **{arg: bad})
