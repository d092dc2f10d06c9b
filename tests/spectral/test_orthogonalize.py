"""orthogonalize against the SVD in float64, plus dtype/shape/batch/gradient behaviour."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxspec import spectral
from tests.spectral.helpers import matrix_with_singular_values, singular_values


def spread_matrix(rng, m, n, lower=1e-3):
    """A matrix whose Frobenius-normalized singular values span exactly [lower, ~0.4]."""
    rest = np.geomspace(10 * lower, 1.0, min(m, n) - 1)
    smallest = lower * np.linalg.norm(rest) / np.sqrt(1 - lower**2)
    sigma = np.concatenate([[smallest], rest])  # smallest / ||sigma|| == lower exactly
    x = matrix_with_singular_values(rng, m, n, sigma)
    return x / np.linalg.norm(x)


@pytest.mark.parametrize("schedule", spectral.SCHEDULES)
@pytest.mark.parametrize("steps", [3, 5, 6, 8])
@pytest.mark.parametrize("shape", [(48, 80), (80, 48)])
def test_singular_values_follow_scalar_map_and_stated_interval(schedule, steps, shape):
    rng = np.random.default_rng(steps)
    x = spread_matrix(rng, *shape)
    s_in = np.sort(singular_values(x))  # ||x||_F = 1, so these are the normalized values
    assert s_in.min() == pytest.approx(1e-3, rel=1e-9)
    out = spectral.orthogonalize(jnp.asarray(x), schedule, steps)
    assert out.shape == x.shape and out.dtype == jnp.float64
    s_out = np.sort(singular_values(out))
    expected = np.sort(
        spectral.apply_schedule_scalar(spectral.schedule_coefficients(schedule, steps), s_in)
    )
    np.testing.assert_allclose(s_out, expected, atol=1e-11)
    lo, hi = spectral.singular_value_bounds(schedule, steps, lower=1e-3)
    assert s_out.min() >= lo - 1e-9 and s_out.max() <= hi + 1e-9


def test_singular_vectors_are_kept():
    rng = np.random.default_rng(1)
    x = spread_matrix(rng, 32, 40, lower=0.05)
    u, _, vh = np.linalg.svd(x, full_matrices=False)
    out = np.asarray(spectral.orthogonalize(jnp.asarray(x), steps=8))
    np.testing.assert_allclose(out, u @ vh, atol=1e-9)


def test_custom_schedule_array_and_schatten4():
    rng = np.random.default_rng(2)
    x = jnp.asarray(spread_matrix(rng, 30, 30, lower=0.01))
    rows = spectral.polar_express_schedule(1e-3, 6)
    np.testing.assert_allclose(
        spectral.orthogonalize(x, rows), spectral.orthogonalize(x, jnp.asarray(rows)), rtol=0
    )
    # Schatten-4 scaling divides by a smaller number, so the result is closer to orthogonal.
    err_f = np.abs(1 - singular_values(spectral.orthogonalize(x, "jordan", 3))).max()
    err_s = np.abs(
        1 - singular_values(spectral.orthogonalize(x, "jordan", 3, normalization="schatten4"))
    ).max()
    assert err_s < err_f


def test_batch_axes_match_loop():
    x = jax.random.normal(jax.random.key(0), (2, 3, 16, 24), dtype=jnp.float64)
    out = spectral.orthogonalize(x, steps=8)
    for i in range(2):
        for j in range(3):
            np.testing.assert_allclose(
                out[i, j], spectral.orthogonalize(x[i, j], steps=8), atol=1e-13
            )


def test_zero_matrix_maps_to_zero_with_finite_gradient():
    z = jnp.zeros((4, 6))
    assert jnp.all(spectral.orthogonalize(z) == 0)
    g = jax.grad(lambda a: jnp.sum(spectral.orthogonalize(a)))(z)
    assert jnp.all(jnp.isfinite(g))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_low_precision(dtype):
    x = jax.random.normal(jax.random.key(3), (64, 96), dtype=jnp.float32).astype(dtype)
    out = spectral.orthogonalize(x)
    assert out.dtype == dtype
    s = singular_values(np.asarray(out.astype(jnp.float32)))
    # Random Gaussian 64x96: normalized sigma_min is well above 1e-3, so the 5-step interval
    # [0.85, 1.13] applies up to round-off (bf16 has 8 bits of mantissa).
    slack = 0.02 if dtype == jnp.float32 else 0.12
    assert s.min() >= 0.8523 - slack and s.max() <= 1.1236 + slack


def test_complex_input_gives_unitary_factor():
    rng = np.random.default_rng(4)
    sigma = np.geomspace(0.05, 1.0, 12)
    x = matrix_with_singular_values(rng, 12, 20, sigma, complex_=True)
    out = np.asarray(spectral.orthogonalize(jnp.asarray(x), steps=8))
    u, _, vh = np.linalg.svd(x, full_matrices=False)
    np.testing.assert_allclose(out, u @ vh, atol=1e-8)


def test_gradient_matches_finite_differences():
    x = jax.random.normal(jax.random.key(5), (5, 7), dtype=jnp.float64)
    check_grads(lambda a: spectral.orthogonalize(a, steps=4), (x,), order=1, modes=("rev", "fwd"))


def test_jit_and_vmap():
    x = jax.random.normal(jax.random.key(6), (4, 8, 8))
    f = jax.jit(lambda a: spectral.orthogonalize(a, "you"))
    np.testing.assert_allclose(
        jax.vmap(f)(x), jnp.stack([spectral.orthogonalize(a, "you") for a in x]), atol=1e-6
    )


@pytest.mark.parametrize(
    ("x", "kwargs", "match"),
    [
        (jnp.ones(5), {}, "`x` must have at least 2"),
        (jnp.ones((3, 3), jnp.int32), {}, "`x` must be"),
        (jnp.ones((3, 3)), {"schedule": "fast"}, "schedule"),
        (jnp.ones((3, 3)), {"steps": 0}, "steps"),
        (jnp.ones((0, 3)), {}, "empty"),
        (jnp.ones((3, 3)), {"normalization": "spectral"}, "normalization"),
    ],
)
def test_bad_inputs(x, kwargs, match):
    with pytest.raises(ValueError, match=match):
        spectral.orthogonalize(x, **kwargs)
