"""Property-based tests of :mod:`jaxspec.manifolds`: retractions stay on the manifold, agree
with the tangent to first order and keep the component of O(n); Procrustes is optimal.

References are independent: NumPy QR/SVD/det, SciPy's ``orthogonal_procrustes`` and
``expm``, and Haar-random orthogonal matrices drawn in NumPy.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxspec import manifolds

SEEDS = st.integers(0, 2**31 - 1)
# (n, p): a tall frame (2p < n: Woodbury Cayley, balanced exp) and a square one (O(n)); few
# shapes, few compiles.
STIEFEL_SHAPES = st.sampled_from([(5, 2), (4, 4)])
SQUARE_SIZES = st.just(4)  # the square shape of STIEFEL_SHAPES: its compiles are shared
LOG_STEPS = st.floats(-3.0, 3.0)  # step length 10**e in [1e-3, 1e3]: large steps included
EXACT = ("qr", "polar", "cayley_solve", "cayley_woodbury", "exp")
EPS = np.finfo(np.float64).eps

SETTINGS = settings(max_examples=20, deadline=None, database=None, derandomize=True)


# --------------------------------------------------------------------------- NumPy helpers


def haar(rng: np.random.Generator, n: int, p: int) -> np.ndarray:
    """Haar-random point of St(n, p) (sign-fixed QR of a Gaussian matrix)."""
    q, r = np.linalg.qr(rng.standard_normal((n, p)))
    return q * np.sign(np.diag(r))


def tangent(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    """Random unit-Frobenius-norm tangent vector at ``x``: ``g - x sym(x^T g)``."""
    g = rng.standard_normal(x.shape)
    xtg = x.T @ g
    u = g - x @ (0.5 * (xtg + xtg.T))
    return u / np.linalg.norm(u)


def orth_error(y: np.ndarray) -> float:
    y = np.asarray(y, dtype=np.float64)
    return float(np.linalg.norm(y.T @ y - np.eye(y.shape[1])))


# --------------------------------------------------------------------------- compiled maps


@functools.partial(jax.jit, static_argnames=("name",))
def retract(x, u, *, name):
    if name == "qr":
        return manifolds.qr_retraction(x, u)
    if name == "polar":
        return manifolds.polar_retraction(x, u, method="svd")
    if name == "polar_ns":
        return manifolds.polar_retraction(x, u, method="newton_schulz")
    if name == "cayley_solve":
        return manifolds.cayley_retraction(x, u, method="solve")
    if name == "cayley_woodbury":
        return manifolds.cayley_retraction(x, u, method="woodbury")
    if name == "exp":
        return manifolds.exp_retraction(x, u)
    raise AssertionError(name)


@functools.partial(jax.jit, static_argnames=("iterations",))
def iterative_cayley(x, u, *, iterations):
    return manifolds.iterative_cayley_retraction(x, u, iterations=iterations)


procrustes = jax.jit(manifolds.procrustes, static_argnames=("special",))


# --------------------------------------------------------------------------- retractions


@SETTINGS
@given(shape=STIEFEL_SHAPES, seed=SEEDS, log_t=LOG_STEPS, name=st.sampled_from(EXACT))
def test_exact_retractions_stay_orthonormal_for_any_step(shape, seed, log_t, name):
    """QR, SVD-polar, Cayley (both forms) and exp: ``Y^T Y = I`` to float64 round-off, for
    steps ``||u||_F`` from 1e-3 to 1e3 (far outside any trust region)."""
    n, p = shape
    rng = np.random.default_rng(seed)
    x = haar(rng, n, p)
    u = 10.0**log_t * tangent(rng, x)
    y = np.asarray(retract(jnp.asarray(x), jnp.asarray(u), name=name))
    assert np.all(np.isfinite(y))
    assert orth_error(y) <= 100 * n * EPS, (name, orth_error(y))


@SETTINGS
@given(shape=STIEFEL_SHAPES, seed=SEEDS, log_t=st.floats(-3.0, 1.0))
def test_newton_schulz_polar_retraction_is_orthonormal_within_its_stated_accuracy(
    shape, seed, log_t
):
    """Documented: 10 Polar Express steps reach ~1e-6 for ``||u||_2 <= 10``; also close to the
    exact (SVD) polar retraction."""
    n, p = shape
    rng = np.random.default_rng(seed)
    x = haar(rng, n, p)
    u = 10.0**log_t * tangent(rng, x)  # ||u||_2 <= ||u||_F <= 10
    y = np.asarray(retract(jnp.asarray(x), jnp.asarray(u), name="polar_ns"))
    assert orth_error(y) <= 2e-6 * np.sqrt(p), orth_error(y)
    uu, _, vt = np.linalg.svd(x + u, full_matrices=False)
    assert np.abs(y - uu @ vt).max() <= 2e-6


@SETTINGS
@given(shape=STIEFEL_SHAPES, seed=SEEDS, scale=st.floats(0.01, 0.5))
def test_iterative_cayley_converges_to_the_cayley_retraction(shape, seed, scale):
    """For ``||W||_2 <= 2 ||u||_F <= 1`` the fixed-point map contracts (factor <= 1/2), so
    many iterations give the exact Cayley retraction (on the manifold)."""
    n, p = shape
    rng = np.random.default_rng(seed)
    x = haar(rng, n, p)
    u = scale * tangent(rng, x)
    xj, uj = jnp.asarray(x), jnp.asarray(u)
    y = np.asarray(iterative_cayley(xj, uj, iterations=60))
    ref = np.asarray(retract(xj, uj, name="cayley_solve"))
    np.testing.assert_allclose(y, ref, atol=1e-13)
    assert orth_error(y) <= 100 * n * EPS


@SETTINGS
@given(
    shape=STIEFEL_SHAPES,
    seed=SEEDS,
    name=st.sampled_from(EXACT + ("polar_ns",)),
)
def test_retractions_are_identity_at_zero_and_first_order(shape, seed, name):
    """``R_x(0) = x`` and ``R_x(t u) = x + t u + O(t^2)`` (the defining retraction
    properties): with ``||u||_F = 1`` and ``t = 1e-4`` the remainder is ``<= 10 t^2``."""
    n, p = shape
    rng = np.random.default_rng(seed)
    x = haar(rng, n, p)
    u = tangent(rng, x)
    xj = jnp.asarray(x)
    y0 = np.asarray(retract(xj, jnp.zeros_like(xj), name=name))
    np.testing.assert_allclose(y0, x, atol=1e-6 if name == "polar_ns" else 1e-13)
    t = 1e-4
    yt = np.asarray(retract(xj, jnp.asarray(t * u), name=name))
    remainder = np.linalg.norm(yt - x - t * u)
    assert remainder <= 10 * t**2 + (1e-6 if name == "polar_ns" else 1e-13), (name, remainder)


@SETTINGS
@given(n=SQUARE_SIZES, seed=SEEDS, log_t=LOG_STEPS, name=st.sampled_from(EXACT))
def test_retractions_on_O_n_keep_the_connected_component(n, seed, log_t, name):
    """Documented for ``Orthogonal``: retractions keep the component of the start point, so
    ``det R_x(u) = det x`` (= +-1), at any step length."""
    rng = np.random.default_rng(seed)
    x = haar(rng, n, n)
    u = 10.0**log_t * tangent(rng, x)
    y = np.asarray(retract(jnp.asarray(x), jnp.asarray(u), name=name))
    assert np.isclose(np.linalg.det(y), np.linalg.det(x), atol=1e-9), name


@SETTINGS
@given(n=SQUARE_SIZES, seed=SEEDS, log_t=st.floats(-3.0, 0.5))
def test_exp_on_O_n_is_the_matrix_exponential_geodesic(n, seed, log_t):
    """On O(n) the exponential map is ``x expm(x^T u)`` (SciPy's expm as reference)."""
    rng = np.random.default_rng(seed)
    x = haar(rng, n, n)
    u = 10.0**log_t * tangent(rng, x)
    y = np.asarray(retract(jnp.asarray(x), jnp.asarray(u), name="exp"))
    omega = x.T @ u
    ref = x @ scipy.linalg.expm(0.5 * (omega - omega.T))
    np.testing.assert_allclose(y, ref, atol=1e-12)


# --------------------------------------------------------------------------- Procrustes


def procrustes_objective(a, b, r):
    return float(np.linalg.norm(a @ r - b))


@SETTINGS
@given(
    p=st.sampled_from([2, 4]),
    extra=st.sampled_from([0, 3]),
    seed=SEEDS,
    noise=st.floats(0.0, 3.0),
)
def test_procrustes_is_orthogonal_and_beats_every_orthogonal_matrix(p, extra, seed, noise):
    """``R`` is orthogonal, no worse than 50 Haar-random orthogonal matrices, than small
    rotations of itself (local optimality) and equal in value to SciPy's solution."""
    rng = np.random.default_rng(seed)
    m = p + extra
    a = rng.standard_normal((m, p))
    b = a @ haar(rng, p, p) + noise * rng.standard_normal((m, p))
    r = np.asarray(procrustes(jnp.asarray(a), jnp.asarray(b)))
    assert orth_error(r) <= 100 * p * EPS
    best = procrustes_objective(a, b, r)
    scale = 1e-12 * (1 + np.linalg.norm(a) + np.linalg.norm(b))
    for _ in range(50):
        assert best <= procrustes_objective(a, b, haar(rng, p, p)) + scale
    for _ in range(10):
        s = rng.standard_normal((p, p))
        rot = scipy.linalg.expm(1e-3 * (s - s.T))
        assert best <= procrustes_objective(a, b, r @ rot) + scale
    ref, _ = scipy.linalg.orthogonal_procrustes(a, b)
    assert abs(best - procrustes_objective(a, b, ref)) <= 1e-10 * (1 + best)


@SETTINGS
@given(p=st.sampled_from([2, 4]), seed=SEEDS, noise=st.floats(0.0, 3.0))
def test_special_procrustes_is_a_rotation_and_beats_every_rotation(p, seed, noise):
    """``special=True``: ``det R = +1`` and no worse than random rotations or the
    unconstrained solution when that is already a rotation."""
    rng = np.random.default_rng(seed)
    m = p + 2
    a = rng.standard_normal((m, p))
    b = a @ haar(rng, p, p) + noise * rng.standard_normal((m, p))
    r = np.asarray(procrustes(jnp.asarray(a), jnp.asarray(b), special=True))
    assert orth_error(r) <= 100 * p * EPS
    assert np.isclose(np.linalg.det(r), 1.0, atol=1e-10)
    best = procrustes_objective(a, b, r)
    scale = 1e-12 * (1 + np.linalg.norm(a) + np.linalg.norm(b))
    for _ in range(50):
        q = haar(rng, p, p)
        if np.linalg.det(q) < 0:
            q[:, 0] *= -1
        assert best <= procrustes_objective(a, b, q) + scale
    r_free = np.asarray(procrustes(jnp.asarray(a), jnp.asarray(b)))
    unconstrained = procrustes_objective(a, b, r_free)
    assert best >= unconstrained - scale  # a subset cannot do better
    if np.linalg.det(r_free) > 0:
        assert abs(best - unconstrained) <= scale


# About 45 s of worker time in all: CI runs the property suites in its slow step.
pytestmark = pytest.mark.slow
