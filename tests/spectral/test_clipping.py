"""soft_clip / hard_clip against the SVD formulas (float64), plus contracts and errors."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxspec import spectral
from tests.spectral.helpers import matrix_with_singular_values, singular_values


def soft_ref(sigma, c):
    return sigma / np.sqrt(1 + (sigma / c) ** 2)


def spectrum(k, top=5.0, lower=1e-3):
    return np.geomspace(lower * top, top, k)


@pytest.mark.parametrize("ratio", [0.1, 1.0, 10.0, 100.0, 250.0])
@pytest.mark.parametrize("shape", [(40, 64), (64, 40)])
def test_soft_clip_matches_svd_formula(ratio, shape):
    """Stated tolerance: relative error <= 1e-6 per singular value for sigma_max / c <= 250."""
    rng = np.random.default_rng(0)
    sigma = spectrum(min(shape))
    x = matrix_with_singular_values(rng, *shape, sigma)
    c = sigma.max() / ratio
    out = np.asarray(spectral.soft_clip(jnp.asarray(x), c))
    u, s, vh = np.linalg.svd(x, full_matrices=False)
    ref = (u * soft_ref(s, c)) @ vh
    got = np.sort(singular_values(out))
    want = np.sort(soft_ref(sigma, c))
    assert np.max(np.abs(got - want) / want) <= 1e-6
    np.testing.assert_allclose(out, ref, atol=1e-6 * soft_ref(sigma.max(), c))


def test_soft_clip_never_increases_singular_values_and_saturates_below_c():
    rng = np.random.default_rng(1)
    sigma = spectrum(30, top=50.0, lower=1e-2)
    x = matrix_with_singular_values(rng, 30, 30, sigma)
    out = singular_values(spectral.soft_clip(jnp.asarray(x), 2.0))
    assert np.all(np.sort(out) <= np.sort(sigma) * (1 + 1e-9)) and out.max() <= 2.0


def test_soft_clip_coupled_method_matches_when_well_conditioned():
    rng = np.random.default_rng(2)
    sigma = spectrum(24, top=3.0, lower=1e-2)
    x = jnp.asarray(matrix_with_singular_values(rng, 24, 32, sigma))
    got = np.sort(singular_values(spectral.soft_clip(x, 1.0, 20, method="coupled")))
    np.testing.assert_allclose(got, np.sort(soft_ref(sigma, 1.0)), rtol=1e-8)


@pytest.mark.parametrize("c", [0.05, 0.5, 2.0, 10.0])
@pytest.mark.parametrize("shape", [(40, 64), (64, 40)])
def test_hard_clip_matches_svd_formula(c, shape):
    """Stated tolerance: absolute error <= 1e-4 max(sigma_max, c), exact away from the kink."""
    rng = np.random.default_rng(3)
    sigma = spectrum(min(shape))
    x = matrix_with_singular_values(rng, *shape, sigma)
    out = np.asarray(spectral.hard_clip(jnp.asarray(x), c))
    u, s, vh = np.linalg.svd(x, full_matrices=False)
    ref = (u * np.minimum(s, c)) @ vh
    assert np.abs(out - ref).max() <= 1e-4 * max(sigma.max(), c)
    got = np.sort(singular_values(out))
    want = np.sort(np.minimum(sigma, c))
    away = np.abs(np.sort(sigma) - c) > 0.05 * c
    np.testing.assert_allclose(got[away], want[away], rtol=1e-6, atol=1e-9)


@pytest.mark.slow
def test_batched_thresholds_per_matrix():
    x = jax.random.normal(jax.random.key(0), (3, 12, 16), dtype=jnp.float64)
    c = jnp.array([0.5, 1.0, 2.0])
    for fn in (spectral.soft_clip, spectral.hard_clip):
        out = fn(x, c)
        for i in range(3):
            np.testing.assert_allclose(out[i], fn(x[i], c[i]), atol=1e-12)


def test_vmap_over_threshold_equals_loop():
    x = jax.random.normal(jax.random.key(1), (10, 10), dtype=jnp.float64)
    cs = jnp.array([0.3, 1.0, 3.0])
    out = jax.jit(jax.vmap(lambda c: spectral.soft_clip(x, c)))(cs)
    for i, c in enumerate(cs):
        np.testing.assert_allclose(out[i], spectral.soft_clip(x, c), atol=1e-12)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_low_precision_soft_clip(dtype):
    rng = np.random.default_rng(4)
    sigma = spectrum(48, top=10.0, lower=1e-2)
    x = matrix_with_singular_values(rng, 48, 64, sigma)
    out = spectral.soft_clip(jnp.asarray(x, dtype), 1.0)
    assert out.dtype == dtype
    got = np.sort(singular_values(np.asarray(out.astype(jnp.float32))))
    want = np.sort(soft_ref(sigma, 1.0))
    tol = 1e-4 if dtype == jnp.float32 else 3e-2
    assert np.max(np.abs(got - want) / want) <= tol


@pytest.mark.optimized
@pytest.mark.parametrize("ratio", [0.1, 1.0, 30.0, 250.0])
def test_float32_soft_clip_stays_accurate_for_strong_clipping(ratio):
    """The augmented-matrix iteration does not square the condition number (unlike "gram")."""
    rng = np.random.default_rng(6)
    sigma = spectrum(64, top=5.0, lower=1e-3)
    x = matrix_with_singular_values(rng, 64, 96, sigma)
    c = sigma.max() / ratio
    got = np.sort(singular_values(spectral.soft_clip(jnp.asarray(x, jnp.float32), c)))
    want = np.sort(soft_ref(sigma, c))
    # Round-off level: 1e-6 of the largest output, 1e-4 relative on the top 2 decades.
    assert np.max(np.abs(got - want)) <= 1e-6 * want.max()
    big = want >= 1e-2 * want.max()
    assert np.max(np.abs(got - want)[big] / want[big]) <= 1e-4


def test_gram_method_matches_in_float64():
    rng = np.random.default_rng(7)
    sigma = spectrum(32, top=5.0)
    x = jnp.asarray(matrix_with_singular_values(rng, 32, 48, sigma))
    np.testing.assert_allclose(
        spectral.soft_clip(x, 0.1, method="gram"), spectral.soft_clip(x, 0.1), atol=1e-7
    )


@pytest.mark.slow  # over the unit budget; CI runs it in the slow step
def test_gradients_match_finite_differences():
    rng = np.random.default_rng(5)
    x = jnp.asarray(matrix_with_singular_values(rng, 5, 7, np.array([3.0, 1.5, 0.7, 0.3, 0.1])))
    check_grads(lambda a: spectral.soft_clip(a, 0.8), (x,), order=1, modes=("rev", "fwd"))
    # c = 1.0 sits away from every singular value: hard_clip is smooth there.
    check_grads(lambda a: spectral.hard_clip(a, 1.0), (x,), order=1, modes=("rev",))
    check_grads(lambda c: spectral.soft_clip(x, c), (jnp.float64(0.8),), order=1, modes=("rev",))


def test_zero_matrix():
    z = jnp.zeros((4, 5))
    assert jnp.all(spectral.soft_clip(z, 1.0) == 0) and jnp.all(spectral.hard_clip(z, 1.0) == 0)


@pytest.mark.parametrize("method", ["polar", "gram", "coupled"])
def test_soft_clip_gradient_at_a_zero_matrix_is_finite(method):
    """soft_clip is the identity near 0 (every singular value below c), so the gradient of
    its sum there is all ones; sqrt of a zero Frobenius sum made it NaN."""
    grad = jax.grad(lambda x: spectral.soft_clip(x, 1.0, method=method).sum())(jnp.zeros((4, 6)))
    np.testing.assert_allclose(grad, 1.0, atol=1e-6)


@pytest.mark.parametrize("fn", [spectral.soft_clip, spectral.hard_clip])
def test_bad_inputs(fn):
    with pytest.raises(ValueError, match="`c`"):
        fn(jnp.ones((3, 3)), 0.0)
    with pytest.raises(ValueError, match="`c`"):
        fn(jnp.ones((3, 3)), -1.0)
    with pytest.raises(ValueError, match="`x`"):
        fn(jnp.ones(3), 1.0)
    with pytest.raises(ValueError, match="`x`"):
        fn(jnp.ones((3, 3), jnp.int32), 1.0)
    with pytest.raises(ValueError, match="`c`"):
        fn(jnp.ones((2, 3, 3)), jnp.ones(5))
    with pytest.raises(ValueError, match="`c`"):  # broadcasts with, not to, the batch shape
        fn(jnp.ones((1, 3, 3)), jnp.ones(4))


def test_traced_nonpositive_threshold_raises_at_run_time():
    f = jax.jit(lambda c: spectral.soft_clip(jnp.eye(3), c))
    # Under jax.jit XLA re-raises the equinox error as a runtime error carrying the message.
    with pytest.raises((eqx.EquinoxRuntimeError, jax.errors.JaxRuntimeError), match="must be > 0"):
        jax.block_until_ready(f(jnp.float32(-1.0)))
    with pytest.raises(eqx.EquinoxRuntimeError, match="must be > 0"):
        eqx.filter_jit(lambda c: spectral.soft_clip(jnp.eye(3), c))(jnp.float32(-1.0))
