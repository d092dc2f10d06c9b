"""The SVD every jaxspec module uses: LAPACK's, except that a non-finite matrix gives NaN."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxspec._svd import svd


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64, jnp.complex128])
def test_finite_matrices_match_numpy_and_nonfinite_ones_give_nan(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 4)) + (
        1j * rng.standard_normal((3, 5, 4)) if dtype == jnp.complex128 else 0
    )
    x = jnp.asarray(x, dtype).at[1, 2, 3].set(jnp.inf)  # LAPACK's gesdd can hang on this one
    u, s, vh = jax.jit(svd)(x)
    ref = np.linalg.svd(np.asarray(x)[[0, 2]], full_matrices=False)
    tol = 1e-5 if dtype == jnp.float32 else 1e-10
    np.testing.assert_allclose(np.asarray(s)[[0, 2]], ref.S, rtol=tol)
    rebuilt = np.asarray(u * s[..., None, :].astype(u.dtype) @ vh)[[0, 2]]
    np.testing.assert_allclose(rebuilt, np.asarray(x)[[0, 2]], atol=10 * tol)
    assert np.all(np.isnan(np.asarray(s)[1])) and np.all(np.isnan(np.asarray(u)[1]))


def test_gradients_pass_through_finite_matrices():
    x = jnp.asarray(np.random.default_rng(1).standard_normal((4, 3)))
    got = jax.grad(lambda a: jnp.sum(svd(a)[1]))(x)
    want = jax.grad(lambda a: jnp.sum(jnp.linalg.svd(a, compute_uv=False)))(x)
    np.testing.assert_allclose(got, want, rtol=1e-10)
