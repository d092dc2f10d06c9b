"""Online orthogonal dictionary learning by stochastic Frank–Wolfe (Xue and Lau).

Synthetic part: ``Y = D0 X`` with ``D0`` the Q factor of an ``n x n`` Gaussian matrix and
Bernoulli(theta)-Gaussian codes ``X``; samples are streamed in minibatches. Methods:

* ``l3_online_odl``: the paper's NoncvxSFW, ``p = 3``, ``rho_t = 4/(t+1)^(1/2)``,
  ``gamma_t = 2/(t+2)^(3/4)`` (both clipped to 1), polar oracle, polar re-projection;
* ``l3_mhk``: the same with the convex MHK schedule ``4/(t+8)^(2/3)``, ``2/(t+8)`` (the paper's
  SFW baseline, with re-projection as in its scripts);
* ``l4_online_odl``: NoncvxSFW with ``p = 4``;
* ``l4_msp``: batch MSP (full-step FW, ``p = 4``) on all samples at once, as a reference.

The metric is ``|‖A D0‖_4^4/n − 1|``, recorded every ``run.record_every`` steps. The report
also learns a 64 x 64 orthogonal dictionary of 8 x 8 patches from scikit-learn's bundled
sample images (no download) with the online method and saves the atoms as an image grid.

References:
    Xue and Lau, "Online Orthogonal Dictionary Learning Based on Frank-Wolfe Method",
    arXiv:2103.01484.
    Zhai, Yang, Liao, Wright, Ma, arXiv:1906.02435 (MSP).
"""

from __future__ import annotations

import dataclasses
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxspec import frank_wolfe
from jaxspec.experiments import (
    Experiment,
    Record,
    ReportContext,
    image_patches,
    markdown_table,
)

METHODS = {
    "l3_online_odl": dict(p=3, schedule="online_odl"),
    "l3_mhk": dict(p=3, schedule="mhk"),
    "l4_online_odl": dict(p=4, schedule="online_odl"),
    "l4_msp": dict(p=4, schedule=None),
}
LABELS = {
    "l3_online_odl": "l3 NoncvxSFW (online_odl schedule)",
    "l3_mhk": "l3 SFW (convex MHK schedule)",
    "l4_online_odl": "l4 NoncvxSFW",
    "l4_msp": "l4 MSP (batch, all samples)",
}


@dataclasses.dataclass(frozen=True)
class DataConfig:
    n: int = 10
    theta: float = 0.3
    samples: int = 30_000


@dataclasses.dataclass(frozen=True)
class MethodConfig:
    name: str = "l3_online_odl"
    batch_size: int = 10
    msp_steps: int = 100
    polar: str = "svd"


@dataclasses.dataclass(frozen=True)
class RunConfig:
    record_every: int = 10
    dtype: str = "float32"


@dataclasses.dataclass(frozen=True)
class PatchConfig:
    count: int = 100_000
    batch_size: int = 10
    size: int = 8


@dataclasses.dataclass(frozen=True)
class Config:
    data: DataConfig = DataConfig()
    method: MethodConfig = MethodConfig()
    run: RunConfig = RunConfig()
    patches: PatchConfig = PatchConfig()


def _orthogonal(g: jax.Array) -> jax.Array:
    """Q factor with a sign-fixed diagonal (matmul-free QR is not needed at n <= 64)."""
    q, r = jnp.linalg.qr(g)
    return q * jnp.sign(jnp.diagonal(r, axis1=-2, axis2=-1))[..., None, :]


def make_problem(cfg: DataConfig, key: jax.Array, dtype) -> tuple[jax.Array, ...]:
    """``(Y, D0, A0)``: ``Y = D0 X`` with Bernoulli(theta)-Gaussian ``X``."""
    k1, k2, k3, k4 = jax.random.split(key, 4)
    # One QR call for both matrices: two independent batched (vmapped) LAPACK kernels in one
    # program can deadlock jaxlib 0.10.2's CPU thread pool on 2 cores (seen here: two
    # concurrent geqrf ParallelBatchMaps, each waiting for the other's thread).
    d0, a0 = _orthogonal(
        jnp.stack(
            [
                jax.random.normal(k1, (cfg.n, cfg.n), dtype),
                jax.random.uniform(k4, (cfg.n, cfg.n), dtype),
            ]
        )
    )
    codes = jax.random.normal(k2, (cfg.n, cfg.samples), dtype)
    codes = codes * jax.random.bernoulli(k3, cfg.theta, (cfg.n, cfg.samples)).astype(dtype)
    return d0 @ codes, d0, a0


def run(config: Config, key: jax.Array) -> dict[str, jax.Array]:
    """Recovery error trace (online methods) or final error (MSP) for one trial."""
    name = config.method.name
    if name not in METHODS:
        raise ValueError(f"`method.name` must be one of {tuple(METHODS)}, got {name!r}.")
    spec = METHODS[name]
    dtype = jnp.dtype(config.run.dtype)
    y, d0, a0 = make_problem(config.data, key, dtype)
    if spec["schedule"] is None:
        sol = frank_wolfe.msp(y, a0, p=spec["p"], max_steps=config.method.msp_steps, tol=1e-12)
        error = frank_wolfe.dictionary_recovery_error(sol.x, d0)
        return {"final_error": error, "steps": sol.num_steps}
    sol = frank_wolfe.online_orthogonal_dictionary(
        y, a0, p=spec["p"], batch_size=config.method.batch_size, schedule=spec["schedule"],
        d0=d0, record_every=config.run.record_every, polar_method=config.method.polar,
    )  # fmt: skip
    return {"trace": sol.stats["trace"], "final_error": sol.stats["trace"][-1]}


# ----------------------------------------------------------------------------- real data


def whiten(patches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean-removed, PCA-whitened patches (columns) and the de-whitening matrix."""
    x = patches - patches.mean(axis=1, keepdims=True)  # remove each patch's DC level
    x = x - x.mean(axis=0)
    cov = x.T @ x / len(x)
    evals, evecs = np.linalg.eigh(cov)
    keep = evals > 1e-10 * evals.max()
    evals, evecs = evals[keep], evecs[:, keep]
    white = (x @ evecs / np.sqrt(evals)).T
    return white, evecs * np.sqrt(evals)


def learn_patch_dictionary(cfg: PatchConfig, seed: int = 0) -> dict[str, np.ndarray | float]:
    """Online l3 FW on whitened patches; objective and heavy-tailedness vs reference bases."""
    white, dewhiten = whiten(image_patches(cfg.count, cfg.size, seed))
    k = white.shape[0]
    usable = (white.shape[1] // cfg.batch_size) * cfg.batch_size
    y = jnp.asarray(white[:, :usable])
    a0 = _orthogonal(jax.random.uniform(jax.random.key(seed), (k, k), y.dtype))
    tic = time.perf_counter()
    sol = frank_wolfe.online_orthogonal_dictionary(
        y, a0, p=3, batch_size=cfg.batch_size, schedule="online_odl", polar_method="polar"
    )
    a = np.asarray(jax.block_until_ready(sol.x))
    seconds = time.perf_counter() - tic
    q_rand = np.linalg.qr(np.random.default_rng(seed + 1).standard_normal((k, k)))[0]
    bases = {
        "learned (online FW)": a,
        "random orthogonal": q_rand,
        "PCA (whitened axes)": np.eye(k),
    }
    stats = {}
    for name, basis in bases.items():
        coef = basis @ white
        stats[name] = {
            "l3 objective": float(np.mean(np.sum(np.abs(coef) ** 3, axis=0)) / 3),
            "l4 objective": float(np.mean(np.sum(coef**4, axis=0)) / 4),
            "kurtosis": float(np.mean(coef**4) / np.mean(coef**2) ** 2 - 3),
            "|c| > 3 (fraction)": float(np.mean(np.abs(coef) > 3)),
        }
    atoms = (dewhiten @ a.T).T  # rows: atoms in pixel space
    return {"atoms": atoms, "stats": stats, "seconds": seconds, "dim": k, "count": usable}


def _atom_grid(atoms: np.ndarray, size: int, ax) -> None:
    n = atoms.shape[0]
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    pad = 1
    grid = np.ones((rows * (size + pad) + pad, cols * (size + pad) + pad)) * 0.5
    order = np.argsort(-np.abs(atoms).max(axis=1))
    for i, j in enumerate(order):
        atom = np.zeros(size * size)
        atom[: atoms.shape[1]] = atoms[j]
        img = atom.reshape(size, size)
        img = 0.5 + 0.5 * img / (np.abs(img).max() + 1e-12)
        r, c = divmod(i, cols)
        grid[pad + r * (size + pad) : pad + r * (size + pad) + size,
             pad + c * (size + pad) : pad + c * (size + pad) + size] = img  # fmt: skip
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.axis("off")


# ----------------------------------------------------------------------------- report


def _wall_times(ctx: ReportContext) -> dict[str, float]:
    walls: dict[str, float] = {}
    for path in (ctx.outdir / "points").glob("*.json"):
        data = json.loads(path.read_text())
        walls[json.dumps(data["point"], sort_keys=True)] = float(data.get("wall_s", 0.0))
    return walls


def report(records: list[Record], ctx: ReportContext) -> str:
    import matplotlib.pyplot as plt

    walls = _wall_times(ctx)
    keys = sorted(
        {(r.config["data"]["n"], r.config["data"]["theta"], r.config["data"]["samples"],
          r.config["method"]["batch_size"]) for r in records},
        key=lambda k: (k[0], k[1], k[3]),
    )  # fmt: skip
    record_every = records[0].config["run"]["record_every"]
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 3.8), squeeze=False)
    rows = []
    for ax, (n, theta, samples, batch) in zip(axes[0], keys):
        group = [
            r for r in records
            if (r.config["data"]["n"], r.config["data"]["theta"], r.config["data"]["samples"],
                r.config["method"]["batch_size"]) == (n, theta, samples, batch)
        ]  # fmt: skip
        for name in METHODS:
            recs = [r for r in group if r.config["method"]["name"] == name]
            if not recs:
                continue
            finals = np.array([float(r.metrics["final_error"]) for r in recs])
            wall = [walls.get(json.dumps(r.point, sort_keys=True), np.nan) for r in recs]
            if "trace" in recs[0].metrics:
                traces = np.stack([np.asarray(r.metrics["trace"]) for r in recs])
                steps = record_every * np.arange(1, traces.shape[1] + 1)
                med = np.median(traces, 0)
                lo, hi = np.percentile(traces, [25, 75], axis=0)
                (line,) = ax.semilogy(steps, med, label=LABELS[name])
                ax.fill_between(steps, lo, hi, color=line.get_color(), alpha=0.2)
                at = {s: float(med[min(len(med) - 1, s // record_every - 1)]) for s in (300, 1000)}
            else:
                ax.axhline(np.median(finals), color="k", ls="--", lw=1, label=LABELS[name])
                at = {300: np.nan, 1000: np.nan}
            rows.append({
                "n": n, "theta": theta, "samples": samples, "batch": batch,
                "method": LABELS[name],
                "error @300 it": f"{at[300]:.3g}", "error @1000 it": f"{at[1000]:.3g}",
                "final error median [IQR]": f"{np.median(finals):.3g} "
                f"[{np.percentile(finals, 25):.2g}, {np.percentile(finals, 75):.2g}]",
                "wall s / trial (incl. compile)": f"{np.nanmean(wall):.2f}",
            })  # fmt: skip
        ax.set_title(f"n={n}, θ={theta}, batch {batch}, {samples} samples")
        ax.set_xlabel("iteration")
        ax.set_ylabel("|‖A D0‖₄⁴/n − 1|")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("median over trials, band: interquartile range")
    fig.tight_layout()
    conv = ctx.save_figure(fig, "online_odl_convergence.png")
    trials = len({r.point["seed"] for r in records})
    lines = [
        f"{trials} trials per curve (seeds, vmapped); {records[0].config['run']['dtype']}; "
        "recovery error recorded every "
        f"{record_every} iterations. MSP runs on all samples of the trial at once.",
        "",
        f"![error vs iteration]({conv})",
        "",
        markdown_table(rows),
        "",
    ]

    def med_at(name, key, step):
        for row in rows:
            if row["method"] == LABELS[name] and (row["n"], row["theta"], row["samples"],
                                                  row["batch"]) == key:  # fmt: skip
                return float(row[f"error @{step} it"])
        return np.nan

    obs = []
    for key in keys:
        n, theta, samples, batch = key
        a, b = med_at("l3_online_odl", key, 300), med_at("l3_mhk", key, 1000)
        finals = {
            name: np.median([float(r.metrics["final_error"]) for r in records
                             if r.config["method"]["name"] == name
                             and (r.config["data"]["n"], r.config["data"]["theta"],
                                  r.config["data"]["samples"],
                                  r.config["method"]["batch_size"]) == key])
            for name in ("l3_online_odl", "l3_mhk")
        }  # fmt: skip
        steps = samples // batch
        line = (
            f"- n={n}, θ={theta}, batch {batch}: l3 NoncvxSFW median error {a:.3g} at 300 "
            f"iterations (paper's figure: about 2e-3 to 2e-2 around 300-500); the MHK schedule "
            f"{b:.3g} at 1000 iterations (paper: about 0.04-0.14 around 1000-1200). After all "
            f"{steps} iterations: NoncvxSFW {finals['l3_online_odl']:.3g}, MHK "
            f"{finals['l3_mhk']:.3g}"
        )
        if finals["l3_mhk"] < finals["l3_online_odl"]:
            line += (
                " — the convex schedule ends lower here; the paper plots only the first 3000 "
                "iterations, where NoncvxSFW leads"
            )
        obs.append(line + ".")
    lines += ["Observations (computed from this run):", "", *obs, ""]

    # Real data: 8x8 patches of the bundled sample images.
    pcfg = PatchConfig(**ctx.config["patches"])
    patches = learn_patch_dictionary(pcfg, seed=int(ctx.config.get("seed", 0)))
    fig, ax = plt.subplots(figsize=(5, 5))
    _atom_grid(patches["atoms"], pcfg.size, ax)
    ax.set_title("online FW atoms, 8x8 patches (de-whitened)")
    grid = ctx.save_figure(fig, "online_odl_patch_atoms.png")
    stat_rows = [{"basis": k, **{m: f"{v:.4g}" for m, v in s.items()}}
                 for k, s in patches["stats"].items()]  # fmt: skip
    lines += [
        "## Real data: 8x8 patches of scikit-learn's sample images",
        "",
        f"{patches['count']} random 8x8 grayscale patches of `load_sample_images()` (china, "
        f"flower), each patch's mean removed, PCA-whitened to {patches['dim']} dimensions; "
        f"online l3 Frank–Wolfe (online_odl schedule, batch {pcfg.batch_size}, Newton–Schulz "
        f"polar factors) in one pass took "
        f"{patches['seconds']:.1f} s. Coefficient statistics of whitened patches in each "
        "orthogonal basis (higher l3/l4 objective and kurtosis = sparser codes):",
        "",
        markdown_table(stat_rows),
        "",
        f"![atoms]({grid})",
    ]
    return "\n".join(lines)


EXPERIMENT = Experiment(
    name="online_odl",
    description="Online orthogonal dictionary learning by stochastic Frank–Wolfe (Xue & Lau).",
    config_cls=Config,
    run=run,
    report=report,
)
