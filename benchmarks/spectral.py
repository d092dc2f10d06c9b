"""Benchmark of ``jaxspec.spectral`` against its peers, all in one process on the same matrices.

Sections:

1. ``orthogonalize`` (5 steps, float32) vs optax's Muon Newton–Schulz (public
   ``optax.contrib.scale_by_muon``) vs the SVD polar factor vs ``jax.scipy.linalg.polar``
   (QDWH): median ms, GFLOP/s, fraction of this machine's matmul throughput measured in the
   same run on the same product shapes, and accuracy ``max |1 - sigma|`` of the output.
2. ``polar`` to ``tol=1e-6`` in float64 on a matrix of condition number 1e3 vs the SVD path vs
   QDWH: ms, steps, achieved error.
3. ``soft_clip`` / ``hard_clip`` vs a 5-step ``orthogonalize`` of the same shape: time ratio,
   and accuracy against the SVD formulas ``sigma / sqrt(1 + sigma^2/c^2)`` and ``min(sigma, c)``.
4. Targets (PASS/FAIL). A failed target is a measurement, not an error: exit code 0.

Usage::

    python benchmarks/spectral.py [--quick] [--repeats N] [--out DIR]

``--quick`` (CI) uses small shapes and finishes in well under a minute on two cores.
``--out DIR`` also writes ``DIR/spectral.md`` (the tables) and ``DIR/spectral.json`` (raw
numbers, every sample).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _timing import Case, environment, fmt, markdown_table, time_group, timing_cells

import jaxspec
from jaxspec import spectral

SOFT_CLIP_TARGET = 2.5  # soft_clip time / 5-step orthogonalize time, at most
MATMUL_TARGET = 0.75  # orthogonalize GFLOP/s / measured matmul GFLOP/s, at least
POLAR_TOL = 1e-6


@dataclass(frozen=True)
class Config:
    shapes: tuple[tuple[int, ...], ...]  # section 1 (float32)
    polar_n: int  # section 2 (float64, n x n)
    clip_shapes: tuple[tuple[int, ...], ...]  # section 3 (float32)
    repeats: int
    slow_budget_s: float  # sampling time after which slow reference paths stop
    min_repeats: int  # ... but only after this many runs
    quick: bool


def make_config(quick: bool, repeats: int | None) -> Config:
    if quick:
        return Config(
            shapes=((256, 256), (128, 512), (4, 64, 64)),
            polar_n=256,
            clip_shapes=((256, 256), (128, 512)),
            repeats=repeats or 5,
            slow_budget_s=1.0,
            min_repeats=2,
            quick=True,
        )
    return Config(
        shapes=((1024, 1024), (512, 2048), (16, 256, 256)),
        polar_n=1024,
        clip_shapes=((1024, 1024), (512, 2048)),
        repeats=repeats or 10,
        slow_budget_s=20.0,
        min_repeats=3,
        quick=False,
    )


# ----------------------------------------------------------------------------- inputs


def shape_name(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape))


def gaussian(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_normal(shape)


def orthonormal(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((rows, cols)))
    return q * np.sign(np.diag(r))


def spread(
    rng: np.random.Generator, shape: tuple[int, ...], lower: float = 1e-3
) -> tuple[np.ndarray, np.ndarray]:
    """Matrices with singular values log-spaced over ``[lower, 1]``; returns ``(x, polar(x))``."""
    *batch, m, n = shape
    k = min(m, n)
    xs, qs = [], []
    for _ in range(int(np.prod(batch, dtype=int))):
        u, v = orthonormal(rng, m, k), orthonormal(rng, n, k)
        xs.append((u * np.geomspace(lower, 1.0, k)) @ v.T)
        qs.append(u @ v.T)
    return np.reshape(xs, shape), np.reshape(qs, shape)


def singular_values(x: Any) -> np.ndarray:
    """Singular values in float64 (descending, per matrix) of a host copy of ``x``."""
    return np.linalg.svd(np.asarray(x, dtype=np.float64), compute_uv=False)


def max_dev_from_one(x: Any) -> float:
    return float(np.max(np.abs(1.0 - singular_values(x))))


def f32(x: np.ndarray) -> jax.Array:
    return jnp.asarray(x, dtype=jnp.float32)


def swap(x: jax.Array) -> jax.Array:
    return jnp.swapaxes(x, -1, -2)


# ----------------------------------------------------------------------------- section 1

CHAIN = "5 × (X·Xᵀ, A·A, B·X) in one program"
NS_COLUMNS = (
    "method",
    "median ms",
    "IQR ms",
    "compile s",
    "GFLOP/s",
    "% of matmul",
    "time / orthogonalize(PE)",
    "max|1−σ| Gaussian",
    "max|1−σ| σ∈[1e-3,1]",
)


def ns_flops(shape: tuple[int, ...], steps: int = 5) -> float:
    """``steps (4 m^2 n + 2 m^3)`` per matrix, ``m <= n``."""
    *batch, m, n = shape
    m, n = min(m, n), max(m, n)
    return float(np.prod(batch, dtype=int)) * steps * (4 * m * m * n + 2 * m**3)


def matmul(a: jax.Array, b: jax.Array) -> jax.Array:
    return a @ b


def matmul_chain(x: jax.Array) -> jax.Array:
    """The 15 products of 5 Newton–Schulz steps and nothing else, in a ``scan`` like the real one.

    ``x`` has orthonormal rows, so ``X Xᵀ = I`` and the chain neither overflows nor underflows.
    """

    def body(x, _):
        gram = x @ swap(x)
        return (gram @ gram) @ x, None

    return jax.lax.scan(body, x, None, length=5)[0]


def rows_orthonormal(rng: np.random.Generator, batch: list[int], m: int, n: int) -> jax.Array:
    mats = [orthonormal(rng, n, m).T for _ in range(int(np.prod(batch, dtype=int)))]
    return f32(np.reshape(mats, (*batch, m, n)))


def optax_muon(shape: tuple[int, ...]) -> optax.GradientTransformation:
    """optax's Muon Newton–Schulz through its public API: no momentum, Jordan's quintic."""
    dims = None
    if len(shape) == 3:  # leading axis = batch axis, vmapped by optax
        dims = optax.contrib.MuonDimensionNumbers(reduction_axis=1, output_axis=2)
    return optax.contrib.scale_by_muon(
        ns_coeffs=(3.4445, -4.7750, 2.0315),
        ns_steps=5,
        beta=0.0,
        nesterov=False,
        weight_dimension_numbers=dims,
    )


def muon_update(tx: optax.GradientTransformation):
    return lambda g, state: tx.update(g, state)[0]


def scipy_polar(x: jax.Array) -> jax.Array:
    # QDWH wants the side whose polar factor has the input's shape: "left" for wide inputs.
    side = "left" if x.shape[-2] < x.shape[-1] else "right"
    return jax.scipy.linalg.polar(x, side=side, method="qdwh")[0]


def section_orthogonalize(cfg: Config, rng: np.random.Generator) -> tuple[str, dict[str, Any]]:
    out_md, raw = [], {}
    for shape in cfg.shapes:
        *batch, rows, cols = shape
        m, n = min(rows, cols), max(rows, cols)
        x = f32(gaussian(rng, shape))
        x_spread = f32(spread(rng, shape)[0])
        a, b = f32(gaussian(rng, (*batch, m, n))), f32(gaussian(rng, (*batch, n, m)))
        s1, s2 = f32(gaussian(rng, (*batch, m, m))), f32(gaussian(rng, (*batch, m, m)))
        tx = optax_muon(shape)
        state = tx.init(x)

        size = float(np.prod(batch, dtype=int))
        matmuls = {
            f"X·Xᵀ-shaped ({m},{n})@({n},{m})": (Case(matmul, (a, b)), size * 2 * m * m * n),
            f"A·A-shaped ({m},{m})@({m},{m})": (Case(matmul, (s1, s2)), size * 2 * m**3),
            f"B·X-shaped ({m},{m})@({m},{n})": (Case(matmul, (s1, a)), size * 2 * m * m * n),
        }
        chain = {CHAIN: Case(matmul_chain, (rows_orthonormal(rng, batch, m, n),))}
        methods = {
            "orthogonalize polar_express": Case(
                lambda x: spectral.orthogonalize(x, "polar_express", 5), (x,)
            ),
            "orthogonalize jordan": Case(lambda x: spectral.orthogonalize(x, "jordan", 5), (x,)),
            "optax scale_by_muon (jordan)": Case(muon_update(tx), (x, state)),
        }
        slow = {
            "SVD polar (spectral.polar svd)": Case(
                lambda x: spectral.polar(x, method="svd").factor, (x,)
            ),
            "jax.scipy.linalg.polar (qdwh)": Case(scipy_polar, (x,)),
        }
        fast = {name: case for name, (case, _) in matmuls.items()} | chain | methods
        timings = time_group(fast, cfg.repeats)
        timings |= time_group(
            slow, cfg.repeats, budget_s=cfg.slow_budget_s, min_repeats=cfg.min_repeats
        )

        flops = ns_flops(shape)
        # One NS step is exactly these three products. Reference 1: each as its own jitted
        # call (flop-weighted); reference 2: the 15 products of 5 steps in one program, nothing
        # else. This machine's matmul throughput is taken as the better of the two.
        single_ms = sum(timings[name].median_ms for name in matmuls)
        single_gflops = sum(fl for _, fl in matmuls.values()) / single_ms / 1e6
        chain_gflops = flops / timings[CHAIN].median_ms / 1e6
        ref_gflops = max(single_gflops, chain_gflops)

        # scale_by_muon returns the NS output itself (the shape factor lives in optax.contrib.muon):
        # check that against our Jordan iteration and divide any scale away for the accuracy.
        ours = np.asarray(methods["orthogonalize jordan"].compiled(x), np.float64)
        theirs = np.asarray(methods["optax scale_by_muon (jordan)"].compiled(x, state), np.float64)
        optax_scale = float(np.vdot(theirs, ours) / np.vdot(ours, ours))
        optax_diff = float(np.max(np.abs(theirs / optax_scale - ours)))

        table, rows_raw = [], {}
        for name, (_, fl) in matmuls.items():
            t = timings[name]
            gflops = fl / t.median_ms / 1e6
            table.append(
                {"method": f"matmul {name}", **timing_cells(t), "GFLOP/s": fmt(gflops, ".1f")}
            )
            rows_raw[name] = t.as_dict() | {"gflops": gflops, "flops": fl}
        for label, gflops, t in (
            ("the 3 products as single calls", single_gflops, None),
            (CHAIN, chain_gflops, timings[CHAIN]),
        ):
            row = {
                "method": f"**matmul reference**: {label}",
                "GFLOP/s": fmt(gflops, ".1f"),
                "% of matmul": f"{100 * gflops / ref_gflops:.0f}%",
            }
            table.append(row | (timing_cells(t) if t else {"median ms": fmt(single_ms)}))
        rows_raw[CHAIN] = timings[CHAIN].as_dict() | {"gflops": chain_gflops, "flops": flops}

        ortho_ms = timings["orthogonalize polar_express"].median_ms
        for name, case in (methods | slow).items():
            t = timings[name]
            extra = case.args[1:]
            scale = optax_scale if name.startswith("optax") else 1.0
            err_g = max_dev_from_one(np.asarray(case.compiled(x, *extra)) / scale)
            err_s = max_dev_from_one(np.asarray(case.compiled(x_spread, *extra)) / scale)
            row = {
                "method": name,
                **timing_cells(t),
                "time / orthogonalize(PE)": fmt(t.median_ms / ortho_ms, ".2f"),
                "max|1−σ| Gaussian": fmt(err_g, ".2e"),
                "max|1−σ| σ∈[1e-3,1]": fmt(err_s, ".2e"),
            }
            rows_raw[name] = t.as_dict() | {"max_dev_gaussian": err_g, "max_dev_spread": err_s}
            if name in methods:
                gflops = flops / t.median_ms / 1e6
                row |= {
                    "GFLOP/s": fmt(gflops, ".1f"),
                    "% of matmul": f"{100 * gflops / ref_gflops:.0f}%",
                }
                rows_raw[name] |= {"gflops": gflops, "fraction_of_matmul": gflops / ref_gflops}
            table.append(row)
        out_md.append(
            f"### {shape_name(shape)} float32\n\n"
            + markdown_table(NS_COLUMNS, table)
            + f"\n\n5 NS steps = 20m²n + 10m³ = {flops / 1e9:.3g} GFLOP. '% of matmul' = GFLOP/s "
            "over the better matmul reference. optax output / orthogonalize(jordan) = "
            f"{optax_scale:.6f} (max abs difference {optax_diff:.1e} after dividing it out)."
        )
        raw[shape_name(shape)] = {
            "rows": rows_raw,
            "matmul_reference_gflops": ref_gflops,
            "matmul_single_calls_gflops": single_gflops,
            "matmul_chain_gflops": chain_gflops,
            "ns_flops": flops,
            "optax_scale": optax_scale,
            "optax_max_abs_diff": optax_diff,
        }
    return "\n\n".join(out_md), raw


# ----------------------------------------------------------------------------- section 2

POLAR_COLUMNS = (
    "method",
    "median ms",
    "IQR ms",
    "compile s",
    "steps",
    "status",
    "‖QQᵀ−I‖_F",
    "max|1−σ|",
    "max|Q−Q*|",
    "time / SVD",
    "time / matmul",
)


def section_polar(cfg: Config, rng: np.random.Generator) -> tuple[str, dict[str, Any]]:
    n = cfg.polar_n
    x_host, q_exact = spread(rng, (n, n), lower=1e-3)  # condition number 1e3
    with jax.enable_x64(True):
        x = jnp.asarray(x_host, dtype=jnp.float64)
        y = jnp.asarray(gaussian(rng, (n, n)), dtype=jnp.float64)
        mm_name = f"matmul ({n},{n})@({n},{n})"
        cases = {
            mm_name: Case(matmul, (x, y)),
            "polar newton_schulz (tol 1e-6)": Case(lambda a: spectral.polar(a, POLAR_TOL), (x,)),
            "polar svd": Case(lambda a: spectral.polar(a, POLAR_TOL, method="svd"), (x,)),
            "jax.scipy.linalg.polar (qdwh)": Case(lambda a: jax.scipy.linalg.polar(a)[0], (x,)),
        }
        timings = time_group(
            cases, cfg.repeats, budget_s=2 * cfg.slow_budget_s, min_repeats=cfg.min_repeats
        )
        results = {name: case.compiled(*case.args) for name, case in cases.items()}
        qdwh_iters = int(jax.lax.linalg.qdwh(x)[2])

    svd_ms = timings["polar svd"].median_ms
    mm_ms = timings[mm_name].median_ms
    table, raw = [], {}
    for name, t in timings.items():
        row = {
            "method": name,
            **timing_cells(t),
            "time / SVD": fmt(t.median_ms / svd_ms, ".3f"),
            "time / matmul": fmt(t.median_ms / mm_ms, ".1f"),
        }
        raw[name] = t.as_dict()
        if name == mm_name:
            gflops = 2 * n**3 / t.median_ms / 1e6
            table.append(row | {"steps": f"({gflops:.1f} GFLOP/s)"})
            raw[name]["gflops"] = gflops
            continue
        res = results[name]
        if isinstance(res, spectral.PolarSolution):
            q, steps, err = np.asarray(res.factor), int(res.num_steps), float(res.error)
            status = jaxspec.Status(int(res.status)).name.lower()
        else:
            q, steps, status = np.asarray(res), qdwh_iters, "—"
            err = float(np.linalg.norm(q.T @ q - np.eye(n)))
        dev = max_dev_from_one(q)
        diff = float(np.max(np.abs(q - q_exact)))
        raw[name] |= {
            "steps": steps,
            "status": status,
            "error": err,
            "max_dev": dev,
            "max_diff": diff,
        }
        table.append(
            row
            | {
                "steps": str(steps),
                "status": status,
                "‖QQᵀ−I‖_F": fmt(err, ".1e"),
                "max|1−σ|": fmt(dev, ".1e"),
                "max|Q−Q*|": fmt(diff, ".1e"),
            }
        )
    md = (
        f"### {n}×{n} float64, σ log-spaced over [1e-3, 1] (condition number 1e3)\n\n"
        + markdown_table(POLAR_COLUMNS, table)
        + "\n\nQ* is the exact polar factor UVᵀ the input was built from. The QDWH step count "
        "comes from `jax.lax.linalg.qdwh` on the same input; its error column is ‖QᵀQ−I‖_F. "
        "'time / matmul' counts one n×n float64 product as 1: Newton–Schulz `polar` does "
        "1 + 3·steps of them, so it beats the SVD only where the SVD costs more than that many "
        "products: expected on accelerators, where SVDs run far below matmul speed (not measured "
        "here), but not for a multithreaded LAPACK SVD on an idle CPU."
    )
    return md, raw


# ----------------------------------------------------------------------------- section 3

CLIP_RATIOS = (0.1, 0.01)  # c / sigma_max
CLIP_COLUMNS = ("method", "median ms", "IQR ms", "compile s", "time / orthogonalize") + tuple(
    f"{what}, c={r}σ_max" for r in CLIP_RATIOS for what in ("max rel σ err", "rel ‖·‖_F err")
)
ORTHO5 = "orthogonalize polar_express (5 steps)"
SOFT = "soft_clip polar (default, 7 steps)"


def clip_errors(out: Any, reference: np.ndarray, exact_sv: np.ndarray) -> tuple[float, float]:
    """Max relative singular-value error, and relative Frobenius error of the whole matrix."""
    out = np.asarray(out, dtype=np.float64)
    sv = singular_values(out)  # both maps are monotone, so the sorted orders match
    rel_sv = float(np.max(np.abs(sv - exact_sv) / exact_sv))
    rel_fro = float(np.linalg.norm(out - reference) / np.linalg.norm(reference))
    return rel_sv, rel_fro


def section_clip(cfg: Config, rng: np.random.Generator) -> tuple[str, dict[str, Any]]:
    out_md, raw = [], {}
    for shape in cfg.clip_shapes:
        x_host = gaussian(rng, shape)
        u, sv, vt = np.linalg.svd(x_host, full_matrices=False)
        x = f32(x_host)
        c0 = jnp.float32(CLIP_RATIOS[0] * sv[0])  # c is traced: one compile serves every c
        cases = {
            ORTHO5: (Case(lambda x, c: spectral.orthogonalize(x, "polar_express", 5), (x, c0)), ""),
            SOFT: (Case(lambda x, c: spectral.soft_clip(x, c), (x, c0)), "soft"),
            "soft_clip coupled (default, 10 steps)": (
                Case(lambda x, c: spectral.soft_clip(x, c, method="coupled"), (x, c0)),
                "soft",
            ),
            "hard_clip (default, 10+10 steps)": (
                Case(lambda x, c: spectral.hard_clip(x, c), (x, c0)),
                "hard",
            ),
        }
        timings = time_group(
            {name: case for name, (case, _) in cases.items()},
            cfg.repeats,
            budget_s=3 * cfg.slow_budget_s,
            min_repeats=cfg.min_repeats,
        )
        base_ms = timings[ORTHO5].median_ms
        table, rows_raw = [], {}
        for name, (case, kind) in cases.items():
            t = timings[name]
            ratio = t.median_ms / base_ms
            row = {"method": name, **timing_cells(t), "time / orthogonalize": fmt(ratio, ".2f")}
            rows_raw[name] = t.as_dict() | {"ratio_to_orthogonalize": ratio}
            for r in CLIP_RATIOS if kind else ():
                c = r * sv[0]
                exact = sv / np.sqrt(1 + (sv / c) ** 2) if kind == "soft" else np.minimum(sv, c)
                rel_sv, rel_fro = clip_errors(
                    case.compiled(x, jnp.float32(c)), (u * exact) @ vt, exact
                )
                rows_raw[name][f"c={r}σmax"] = {
                    "max_rel_sv_error": rel_sv,
                    "rel_fro_error": rel_fro,
                }
                row |= {
                    f"max rel σ err, c={r}σ_max": fmt(rel_sv, ".1e"),
                    f"rel ‖·‖_F err, c={r}σ_max": fmt(rel_fro, ".1e"),
                }
            table.append(row)
        out_md.append(
            f"### {shape_name(shape)} float32 (Gaussian, σ_max = {sv[0]:.1f}, "
            f"σ_min = {sv[-1]:.2g})\n\n" + markdown_table(CLIP_COLUMNS, table)
        )
        raw[shape_name(shape)] = rows_raw
    note = (
        "Exact references from a float64 SVD of the input: σ/√(1+σ²/c²) for soft_clip, "
        "min(σ, c) for hard_clip. The relative σ error is set by the smallest singular values "
        "(float32 round-off is relative to σ_max)."
    )
    return "\n\n".join(out_md) + "\n\n" + note, raw


# ----------------------------------------------------------------------------- targets


def targets(cfg: Config, ortho: dict, polar: dict, clip: dict) -> tuple[str, list[dict]]:
    rows = []
    square = shape_name(cfg.shapes[0])
    frac = ortho[square]["rows"]["orthogonalize polar_express"]["fraction_of_matmul"]
    rows.append(
        {
            "target": f"orthogonalize (polar_express, 5 steps) {square} float32: "
            "fraction of measured matmul throughput",
            "measured": f"{100 * frac:.0f}%",
            "threshold": f">= {100 * MATMUL_TARGET:.0f}%",
            "pass": bool(frac >= MATMUL_TARGET),
        }
    )
    ns, svd = polar["polar newton_schulz (tol 1e-6)"], polar["polar svd"]
    converged = ns["status"] == "converged" and ns["error"] <= POLAR_TOL
    rows.append(
        {
            "target": f"polar to {POLAR_TOL:g} (float64, {cfg.polar_n}², cond 1e3) "
            "faster than the SVD path",
            "measured": f"{ns['median_ms']:.0f} ms ({ns['steps']} steps, {ns['status']}, "
            f"error {ns['error']:.1e}) vs SVD {svd['median_ms']:.0f} ms",
            "threshold": "converged and time < SVD time",
            "pass": bool(converged and ns["median_ms"] < svd["median_ms"]),
        }
    )
    for shape, rows_raw in clip.items():
        ratio = rows_raw[SOFT]["ratio_to_orthogonalize"]
        rows.append(
            {
                "target": f"soft_clip (default) {shape} float32: time / 5-step orthogonalize",
                "measured": f"{ratio:.2f}×",
                "threshold": f"<= {SOFT_CLIP_TARGET}×",
                "pass": bool(ratio <= SOFT_CLIP_TARGET),
            }
        )
    table = markdown_table(
        ("target", "measured", "threshold", "result"),
        [r | {"result": "PASS" if r["pass"] else "**FAIL**"} for r in rows],
    )
    if cfg.quick:
        table += "\n\n(Quick mode: the targets are defined at the full-mode shapes.)"
    return table, rows


# ----------------------------------------------------------------------------- main

SECTIONS = (
    ("orthogonalize", "## 1. orthogonalize vs optax Muon vs SVD vs QDWH (5 NS steps, float32)"),
    ("polar", "## 2. polar to 1e-6 in float64"),
    ("clip", "## 3. soft_clip / hard_clip vs 5-step orthogonalize (float32)"),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes for CI (< 60 s)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per case")
    parser.add_argument("--out", type=Path, default=None, help="write spectral.md/.json here")
    args = parser.parse_args(argv)
    cfg = make_config(args.quick, args.repeats)
    rng = np.random.default_rng(0)
    start = time.perf_counter()

    env = environment()
    header = (
        f"# jaxspec.spectral benchmark ({'quick' if cfg.quick else 'full'} mode)\n\n"
        f"jax {env['jax']} on {env['backend']} ({env['cpu_count']} CPUs; load average at start "
        f"{env['load_average'][0]:.1f}). {cfg.repeats} timed runs per case, round-robin within "
        f"each group; slow reference paths stop after {cfg.slow_budget_s:g} s of sampling (at "
        f"least {cfg.min_repeats} runs). Times are medians; compile time is excluded and "
        "reported separately."
    )
    print(header, flush=True)
    runners = {"orthogonalize": section_orthogonalize, "polar": section_polar, "clip": section_clip}
    md, raw = {}, {}
    for key, title in SECTIONS:
        md[key], raw[key] = runners[key](cfg, rng)
        print(f"\n{title}\n\n{md[key]}", flush=True)
    target_md, target_rows = targets(cfg, raw["orthogonalize"], raw["polar"], raw["clip"])
    elapsed = time.perf_counter() - start
    footer = f"## 4. Targets\n\n{target_md}\n\nTotal wall time {elapsed:.0f} s."
    print(f"\n{footer}", flush=True)

    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        body = "\n\n".join(f"{title}\n\n{md[key]}" for key, title in SECTIONS)
        (args.out / "spectral.md").write_text(f"{header}\n\n{body}\n\n{footer}\n")
        payload = {
            "environment": env | {"load_average_end": list(os.getloadavg())},
            "config": asdict(cfg),
            **raw,
            "targets": target_rows,
            "wall_time_s": elapsed,
        }
        (args.out / "spectral.json").write_text(json.dumps(payload, indent=1) + "\n")
        print(f"wrote {args.out / 'spectral.md'} and {args.out / 'spectral.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
