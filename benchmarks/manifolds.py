"""Benchmark of ``jaxspec.manifolds.minimize`` against pymanopt, both in one process.

pymanopt 2.2.1 runs with its JAX backend, method for method: ``SteepestDescent`` against
``method="gd"`` and ``ConjugateGradient`` against ``method="cg"``. Both sides use their
defaults, which are the same algorithm (Armijo backtracking with pymanopt's constants,
Hestenes–Stiefel ``beta``, the sign-fixed QR retraction, projection transport, the embedded
metric), float64, and the same stopping rule: Riemannian gradient norm ``<= tol``.

Problems:

(a) Brockett ``f(X) = tr(X^T A X N)`` on St(200, 10): ``A = (B + B^T) / 2`` with ``B``
    standard Gaussian, ``N = diag(10, ..., 1)``, seed 0; ``f* = sum_i mu_i lambda_i`` (mu
    descending, lambda ascending). ``tol = 3e-3`` is chosen so that every solver ends within
    the relative optimality gap ``(f - f*) / |f*| <= 1e-6`` (the gap each one reached is in
    the table, recomputed on the host in float64; about 32 000 steepest-descent steps and 760
    CG steps, so full mode takes about 20 minutes on two cores, most of it in pymanopt's
    steepest descent). Target: >= 50x pymanopt, per method. The notes give the floor: the products
    ``A X`` that any implementation of the same algorithm must compute.
(b) 64 orthogonal Procrustes problems ``min_R ||A_k R - B_k||_F^2 / 2`` over O(20)
    (``A_k, B_k`` 40x20 Gaussian, starts in the component of the optimum, which retractions
    cannot leave), conjugate gradients to ``tol = 1e-5``: ``jax.vmap(minimize)`` solving all
    64 at once against 64 sequential pymanopt runs; the optimum of each is
    ``scipy.linalg.orthogonal_procrustes``. jaxspec runs on ``Orthogonal(20,
    retraction="qr")``, pymanopt on ``Stiefel(20, 20)`` (the same QR retraction). The same
    50x target is applied to the two ways of solving all problems in one compiled call:
    ``jax.vmap`` (lockstep: each iteration waits for the slowest problem, the form for
    accelerators) and ``jax.lax.map`` (one after another, the better form on CPU).
(a), (b) Context rows: steepest descent with ``linesearch="bb"`` (Barzilai–Borwein steps with
    a non-monotone Armijo rule, Wen and Yin 2013). Same method, other step rule, so its
    iterates differ from pymanopt's; it is judged too, and labelled as such.

pymanopt is timed two ways: as its documentation shows (``@pymanopt.function.jax`` on the
cost; the backend differentiates it with ``jax.grad`` and runs both eagerly, op by op: the
baseline of every speedup), and, for context, with the cost and its ``jax.grad`` wrapped in
``jax.jit`` by the user and passed as ``euclidean_gradient`` (the fastest legitimate way to
feed pymanopt; not judged). A sequential loop of single jitted jaxspec solves is context for
(b). pymanopt counts one more iteration than it takes steps for CG (the iteration that finds
the gradient small), and its steepest descent takes one step after that check; the table
reports steps taken (retractions accepted).

Usage::

    python benchmarks/manifolds.py [--quick] [--repeats N] [--out DIR]

``--quick`` (CI) keeps the problems but stops at a looser tolerance (relative gap target
1e-3) and solves 16 Procrustes problems, finishing in well under a minute on two cores.
``--out DIR`` also writes ``DIR/manifolds.md`` (the tables) and ``DIR/manifolds.json`` (raw
numbers, every sample). A missed target is a measurement, not an error: exit code 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from _timing import (
    Case,
    Timing,
    compile_case,
    environment,
    fmt,
    markdown_table,
    run_once,
    time_with_host,
)

from jaxspec import Status, manifolds, status_message

SPEEDUP_TARGET = 50.0


@dataclass(frozen=True)
class Config:
    n: int  # (a) St(n, p)
    p: int
    tol: float  # (a) gradient-norm tolerance, both sides
    gap_target: float  # (a) relative optimality gap every solver must end within
    batch: int  # (b) number of Procrustes problems
    proc_n: int  # (b) O(proc_n)
    proc_m: int  # (b) rows of A_k, B_k
    proc_tol: float
    proc_gap_target: float
    repeats: int
    pymanopt_budget_s: float  # sampling time after which a group stops (after min_repeats)
    min_repeats: int
    quick: bool


def make_config(quick: bool, repeats: int | None) -> Config:
    common = dict(n=200, p=10, proc_n=20, proc_m=40, proc_tol=1e-5, proc_gap_target=1e-9)
    if quick:
        return Config(
            **common,
            tol=0.5,
            gap_target=1e-3,
            batch=16,
            repeats=repeats or 3,
            pymanopt_budget_s=2.0,
            min_repeats=1,
            quick=True,
        )
    return Config(
        **common,
        tol=3e-3,
        gap_target=1e-6,
        batch=64,
        repeats=repeats or 5,
        pymanopt_budget_s=120.0,
        min_repeats=3,
        quick=False,
    )


# ----------------------------------------------------------------------------- problems


@dataclass(frozen=True)
class Brockett:
    A: np.ndarray  # (n, n) symmetric
    mu: np.ndarray  # (p,) descending, N = diag(mu)
    x0: np.ndarray  # (n, p) on the manifold
    f_star: float

    def value(self, x: np.ndarray) -> float:
        return float(np.trace(x.T @ self.A @ x @ np.diag(self.mu)))

    def gap(self, x: np.ndarray) -> float:
        return (self.value(x) - self.f_star) / abs(self.f_star)


def make_brockett(rng: np.random.Generator, n: int, p: int) -> Brockett:
    b = rng.standard_normal((n, n))
    a = (b + b.T) / 2
    mu = np.arange(p, 0, -1, dtype=np.float64)
    lam = np.linalg.eigvalsh(a)
    x0 = np.linalg.qr(rng.standard_normal((n, p)))[0]
    return Brockett(a, mu, x0, float(np.sum(mu * lam[:p])))


@dataclass(frozen=True)
class ProcrustesBatch:
    A: np.ndarray  # (k, m, n)
    B: np.ndarray  # (k, m, n)
    x0: np.ndarray  # (k, n, n), det(x0) = det(R*)
    r_star: np.ndarray  # (k, n, n)

    def values(self, x: np.ndarray) -> np.ndarray:
        r = self.A @ x - self.B
        return 0.5 * np.sum(r * r, axis=(-2, -1))

    def gaps(self, x: np.ndarray) -> np.ndarray:
        best = self.values(self.r_star)
        return (self.values(x) - best) / np.abs(best)


def make_procrustes(rng: np.random.Generator, k: int, m: int, n: int) -> ProcrustesBatch:
    a, b = rng.standard_normal((k, m, n)), rng.standard_normal((k, m, n))
    r_star = np.stack([scipy.linalg.orthogonal_procrustes(a[i], b[i])[0] for i in range(k)])
    x0 = np.stack([np.linalg.qr(rng.standard_normal((n, n)))[0] for _ in range(k)])
    flip = np.sign(np.linalg.det(x0) * np.linalg.det(r_star))
    x0[:, :, 0] *= flip[:, None]  # retractions stay in the start's component of O(n)
    return ProcrustesBatch(a, b, x0, r_star)


def brockett_cost(x, data):
    a, nn = data
    return jnp.trace(x.T @ a @ x @ nn)


def procrustes_cost(x, data):
    a, b = data
    r = a @ x - b
    return 0.5 * jnp.vdot(r, r)


# ----------------------------------------------------------------------------- jaxspec side


def jaxspec_brockett(x0, a, nn, tol, *, method: str, manifold, linesearch=None):
    return manifolds.minimize(
        brockett_cost,
        x0,
        manifold,
        args=(a, nn),
        method=method,
        tol=tol,
        max_steps=100_000,
        linesearch=linesearch,
    )


def jaxspec_procrustes(x0, a, b, tol, *, manifold, method="cg", linesearch=None):
    return manifolds.minimize(
        procrustes_cost, x0, manifold, args=(a, b), tol=tol, method=method, linesearch=linesearch
    )


def jaxspec_procrustes_batch(x0, a, b, tol, *, manifold):
    return jax.vmap(lambda x, aa, bb: jaxspec_procrustes(x, aa, bb, tol, manifold=manifold))(
        x0, a, b
    )


def jaxspec_procrustes_map(x0, a, b, tol, *, manifold, **options):
    """All problems in one compiled call, one after another (``lax.map``): on CPU this avoids
    vmap's lockstep, where every iteration and line search waits for the slowest problem."""

    def one(problem):
        x, aa, bb = problem
        return jaxspec_procrustes(x, aa, bb, tol, manifold=manifold, **options)

    return jax.lax.map(one, (x0, a, b))


# ----------------------------------------------------------------------------- pymanopt side


@dataclass
class PymanoptRun:
    point: np.ndarray
    steps: int  # retractions taken
    iterations: int  # pymanopt's own count
    cost: float
    stop: str


def pymanopt_problem(pymanopt, manifold, cost_fn: Callable, *, jit: bool):
    """``Problem`` with the documented JAX backend, or with user-jitted cost and gradient."""
    if not jit:
        return pymanopt.Problem(manifold, pymanopt.function.jax(manifold)(cost_fn))
    cost_jit, grad_jit = jax.jit(cost_fn), jax.jit(jax.grad(cost_fn))
    cost = pymanopt.function.jax(manifold)(lambda x: cost_jit(x))
    egrad = pymanopt.function.jax(manifold)(lambda x: grad_jit(x))
    return pymanopt.Problem(manifold, cost, euclidean_gradient=egrad)


def pymanopt_optimizer(pymanopt, method: str, tol: float, max_iterations: int):
    kind = (
        pymanopt.optimizers.SteepestDescent
        if method == "gd"
        else (pymanopt.optimizers.ConjugateGradient)
    )
    return kind(verbosity=0, min_gradient_norm=tol, max_iterations=max_iterations)


def pymanopt_solve(optimizer, problem, x0: np.ndarray, method: str) -> PymanoptRun:
    res = optimizer.run(problem, initial_point=x0.copy())
    steps = res.iterations if method == "gd" else res.iterations - 1
    return PymanoptRun(res.point, steps, res.iterations, float(res.cost), res.stopping_criterion)


# ----------------------------------------------------------------------------- timing


# ----------------------------------------------------------------------------- sections

COLUMNS = (
    "problem",
    "solver",
    "steps",
    "median ms",
    "IQR ms",
    "compile s",
    "ms / step",
    "speedup vs pymanopt",
    "target",
    "speed",
    "× vs pymanopt+jit",
    "rel. gap (f − f*)/|f*|",
    "gap",
    "‖XᵀX − I‖",
    "status",
)


@dataclass
class Outcome:
    rows: list[dict[str, str]]
    raw: dict[str, Any]
    notes: list[str]


def _row(label, name, steps, t: Timing, gap, orth, status, total_steps) -> dict[str, str]:
    return {
        "problem": label,
        "solver": name,
        "steps": steps,
        "median ms": fmt(t.median_ms),
        "IQR ms": fmt(t.iqr_ms, ".2g"),
        "compile s": fmt(t.compile_s, ".2f"),
        "ms / step": fmt(t.median_ms / max(total_steps, 1), ".3g"),
        "rel. gap (f − f*)/|f*|": gap,
        "‖XᵀX − I‖": orth,
        "status": status,
    }


def _judge(row, entry, t: Timing, base: Timing, jit_base: Timing, gap_ok: bool) -> None:
    speedup = base.median_ms / t.median_ms
    versus_jit = jit_base.median_ms / t.median_ms
    ok = bool(speedup >= SPEEDUP_TARGET)
    row |= {
        "speedup vs pymanopt": f"{speedup:.1f}×",
        "target": f"≥ {SPEEDUP_TARGET:g}×",
        "speed": "PASS" if ok else "**FAIL**",
        "× vs pymanopt+jit": f"{versus_jit:.1f}×",
    }
    entry |= {"speedup": speedup, "speedup_vs_jit_pymanopt": versus_jit, "pass_speed": ok}
    entry["pass_gap"] = gap_ok


def orthogonality(x: np.ndarray) -> float:
    x = np.asarray(x, np.float64)
    eye = np.eye(x.shape[-1])
    return float(np.max(np.linalg.norm(np.swapaxes(x, -1, -2) @ x - eye, axis=(-2, -1))))


def section_brockett(cfg: Config, problem: Brockett, pymanopt) -> Outcome:
    n, p = cfg.n, cfg.p
    st = manifolds.Stiefel(n, p)
    pm_manifold = pymanopt.manifolds.Stiefel(n, p)
    a, nn = jnp.asarray(problem.A), jnp.diag(jnp.asarray(problem.mu))
    problems = {
        jit: pymanopt_problem(pymanopt, pm_manifold, lambda x: brockett_cost(x, (a, nn)), jit=jit)
        for jit in (False, True)
    }
    args = (jnp.asarray(problem.x0), a, nn, jnp.float64(cfg.tol))
    label = f"(a) Brockett St({n}, {p}), tol {cfg.tol:g}"
    matmul_ms = matmul_time_ms(a, args[0])
    rows, raw, notes = [], {"label": label, "tol": cfg.tol, "f_star": problem.f_star}, []
    raw["matmul_ms"] = matmul_ms
    for method, pm_name in (("gd", "SteepestDescent"), ("cg", "ConjugateGradient")):
        case = Case(partial(jaxspec_brockett, method=method, manifold=st), args)
        cases = {"jaxspec": case}
        if method == "gd":  # context: the Barzilai-Borwein rule, same method, other iterates
            cases["jaxspec_bb"] = Case(
                partial(jaxspec_brockett, method="gd", manifold=st, linesearch="bb"), args
            )
        optimizer = pymanopt_optimizer(pymanopt, method, cfg.tol, 100_000)
        host = {
            jit: partial(pymanopt_solve, optimizer, problems[jit], problem.x0, method)
            for jit in (False, True)
        }
        for jit in (False, True):  # warm-up: eager op caches, grad tracing, BLAS threads
            warm = pymanopt_optimizer(pymanopt, method, cfg.tol, 3)
            pymanopt_solve(warm, problems[jit], problem.x0, method)
        names = {
            "jaxspec": f'jaxspec minimize(method="{method}"), jit',
            "jaxspec_bb": 'jaxspec minimize(method="gd", linesearch="bb"), jit (other step rule)',
            "pymanopt": f"pymanopt {pm_name} (JAX backend, as documented)",
            "pymanopt_jit": f"pymanopt {pm_name} (JAX backend, user-jitted cost + gradient)",
        }
        names = {role: name for role, name in names.items() if role in cases or "pym" in role}
        timings, results = time_with_host(
            {names[role]: c for role, c in cases.items()},
            {names["pymanopt"]: host[False], names["pymanopt_jit"]: host[True]},
            cfg.repeats,
            budget_s=cfg.pymanopt_budget_s,
            min_repeats=cfg.min_repeats,
        )
        sols = {role: c.compiled(*c.args) for role, c in cases.items()}
        outputs = {
            role: (np.asarray(s.x), int(s.num_steps), status_message(s.status))
            for role, s in sols.items()
        } | {
            "pymanopt": (lambda r: (r.point, r.steps, r.stop))(results[names["pymanopt"]]),
            "pymanopt_jit": (lambda r: (r.point, r.steps, r.stop))(results[names["pymanopt_jit"]]),
        }
        base, jit_base = timings[names["pymanopt"]], timings[names["pymanopt_jit"]]
        raw[method] = {}
        for role, name in names.items():
            x, steps, stop = outputs[role]
            t = timings[name]
            gap = problem.gap(x)
            gap_ok = bool(gap <= cfg.gap_target)
            status = stop if role.startswith("jaxspec") else _short_stop(stop)
            row = _row(label, name, str(steps), t, fmt(gap, ".2e"), fmt(orthogonality(x), ".1e"),
                       status, steps)  # fmt: skip
            row["gap"] = ("PASS" if gap_ok else "**FAIL**") + f" (≤ {cfg.gap_target:g})"
            entry = t.as_dict() | {"name": name, "steps": steps, "rel_gap": gap, "stop": stop}
            if role.startswith("jaxspec"):
                _judge(row, entry, t, base, jit_base, gap_ok)
                entry["grad_norm"] = float(sols[role].grad_norm)
            else:
                row["speedup vs pymanopt"] = f"{base.median_ms / t.median_ms:.2f}×"
                entry["iterations_pymanopt_count"] = (
                    results[name].iterations if name in results else None
                )
                entry["pass_gap"] = gap_ok
            rows.append(row)
            raw[method][role] = entry
        js, pm = raw[method]["jaxspec"], raw[method]["pymanopt"]
        evals = count_evaluations(method, st, args)
        products = evals + 2  # E values, then a value-and-gradient: forward + backward product
        floor_ms = products * matmul_ms
        js |= {"evaluations_per_step": evals, "products_with_A_per_step": products}
        notes.append(
            f"(a) {method}: jaxspec {js['median_ms'] / max(js['steps'], 1):.3g} ms per step, "
            f"pymanopt {pm['median_ms'] / max(pm['steps'], 1):.3g} ms per step; steps "
            f"{js['steps']} vs {pm['steps']} (the same algorithm and constants: in float64 the "
            "iterates agree until round-off, amplified by the line search's initial-step "
            "guess, flips an Armijo decision, so the counts differ by chance; see "
            "tests/manifolds/test_minimize.py). jaxspec evaluates f "
            f"{evals:.2f} times per step in the line search, then once with its gradient: "
            f"{products:.2f} products A·X ({n}×{n}·{n}×{p}, float64) per step, "
            f"{matmul_ms * 1e3:.0f} µs each here, a floor of {floor_ms:.3g} ms per step "
            f"({100 * floor_ms / (js['median_ms'] / max(js['steps'], 1)):.0f}% of its time). "
            f"Against that floor pymanopt's per-step overhead allows at most "
            f"{pm['median_ms'] / max(pm['steps'], 1) / floor_ms:.0f}× on this problem."
        )
    bb, pm_cg = raw["gd"]["jaxspec_bb"], raw["cg"]["pymanopt"]
    notes.append(
        '(a) gd with linesearch="bb" (Barzilai–Borwein steps, Zhang–Hager non-monotone Armijo '
        "condition; Wen and Yin 2013) is the same method, steepest descent along the "
        "retraction with backtracking, under a step rule pymanopt does not offer, so its "
        f"iterates differ: {bb['steps']} steps in {bb['median_ms']:.3g} ms to a relative gap "
        f"of {bb['rel_gap']:.1e}, {bb['speedup']:.0f}× pymanopt's SteepestDescent and "
        f"{pm_cg['median_ms'] / bb['median_ms']:.1f}× pymanopt's ConjugateGradient (its "
        "fastest method here). The rows judged method for method with the same step rule are "
        '"gd" and "cg".'
    )
    return Outcome(rows, raw, notes)


def count_evaluations(method: str, manifold, args) -> float:
    """Objective evaluations per step of the line search (an untimed, instrumented solve)."""
    calls = [0]

    def counted(x, data):
        jax.debug.callback(lambda: calls.__setitem__(0, calls[0] + 1))
        return brockett_cost(x, data)

    x0, a, nn, tol = args
    sol = manifolds.minimize(
        counted, x0, manifold, args=(a, nn), method=method, tol=tol, max_steps=100_000
    )
    steps = int(sol.num_steps)
    return (calls[0] - steps - 1) / max(steps, 1)  # minus one value-and-gradient per iterate


def matmul_time_ms(a: jax.Array, x: jax.Array, reps: int = 2000) -> float:
    """Median ms of one ``a @ x`` inside a compiled loop (what an evaluation of f costs)."""

    def loop(a, x):
        return jax.lax.fori_loop(0, reps, lambda _, v: v + 1e-30 * (a @ v), x)

    case = Case(loop, (a, x))
    compile_case(case)
    run_once(case)
    return 1e3 * float(np.median([run_once(case) for _ in range(5)])) / reps


def _short_stop(reason: str) -> str:
    if "grad norm" in reason:
        return "converged"
    if "max iter" in reason:
        return "max_steps"
    if "step_size" in reason:
        return "min step size"
    return reason.split(" after")[0]


def section_procrustes(cfg: Config, problem: ProcrustesBatch, pymanopt) -> Outcome:
    k, n = cfg.batch, cfg.proc_n
    on = manifolds.Orthogonal(n, retraction="qr")
    pm_manifold = pymanopt.manifolds.Stiefel(n, n)
    tol = jnp.float64(cfg.proc_tol)
    xs, As, Bs = (jnp.asarray(v) for v in (problem.x0, problem.A, problem.B))
    batch_case = Case(partial(jaxspec_procrustes_batch, manifold=on), (xs, As, Bs, tol))
    map_case = Case(partial(jaxspec_procrustes_map, manifold=on), (xs, As, Bs, tol))
    bb_case = Case(
        partial(jaxspec_procrustes_map, manifold=on, method="gd", linesearch="bb"),
        (xs, As, Bs, tol),
    )
    cases = {"jaxspec": batch_case, "jaxspec_map": map_case, "jaxspec_map_bb": bb_case}
    single = Case(partial(jaxspec_procrustes, manifold=on), (xs[0], As[0], Bs[0], tol))
    compile_case(single)

    def jaxspec_sequential():
        out = [single.compiled(xs[i], As[i], Bs[i], tol) for i in range(k)]
        return jax.block_until_ready(out)

    def cost_of(a, b):
        return lambda x: procrustes_cost(x, (a, b))

    pm_problems = {
        jit: [
            pymanopt_problem(pymanopt, pm_manifold, cost_of(a, b), jit=jit) for a, b in zip(As, Bs)
        ]
        for jit in (False, True)
    }
    optimizer = pymanopt_optimizer(pymanopt, "cg", cfg.proc_tol, 1000)

    def pymanopt_sequential(jit: bool):
        return [
            pymanopt_solve(optimizer, prob, problem.x0[i], "cg")
            for i, prob in enumerate(pm_problems[jit])
        ]

    for jit in (False, True):
        warm = pymanopt_optimizer(pymanopt, "cg", cfg.proc_tol, 3)
        pymanopt_solve(warm, pm_problems[jit][0], problem.x0[0], "cg")
    jaxspec_sequential()
    names = {
        "jaxspec": f"jaxspec vmap(minimize) over {k} problems, jit",
        "jaxspec_map": f"jaxspec lax.map(minimize) over {k} problems, jit (one call)",
        "jaxspec_map_bb": f'jaxspec lax.map(minimize(method="gd", linesearch="bb")) over {k} '
        "problems, jit (other step rule)",
        "jaxspec_seq": f"jaxspec minimize, jit, {k} sequential calls (context)",
        "pymanopt": f"pymanopt ConjugateGradient, {k} sequential runs (JAX backend, as documented)",
        "pymanopt_jit": f"pymanopt ConjugateGradient, {k} sequential runs (user-jitted cost + "
        "gradient)",
    }
    timings, results = time_with_host(
        {names[role]: c for role, c in cases.items()},
        {
            names["jaxspec_seq"]: jaxspec_sequential,
            names["pymanopt"]: partial(pymanopt_sequential, False),
            names["pymanopt_jit"]: partial(pymanopt_sequential, True),
        },
        cfg.repeats,
        budget_s=cfg.pymanopt_budget_s,
        min_repeats=cfg.min_repeats,
    )
    timings[names["jaxspec_seq"]].compile_s = float("nan")
    seq = results[names["jaxspec_seq"]]
    outputs = {
        role: (np.asarray(s.x), np.asarray(s.num_steps), np.asarray(s.status))
        for role, s in ((role, c.compiled(*c.args)) for role, c in cases.items())
    } | {
        "jaxspec_seq": (
            np.stack([np.asarray(s.x) for s in seq]),
            np.array([int(s.num_steps) for s in seq]),
            np.array([int(s.status) for s in seq]),
        ),
    }
    for role in ("pymanopt", "pymanopt_jit"):
        runs = results[names[role]]
        outputs[role] = (
            np.stack([r.point for r in runs]),
            np.array([r.steps for r in runs]),
            np.array([0 if _short_stop(r.stop) == "converged" else 1 for r in runs]),
        )
    label = f"(b) {k} Procrustes problems on O({n}) ({cfg.proc_m}×{n} data), tol {cfg.proc_tol:g}"
    base, jit_base = timings[names["pymanopt"]], timings[names["pymanopt_jit"]]
    rows, raw, notes = [], {"label": label, "tol": cfg.proc_tol, "batch": k}, []
    for role, name in names.items():
        x, steps, status = outputs[role]
        t = timings[name]
        gaps = problem.gaps(x)
        r_err = float(np.max(np.abs(x - problem.r_star)))
        gap_ok = bool(np.max(gaps) <= cfg.proc_gap_target)
        converged = int(np.sum(status == Status.CONVERGED))
        row = _row(label, name, f"{steps.min()}…{steps.max()} (Σ {steps.sum()})", t,
                   f"max {np.max(gaps):.1e}", fmt(orthogonality(x), ".1e"),
                   f"{converged}/{k} converged", int(steps.sum()))  # fmt: skip
        row["gap"] = ("PASS" if gap_ok else "**FAIL**") + f" (≤ {cfg.proc_gap_target:g})"
        entry = t.as_dict() | {
            "name": name,
            "steps": steps.tolist(),
            "max_rel_gap": float(np.max(gaps)),
            "max_abs_error_vs_scipy": r_err,
            "converged": converged,
        }
        if role in cases:
            _judge(row, entry, t, base, jit_base, gap_ok)
        else:
            row["speedup vs pymanopt"] = f"{base.median_ms / t.median_ms:.2f}×"
            entry["pass_gap"] = gap_ok
        rows.append(row)
        raw[role] = entry
        notes.append(f"(b) {role}: max |R − R*| vs scipy.linalg.orthogonal_procrustes {r_err:.1e}.")
    same = int(np.sum(outputs["jaxspec"][1] == outputs["pymanopt"][1]))
    vmap_ms, seq_ms = timings[names["jaxspec"]].median_ms, timings[names["jaxspec_seq"]].median_ms
    notes.append(
        f"(b) Steps taken agree with pymanopt's on {same}/{k} problems (conjugate gradients "
        "with the same defaults follow the same iterates). 'ms / step' divides the batch time "
        "by the total number of steps of all problems. Under vmap the while_loop runs until "
        "the slowest problem stops (finished ones are masked) and every batched line search "
        "until its slowest member accepts, so the batch pays max(steps) iterations of "
        f"max(trials) evaluations each: here vmap takes {vmap_ms / seq_ms:.2f}× the time of "
        f"{k} sequential jitted solves on CPU, where batching 20×20 products gains little; "
        "the batched form is the one that maps onto an accelerator or a sharded sweep axis. "
        "On CPU, lax.map solves the problems one after another inside one compiled call "
        f"({timings[names['jaxspec_map']].median_ms / seq_ms:.2f}× the time of the "
        "sequential calls, without their dispatch)."
    )
    return Outcome(rows, raw, notes)


# ----------------------------------------------------------------------------- main


def targets(raw: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    entries = [(raw["a"]["label"] + f" [{m}]", raw["a"][m]["jaxspec"]) for m in ("gd", "cg")]
    entries += [
        (raw["a"]["label"] + " [gd, bb step rule: iterates differ from pymanopt's]",
         raw["a"]["gd"]["jaxspec_bb"]),
        (raw["b"]["label"] + " [vmap]", raw["b"]["jaxspec"]),
        (raw["b"]["label"] + " [lax.map]", raw["b"]["jaxspec_map"]),
        (raw["b"]["label"] + " [lax.map, gd, bb step rule]", raw["b"]["jaxspec_map_bb"]),
    ]  # fmt: skip
    rows = [
        {
            "problem": label,
            "solver": e["name"],
            "speedup": e["speedup"],
            "pass_speed": e["pass_speed"],
            "speedup_vs_jit_pymanopt": e["speedup_vs_jit_pymanopt"],
            "pass_gap": e["pass_gap"],
        }
        for label, e in entries
    ]
    table = markdown_table(
        ("problem", "solver", "speedup vs pymanopt", "speed", "× vs pymanopt+jit", "gap"),
        [
            {
                "problem": r["problem"],
                "solver": r["solver"],
                "speedup vs pymanopt": f"{r['speedup']:.1f}× (≥ {SPEEDUP_TARGET:g}×)",
                "speed": "PASS" if r["pass_speed"] else "**FAIL**",
                "× vs pymanopt+jit": f"{r['speedup_vs_jit_pymanopt']:.1f}×",
                "gap": "PASS" if r["pass_gap"] else "**FAIL**",
            }
            for r in rows
        ],
    )
    return table, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="looser tolerance for CI (< 60 s)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per case")
    parser.add_argument("--out", type=Path, default=None, help="write manifolds.md/.json here")
    args = parser.parse_args(argv)
    cfg = make_config(args.quick, args.repeats)
    jax.config.update("jax_enable_x64", True)
    import pymanopt  # a benchmark-only peer (its JAX backend also turns x64 on)

    start = time.perf_counter()
    env = environment() | {"pymanopt": pymanopt.__version__, "numpy": np.__version__}
    rng = np.random.default_rng(0)
    brockett = make_brockett(rng, cfg.n, cfg.p)
    procrustes = make_procrustes(rng, cfg.batch, cfg.proc_m, cfg.proc_n)
    header = (
        f"# jaxspec.manifolds.minimize benchmark vs pymanopt ({'quick' if cfg.quick else 'full'}"
        f" mode)\n\njax {env['jax']} on {env['backend']} ({env['cpu_count']} CPUs; load average "
        f"at start {env['load_average'][0]:.1f}), pymanopt {env['pymanopt']} (JAX backend), "
        f"numpy {env['numpy']}. float64 on both sides, the same algorithm and constants method "
        "for method, the same stopping rule (Riemannian gradient norm ≤ tol). Up to "
        f"{cfg.repeats} timed runs per case, round-robin (a group stops after "
        f"{cfg.pymanopt_budget_s:g} s of sampling, at least {cfg.min_repeats} runs); medians; "
        "jit compile time excluded and reported separately. Gaps are recomputed on the host. "
        "The machine is shared, so single samples are noisy: read medians and ratios."
    )
    print(header, flush=True)
    rows, raw, notes = [], {}, []
    for key, section, problem in (
        ("a", section_brockett, brockett),
        ("b", section_procrustes, procrustes),
    ):
        outcome = section(cfg, problem, pymanopt)
        rows += outcome.rows
        raw[key] = outcome.raw
        notes += outcome.notes
        print(f"  ({key}) done at {time.perf_counter() - start:.0f} s", flush=True)
    target_md, target_rows = targets(raw)
    elapsed = time.perf_counter() - start
    body = (
        f"## Results\n\n{markdown_table(COLUMNS, rows)}\n\n"
        + "\n\n".join(notes)
        + f"\n\n## Targets\n\n{target_md}\n\nTotal wall time {elapsed:.0f} s."
    )
    if cfg.quick:
        body += (
            " (Quick mode: looser tolerance and fewer Procrustes problems; the targets are "
            "defined in full mode.)"
        )
    print(f"\n{body}", flush=True)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "manifolds.md").write_text(f"{header}\n\n{body}\n")
        payload = {
            "environment": env | {"load_average_end": list(os.getloadavg())},
            "config": asdict(cfg),
            "targets": {"speedup": SPEEDUP_TARGET, "rows": target_rows},
            "brockett": {"f_star": brockett.f_star},
            **raw,
            "wall_time_s": elapsed,
        }
        (args.out / "manifolds.json").write_text(json.dumps(payload, indent=1) + "\n")
        print(f"wrote {args.out / 'manifolds.md'} and {args.out / 'manifolds.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
