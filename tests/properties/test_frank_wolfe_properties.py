"""Property-based tests of :mod:`jaxspec.frank_wolfe`.

* every oracle's vertex lies in its set and attains the set's support function (closed
  forms; brute force over all vertices for the K-sparse polytope);
* every projection lands in its set and satisfies the variational inequality
  ``max_{z in C} <y - P(y), z - P(y)> <= 0`` (a complete optimality certificate);
* the solver's Frank-Wolfe gap is ``>= 0``, equals ``<grad f(x), x - s>`` recomputed in
  NumPy and bounds ``f(x) - f*`` (``f*`` from a long projected-gradient run in NumPy);
* with the monotone step rules (``"short"`` with a valid ``L``, ``"exact"`` on a quadratic,
  ``"backtracking"``) each step does not increase the objective.
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxspec import frank_wolfe
from jaxspec.frank_wolfe import lmo

SEEDS = st.integers(0, 2**31 - 1)
SIZES = st.sampled_from([3, 6])
MATRIX_SHAPE = (5, 3)  # tall: the oracles work on the transposed (wide) side
RADII = st.floats(0.1, 10.0)
SETTINGS = settings(max_examples=25, deadline=None, database=None, derandomize=True)

VECTOR_SETS = ("l1", "l2", "linf", "box", "simplex", "simplex_le", "k_sparse")
MATRIX_SETS = ("nuclear_lanczos", "nuclear_power", "spectral_svd", "spectral_polar")
K = 2  # k of the K-sparse polytope


# --------------------------------------------------------------------------- the sets


def make_oracle(kind: str, radius, lower=None, upper=None):
    if kind == "l1":
        return lmo.l1_ball(radius)
    if kind == "l2":
        return lmo.l2_ball(radius)
    if kind == "linf":
        return lmo.linf_ball(radius)
    if kind == "box":
        return lmo.box(lower, upper)
    if kind == "simplex":
        return lmo.simplex(radius)
    if kind == "simplex_le":
        return lmo.simplex(radius, equality=False)
    if kind == "k_sparse":
        return lmo.k_sparse(K, radius)
    if kind.startswith("nuclear"):
        return lmo.nuclear_ball(radius, method=kind.split("_")[1])
    if kind.startswith("spectral"):
        return lmo.spectral_ball(radius, method=kind.split("_")[1])
    raise AssertionError(kind)


def box_bounds(rng, n, radius):
    lower = -radius * rng.uniform(0.1, 1.0, n)
    upper = radius * rng.uniform(-0.05, 1.0, n)
    upper = np.maximum(upper, lower + 0.1 * radius)
    return lower, upper


def support(kind, v, radius, lower=None, upper=None) -> float:
    """``max_{z in C} <v, z>`` in closed form (NumPy, float64)."""
    v = np.asarray(v, dtype=np.float64)
    if kind == "l1":
        return radius * np.max(np.abs(v))
    if kind == "l2":
        return radius * np.linalg.norm(v)
    if kind == "linf":
        return radius * np.sum(np.abs(v))
    if kind == "box":
        return float(np.sum(np.maximum(lower * v, upper * v)))
    if kind == "simplex":
        return radius * np.max(v)
    if kind == "simplex_le":
        return radius * max(np.max(v), 0.0)
    if kind == "k_sparse":
        return radius * np.sum(np.sort(np.abs(v))[::-1][:K])
    if kind.startswith("nuclear"):
        return radius * np.linalg.norm(v, 2)
    if kind.startswith("spectral"):
        return radius * np.linalg.norm(v, "nuc")
    raise AssertionError(kind)


def violation(kind, x, radius, lower=None, upper=None) -> float:
    """How far ``x`` is outside the set (0 inside), in the set's own norm."""
    x = np.asarray(x, dtype=np.float64)
    if kind == "l1":
        return max(np.sum(np.abs(x)) - radius, 0.0)
    if kind == "l2":
        return max(np.linalg.norm(x) - radius, 0.0)
    if kind == "linf":
        return max(np.max(np.abs(x)) - radius, 0.0)
    if kind == "box":
        return max(np.max(lower - x), np.max(x - upper), 0.0)
    if kind == "simplex":
        return max(-np.min(x), abs(np.sum(x) - radius))
    if kind == "simplex_le":
        return max(-np.min(x), np.sum(x) - radius, 0.0)
    if kind == "k_sparse":
        return max(np.max(np.abs(x)) - radius, np.sum(np.abs(x)) - K * radius, 0.0)
    if kind.startswith("nuclear"):
        return max(np.linalg.norm(x, "nuc") - radius, 0.0)
    if kind.startswith("spectral"):
        return max(np.linalg.norm(x, 2) - radius, 0.0)
    raise AssertionError(kind)


def k_sparse_vertices(n, radius):
    """Every vertex of the K-sparse polytope: K nonzeros, each +-radius (brute force)."""
    for idx in itertools.combinations(range(n), K):
        for signs in itertools.product((-1.0, 1.0), repeat=K):
            z = np.zeros(n)
            z[list(idx)] = radius * np.array(signs)
            yield z


def project_np(kind, y, radius, lower=None, upper=None):
    """Euclidean projections in NumPy (for the projected-gradient reference)."""
    if kind == "box":
        return np.clip(y, lower, upper)
    if kind == "l2":
        return y * min(1.0, radius / max(np.linalg.norm(y), 1e-300))
    if kind in ("simplex", "l1"):
        if kind == "l1" and np.sum(np.abs(y)) <= radius:
            return y
        u = np.sort(np.abs(y) if kind == "l1" else y)[::-1]
        css = np.cumsum(u) - radius
        j = np.arange(1, y.size + 1)
        rho = j[u - css / j > 0][-1]
        tau = css[rho - 1] / rho
        if kind == "l1":
            return np.sign(y) * np.maximum(np.abs(y) - tau, 0.0)
        return np.maximum(y - tau, 0.0)
    raise AssertionError(kind)


# --------------------------------------------------------------------------- compiled calls


@functools.partial(jax.jit, static_argnames=("kind",))
def vertex(g, radius, lower, upper, *, kind):
    oracle = make_oracle(kind, radius, lower, upper)
    s, _ = oracle.minimize(g, oracle.init(g))
    return s


@functools.partial(jax.jit, static_argnames=("kind",))
def project(y, radius, lower, upper, *, kind):
    return make_oracle(kind, radius, lower, upper).project(y)


@functools.partial(jax.jit, static_argnames=("kind", "variant", "step", "max_steps"))
def fw_solve(a, b, x0, radius, lower, upper, lipschitz, tol, *, kind, variant, step, max_steps):
    return frank_wolfe.solve(
        frank_wolfe.least_squares(a, b), x0, make_oracle(kind, radius, lower, upper),
        variant=variant, step=step, lipschitz=lipschitz, tol=tol, max_steps=max_steps,
    )  # fmt: skip


# --------------------------------------------------------------------------- oracles


@SETTINGS
@given(kind=st.sampled_from(VECTOR_SETS), n=SIZES, seed=SEEDS, radius=RADII)
def test_vector_vertex_is_feasible_and_minimizes_the_linear_function(kind, n, seed, radius):
    rng = np.random.default_rng(seed)
    g = rng.standard_normal(n) * 10.0 ** rng.uniform(-2, 2)
    lower, upper = box_bounds(rng, n, radius)
    bounds = jnp.asarray(lower), jnp.asarray(upper)
    s = np.asarray(vertex(jnp.asarray(g), radius, *bounds, kind=kind))
    scale = radius * (1 + np.abs(g).sum())
    assert violation(kind, s, radius, lower, upper) <= 1e-12 * max(radius, 1.0)
    # <g, s> = min_C <g, z> = -support(-g)
    assert abs(g @ s + support(kind, -g, radius, lower, upper)) <= 1e-12 * scale
    if kind == "k_sparse":  # brute force over every vertex
        best = min(g @ z for z in k_sparse_vertices(n, radius))
        assert g @ s <= best + 1e-12 * scale


@settings(max_examples=12, deadline=None, database=None, derandomize=True)
@given(kind=st.sampled_from(MATRIX_SETS), seed=SEEDS, radius=RADII)
def test_matrix_vertex_is_feasible_and_minimizes_the_linear_function(kind, seed, radius):
    """Nuclear ball: ``<g, s> = -radius sigma_1(g)``; spectral ball: ``-radius ||g||_*``.
    Lanczos runs all ``min(m, n)`` steps on these sizes (exact); power iteration is only
    promised "nearly optimal in value" (at most ~1e-3 relative here, 200 steps)."""
    rng = np.random.default_rng(seed)
    g = rng.standard_normal(MATRIX_SHAPE) * 10.0 ** rng.uniform(-2, 2)
    s = np.asarray(vertex(jnp.asarray(g), radius, 0.0, 0.0, kind=kind))
    target = -support(kind, -g, radius)
    assert violation(kind, s, radius) <= 1e-9 * radius
    rel = 1e-3 if kind == "nuclear_power" else 1e-9
    assert abs(np.sum(g * s) - target) <= rel * abs(target)


@SETTINGS
@given(
    kind=st.sampled_from(VECTOR_SETS + ("nuclear_svd", "spectral_svd")),
    n=SIZES,
    seed=SEEDS,
    radius=RADII,
    log_spread=st.floats(-1.0, 2.0),
)
def test_projection_is_feasible_and_satisfies_the_variational_inequality(
    kind, n, seed, radius, log_spread
):
    """``P(y) in C`` and ``<y - P(y), z - P(y)> <= 0`` for every ``z in C`` (checked at the
    maximizing ``z``, i.e. through the support function)."""
    rng = np.random.default_rng(seed)
    matrix = kind in ("nuclear_svd", "spectral_svd")
    y = rng.standard_normal((n, 4) if matrix else n) * radius * 10.0**log_spread
    lower, upper = box_bounds(rng, n, radius)
    bounds = jnp.asarray(lower), jnp.asarray(upper)
    p = np.asarray(project(jnp.asarray(y), radius, *bounds, kind=kind))
    scale = max(radius, np.abs(y).max())
    assert violation(kind, p, radius, lower, upper) <= 1e-12 * scale
    r = y - p
    certificate = support(kind, r, radius, lower, upper) - np.sum(r * p)
    assert certificate <= 1e-10 * scale * (1 + np.abs(r).sum()), certificate


# --------------------------------------------------------------------------- the solver

SOLVER_SETS = ("l1", "l2", "box", "simplex")
SOLVER_SIZE = 5  # one size: every (set, variant, step) is its own compile already


def ls_problem(rng, n, radius):
    m = n + 2
    a = rng.standard_normal((m, n))
    x_true = rng.standard_normal(n) * radius
    b = a @ x_true + 0.3 * rng.standard_normal(m)
    return a, b


def reference_optimum(kind, a, b, radius, lower, upper, steps=4000):
    """``f*`` of ``1/2 ||A x - b||^2`` over C by projected gradient (NumPy, step 1/L)."""
    lip = np.linalg.norm(a, 2) ** 2
    x = project_np(kind, np.zeros(a.shape[1]), radius, lower, upper)
    for _ in range(steps):
        x = project_np(kind, x - (a.T @ (a @ x - b)) / lip, radius, lower, upper)
    return 0.5 * np.sum((a @ x - b) ** 2)


def feasible_start(kind, n, radius, lower, upper):
    if kind == "box":
        return upper.copy()
    x0 = np.zeros(n)
    x0[0] = radius
    return x0


@settings(max_examples=12, deadline=None, database=None, derandomize=True)
@given(
    kind=st.sampled_from(SOLVER_SETS),
    seed=SEEDS,
    radius=st.floats(0.2, 5.0),
    variant=st.sampled_from(["vanilla", "away", "pairwise"]),
    step=st.sampled_from(["open_loop", "short", "exact", "backtracking"]),
    log_tol=st.floats(-10.0, 0.0),
)
def test_gap_is_nonnegative_exact_and_bounds_the_suboptimality(
    kind, seed, radius, variant, step, log_tol
):
    """At every returned solution (stopped early by a random ``tol`` or by the 40-step
    budget): ``gap >= 0``, ``gap = <grad f(x), x> + support(-grad f(x))`` and
    ``f(x) - f* <= gap`` for this convex least-squares problem."""
    if variant != "vanilla" and kind == "l2":
        variant = "vanilla"  # away/pairwise need a polytope's finite vertex set
    n = SOLVER_SIZE
    rng = np.random.default_rng(seed)
    a, b = ls_problem(rng, n, radius)
    lower, upper = box_bounds(rng, n, radius)
    x0 = feasible_start(kind, n, radius, lower, upper)
    lip = np.linalg.norm(a, 2) ** 2
    sol = fw_solve(
        jnp.asarray(a), jnp.asarray(b), jnp.asarray(x0), radius, jnp.asarray(lower),
        jnp.asarray(upper), lip, 10.0**log_tol, kind=kind, variant=variant, step=step,
        max_steps=40,
    )  # fmt: skip
    x = np.asarray(sol.x)
    fx = 0.5 * np.sum((a @ x - b) ** 2)
    grad = a.T @ (a @ x - b)
    scale = 1e-9 * (1 + fx + np.abs(grad).sum() * max(radius, 1.0))
    assert violation(kind, x, radius, lower, upper) <= 1e-12 * max(radius, 1.0)
    assert abs(float(sol.value) - fx) <= scale
    gap = float(sol.gap)
    assert gap >= -scale
    expected_gap = grad @ x + support(kind, -grad, radius, lower, upper)
    assert abs(gap - expected_gap) <= scale, (gap, expected_gap)
    f_star = reference_optimum(kind, a, b, radius, lower, upper)
    assert fx - f_star <= gap + scale, (fx - f_star, gap)


@settings(max_examples=12, deadline=None, database=None, derandomize=True)
@given(
    kind=st.sampled_from(SOLVER_SETS + ("k_sparse",)),
    seed=SEEDS,
    radius=st.floats(0.2, 5.0),
    step=st.sampled_from(["short", "exact", "backtracking"]),
    lip_factor=st.floats(1.0, 20.0),
)
def test_monotone_step_rules_never_increase_the_objective(kind, seed, radius, step, lip_factor):
    """Vanilla Frank-Wolfe from any feasible point with the short step (any ``L`` at least
    the smoothness constant: descent lemma), the exact line search (a quadratic) or
    backtracking (sufficient decrease): ``f`` does not increase, step after step. The
    vanilla step depends only on the current point (and ``t`` for open loop, not used), so
    iterating ``max_steps=1`` solves walks the method's own trajectory."""
    n = SOLVER_SIZE
    rng = np.random.default_rng(seed)
    a, b = ls_problem(rng, n, radius)
    lower, upper = box_bounds(rng, n, radius)
    x = jnp.asarray(feasible_start(kind, n, radius, lower, upper))
    lip = lip_factor * np.linalg.norm(a, 2) ** 2
    args = (jnp.asarray(a), jnp.asarray(b))
    values = [0.5 * np.sum((a @ np.asarray(x) - b) ** 2)]
    for _ in range(15):
        sol = fw_solve(
            *args, x, radius, jnp.asarray(lower), jnp.asarray(upper), lip, 0.0,
            kind=kind, variant="vanilla", step=step, max_steps=1,
        )  # fmt: skip
        x = sol.x
        xn = np.asarray(x)
        assert violation(kind, xn, radius, lower, upper) <= 1e-12 * max(radius, 1.0)
        values.append(0.5 * np.sum((a @ xn - b) ** 2))
    values = np.array(values)
    assert np.all(np.diff(values) <= 1e-12 * (1 + values[:-1])), np.diff(values)


# About 45 s of worker time in all: CI runs the property suites in its slow step.
pytestmark = pytest.mark.slow
