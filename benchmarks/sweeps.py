"""Benchmark of hyperparameter sweeps: one ``jit(vmap(run))`` call against a Python loop.

For each of the five modules a small, realistic experiment is written as a pure JAX function
``run(rate, seed) -> metric``: ``rate`` is a traced float32 hyperparameter, ``seed`` a traced
uint32 that becomes ``jax.random.key(seed)`` and draws the problem data (and the start). The
sweep is the product of 16 seeds and 16 log-spaced rates (256 points), run two ways:

* **grid** (how ``jaxspec run`` executes a ``seed x rate`` product, its default layout on
  one device): ``jax.jit(vmap(vmap(run, (0, None)), (None, 0)))``, a ``vmap`` over the 16
  seeds of a ``vmap`` over the 16 rates, one call. What ``run`` derives from the seed alone
  (the problem data) is built and held once per seed, and a per-seed matrix meets the 16
  rates' iterates as one matrix product instead of 16 matrix-vector products;
* **flat** (``jaxspec run --layout flat``): ``jax.jit(jax.vmap(run))`` over the 256 stacked
  ``(rate, seed)`` pairs, one call; every point builds its own copy of the data;
* **map** (``jaxspec run --layout map``): ``jax.jit(lambda r, s: lax.map(run, (r, s)))``,
  the 256 points one after another inside one call: no lockstep and no batched LAPACK, and
  no per-call dispatch;
* **loop**: ``jax.jit(run)`` compiled once for one point and called 256 times from Python
  on scalars already on the device; the outputs are kept and blocked on at the end.

The batched paths also return each point's step count for the table (256 int32; the solvers
count steps anyway).

Experiments (float32; the ranges bracket the best rate, within the stable range):

* ``spectral``: Muon on least squares ``min_W 1/2 mean_i ||x_i W - y_i||^2`` (``W`` 16x16,
  64 samples, target noise 0.01): 50 steps of ``W -= lr_t orthogonalize(g + 0.95 m)``
  (Nesterov momentum 0.95, ``spectral.orthogonalize`` with 5 Polar Express steps, ``lr_t``
  decayed linearly to zero); rate: the step size ``lr`` in [0.01, 1]; metric: the final loss.
* ``frank_wolfe``: ``frank_wolfe.solve`` (vanilla, short step with ``L = ||A||_2^2``) of
  ``frank_wolfe.least_squares`` over ``lmo.l1_ball(radius)`` (``A`` 32x64 Gaussian, ``b``
  from a 4-sparse ``x`` plus noise 0.01), at most 200 steps to a gap of 1e-4; rate: the
  radius in [0.25, 16]; metric: the relative error ``||x_hat - x|| / ||x||``.
* ``sbl``: ``sbl.sbl`` (MacKay updates, at most 200 steps, default tolerance 1e-4) on a
  20x40 Gaussian compressed-sensing problem, 4-sparse signal, noise standard deviation 0.03;
  rate: the fixed ``noise_var`` in [1e-5, 0.1]; metric: the NMSE of the posterior mean.
* ``pursuit``: ``pursuit.ista`` (soft threshold, at most 200 steps, tolerance 1e-4) coding
  one 4-sparse signal plus noise 0.01 on a 32x64 unit-norm Gaussian dictionary; rate: the
  l1 penalty ``lam`` in [1e-3, 0.3]; metric: the relative error of the code.
* ``manifolds``: 60 steps of ``manifolds.riemannian_sgd`` (momentum 0.9, the default QR
  retraction) on the Brockett cost ``tr(X^T A X N)`` on St(20, 4), ``N = diag(4, 3, 2, 1)``;
  rate: the step size in [1e-3, 0.12] (it diverges from about 0.15); metric: the relative
  optimality gap ``(f - f*) / |f*|``.

A single run takes well under 10 ms on one core: the small-problem regime. The loop pays
the per-call dispatch and every kernel's fixed overhead 256 times; the batched sweeps pay
them once, on 256-wide operations. What bounds the gain on CPU (see the notes the script
prints): solvers that stop on a tolerance (a ``lax.while_loop``: frank_wolfe, sbl, pursuit)
run in lockstep under ``vmap`` until the slowest point stops, while the loop stops each point
on its own (the table gives the mean and the largest step count); batched LAPACK calls
(``cholesky``, ``qr``, ``eigh``, ``svd`` under ``vmap``) are a loop over the batch in
jaxlib's CPU kernels, so they gain little; and a batch of small matrix products runs at
XLA:CPU's batched-``dot`` rate, which is low for small matrices. Measured on one core of the
2-CPU AMD EPYC machine the committed table comes from (medians of 7-9 calls):

* 256 batched ``a @ a``: 7 GFLOP/s at 8x8, 28-31 GFLOP/s at 16x16, 78-85 GFLOP/s at 32x32.
  Muon's Newton-Schulz steps on 16x16 matrices take about 70 % of the spectral grid's time.
  XNNPACK (``--xla_cpu_use_xnnpack``) and a multiply-and-reduce formulation were no faster;
* 256 batched 20x20 Cholesky factorizations: 0.9 us each. 256 triangular solves with 40
  right-hand sides: 3.7 us each. Replacing SBL's solves against ``A`` by one triangular
  inverse and matrix products gained only 11 %; the lockstep (3.3x the mean step count)
  dominates there;
* 256 batched QR factorizations of 20x4: 0.8 us each (LAPACK). Unrolled Gram-Schmidt (CGS2)
  is 2.1x faster batched but 4x slower for one matrix, so it would help the sweep by slowing
  the loop.

All three paths must return the same metrics: ``allclose`` at ``rtol = 1e-2`` (tolerance-stopped
solvers may stop one step apart) and ``atol = 1e-6`` times the sweep's largest metric; the
largest absolute difference is reported and a disagreement is flagged. ``spectral`` gets
``atol = 1e-3`` times the largest loss (about 8x the noise floor ``0.5 * 16 * 0.01^2``):
Muon's orthogonalized step has unit singular values whatever the gradient's size, so once
the loss reaches its noise floor (the larger rates) the iterates move chaotically and
round-off grows to the size of the floor (checked in float64 too: the two paths start 1e-15
apart and end 1e-3 apart at the largest rates).

Both paths are compiled ahead of time (compile times reported apart, never in a sample),
warmed up once, then timed round-robin (``_timing.time_with_host``). XLA:CPU gets the
one-thread pool of ``jaxspec.cpu_pool_guard`` on small machines (batched LAPACK calls under
``vmap`` can deadlock a small pool). Target: the grid sweep ``>= 5x`` faster than the loop,
per module, on one CPU core (run it under ``taskset -c 1``).

On a GPU, float32 matrix products run at ``jax_default_matmul_precision`` ``"default"`` as
TF32 (a 10-bit mantissa), and the batched and single-point programs pick different kernels,
so tolerance-stopped solvers stop at different steps and the paths disagree by 1e-2
(relative; measured on an H200). The benchmark therefore sets ``"highest"`` (full float32;
no effect on CPU) unless ``--matmul-precision`` says otherwise.

Usage::

    python benchmarks/sweeps.py [--quick] [--repeats N] [--out DIR] [--matmul-precision P]

``--quick`` (CI) runs 64 points (8 seeds x 8 rates) and 2 timed runs per path (full mode:
256 points, 10 runs);
about half a minute on one core, most of it compilation. ``--out DIR`` writes
``DIR/sweeps.md`` and ``DIR/sweeps.json`` (raw numbers, every sample, every metric). A
missed target is a measurement, not an error: exit code 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _timing import Case, environment, fmt, markdown_table, time_with_host

import jaxspec
from jaxspec import frank_wolfe, manifolds, pursuit, sbl, spectral
from jaxspec.frank_wolfe import lmo

SPEEDUP_TARGET = 5.0
NUM_SEEDS = 16
NUM_RATES = 16
RTOL = 1e-2
ATOL = 1e-6  # times the largest |metric| of the sweep


@dataclass(frozen=True)
class Config:
    seeds: int
    rates: int
    repeats: int
    budget_s: float  # sampling time after which a module stops (after min_repeats rounds)
    min_repeats: int
    quick: bool


def make_config(quick: bool, repeats: int | None) -> Config:
    if quick:
        return Config(8, 8, repeats or 2, 3.0, 1, True)  # 64 points: a smoke run for CI
    return Config(NUM_SEEDS, NUM_RATES, repeats or 10, 30.0, 3, False)


# ----------------------------------------------------------------------------- experiments
#
# Each ``solve(rate, seed)`` returns ``(metric, steps)``; the timed ``run`` keeps the metric
# only, and the step counts are read once, untimed, for the table.


def _sparse(key: jax.Array, n: int, k: int, batch: tuple[int, ...] = ()) -> jax.Array:
    """``k``-sparse vectors of length ``n``: random support, values ``±(0.5 + |N(0, 1)|)``."""
    k_idx, k_val, k_sign = jax.random.split(key, 3)
    scores = jax.random.uniform(k_idx, (*batch, n))
    support = jnp.argsort(scores, axis=-1)[..., :k]
    values = 0.5 + jnp.abs(jax.random.normal(k_val, (*batch, k)))
    values = values * jax.random.rademacher(k_sign, (*batch, k), jnp.float32)
    x = jnp.zeros((*batch, n))
    return jnp.put_along_axis(x, support, values, axis=-1, inplace=False)


def muon_least_squares(lr: jax.Array, seed: jax.Array) -> tuple[jax.Array, jax.Array]:
    steps, beta = 50, 0.95
    k_x, k_w, k_n = jax.random.split(jax.random.key(seed), 3)
    x = jax.random.normal(k_x, (64, 16))
    w_true = jax.random.normal(k_w, (16, 16)) / 4.0
    y = x @ w_true + 0.01 * jax.random.normal(k_n, (64, 16))

    def loss(w):
        return 0.5 * jnp.mean(jnp.sum((x @ w - y) ** 2, axis=1))

    def step(carry, t):
        w, m = carry
        g = jax.grad(loss)(w)
        m = beta * m + g
        update = spectral.orthogonalize(g + beta * m, steps=5)  # Nesterov momentum
        return (w - lr * (1.0 - t / steps) * update, m), None  # linear decay to zero

    zeros = jnp.zeros((16, 16))
    (w, _), _ = jax.lax.scan(step, (zeros, zeros), jnp.arange(steps, dtype=jnp.float32))
    return loss(w), jnp.int32(steps)


def frank_wolfe_l1(radius: jax.Array, seed: jax.Array) -> tuple[jax.Array, jax.Array]:
    k_a, k_x, k_n = jax.random.split(jax.random.key(seed), 3)
    a = jax.random.normal(k_a, (32, 64)) / jnp.sqrt(32.0)
    x = _sparse(k_x, 64, 4)
    b = a @ x + 0.01 * jax.random.normal(k_n, (32,))
    sol = frank_wolfe.solve(
        frank_wolfe.least_squares(a, b),
        jnp.zeros(64),
        lmo.l1_ball(radius),
        step="short",
        lipschitz=jnp.linalg.norm(a, 2) ** 2,
        max_steps=200,
        tol=1e-4,
    )
    return jnp.linalg.norm(sol.x - x) / jnp.linalg.norm(x), sol.num_steps


def sbl_compressed_sensing(noise_var: jax.Array, seed: jax.Array) -> tuple[jax.Array, jax.Array]:
    k_a, k_x, k_n = jax.random.split(jax.random.key(seed), 3)
    a = jax.random.normal(k_a, (20, 40)) / jnp.sqrt(20.0)
    x = _sparse(k_x, 40, 4)
    y = a @ x + 0.03 * jax.random.normal(k_n, (20,))
    sol = sbl.sbl(a, y, noise_var=noise_var, max_steps=200)
    return jnp.sum((sol.mean - x) ** 2) / jnp.sum(x**2), sol.num_steps


def ista_lasso(lam: jax.Array, seed: jax.Array) -> tuple[jax.Array, jax.Array]:
    k_d, k_x, k_n = jax.random.split(jax.random.key(seed), 3)
    d = jax.random.normal(k_d, (32, 64))
    d = d / jnp.linalg.norm(d, axis=0)
    x = _sparse(k_x, 64, 4)
    y = d @ x + 0.01 * jax.random.normal(k_n, (32,))
    sol = pursuit.ista(d, y, lam, max_steps=200, tol=1e-4)
    return jnp.linalg.norm(sol.codes - x) / jnp.linalg.norm(x), sol.num_steps


def brockett_sgd(lr: jax.Array, seed: jax.Array) -> tuple[jax.Array, jax.Array]:
    steps, n, p = 60, 20, 4
    k_a, k_x = jax.random.split(jax.random.key(seed))
    st = manifolds.Stiefel(n, p)
    g = jax.random.normal(k_a, (n, n))
    a = (g + g.T) / jnp.sqrt(2.0 * n)
    mu = jnp.arange(p, 0, -1, dtype=jnp.float32)
    f_star = jnp.sum(mu * jnp.linalg.eigvalsh(a)[:p])  # mu descending, eigenvalues ascending

    def cost(x):
        return jnp.sum(x * (a @ x) * mu)

    opt = manifolds.riemannian_sgd(lr, manifold=st, momentum=0.9)

    def step(carry, _):
        x, state = carry
        updates, state = opt.update(jax.grad(cost)(x), state, x)
        return (optax.apply_updates(x, updates), state), None

    x0 = st.random(k_x)
    (x, _), _ = jax.lax.scan(step, (x0, opt.init(x0)), length=steps)
    return (cost(x) - f_star) / jnp.abs(f_star), jnp.int32(steps)


@dataclass(frozen=True)
class Experiment:
    module: str
    description: str
    rate: str  # what the swept value is
    low: float
    high: float
    metric: str
    solve: Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]
    atol: float = ATOL  # agreement: absolute tolerance, times the sweep's largest |metric|

    def run(self, rate: jax.Array, seed: jax.Array) -> jax.Array:
        return self.solve(rate, seed)[0]


EXPERIMENTS = (
    Experiment(
        "spectral",
        "Muon, W 16x16 least squares, 50 steps",
        "step size",
        1e-2,
        1.0,
        "final loss",
        muon_least_squares,
        atol=1e-3,  # chaotic at its noise floor: see the module docstring
    ),
    Experiment(
        "frank_wolfe",
        "Frank–Wolfe, l1 ball, A 32x64, ≤ 200 steps",
        "l1 radius",
        0.25,
        16.0,
        "relative error of x",
        frank_wolfe_l1,
    ),
    Experiment(
        "sbl",
        "MacKay SBL, A 20x40, ≤ 200 steps",
        "noise_var",
        1e-5,
        1e-1,
        "NMSE",
        sbl_compressed_sensing,
    ),
    Experiment(
        "pursuit",
        "ISTA lasso, D 32x64, one signal, ≤ 200 steps",
        "lam",
        1e-3,
        3e-1,
        "relative error of the code",
        ista_lasso,
    ),
    Experiment(
        "manifolds",
        "Riemannian SGD, Brockett on St(20, 4), 60 steps",
        "step size",
        1e-3,
        0.12,
        "relative gap",
        brockett_sgd,
    ),
)


# ----------------------------------------------------------------------------- measurement


def sweep_grid(exp: Experiment, cfg: Config) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rates, and the ``(rate, seed)`` pairs of the product, rate-major."""
    rates = np.geomspace(exp.low, exp.high, cfg.rates).astype(np.float32)
    seeds = np.arange(cfg.seeds, dtype=np.uint32)
    return rates, np.repeat(rates, cfg.seeds), np.tile(seeds, cfg.rates)


def _nested(solve: Callable) -> Callable:
    """``(rates (R,), seeds (S,)) -> outputs (S, R)``: a vmap over seeds of a vmap over rates."""
    return jax.vmap(jax.vmap(solve, in_axes=(0, None)), in_axes=(None, 0))


def _sequential(solve: Callable) -> Callable:
    """``(rates (N,), seeds (N,)) -> outputs (N,)``: the points one after another, in one call
    (``lax.map``; ``jaxspec run --layout map``)."""
    return lambda rates, seeds: jax.lax.map(lambda point: solve(*point), (rates, seeds))


def measure(exp: Experiment, cfg: Config) -> tuple[dict[str, str], dict[str, Any]]:
    rates, rate_pts, seed_pts = sweep_grid(exp, cfg)
    rate_all, seed_all = jnp.asarray(rate_pts), jnp.asarray(seed_pts)
    seeds = jnp.arange(cfg.seeds, dtype=jnp.uint32)
    # the batched calls also return the step counts for the table (256 int32: negligible)
    flat = Case(jax.vmap(exp.solve), (rate_all, seed_all))
    grid = Case(_nested(exp.solve), (jnp.asarray(rates), seeds))
    mapped = Case(_sequential(exp.solve), (rate_all, seed_all))

    start = time.perf_counter()
    single = jax.jit(exp.run).lower(rate_all[0], seed_all[0]).compile()
    single_compile_s = time.perf_counter() - start
    points = [(rate_all[i], seed_all[i]) for i in range(rate_all.shape[0])]  # on the device

    def loop() -> list[jax.Array]:
        return jax.block_until_ready([single(rate, seed) for rate, seed in points])

    loop()  # warm-up, as the batched cases get inside time_with_host
    timings, host = time_with_host(
        {"grid": grid, "flat": flat, "map": mapped},
        {"loop": loop},
        cfg.repeats,
        budget_s=cfg.budget_s,
        min_repeats=cfg.min_repeats,
    )
    timings["loop"].compile_s = single_compile_s
    t_grid, t_flat, t_loop = timings["grid"], timings["flat"], timings["loop"]
    t_map = timings["map"]

    out_flat, steps = (np.asarray(v) for v in flat.compiled(*flat.args))
    out_map, steps_map = (np.asarray(v) for v in mapped.compiled(*mapped.args))
    out_grid, steps_grid = (np.asarray(v) for v in grid.compiled(*grid.args))
    # grid outputs are (seed, rate); the points are rate-major (rate, seed)
    out_grid, steps_grid = out_grid.T.reshape(-1), steps_grid.T.reshape(-1)
    out_loop = np.array([float(v) for v in host["loop"]])
    scale = float(np.max(np.abs(out_loop)))
    diffs, agree = {}, {}
    for name, out in (("grid", out_grid), ("flat", out_flat), ("map", out_map)):
        out = out.astype(np.float64)
        diffs[name] = np.abs(out - out_loop)
        agree[name] = bool(np.allclose(out, out_loop, rtol=RTOL, atol=exp.atol * scale))
    finite = bool(np.all(np.isfinite(out_loop)))
    by_rate = np.median(out_loop.reshape(cfg.rates, cfg.seeds), axis=1)
    best = int(np.argmin(by_rate))
    speedup = t_loop.median_ms / t_grid.median_ms
    speedup_flat = t_loop.median_ms / t_flat.median_ms
    speedup_map = t_loop.median_ms / t_map.median_ms
    max_diff = max(float(np.max(d)) for d in diffs.values())
    row = {
        "module": exp.module,
        "experiment": exp.description,
        "swept → metric": f"{exp.rate} {exp.low:g}…{exp.high:g} → {exp.metric}",
        "points": str(rate_pts.size),
        "grid median ms": fmt(t_grid.median_ms),
        "flat median ms": fmt(t_flat.median_ms),
        "map median ms": fmt(t_map.median_ms),
        "loop median ms": fmt(t_loop.median_ms),
        "speed-up grid / flat / map": (
            f"**{speedup:.1f}×** / {speedup_flat:.1f}× / {speedup_map:.1f}×"
        ),
        "compile s (grid / flat / map / single)": (
            f"{t_grid.compile_s:.2f} / {t_flat.compile_s:.2f} / {t_map.compile_s:.2f} / "
            f"{t_loop.compile_s:.2f}"
        ),
        "steps mean / max": f"{steps.mean():.0f} / {steps.max()}",
        "max |diff|": f"{max_diff:.1e}" + ("" if all(agree.values()) else " **DISAGREE**"),
        f"target ≥ {SPEEDUP_TARGET:g}× (grid)": (
            "PASS" if speedup >= SPEEDUP_TARGET else "**MISS**"
        ),
    }
    raw = {
        "experiment": exp.description,
        "rate": exp.rate,
        "metric": exp.metric,
        "rates": rates.tolist(),
        "seeds": cfg.seeds,
        "grid": t_grid.as_dict(),
        "flat": t_flat.as_dict(),
        "map": t_map.as_dict(),
        "loop": t_loop.as_dict(),
        "speedup": speedup,
        "speedup_flat": speedup_flat,
        "speedup_map": speedup_map,
        "grid_over_flat": t_flat.median_ms / t_grid.median_ms,
        "meets_target": speedup >= SPEEDUP_TARGET,
        "loop_per_call_us": 1e3 * t_loop.median_ms / rate_pts.size,
        "grid_per_point_us": 1e3 * t_grid.median_ms / rate_pts.size,
        "flat_per_point_us": 1e3 * t_flat.median_ms / rate_pts.size,
        "map_per_point_us": 1e3 * t_map.median_ms / rate_pts.size,
        "max_abs_diff": {k: float(np.max(d)) for k, d in diffs.items()},
        "atol": exp.atol * scale,
        "max_rel_diff": {
            k: float(np.max(d / np.maximum(np.abs(out_loop), 1e-30))) for k, d in diffs.items()
        },
        "agree": agree,
        "finite": finite,
        "steps_mean": float(steps.mean()),
        "steps_max": int(steps.max()),
        "steps_max_abs_diff": int(np.max(np.abs(steps.astype(int) - steps_grid.astype(int)))),
        "steps_differ_at": int(np.sum(steps != steps_grid)),
        "best_rate": float(rates[best]),
        "best_median_metric": float(by_rate[best]),
        "median_metric_by_rate": by_rate.tolist(),
        "metrics_loop": out_loop.tolist(),
        "metrics_grid": out_grid.tolist(),
        "metrics_flat": out_flat.tolist(),
        "metrics_map": out_map.tolist(),
        "steps_map_max_abs_diff": int(np.max(np.abs(steps.astype(int) - steps_map.astype(int)))),
    }
    return row, raw


COLUMNS = (
    "module",
    "experiment",
    "swept → metric",
    "points",
    "grid median ms",
    "flat median ms",
    "map median ms",
    "loop median ms",
    "speed-up grid / flat / map",
    "compile s (grid / flat / map / single)",
    "steps mean / max",
    "max |diff|",
    f"target ≥ {SPEEDUP_TARGET:g}× (grid)",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer timed runs for CI")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per path")
    parser.add_argument("--out", type=Path, default=None, help="write sweeps.md/.json here")
    parser.add_argument(
        "--matmul-precision",
        choices=("default", "high", "highest"),
        default="highest",
        help="jax_default_matmul_precision (GPUs: 'default' is TF32; no effect on CPU)",
    )
    args = parser.parse_args(argv)
    cfg = make_config(args.quick, args.repeats)
    guarded = jaxspec.cpu_pool_guard()  # before the first JAX computation
    jax.config.update("jax_default_matmul_precision", args.matmul_precision)

    start = time.perf_counter()
    env = environment() | {
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_pool_guard": guarded,
        "matmul_precision": args.matmul_precision,
        "numpy": np.__version__,
    }
    header = (
        f"# Hyperparameter sweeps: jit(vmap(vmap(run))), jit(vmap(run)) and jit(lax.map(run)) "
        f"vs a Python loop of jit(run) "
        f"({'quick' if cfg.quick else 'full'} mode)\n\njax {env['jax']} on {env['backend']} "
        f"({env['cpus_usable']} of {env['cpu_count']} CPUs usable; XLA:CPU one-thread pool: "
        f"{'yes' if guarded else 'no'}; load average at start {env['load_average'][0]:.1f}), "
        f"float32, matmul precision {args.matmul_precision}. {cfg.seeds} seeds × {cfg.rates} "
        "log-spaced rates per module. Up to "
        f"{cfg.repeats} timed runs per path, round-robin (a module stops after "
        f"{cfg.budget_s:g} s of sampling, at least {cfg.min_repeats} runs); medians; compile "
        "time excluded and reported separately. Speed-up = loop median / batched median; grid = "
        "a vmap over seeds of a vmap over rates (jaxspec run's default), flat = one vmap over "
        "the points, map = the points one after another in one call (lax.map; "
        "--layout map)."
    )
    print(header, flush=True)
    print(f"\nenvironment: {json.dumps(env, default=str)}", flush=True)
    rows, raw = [], {}
    for exp in EXPERIMENTS:
        row, raw[exp.module] = measure(exp, cfg)
        rows.append(row)
        print(
            f"  {exp.module}: {row['speed-up grid / flat / map']} ({row['grid median ms']} / "
            f"{row['flat median ms']} / {row['map median ms']} ms vs {row['loop median ms']} "
            "ms), done at "
            f"{time.perf_counter() - start:.0f} s",
            flush=True,
        )
    notes = []
    for module, r in raw.items():
        for name, ok in r["agree"].items():
            if not ok:
                notes.append(
                    f"- **{module}: {name} and loop disagree** (max |diff| "
                    f"{r['max_abs_diff'][name]:.2e}, relative {r['max_rel_diff'][name]:.2e}): "
                    "reduced-precision matrix products (on GPUs, matmul precision 'default' "
                    "is TF32), float32 round-off the experiment amplifies, or a bug in the "
                    "benchmark or the solver."
                )
        if r["steps_differ_at"]:
            notes.append(
                f"- {module}: grid and flat stop at different steps at {r['steps_differ_at']} "
                f"point(s), by at most {r['steps_max_abs_diff']} (round-off near the stopping "
                "tolerance; the metrics still agree)."
            )
        if not r["finite"]:
            notes.append(f"- {module}: some metrics are not finite (a diverging rate).")
    per_point = ", ".join(
        f"{m} {r['loop_per_call_us']:.0f} / {r['grid_per_point_us']:.0f} / "
        f"{r['flat_per_point_us']:.0f} / {r['map_per_point_us']:.0f}"
        for m, r in raw.items()
    )
    lockstep = [
        f"{m} {r['steps_max'] / r['steps_mean']:.1f}"
        for m, r in raw.items()
        if r["steps_max"] != r["steps_mean"]
    ]
    if lockstep:
        notes.append(
            "- Lockstep: under vmap every point runs as many steps as the slowest one; the work "
            "of a batched sweep over the loop's (largest / mean steps): "
            + ", ".join(lockstep)
            + "."
        )
    notes.append(
        f"- Per point, µs (loop call / grid share / flat share / map share): {per_point}.\n"
        "- Grid over flat: "
        + ", ".join(f"{m} {r['grid_over_flat']:.1f}×" for m, r in raw.items())
        + ".\n- Fastest layout (its speed-up over the loop): "
        + ", ".join(
            f"{m} {best} {r[key]:.1f}×"
            for m, r in raw.items()
            for best, key in [
                max(
                    (("grid", "speedup"), ("flat", "speedup_flat"), ("map", "speedup_map")),
                    key=lambda pair, r=r: r[pair[1]],
                )
            ]
        )
        + ".\n- Best rate by the "
        "median metric over seeds: "
        + ", ".join(f"{m} {r['rate']} {r['best_rate']:.3g}" for m, r in raw.items())
        + "."
    )
    passed = sum(r["meets_target"] for r in raw.values())
    elapsed = time.perf_counter() - start
    body = (
        f"## Results\n\n{markdown_table(COLUMNS, rows)}\n\n"
        + "\n".join(notes)
        + f"\n\n{passed} of {len(raw)} modules meet the ≥ {SPEEDUP_TARGET:g}× target (grid). "
        f"Total wall time {elapsed:.0f} s."
    )
    print(f"\n{body}", flush=True)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "sweeps.md").write_text(f"{header}\n\n{body}\n")
        payload = {
            "environment": env | {"load_average_end": list(os.getloadavg())},
            "config": asdict(cfg),
            "target_speedup": SPEEDUP_TARGET,
            "tolerance": {
                "rtol": RTOL,
                "atol_times_max_metric": {exp.module: exp.atol for exp in EXPERIMENTS},
            },
            "modules": raw,
        }
        (args.out / "sweeps.json").write_text(json.dumps(payload, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
