"""Property-based tests of :mod:`jaxspec.spectral` against NumPy's SVD.

* ``soft_clip`` never increases a singular value, stays below ``c`` and matches the SVD
  formula ``sigma / sqrt(1 + sigma^2 / c^2)`` to its documented accuracy;
* ``hard_clip`` caps the singular values at ``c`` (``min(sigma, c)``) to its documented
  accuracy;
* ``orthogonalize`` puts the singular values in its documented band (and on the composed
  scalar polynomial); ``polar`` returns ``U V^T`` and reports its own error honestly;
* ``spectral_norm`` (power iteration) is a lower bound of ``sigma_max`` that never decreases
  from one iteration to the next.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxspec import spectral
from tests.spectral.test_schedules import DOC_TABLE

SEEDS = st.integers(0, 2**31 - 1)
SHAPES = st.sampled_from([(3, 5), (6, 4)])  # one wide, one tall: few compiles
SCALES = st.floats(-3.0, 3.0)  # overall scale 10**e of the matrix
SETTINGS = settings(max_examples=20, deadline=None, database=None, derandomize=True)

# The table of ``orthogonalize``'s docstring: output singular values for normalized inputs
# in [1e-3, 1] (exact arithmetic; "round-off adds about 10 eps in float64").
BANDS = DOC_TABLE
TABLE_ROUNDING = 5e-5  # the table is printed to 4 decimals


def matrix_with_singular_values(rng, m, n, sigma):
    """``U diag(sigma) V^T`` with Haar-random orthonormal ``U`` (m x k), ``V`` (n x k)."""
    k = min(m, n)

    def haar(size):
        q, r = np.linalg.qr(rng.standard_normal((size, size)))
        return q * np.sign(np.diag(r))

    return (haar(m)[:, :k] * sigma) @ haar(n)[:, :k].T


def spread_spectrum(rng, k, decades):
    """``k`` log-uniform singular values in ``[10^-decades, 1]``, the largest exactly 1."""
    sigma = 10.0 ** rng.uniform(-decades, 0.0, k)
    sigma[0] = 1.0
    return np.sort(sigma)[::-1]


def svals(x) -> np.ndarray:
    """Singular values (float64, descending)."""
    return np.linalg.svd(np.asarray(x, dtype=np.float64), compute_uv=False)


soft_clip = jax.jit(spectral.soft_clip, static_argnames=("steps", "method"))
hard_clip = jax.jit(spectral.hard_clip, static_argnames=("steps",))
orthogonalize = jax.jit(spectral.orthogonalize, static_argnames=("schedule", "steps"))
polar = jax.jit(spectral.polar, static_argnames=("max_steps", "method"))
spectral_norm = jax.jit(spectral.spectral_norm, static_argnames=("iters", "return_vector"))


@functools.partial(jax.jit, static_argnames=("iters",))
def power_step(x, v0, *, iters):
    return spectral.spectral_norm(x, iters, v0=v0, return_vector=True)


# --------------------------------------------------------------------------- clipping


@SETTINGS
@given(
    shape=SHAPES,
    seed=SEEDS,
    log_scale=SCALES,
    log_ratio=st.floats(-1.0, np.log10(250.0)),
    method=st.sampled_from(["polar", "gram"]),
)
def test_soft_clip_never_increases_a_singular_value(shape, seed, log_scale, log_ratio, method):
    """Each output singular value is ``sigma / sqrt(1 + sigma^2/c^2) <= min(sigma, c)``;
    documented accuracy: relative error <= 1e-6 in float64 for ``sigma_max / c <= 250``
    (float64 ``"gram"`` is "as accurate")."""
    m, n = shape
    rng = np.random.default_rng(seed)
    sigma = 10.0**log_scale * spread_spectrum(rng, min(m, n), decades=3)
    x = matrix_with_singular_values(rng, m, n, sigma)
    c = sigma.max() / 10.0**log_ratio
    out = svals(soft_clip(jnp.asarray(x), c, method=method))
    sig = svals(x)
    assert np.all(out <= sig * (1 + 1e-9)), (out, sig)
    assert np.all(out <= c * (1 + 1e-9)), (out, c)
    want = sig / np.sqrt(1 + (sig / c) ** 2)
    assert np.max(np.abs(out - want) / want) <= 1e-6, np.abs(out - want) / want


@SETTINGS
@given(
    shape=SHAPES,
    seed=SEEDS,
    log_scale=SCALES,
    log_c=st.floats(-1.3, 1.0),  # c in [0.05, 10] sigma_max
)
def test_hard_clip_caps_singular_values_at_c(shape, seed, log_scale, log_c):
    """Documented: error below ``1e-4 max(sigma_max, c)`` (float64, well-spread spectra), so
    every output singular value is ``<= c`` up to that, and ``min(sigma, c)`` up to it."""
    m, n = shape
    rng = np.random.default_rng(seed)
    sigma = 10.0**log_scale * spread_spectrum(rng, min(m, n), decades=2)
    x = matrix_with_singular_values(rng, m, n, sigma)
    c = sigma.max() * 10.0**log_c
    out = svals(hard_clip(jnp.asarray(x), c))
    sig = svals(x)
    tol = 1e-4 * max(sig.max(), c)
    assert np.all(out <= c + tol), (out, c)
    assert np.all(out <= sig + tol), (out, sig)
    np.testing.assert_allclose(out, np.minimum(sig, c), rtol=0, atol=tol)


# --------------------------------------------------------------------------- orthogonalize


@SETTINGS
@given(
    shape=SHAPES,
    seed=SEEDS,
    log_scale=SCALES,
    key=st.sampled_from([k for k in sorted(BANDS) if k[1] != 6]),  # 6 steps: fewer compiles
)
def test_orthogonalize_singular_values_lie_in_the_documented_band(shape, seed, log_scale, key):
    """Frobenius-normalized singular values in ``[1e-3, 1]`` land in the docstring's interval
    and, singular value by singular value, on the composed scalar polynomial (the exact
    arithmetic map, evaluated here in NumPy from the schedule rows)."""
    schedule, steps = key
    m, n = shape
    rng = np.random.default_rng(seed)
    k = min(m, n)
    # log-uniform in [1e-2, 1] sigma_max: normalized values stay >= 1e-2 / sqrt(k) > 1e-3
    sigma = 10.0**log_scale * spread_spectrum(rng, k, decades=2)
    x = matrix_with_singular_values(rng, m, n, sigma)
    out = svals(orthogonalize(jnp.asarray(x), schedule, steps))
    lo, hi = BANDS[key]
    assert np.all(out >= lo - TABLE_ROUNDING) and np.all(out <= hi + TABLE_ROUNDING), (out, key)
    # exact-arithmetic reference: the odd polynomials applied to s = sigma / ||X||_F
    s = svals(x) / np.linalg.norm(x)
    for a, b, c in spectral.schedule_coefficients(schedule, steps):
        s = s * (a + s * s * (b + c * s * s))
    np.testing.assert_allclose(np.sort(out), np.sort(np.abs(s)), rtol=0, atol=1e-9)


@SETTINGS
@given(shape=SHAPES, seed=SEEDS, log_scale=SCALES)
def test_polar_returns_the_svd_polar_factor_and_reports_its_error(shape, seed, log_scale):
    """``polar`` (Newton-Schulz to ``tol``) equals ``U V^T`` of NumPy's SVD and its
    ``error`` field is ``||Q Q^T - I||_F`` on the smaller side, below ``tol``."""
    m, n = shape
    rng = np.random.default_rng(seed)
    sigma = 10.0**log_scale * spread_spectrum(rng, min(m, n), decades=3)
    x = matrix_with_singular_values(rng, m, n, sigma)
    tol = 1e-10
    sol = polar(jnp.asarray(x), tol)
    q = np.asarray(sol.factor)
    u, _, vt = np.linalg.svd(x, full_matrices=False)
    assert bool(sol.converged), (sol.status, sol.error)
    gram = q @ q.T if m <= n else q.T @ q
    err = np.linalg.norm(gram - np.eye(min(m, n)))
    assert err <= tol and abs(err - float(sol.error)) <= 1e-13
    np.testing.assert_allclose(q, u @ vt, atol=1e-9)


# --------------------------------------------------------------------------- spectral norm


@SETTINGS
@given(shape=SHAPES, seed=SEEDS, log_scale=SCALES, gaussian=st.booleans())
def test_power_iteration_is_a_nondecreasing_lower_bound(shape, seed, log_scale, gaussian):
    """Every estimate is ``<= sigma_max`` (a Rayleigh quotient), and warm-started single
    iterations (the documented warm start) never decrease it (``X X^T`` is PSD)."""
    m, n = shape
    rng = np.random.default_rng(seed)
    if gaussian:
        x = 10.0**log_scale * rng.standard_normal((m, n))
    else:
        sigma = 10.0**log_scale * spread_spectrum(rng, min(m, n), decades=3)
        x = matrix_with_singular_values(rng, m, n, sigma)
    true = np.linalg.norm(x, 2)
    xj = jnp.asarray(x)
    v = jnp.asarray(rng.standard_normal(min(m, n)))
    estimates = []
    for _ in range(25):
        est, v = power_step(xj, v, iters=1)
        estimates.append(float(est))
    estimates = np.array(estimates)
    assert np.all(estimates <= true * (1 + 1e-12)), (estimates.max(), true)
    assert np.all(np.diff(estimates) >= -1e-12 * true), np.diff(estimates)
    cold, _ = power_step(xj, jnp.ones(min(m, n)), iters=20)
    assert float(cold) <= true * (1 + 1e-12)
    default = spectral_norm(xj)
    assert float(default) <= true * (1 + 1e-12)


# About 45 s of worker time in all: CI runs the property suites in its slow step.
pytestmark = pytest.mark.slow
