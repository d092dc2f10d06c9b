"""Phase transition of sparse recovery: EM-SBL against OMP and basis pursuit.

Noiseless ``y = A x`` with ``A`` an ``m x n`` Gaussian matrix with unit-norm columns and ``x``
``D``-sparse with ``N(0, 1)`` values at random positions. Methods:

* ``sbl``: :func:`jaxspec.sbl.sbl` with EM updates, a fixed tiny noise variance (1e-10) and up
  to 2000 iterations, as in Wipf and Rao (2004);
* ``omp``: :func:`jaxspec.pursuit.omp` told ``D`` (least squares on the selected atoms after
  each greedy pick);
* ``bp``: basis pursuit ``min ||x||_1 s.t. A x = y`` by the HiGHS linear-programming solver
  (``scipy.optimize.linprog``, through ``jax.pure_callback``).

A trial succeeds when the ``D`` largest ``|x_hat_i|`` are exactly the true support. Each point
runs ``run.trials`` problems at once; ``D`` is a dynamic sweep axis (vmapped).

References:
    Wipf and Rao, "Sparse Bayesian learning for basis selection", IEEE TSP 52(8), 2004.
    Tropp and Gilbert, "Signal recovery from random measurements via orthogonal matching
    pursuit", IEEE Trans. Inf. Theory 53(12), 2007.
    Chen, Donoho and Saunders, "Atomic decomposition by basis pursuit", SIAM J. Sci. Comput.
    20(1), 1998.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxspec import pursuit, sbl
from jaxspec.experiments import Experiment, Record, ReportContext, dynamic, markdown_table

METHODS = ("sbl", "bp", "omp")
LABELS = {"sbl": "EM-SBL", "bp": "BP (l1, HiGHS)", "omp": "OMP (given D)"}


@dataclasses.dataclass(frozen=True)
class DataConfig:
    m: int = 20
    n: int = 40
    sparsity: int = dynamic(3)


@dataclasses.dataclass(frozen=True)
class MethodConfig:
    name: str = "sbl"
    noise_var: float = 1e-10
    max_steps: int = 2000
    tol: float = 1e-8


@dataclasses.dataclass(frozen=True)
class RunConfig:
    trials: int = 500


@dataclasses.dataclass(frozen=True)
class Config:
    data: DataConfig = DataConfig()
    method: MethodConfig = MethodConfig()
    run: RunConfig = RunConfig()


def make_problem(key: jax.Array, m: int, n: int, sparsity: jax.Array):
    """``(A, y, x, support mask)`` of one noiseless trial; the support is the first
    ``sparsity`` entries of a random permutation (shapes stay static for any ``sparsity``)."""
    ka, kp, kv = jax.random.split(key, 3)
    a = jax.random.normal(ka, (m, n))
    a = a / jnp.linalg.norm(a, axis=0)
    rank = jnp.argsort(jax.random.permutation(kp, n))  # rank of each atom in the permutation
    support = rank < sparsity
    x = jnp.where(support, jax.random.normal(kv, (n,)), 0.0)
    return a, a @ x, x, support


def _linprog_bp(a: np.ndarray, y: np.ndarray, dtype: np.dtype) -> np.ndarray:
    from scipy.optimize import linprog

    a, y = np.asarray(a, np.float64), np.asarray(y, np.float64)
    m, n = a.shape
    res = linprog(np.ones(2 * n), A_eq=np.hstack([a, -a]), b_eq=y, bounds=(0, None), method="highs")
    if res.status != 0:
        return np.full(n, np.nan, dtype)
    return (res.x[:n] - res.x[n:]).astype(dtype)


def basis_pursuit(a: jax.Array, y: jax.Array) -> jax.Array:
    """``min ||x||_1 s.t. A x = y`` by HiGHS on the host (NaN if the LP fails)."""
    out = jax.ShapeDtypeStruct((a.shape[1],), a.dtype)
    host = functools.partial(_linprog_bp, dtype=np.dtype(a.dtype))
    return jax.pure_callback(host, out, a, y, vmap_method="sequential")


def recovered(x_hat: jax.Array, support: jax.Array, sparsity: jax.Array) -> jax.Array:
    """The ``sparsity`` largest ``|x_hat|`` are exactly the support (ties broken by index)."""
    rank = jnp.argsort(jnp.argsort(-jnp.abs(x_hat)))
    return jnp.all((rank < sparsity) == support) & jnp.all(jnp.isfinite(x_hat))


def run(config: Config, key: jax.Array) -> dict[str, jax.Array]:
    name = config.method.name
    if name not in METHODS:
        raise ValueError(f"`method.name` must be one of {METHODS}, got {name!r}.")
    m, n, d = config.data.m, config.data.n, config.data.sparsity

    def trial(k):
        a, y, x, support = make_problem(k, m, n, d)
        steps = jnp.int32(0)
        if name == "sbl":
            sol = sbl.sbl(
                a, y, noise_var=config.method.noise_var, update="em",
                max_steps=config.method.max_steps, tol=config.method.tol, prune=0.0,
            )  # fmt: skip
            x_hat, steps = sol.mean, sol.num_steps
        elif name == "omp":
            # Up to min(m, n) picks compiled once; the sparsity itself caps each trial.
            x_hat = pursuit.omp(a, y, min(m, n), max_atoms=d)
        else:
            x_hat = basis_pursuit(a, y)
        err = jnp.sum((x_hat - x) ** 2) / jnp.sum(x**2)
        return recovered(x_hat, support, d), err, steps

    ok, err, steps = jax.vmap(trial)(jax.random.split(key, config.run.trials))
    return {
        "success_rate": jnp.mean(ok),
        "median_nmse": jnp.median(err),
        "median_steps": jnp.median(steps),
        "max_steps": jnp.max(steps),
    }


# The reference run in the notes (NumPy EM-SBL, HiGHS BP, OMP; 500 trials per point).
REFERENCE = {
    (20, 40): {
        "sparsity": (3, 5, 7, 9, 11, 13),
        "sbl": (1.000, 1.000, 0.992, 0.934, 0.672, 0.282),
        "bp": (1.000, 0.974, 0.748, 0.412, 0.126, 0.018),
        "omp": (0.976, 0.838, 0.616, 0.314, 0.066, 0.026),
    },
    (25, 50): {
        "sparsity": (4, 8, 10, 12, 14, 16),
        "sbl": (1.000, 0.996, 0.964, 0.858, 0.552, 0.288),
        "bp": (1.000, 0.850, 0.542, 0.278, 0.060, 0.006),
        "omp": (0.976, 0.686, 0.404, 0.218, 0.050, 0.016),
    },
}


def report(records: list[Record], ctx: ReportContext) -> str:
    import matplotlib.pyplot as plt

    trials = records[0].config["run"]["trials"]
    sizes = sorted({(r.config["data"]["m"], r.config["data"]["n"]) for r in records})
    fig, axes = plt.subplots(1, len(sizes), figsize=(5.5 * len(sizes), 4), squeeze=False)
    lines = []
    for ax, (m, n) in zip(axes[0], sizes):
        recs = [r for r in records if (r.config["data"]["m"], r.config["data"]["n"]) == (m, n)]
        ref = REFERENCE.get((m, n))
        rows = []
        for name in METHODS:
            pts = sorted(
                (r.config["data"]["sparsity"], float(r.metrics["success_rate"]), r)
                for r in recs
                if r.config["method"]["name"] == name
            )
            if not pts:
                continue
            ds = [p[0] for p in pts]
            rates = [p[1] for p in pts]
            (line,) = ax.plot(ds, rates, "o-", label=LABELS[name])
            if ref is not None:
                ax.plot(ref["sparsity"], ref[name], "x--", color=line.get_color(), alpha=0.6)
            for d, rate, rec in pts:
                row = {"method": LABELS[name], "D": d, f"success ({trials} trials)": f"{rate:.3f}"}
                row |= {"reference": "", "difference": ""}  # fixed column order
                if ref is not None and d in ref["sparsity"]:
                    want = ref[name][ref["sparsity"].index(d)]
                    row["reference"] = f"{want:.3f}"
                    row["difference"] = f"{rate - want:+.3f}"
                if name == "sbl":
                    row["EM iterations median / max"] = (
                        f"{int(rec.metrics['median_steps'])} / {int(rec.metrics['max_steps'])}"
                    )
                rows.append(row)
        ax.set_title(f"{m}×{n}, noiseless")
        ax.set_xlabel("D (nonzeros)")
        ax.set_ylabel("success rate")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        lines += [f"### {m}×{n}", "", markdown_table(rows), ""]
    fig.suptitle("Exact support recovery (o: this run, x: reference notes)")
    fig.tight_layout()
    figure = ctx.save_figure(fig, "phase_transition.png")
    diffs = []
    for (m, n), ref in REFERENCE.items():
        for r in records:
            d = r.config["data"]["sparsity"]
            if (r.config["data"]["m"], r.config["data"]["n"]) == (m, n) and d in ref["sparsity"]:
                want = ref[r.config["method"]["name"]][ref["sparsity"].index(d)]
                diffs.append(abs(float(r.metrics["success_rate"]) - want))
    worst = max(diffs) if diffs else float("nan")
    sigma = 0.5 / np.sqrt(trials)
    return "\n".join(
        [
            f"Noiseless recovery, {trials} trials per point (vmapped), float64. Success: the D "
            "largest |x̂| are the true support. The reference is the NumPy run in the project "
            "notes (500 trials per point); at this trial count the binomial standard error is "
            f"at most {sigma:.3f}. Largest difference from the reference: {worst:.3f}.",
            "",
            f"![phase transition]({figure})",
            "",
            *lines,
        ]
    )


EXPERIMENT = Experiment(
    name="sbl_phase_transition",
    description="Success rate vs sparsity: EM-SBL vs OMP vs basis pursuit (noiseless).",
    config_cls=Config,
    run=run,
    report=report,
    x64=True,
)
