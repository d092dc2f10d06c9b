"""spectral_norm against numpy's 2-norm."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxspec import spectral
from tests.spectral.helpers import matrix_with_singular_values


@pytest.mark.parametrize("shape", [(30, 50), (50, 30)])
def test_matches_numpy_with_gap(shape):
    rng = np.random.default_rng(0)
    sigma = np.concatenate([[3.0], np.linspace(1.5, 0.1, min(shape) - 1)])
    x = matrix_with_singular_values(rng, *shape, sigma)
    est = spectral.spectral_norm(jnp.asarray(x), iters=30)
    assert float(est) == pytest.approx(np.linalg.norm(x, 2), rel=1e-10)
    assert float(est) <= np.linalg.norm(x, 2) * (1 + 1e-12)  # Rayleigh quotient: lower bound


def test_batched_and_warm_start():
    x = jax.random.normal(jax.random.key(0), (4, 20, 20), dtype=jnp.float64)
    ref = np.linalg.norm(np.asarray(x), 2, axis=(-2, -1))
    sigma, u = spectral.spectral_norm(x, iters=200, return_vector=True)
    np.testing.assert_allclose(sigma, ref, rtol=1e-6)
    # One warm-started iteration from the converged vectors keeps the answer.
    warm = spectral.spectral_norm(x, iters=1, v0=u)
    np.testing.assert_allclose(warm, ref, rtol=1e-6)
    assert u.shape == (4, 20)


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(1)
    x = jnp.asarray(matrix_with_singular_values(rng, 6, 8, np.array([4.0, 2, 1, 0.5, 0.2, 0.1])))
    check_grads(lambda a: spectral.spectral_norm(a, iters=5), (x,), order=1, modes=("rev",))
    # And the converged gradient is u1 v1^T.
    g = jax.grad(lambda a: spectral.spectral_norm(a, iters=60))(x)
    u, _, vh = np.linalg.svd(np.asarray(x))
    np.testing.assert_allclose(np.abs(g), np.abs(np.outer(u[:, 0], vh[0])), atol=1e-8)


def test_zero_matrix_and_errors():
    assert float(spectral.spectral_norm(jnp.zeros((3, 4)))) == 0.0
    with pytest.raises(ValueError, match="v0"):
        spectral.spectral_norm(jnp.ones((3, 4)), v0=jnp.ones(4))
    with pytest.raises(ValueError, match="iters"):
        spectral.spectral_norm(jnp.ones((3, 4)), iters=0)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_half_precision_is_accumulated_in_float32(dtype):
    """float16 sums of squares overflowed: a 64 x 128 Gaussian matrix gave 0.0 (true 19.4)."""
    x = np.random.default_rng(0).standard_normal((64, 128))
    sigma, u = spectral.spectral_norm(jnp.asarray(x, dtype), iters=50, return_vector=True)
    assert sigma.dtype == dtype and u.dtype == dtype
    ref = np.linalg.svd(np.asarray(jnp.asarray(x, dtype), np.float64), compute_uv=False)[0]
    np.testing.assert_allclose(float(sigma), ref, rtol=2e-2)
