"""The problems and host-side certificates of ``benchmarks/frank_wolfe.py`` (small sizes)."""

import importlib.util
import sys
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

BENCH_DIR = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))  # the script imports its sibling ``_timing``
    spec = importlib.util.spec_from_file_location("bench_frank_wolfe", BENCH_DIR / "frank_wolfe.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


def test_least_squares_problem(bench):
    p = bench.make_least_squares(np.random.default_rng(0), 30, 60, 5)
    assert p.A.shape == (30, 60) and p.b.shape == (30,)
    assert np.count_nonzero(p.x_true) == 5
    np.testing.assert_allclose(p.b, p.A @ p.x_true)
    assert p.value(p.x_true) == pytest.approx(0.0, abs=1e-20)
    # L is the largest eigenvalue of A^T A: no direction curves more, the top one as much.
    v = np.random.default_rng(1).standard_normal((60, 200))
    assert np.all(np.sum((p.A @ v) ** 2, axis=0) <= p.lipschitz * np.sum(v**2, axis=0))
    assert p.lipschitz == pytest.approx(np.linalg.eigvalsh(p.A.T @ p.A)[-1], rel=1e-12)


def test_least_squares_gap_is_the_vertex_maximum_and_bounds_suboptimality(bench):
    rng = np.random.default_rng(2)
    p = bench.make_least_squares(rng, 20, 40, 4)
    radius = 1.5 * p.truth_l1  # the truth (f = 0) is feasible: gap >= f(x) - 0
    for _ in range(5):
        x = rng.standard_normal(40)
        x *= 0.7 * radius / np.abs(x).sum()
        grad = p.A.T @ (p.A @ x - p.b)
        vertices = radius * np.concatenate([np.eye(40), -np.eye(40)])
        brute = np.max((x - vertices) @ grad)
        assert p.gap(x, radius) == pytest.approx(brute, rel=1e-12)
        assert p.gap(x, radius) >= p.value(x) - 1e-9


def test_completion_problem_and_gap(bench):
    rng = np.random.default_rng(3)
    p = bench.make_completion(rng, 30, 2, 0.3)
    assert np.linalg.matrix_rank(p.M) == 2
    assert set(np.unique(p.mask)) <= {0.0, 1.0}
    assert 0.15 < p.mask.mean() < 0.45
    radius = p.truth_nuclear
    X = rng.standard_normal((30, 30))
    X *= 0.5 * radius / np.linalg.svd(X, compute_uv=False).sum()
    grad = p.mask * (X - p.M)
    u, _, vt = np.linalg.svd(grad)
    vertex = -radius * np.outer(u[:, 0], vt[0])  # argmin <grad, S> over the ball
    assert p.gap(X, radius) == pytest.approx(np.vdot(grad, X - vertex), rel=1e-10)
    assert p.gap(X, radius) >= p.value(X) - p.value(p.M)


def test_sweep_radii(bench):
    p = bench.make_least_squares(np.random.default_rng(4), 10, 20, 3)
    cfg = bench.make_config(quick=True, repeats=None)
    radii = bench.sweep_radii(cfg, p)
    assert radii.shape == (cfg.sweep_size,)
    lo, hi = cfg.sweep_fractions
    np.testing.assert_allclose(radii[[0, -1]], [lo * p.truth_l1, hi * p.truth_l1])


def test_floor_matches_the_solver(bench):
    """The hand-written reference loop is the same algorithm as ``frank_wolfe.solve``."""
    p = bench.make_least_squares(np.random.default_rng(5), 40, 80, 6)
    args = (jnp.asarray(p.A), jnp.asarray(p.b), 0.8 * p.truth_l1, p.lipschitz)
    sol = jax.jit(partial(bench.jaxspec_least_squares, steps=40))(*args)
    floor = jax.jit(partial(bench.floor_least_squares, steps=40))(*args)
    np.testing.assert_allclose(floor, sol.x, rtol=1e-9, atol=1e-12)
    radii = jnp.asarray([0.5, 1.0]) * p.truth_l1
    sweep = jax.jit(partial(bench.jaxspec_sweep, steps=20))(args[0], args[1], radii, p.lipschitz)
    floors = jax.jit(partial(bench.floor_sweep, steps=20))(args[0], args[1], radii, p.lipschitz)
    np.testing.assert_allclose(floors, sweep.x, rtol=1e-9, atol=1e-12)


def test_copt_side_runs_the_same_iterations(bench):
    pytest.importorskip("copt")
    p = bench.make_least_squares(np.random.default_rng(6), 40, 80, 6)
    radius = 0.8 * p.truth_l1
    ours = bench.floor_least_squares(
        jnp.asarray(p.A), jnp.asarray(p.b), radius, p.lipschitz, steps=30
    )
    theirs = bench.copt_least_squares(p, radius, 30)
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)
    variants = bench.copt_variants("copt", partial(bench.copt_least_squares, p, radius, 30))
    for name, fn in variants.items():  # BLAS thread counts change nothing but the time
        np.testing.assert_allclose(fn(), theirs, rtol=1e-12, atol=1e-14, err_msg=name)


def test_completion_copt_and_jaxspec_agree_with_lanczos(bench):
    pytest.importorskip("copt")
    p = bench.make_completion(np.random.default_rng(7), 40, 2, 0.3)
    radius = p.truth_nuclear
    theirs = bench.copt_completion(p, radius, 15)
    solve = jax.jit(partial(bench.jaxspec_completion, steps=15, method="lanczos"))
    sol = solve(jnp.asarray(p.M), jnp.asarray(p.mask), radius)
    assert p.value(np.asarray(sol.x)) == pytest.approx(p.value(theirs), rel=1e-8)
