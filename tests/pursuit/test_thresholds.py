"""Thresholds against brute-force minimisation of their proximal subproblems."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from jaxspec.pursuit._thresholds import (
    THRESHOLDS,
    cel0_threshold,
    get_threshold,
    half_threshold,
    hard_threshold,
    soft_threshold,
)

# Penalties written independently of the library: the value of lam * penalty(x).


def pen_soft(x, lam):
    return lam * np.abs(x)


def pen_hard(x, lam):
    return lam * (x != 0)


def pen_half(x, lam):
    return lam * np.sqrt(np.abs(x))


def pen_cel0(x, lam, a):
    # Soubies et al. 2015, eq. (7): lam - a^2/2 (|x| - sqrt(2 lam)/a)^2 on |x| <= sqrt(2 lam)/a
    t = np.sqrt(2 * lam) / a
    inside = lam - a**2 / 2 * (np.abs(x) - t) ** 2
    return np.where(np.abs(x) <= t, inside, lam)


def brute_prox(vs, pen):
    """argmin_x 1/2 (x - v)^2 + pen(x) for each v: a grid (containing 0), then Brent around
    the best grid point, keeping 0 as a candidate (the penalties are not smooth there)."""
    grid = np.linspace(-8, 8, 16001)  # spacing 1e-3, 0 included
    best_grid = grid[np.argmin(0.5 * (grid - vs[:, None]) ** 2 + pen(grid), axis=1)]
    out = []
    for v, xg in zip(vs, best_grid):

        def f(x, v=v):
            return 0.5 * (x - v) ** 2 + pen(x)

        ref = minimize_scalar(
            f, bounds=(xg - 2e-3, xg + 2e-3), method="bounded", options={"xatol": 1e-12}
        ).x
        out.append(min((0.0, ref, xg), key=f))
    return np.array(out)


CASES = [
    ("soft", 0.7, None, None),
    ("soft", 2.0, None, None),
    ("hard", 0.7, None, None),
    ("hard", 2.0, None, None),
    ("half", 0.7, None, None),
    ("half", 2.0, None, None),
    ("cel0", 0.7, 1.0, 0.5),  # gamma a^2 = 0.5: continuous "firm" threshold
    ("cel0", 2.0, 2.0, 0.1),  # gamma a^2 = 0.4
    ("cel0", 0.7, 0.5, 1.0),  # gamma a^2 = 0.25
    ("cel0", 0.7, 1.0, 1.0),  # gamma a^2 = 1: the hard-threshold limit
    ("cel0", 0.7, 1.5, 1.0),  # gamma a^2 = 2.25: nonconvex subproblem
]


def jumps(name, lam, a, step):
    """Points where the prox is discontinuous (argmin not unique): skip argmin checks there."""
    if name == "hard":
        return [np.sqrt(2 * lam)]
    if name == "half":
        return [1.5 * lam ** (2 / 3)]
    if name == "cel0" and step * a * a >= 1:
        return [np.sqrt(2 * step * lam)]
    return []


@pytest.mark.parametrize("name, lam, a, step", CASES)
def test_threshold_is_the_global_minimiser_of_its_prox_subproblem(name, lam, a, step):
    vs = np.linspace(-5, 5, 121) + 0.0123  # avoid landing exactly on ties
    if name == "cel0":
        got = np.asarray(cel0_threshold(jnp.asarray(vs), lam, a, step=step))

        def pen(x):
            return step * pen_cel0(x, lam, a)
    else:
        got = np.asarray(get_threshold(name)(jnp.asarray(vs), lam))
        pen = {"soft": pen_soft, "hard": pen_hard, "half": pen_half}[name]
        pen = (lambda p: lambda x: p(x, lam))(pen)
    near_jump = np.zeros(vs.shape, bool)
    for j in jumps(name, lam, a, step):
        near_jump |= np.abs(np.abs(vs) - j) < 1e-3
    best = brute_prox(vs, pen)

    def f(x):
        return 0.5 * (x - vs) ** 2 + pen(x)

    # the threshold is at least as good as the best point found by brute force ...
    assert np.all(f(got) <= f(best) + 1e-12)
    # ... and it is that point (unless two minimisers tie at a jump)
    np.testing.assert_allclose(got[~near_jump], best[~near_jump], atol=1e-6)
    assert np.count_nonzero(got) > 10  # not a vacuous all-zero case


def test_soft_is_nonexpansive_and_shrinks_by_lam():
    rng = np.random.default_rng(0)
    u, v = rng.standard_normal((2, 1000)) * 3
    lam = 0.8
    su, sv = (np.asarray(soft_threshold(jnp.asarray(x), lam)) for x in (u, v))
    assert np.all(np.abs(su - sv) <= np.abs(u - v) + 1e-15)
    assert np.linalg.norm(su - sv) <= np.linalg.norm(u - v)
    big = np.abs(u) > lam
    np.testing.assert_allclose(su[big], u[big] - np.sign(u[big]) * lam, atol=1e-15)


@pytest.mark.parametrize("name", THRESHOLDS)
def test_exactly_zero_below_the_threshold_and_nonzero_above(name):
    lam, a, step = 0.5, 1.3, 0.4
    thr = {
        "soft": lam,
        "hard": np.sqrt(2 * lam),
        "half": 1.5 * lam ** (2 / 3),
        "cel0": np.sqrt(2 * lam) * a * step,
    }[name]
    below = np.concatenate([np.linspace(-thr, thr, 101)[1:-1], [thr * (1 - 1e-9)]])
    above = np.array([thr * (1 + 1e-6), -thr * (1 + 1e-6), thr + 1, -(thr + 3)])
    args = (a, step) if name == "cel0" else ()
    fn = get_threshold(name)
    out_below = np.asarray(fn(jnp.asarray(below), lam, *args))
    out_above = np.asarray(fn(jnp.asarray(above), lam, *args))
    assert np.all(out_below == 0.0)
    assert np.all(out_above != 0.0)
    assert np.all(np.sign(out_above) == np.sign(above))


@pytest.mark.parametrize("name", THRESHOLDS)
def test_jit_vmap_and_traced_lam(name):
    fn = get_threshold(name)
    extra = (0.9, 0.7) if name == "cel0" else ()
    v = jnp.linspace(-3, 3, 41)
    lams = jnp.array([0.1, 0.5, 1.2])
    jitted = jax.jit(lambda v, lam: fn(v, lam, *extra))
    swept = jax.vmap(lambda lam: jitted(v, lam))(lams)
    for i, lam in enumerate(lams):
        eager = fn(v, float(lam), *extra)
        np.testing.assert_allclose(np.asarray(jitted(v, lam)), np.asarray(eager), atol=1e-15)
        np.testing.assert_allclose(np.asarray(swept[i]), np.asarray(eager), atol=1e-15)
    # lam broadcasts: one value per column
    mat = jnp.tile(v[:, None], (1, 3))
    cols = fn(mat, lams, *extra)
    for i, lam in enumerate(lams):
        np.testing.assert_allclose(np.asarray(cols[:, i]), np.asarray(fn(v, lam, *extra)))


@pytest.mark.parametrize("name", THRESHOLDS)
def test_gradients_are_finite_and_match_finite_differences(name):
    fn = get_threshold(name)
    extra = (0.9, 0.7) if name == "cel0" else ()
    # points away from the thresholds, on both sides, including 0 (masked branches)
    v = jnp.array([-3.1, -0.05, 0.0, 0.3, 2.2, 4.0])
    lam = 0.6
    grad_v = jax.vmap(jax.grad(lambda x: fn(x, lam, *extra)))(v)
    grad_lam = jax.vmap(jax.grad(lambda lam, x: fn(x, lam, *extra)), (None, 0))(lam, v)
    assert np.all(np.isfinite(np.asarray(grad_v))) and np.all(np.isfinite(np.asarray(grad_lam)))
    h = 1e-6
    fd_v = (fn(v + h, lam, *extra) - fn(v - h, lam, *extra)) / (2 * h)
    fd_lam = (fn(v, lam + h, *extra) - fn(v, lam - h, *extra)) / (2 * h)
    np.testing.assert_allclose(np.asarray(grad_v), np.asarray(fd_v), atol=1e-6)
    np.testing.assert_allclose(np.asarray(grad_lam), np.asarray(fd_lam), atol=1e-6)


@pytest.mark.parametrize("name", THRESHOLDS)
def test_low_precision_keeps_dtype(name):
    fn = get_threshold(name)
    extra = (0.9, 0.7) if name == "cel0" else ()
    v64 = jnp.linspace(-3, 3, 25) + 0.01
    for dtype, tol in ((jnp.float32, 1e-5), (jnp.bfloat16, 3e-2)):
        out = fn(v64.astype(dtype), 0.4, *extra)
        assert out.dtype == dtype
        ref = fn(v64.astype(dtype).astype(jnp.float64), 0.4, *extra)
        np.testing.assert_allclose(np.asarray(out, np.float64), np.asarray(ref), atol=tol, rtol=tol)


@pytest.mark.parametrize("name", THRESHOLDS)
def test_nan_is_propagated(name):
    fn = get_threshold(name)
    extra = (0.9, 0.7) if name == "cel0" else ()
    out = np.asarray(fn(jnp.array([jnp.nan, 0.0, 5.0]), 0.4, *extra))
    assert np.isnan(out[0]) and out[1] == 0.0 and out[2] != 0.0


def test_bad_inputs():
    with pytest.raises(ValueError, match="`v`"):
        soft_threshold(jnp.arange(3), 1.0)
    with pytest.raises(ValueError, match="`lam`"):
        hard_threshold(jnp.ones(3), -0.1)
    with pytest.raises(ValueError, match="`lam`"):
        half_threshold(jnp.ones(3), jnp.array([0.1, -1.0, 0.2]))
    with pytest.raises(ValueError, match="`lam`"):
        soft_threshold(jnp.ones(3), "big")
    with pytest.raises(ValueError, match="`lam`"):
        soft_threshold(jnp.ones(3), jnp.ones(4))
    with pytest.raises(ValueError, match="`a_norm`"):
        cel0_threshold(jnp.ones(3), 0.1, -1.0)
    with pytest.raises(ValueError, match="`step`"):
        cel0_threshold(jnp.ones(3), 0.1, 1.0, step=0.0)
    with pytest.raises(ValueError, match="`name`"):
        get_threshold("l1")
    assert [get_threshold(n).__name__ for n in THRESHOLDS] == [
        "soft_threshold",
        "hard_threshold",
        "half_threshold",
        "cel0_threshold",
    ]
