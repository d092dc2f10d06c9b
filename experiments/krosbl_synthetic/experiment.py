"""Kronecker-structured sparse recovery: the synthetic study of He and Joseph (KroSBL).

Setup (the authors' ``KroSBL_f/Configuration.m``, ``noisy_compare.m`` and
``simulation{S,M,K}.m``): ``y = (A_1 kron A_2 kron A_3) x + n`` with ``A_i = randn(M_i, 15)``
(not normalised), ``M_2 = 12``, ``M_3 = 15``; ``x = x_1 kron x_2 kron x_3`` with ``K`` nonzeros
``N(0, 1)`` at random positions in each ``x_i`` (``K^3`` nonzeros among 3375 entries);
``n ~ N(0, sigma^2 I)`` with ``sigma^2 = (||y_0||^2 / len(y_0)) / 10^(SNR / 10)`` for the clean
``y_0``, and ``sigma^2`` is given to every method. Three studies around the point
(25 dB, ``M_1 = 8``, ``K = 3``), as in the paper:

* ``snr``: SNR in {5, ..., 30} dB with ``K = 3``, ``M_1 = 8`` (``A``: 1440 x 3375);
* ``m1``: ``M_1`` in {6, ..., 14} at 25 dB with ``K = 3``;
* ``sparsity``: ``K`` in {2, ..., 6} at 25 dB with ``M_1 = 8``.

Methods (at most ``max_steps = 150`` EM steps and a relative-change tolerance of ``1e-4`` for
the SBL family, the authors' ``R_max`` and ``thres``):

* ``classical``: EM-SBL (:func:`jaxspec.sbl.sbl`, ``update="em"``) on the explicit
  ``M x 3375`` dictionary, every variance starting at 1, pruned below ``1e-3`` of the largest
  (the authors' ``classicSBL.m``). It costs ``O(M^2 N)`` a step until pruning lets the library
  compact the active set, seconds per trial, so it runs on the first ``run.classical_trials``
  trials of each point only (the same problems as the other methods);
* ``am`` / ``svd``: AM-KroSBL and SVD-KroSBL (:func:`jaxspec.sbl.kronecker_sbl` with the
  library's defaults, which are the authors': pruning ``1e-2`` for AM, ``1e-3`` for SVD);
* ``komp``: Kronecker-OMP, the N-way OMP of Caiafa and Cichocki (2013) as in the authors'
  ``KroOMP.m`` (:func:`kronecker_omp`): at most ``omp_level = 10`` atoms per mode, stopping
  at a relative residual of ``omp_tol = 1e-2`` or when a step adds no atom;
* ``oracle``: least squares on the true support (the authors' ``OLS.m``).

Metrics per trial: ``NMSE = ||x_hat - x||^2 / ||x||^2``, and the support recovery rate
``SRR = |S cap S_hat| / |S cup S_hat|`` with ``S = {n : x_n != 0}`` and
``S_hat = {n : |x_hat_n| > 1e-3 max |x_hat|}`` (the authors' ``recover_rate.m``); the report
gives the mean and the median over trials.

Run time: each method's solve of all the point's trials is bracketed by two host clock reads
inside the compiled program (:func:`timed`), tied to the solve by data dependencies: the first
read takes every input, the solve's inputs take a run-time zero computed from the first read,
and the second read takes every output. So the methods run one after another, nothing of a
solve leaves its brackets, and compilation, problem generation and metrics stay outside. The
time is divided by the trials and by the number of sweep points solved in the same call: the
amortised cost of a batched (``vmap``) solve for the Kronecker methods and OMP, the mean of
sequential solves (``lax.map``) for classical SBL. ``M_1`` changes shapes and is static (one
compile per value); the SNR and ``K`` are dynamic (``K`` only moves a support mask), so all
points with the same ``M_1`` share one compiled program. By default the runner solves them in
one call (times amortised over them, and the vmapped loops wait for the slowest point);
``--max-batch 1`` runs one point per call on the same compiled program, so each point's times
are its own.

Random draws: trial ``t`` uses ``fold_in(key, t)`` at every point (common random numbers), and
each row of each ``A_i`` has its own key, so the ``M_1`` study's dictionaries are nested (the
first ``M_1`` rows of one matrix, as the authors' ``A1_ori(1:M1, :)``), the ``K`` study's
supports grow by one atom per mode with the values kept (as ``simulationK.m``), and the SNR
study changes only the noise scale (the noise direction is shared).

References:
    He and Joseph, "Bayesian algorithms for Kronecker-structured sparse vector recovery with
    application to IRS-MIMO channel estimation", IEEE TSP 2024, arXiv:2307.14719; code at
    github.com/YanbinHe/JournalKroSBL (``KroSBL_f/``).
    Caiafa and Cichocki, "Computing sparse representations of multidimensional signals using
    Kronecker bases", Neural Computation 25(1), 2013 (N-way OMP).
    Wipf and Rao, "Sparse Bayesian learning for basis selection", IEEE TSP 52(8), 2004.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxspec import Status, sbl
from jaxspec.experiments import Experiment, Record, ReportContext, dynamic, markdown_table

METHODS = ("classical", "am", "svd", "komp", "oracle")
LABELS = {
    "classical": "classical SBL",
    "am": "AM-KroSBL",
    "svd": "SVD-KroSBL",
    "komp": "Kronecker-OMP",
    "oracle": "oracle LS",
}
# The studies vary one axis around this point and hold the others at it.
BASE = {"snr_db": 25.0, "m1": 8, "sparsity": 3}
STUDIES = {
    "snr": ("snr_db", "SNR (dB)", "(a) vs SNR (K = 3, M_1 = 8)"),
    "m1": ("m1", "M_1", "(b) vs M_1 (25 dB, K = 3)"),
    "sparsity": ("sparsity", "K", "(c) vs K (25 dB, M_1 = 8)"),
}


@dataclasses.dataclass(frozen=True)
class DataConfig:
    snr_db: float = 25.0
    m1: int = 8  # static: shapes
    sparsity: int = dynamic(3)  # K nonzeros per factor; a mask, so dynamic
    m2: int = 12
    m3: int = 15
    atoms: int = 15  # N_i, every mode


@dataclasses.dataclass(frozen=True)
class SolverConfig:
    max_steps: int = 150  # SBL family: EM steps (R_max)
    tol: float = 1e-4  # SBL family: relative change of gamma (thres)
    classical_prune: float = 1e-3  # classical SBL: relative pruning ratio (r_rele)
    classical_capacity: int = 256  # classical SBL: compacted active-set size (speed only)
    omp_level: int = 10  # Kronecker-OMP: at most this many atoms per mode
    omp_tol: float = 1e-2  # Kronecker-OMP: stop at ||residual|| / ||y|| <= omp_tol


@dataclasses.dataclass(frozen=True)
class RunConfig:
    trials: int = 200
    classical_trials: int = 5  # the first trials of each point also solved by classical SBL
    methods: tuple[str, ...] = METHODS
    support_threshold: float = 1e-3  # S_hat = {|x_hat| > threshold * max |x_hat|}


@dataclasses.dataclass(frozen=True)
class Config:
    data: DataConfig = DataConfig()
    solver: SolverConfig = SolverConfig()
    run: RunConfig = RunConfig()


# --------------------------------------------------------------------------- problems


class Problem(NamedTuple):
    factors: tuple[jax.Array, ...]  # A_i, (M_i, N_i)
    y: jax.Array  # (M_1 M_2 M_3,), row-major Kronecker order
    x: jax.Array  # (N_1 N_2 N_3,) = kron(x_1, x_2, x_3)
    supports: tuple[jax.Array, ...]  # bool (N_i,): the nonzeros of x_i
    noise_var: jax.Array  # sigma^2, given to the methods


def _kron(vectors: Sequence[jax.Array]) -> jax.Array:
    return functools.reduce(jnp.kron, vectors)


def make_problem(
    key: jax.Array, m: Sequence[int], atoms: int, sparsity: Any, snr_db: Any
) -> Problem:
    """One trial: ``A_i = randn(M_i, atoms)``; each ``x_i`` has ``sparsity`` nonzeros
    ``N(0, 1)`` at the first positions of a random order; ``y = y_0 + sigma n`` with
    ``sigma^2 = mean(y_0^2) / 10^(snr_db / 10)`` and ``n ~ N(0, I)``.

    Row ``r`` of ``A_i`` has its own key, so a smaller ``M_i`` gives the first rows of the same
    matrix; a larger ``sparsity`` keeps the smaller one's support and values.
    """
    k_rows, k_order, k_values, k_noise = jax.random.split(key, 4)
    mode = jnp.asarray([i for i, rows in enumerate(m) for _ in range(rows)])
    row = jnp.asarray([r for rows in m for r in range(rows)])
    row_key = lambda i, r: jax.random.fold_in(jax.random.fold_in(k_rows, i), r)
    entries = jax.vmap(lambda i, r: jax.random.normal(row_key(i, r), (atoms,)))(mode, row)
    offsets = np.cumsum([0, *m]).tolist()
    factors = tuple(entries[offsets[i] : offsets[i + 1]] for i in range(len(m)))
    order = jnp.argsort(jax.random.uniform(k_order, (len(m), atoms)), axis=1)
    rank = jnp.argsort(order, axis=1)  # the position of each atom in its random order
    supports = rank < sparsity
    parts = jnp.where(supports, jax.random.normal(k_values, (len(m), atoms)), 0.0)
    y0 = _kron([a @ xi for a, xi in zip(factors, parts)])
    noise_var = jnp.mean(y0**2) / 10.0 ** (jnp.asarray(snr_db) / 10)
    y = y0 + jnp.sqrt(noise_var) * jax.random.normal(k_noise, y0.shape)
    return Problem(factors, y, _kron(list(parts)), tuple(supports), noise_var)


# --------------------------------------------------------------------------- methods


def _mode_products(mats: Sequence[jax.Array], t: jax.Array) -> jax.Array:
    """``t x_1 mats[0] x_2 mats[1] ...`` (``mats[i]`` is ``P_i x Q_i``, axis ``i`` of ``t`` has
    size ``Q_i``); each contraction consumes the leading axis and appends the new one."""
    for mat in mats:
        t = jnp.tensordot(t, mat, axes=((0,), (1,)))
    return t


def kronecker_least_squares(
    factors: Sequence[jax.Array], y: jax.Array, supports: Sequence[jax.Array]
) -> jax.Array:
    """Minimum-norm least squares on the Kronecker support ``S_1 x S_2 x ...``.

    The columns of ``A_1 kron A_2 kron ...`` on that support are
    ``A_1[:, S_1] kron A_2[:, S_2] kron ...``, whose pseudo-inverse is the Kronecker product of
    the factors' pseudo-inverses: one small ``pinv`` per mode, then mode products. Returns the
    full ``(N_1 N_2 ...,)`` vector, zero off the support.
    """
    pinvs = [
        jnp.where(s[:, None], jnp.linalg.pinv(jnp.where(s[None, :], a, 0.0)), 0.0)
        for a, s in zip(factors, supports)
    ]
    shape_m = tuple(a.shape[0] for a in factors)
    return _mode_products(pinvs, y.reshape(shape_m)).reshape(-1)


class _OMPState(NamedTuple):
    selected: tuple[jax.Array, ...]  # bool (N_i,) per mode
    x: jax.Array  # (N,)
    residual: jax.Array  # (M,)
    error: jax.Array  # ||residual|| / ||y||
    changed: jax.Array  # the last step selected a new index in some mode
    step: jax.Array


def kronecker_omp(
    factors: Sequence[jax.Array], y: jax.Array, level: int, tol: Any
) -> tuple[jax.Array, jax.Array]:
    """N-way (Kronecker) OMP of Caiafa and Cichocki (2013), as the authors' ``KroOMP.m``.

    Each step correlates the residual with every separable atom,
    ``C = R x_1 A_1^T x_2 A_2^T ...`` (atoms not normalised, as in the reference), takes the
    multi-index ``(i_1, i_2, ...)`` of the largest ``|C|``, and adds ``i_n`` to mode ``n``'s
    index set unless it is there already or the set holds ``level`` indices; then it refits
    ``x`` by least squares on the Kronecker product of the index sets
    (:func:`kronecker_least_squares`). It stops when a step adds no index, when every mode
    holds ``level`` indices, or when ``||residual|| / ||y|| <= tol``.

    Returns:
        ``(x_hat, steps)``.
    """
    sizes = tuple(a.shape[1] for a in factors)
    shape_m = tuple(a.shape[0] for a in factors)
    transposed = [a.T for a in factors]
    norm_y = jnp.linalg.norm(y)

    def cond(st: _OMPState) -> jax.Array:
        full = functools.reduce(jnp.logical_and, [jnp.sum(s) >= level for s in st.selected])
        return st.changed & ~full & (st.error > tol)

    def body(st: _OMPState) -> _OMPState:
        corr = jnp.abs(_mode_products(transposed, st.residual.reshape(shape_m)))
        pick = jnp.unravel_index(jnp.argmax(corr), sizes)
        selected, changed = [], jnp.bool_(False)
        for s, i in zip(st.selected, pick):
            add = ~s[i] & (jnp.sum(s) < level)
            selected.append(s.at[i].set(s[i] | add))
            changed = changed | add
        x = kronecker_least_squares(factors, y, selected)
        residual = y - _mode_products(factors, x.reshape(sizes)).reshape(-1)
        error = jnp.linalg.norm(residual) / norm_y
        return _OMPState(tuple(selected), x, residual, error, changed, st.step + 1)

    init = _OMPState(
        tuple(jnp.zeros(n, bool) for n in sizes),
        jnp.zeros(int(np.prod(sizes)), y.dtype),
        y,
        jnp.asarray(jnp.inf, y.dtype),
        jnp.bool_(True),
        jnp.int32(0),
    )
    st = jax.lax.while_loop(cond, body, init)
    return st.x, st.step


def _solve_classical(p: Problem, cfg: SolverConfig) -> dict[str, jax.Array]:
    a = _kron(p.factors)
    sol = sbl.sbl(
        a, p.y, noise_var=p.noise_var, update="em", max_steps=cfg.max_steps, tol=cfg.tol,
        prune=cfg.classical_prune, gamma0=jnp.ones(a.shape[1], a.dtype),
        capacity=min(cfg.classical_capacity, a.shape[1]),
    )  # fmt: skip
    return {"x": sol.mean, "steps": sol.num_steps, "status": sol.status}


def _solve_krosbl(p: Problem, cfg: SolverConfig, method: str) -> dict[str, jax.Array]:
    sol = sbl.kronecker_sbl(
        p.factors, p.y, method=method, noise_var=p.noise_var, max_steps=cfg.max_steps,
        tol=cfg.tol,
    )  # fmt: skip
    return {"x": sol.mean, "steps": sol.num_steps, "status": sol.status}


def _solve_komp(p: Problem, cfg: SolverConfig) -> dict[str, jax.Array]:
    x, steps = kronecker_omp(p.factors, p.y, cfg.omp_level, cfg.omp_tol)
    return {"x": x, "steps": steps}


def _solve_oracle(p: Problem, cfg: SolverConfig) -> dict[str, jax.Array]:
    return {"x": kronecker_least_squares(p.factors, p.y, p.supports)}


# --------------------------------------------------------------------------- metrics


def nmse(x_hat: jax.Array, x: jax.Array) -> jax.Array:
    """``||x_hat - x||^2 / ||x||^2``."""
    return jnp.sum((x_hat - x) ** 2) / jnp.sum(x**2)


def support_recovery_rate(x_hat: jax.Array, x: jax.Array, threshold: Any = 1e-3) -> jax.Array:
    """``|S cap S_hat| / |S cup S_hat|`` with ``S = {x != 0}`` and
    ``S_hat = {|x_hat| > threshold max |x_hat|}`` (0 when both are empty)."""
    true = x != 0
    mag = jnp.abs(x_hat)
    found = mag > threshold * jnp.max(mag)
    union = jnp.sum(true | found)
    return jnp.where(union > 0, jnp.sum(true & found) / jnp.maximum(union, 1), 0.0)


# --------------------------------------------------------------------------- timing

_EPOCH = time.perf_counter()


def _clock(*deps: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(seconds since import, batch size)``, read on the host once every scalar in ``deps``
    is computed; shaped and typed like ``deps[0]``. Under ``vmap`` there is one read for the
    whole batch, and the batch size is the number of problems batched with this one."""

    def host(*args):
        shape, dtype = np.shape(args[0]), np.asarray(args[0]).dtype
        now = time.perf_counter() - _EPOCH
        return np.full(shape, now, dtype), np.full(shape, max(1, int(np.prod(shape))), dtype)

    out = jax.ShapeDtypeStruct(jnp.shape(deps[0]), deps[0].dtype)
    return jax.pure_callback(host, (out, out), *deps, vmap_method="broadcast_all")


def _sums(tree: Any, dtype: Any) -> list[jax.Array]:
    return [jnp.sum(leaf).astype(dtype) for leaf in jax.tree.leaves(tree)]


def _wait_for(tree: Any, clock: jax.Array) -> Any:
    """``tree`` made to depend on ``clock``: plus a zero that XLA cannot fold, as it is only
    known at run time (``jax.lax.optimization_barrier`` does not stop XLA:CPU from running
    the work before the clock read)."""
    late = clock < -1.0  # never true: the clock counts up from 0
    return jax.tree.map(
        lambda leaf: leaf | late if leaf.dtype == jnp.bool_ else leaf + late.astype(leaf.dtype),
        tree,
    )


def timed(
    fn: Callable[[Any], Any], inputs: Any, after: jax.Array
) -> tuple[Any, jax.Array, jax.Array]:
    """``(fn(inputs), seconds, stop)``: ``fn``'s execution time inside a compiled program.

    The start read waits for ``after`` and every input, ``fn``'s inputs wait for the start
    read, and the stop read waits for every output; ``stop`` passed as the next call's
    ``after`` runs timed calls one after another. ``seconds`` is the elapsed time divided by
    the batch size when the call is vmapped (the share of one batch member).
    """
    start, _ = _clock(after, *_sums(inputs, after.dtype))
    out = fn(_wait_for(inputs, start))
    stop, batch = _clock(start, *_sums(out, after.dtype))
    return out, (stop - start) / batch, stop


# --------------------------------------------------------------------------- run


def _check(config: Config) -> None:
    d, r = config.data, config.run
    unknown = [name for name in r.methods if name not in METHODS]
    if unknown:
        raise ValueError(f"`run.methods` must be among {METHODS}, got {unknown}.")
    if not 0 <= r.classical_trials <= r.trials:
        raise ValueError(
            f"`run.classical_trials` must be in [0, run.trials = {r.trials}], "
            f"got {r.classical_trials}."
        )
    if isinstance(d.sparsity, int) and not 1 <= d.sparsity <= d.atoms:  # a tracer when swept
        raise ValueError(f"`data.sparsity` must be in [1, {d.atoms}], got {d.sparsity}.")


def run(config: Config, key: jax.Array) -> dict[str, Any]:
    _check(config)
    d, s, r = config.data, config.solver, config.run
    m = (d.m1, d.m2, d.m3)
    problems = jax.vmap(
        lambda t: make_problem(jax.random.fold_in(key, t), m, d.atoms, d.sparsity, d.snr_db)
    )(jnp.arange(r.trials))

    solvers = {
        "am": lambda ps: jax.vmap(lambda p: _solve_krosbl(p, s, "am"))(ps),
        "svd": lambda ps: jax.vmap(lambda p: _solve_krosbl(p, s, "svd"))(ps),
        "komp": lambda ps: jax.vmap(lambda p: _solve_komp(p, s))(ps),
        "oracle": lambda ps: jax.vmap(lambda p: _solve_oracle(p, s))(ps),
        # one explicit dictionary (M x 3375, tens of MB) at a time
        "classical": lambda ps: jax.lax.map(lambda p: _solve_classical(p, s), ps),
    }
    after = jnp.zeros((), problems.y.dtype)
    out: dict[str, Any] = {}
    for name in METHODS:
        count = r.classical_trials if name == "classical" else r.trials
        if name not in r.methods or count == 0:
            continue
        subset = jax.tree.map(lambda leaf, c=count: leaf[:c], problems)
        result, seconds, after = timed(solvers[name], subset, after)
        x_hat = result.pop("x")
        out[name] = {
            "nmse": jax.vmap(nmse)(x_hat, subset.x),
            "srr": jax.vmap(lambda a, b: support_recovery_rate(a, b, r.support_threshold))(
                x_hat, subset.x
            ),
            "seconds_per_trial": seconds / count,
            **result,
        }
    return out


# --------------------------------------------------------------------------- report

# The NumPy port in the project notes (reference/sbl.md section 1.6): study (a), M_1 = 8,
# K = 3, 15 trials; (mean NMSE, median NMSE, mean SRR, seconds per trial on a 2-core CPU) as
# printed there (the digits give each value's rounding).
REFERENCE = {
    10.0: {
        "classical": ("0.114", "0.092", "0.22", "14.4"),
        "am": ("0.071", "0.031", "0.17", "6.5"),
        "svd": ("0.0058", "0.0040", "0.75", "1.0"),
        "oracle": ("0.0046", "0.0031", "1", None),
    },
    25.0: {
        "classical": ("0.076", "0.0034", "0.61", "7.3"),
        "am": ("0.097", "0.0003", "0.70", "2.5"),
        "svd": ("0.060", "0.0003", "0.79", "0.65"),
        "oracle": ("0.0002", "0.0002", "1", None),
    },
}
REFERENCE_TRIALS = 15


def _value(rec: Record, axis: str) -> Any:
    return rec.config["data"][axis]


def _in_study(rec: Record, study: str) -> bool:
    swept = STUDIES[study][0]
    return all(_value(rec, k) == v for k, v in BASE.items() if k != swept)


def summarize(rec: Record, name: str) -> dict[str, float] | None:
    """Mean / median NMSE, mean SRR, time, steps of one method at one point (None if absent)."""
    if f"{name}.nmse" not in rec.metrics:
        return None
    err = np.asarray(rec.metrics[f"{name}.nmse"], np.float64).reshape(-1)
    srr = np.asarray(rec.metrics[f"{name}.srr"], np.float64).reshape(-1)
    out = {
        "trials": err.size,
        "mean": float(np.mean(err)),
        "se": float(np.std(err, ddof=1) / np.sqrt(err.size)) if err.size > 1 else float("nan"),
        "median": float(np.median(err)),
        "srr": float(np.mean(srr)),
        "seconds": float(np.asarray(rec.metrics[f"{name}.seconds_per_trial"]).reshape(-1)[0]),
    }
    if f"{name}.steps" in rec.metrics:
        out["steps"] = float(np.median(np.asarray(rec.metrics[f"{name}.steps"])))
    if f"{name}.status" in rec.metrics:
        status = np.asarray(rec.metrics[f"{name}.status"]).reshape(-1)
        out["capped"] = float(np.mean(status == int(Status.MAX_STEPS)))
    return out


def _db(value: float) -> str:
    return f"{10 * np.log10(value):.1f}" if value > 0 else "-inf"


def _table(recs: list[Record], axis: str, label: str) -> str:
    rows = []
    for rec in recs:
        for name in METHODS:
            sm = summarize(rec, name)
            if sm is None:
                continue
            rows.append(
                {
                    label: _value(rec, axis),
                    "method": LABELS[name],
                    "trials": sm["trials"],
                    "mean NMSE (± s.e.)": f"{sm['mean']:.3g} ± {sm['se']:.2g}",
                    "median NMSE": f"{sm['median']:.3g}",
                    "median NMSE (dB)": _db(sm["median"]),
                    "mean SRR": f"{sm['srr']:.3f}",
                    "s / trial": f"{sm['seconds']:.3g}",
                    "median steps": f"{sm['steps']:.0f}" if "steps" in sm else "",
                    "at max_steps": f"{sm['capped']:.2f}" if "capped" in sm else "",
                }
            )
    return markdown_table(rows)


def resampled_interval(
    values: np.ndarray, stat: Callable[[np.ndarray], float], size: int, level: float = 0.9
) -> tuple[float, float]:
    """Central ``level`` interval of ``stat`` over ``size`` trials drawn with replacement from
    ``values`` (2000 draws, fixed seed): the spread a ``size``-trial run would show."""
    rng = np.random.default_rng(0)
    draws = [stat(rng.choice(values, size)) for _ in range(2000)]
    low, high = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def _rounding(text: str) -> tuple[float, float]:
    """The interval a printed value stands for (``"0.0003"``: 0.00025 to 0.00035)."""
    decimals = len(text.partition(".")[2])
    half = 0.5 * 10.0**-decimals
    return float(text) - half, float(text) + half


def _reference_rows(recs: list[Record]) -> tuple[list[dict[str, str]], list[str]]:
    rows, notes = [], []
    for rec in recs:
        snr = float(_value(rec, "snr_db"))
        ref = REFERENCE.get(snr, {})
        oracle = summarize(rec, "oracle")
        for name, (r_mean, r_med, r_srr, r_sec) in ref.items():
            sm = summarize(rec, name)
            if sm is None:
                continue
            err = np.asarray(rec.metrics[f"{name}.nmse"], np.float64).reshape(-1)
            srr = np.asarray(rec.metrics[f"{name}.srr"], np.float64).reshape(-1)
            row = {
                "SNR": f"{snr:g} dB",
                "method": LABELS[name],
                "trials ours / ref": f"{sm['trials']} / {REFERENCE_TRIALS}",
                "mean NMSE ours / ref": f"{sm['mean']:.3g} / {r_mean}",
                "median NMSE ours / ref": f"{sm['median']:.3g} / {r_med}",
                "median ÷ oracle's, ours / ref": "",
                "NMSE ÷ oracle's per trial, quartiles": "",
                "mean SRR ours / ref": f"{sm['srr']:.2f} / {r_srr}",
                "s / trial ours / ref": f"{sm['seconds']:.3g} / {r_sec or '–'}",
            }
            if oracle is not None and "oracle" in ref:
                row["median ÷ oracle's, ours / ref"] = (
                    f"{sm['median'] / oracle['median']:.2f} / "
                    f"{float(r_med) / float(ref['oracle'][1]):.2f}"
                )
                base = np.asarray(rec.metrics["oracle.nmse"], np.float64).reshape(-1)
                q = np.quantile(err / base[: err.size], [0.25, 0.5, 0.75])
                row["NMSE ÷ oracle's per trial, quartiles"] = " / ".join(f"{v:.3g}" for v in q)
            rows.append(row)
            where = f"{LABELS[name]} at {snr:g} dB"
            if err.size < REFERENCE_TRIALS:  # too few trials to resample: a plain factor 2
                if not 0.5 <= sm["median"] / float(r_med) <= 2.0:
                    notes.append(
                        f"{where}: median NMSE {sm['median']:.3g} against {r_med}, from only "
                        f"{err.size} trials here"
                    )
                continue
            checks = [
                ("median NMSE", r_med, resampled_interval(err, np.median, REFERENCE_TRIALS)),
                ("mean NMSE", r_mean, resampled_interval(err, np.mean, REFERENCE_TRIALS)),
            ]
            if name != "oracle":  # the authors' OLS.m sets the oracle's SRR to 1
                checks.append(
                    ("mean SRR", r_srr, resampled_interval(srr, np.mean, REFERENCE_TRIALS))
                )
            for what, want, (low, high) in checks:
                want_low, want_high = _rounding(want)
                if want_high < low or want_low > high:
                    notes.append(
                        f"{where}: the reference's {what} {want} is outside the 90% range of "
                        f"{REFERENCE_TRIALS}-trial values from this run, {low:.3g} to {high:.3g}"
                    )
    return rows, notes


def _figure(studies: dict[str, list[Record]], ctx: ReportContext) -> str:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(3, len(studies), figsize=(4.6 * len(studies), 10), squeeze=False)
    for col, (study, recs) in enumerate(studies.items()):
        axis, label, title = STUDIES[study]
        for name in METHODS:
            pts = [(_value(r, axis), summarize(r, name)) for r in recs]
            pts = [(v, sm) for v, sm in pts if sm is not None]
            if not pts:
                continue
            xs = [v for v, _ in pts]
            (line,) = axes[0, col].semilogy(
                xs, [sm["median"] for _, sm in pts], "o-", label=LABELS[name]
            )
            axes[0, col].semilogy(
                xs, [sm["mean"] for _, sm in pts], "x:", color=line.get_color(), alpha=0.7
            )
            axes[1, col].plot(xs, [sm["srr"] for _, sm in pts], "o-", label=LABELS[name])
            if name != "oracle":
                axes[2, col].semilogy(xs, [sm["seconds"] for _, sm in pts], "o-")
        axes[0, col].set_title(title)
        axes[0, col].set_ylabel("NMSE (o median, x mean)")
        axes[1, col].set_ylabel("mean SRR")
        axes[2, col].set_ylabel("seconds per trial")
        for row in range(3):
            axes[row, col].set_xlabel(label)
            axes[row, col].grid(True, alpha=0.3)
            if axis != "snr_db":
                axes[row, col].xaxis.set_major_locator(MaxNLocator(integer=True))
        axes[1, col].legend(fontsize=7)
    fig.tight_layout()
    return ctx.save_figure(fig, "krosbl_synthetic.png")


def report(records: list[Record], ctx: ReportContext) -> str:
    studies = {}
    for study, (axis, _, _) in STUDIES.items():
        recs = sorted((r for r in records if _in_study(r, study)), key=lambda r: _value(r, axis))
        if recs:
            studies[study] = recs
    others = [r for r in records if not any(_in_study(r, s) for s in STUDIES)]
    trials = sorted({int(r.config["run"]["trials"]) for r in records})
    classical = sorted({int(r.config["run"]["classical_trials"]) for r in records})
    classical_text = (
        "classical SBL was not run (`run.classical_trials = 0`)"
        if classical == [0]
        else f"classical SBL on the first {'/'.join(map(str, classical))} of them only "
        "(seconds per trial on the explicit dictionary)"
    )
    lines = [
        "Synthetic study of He and Joseph (arXiv:2307.14719): 15 atoms per mode (N = 3375), "
        f"M_2 = 12, M_3 = 15, {'/'.join(map(str, trials))} trials per point (the paper: 200), "
        f"the same trials at every point (common random numbers); {classical_text}. float64. "
        "NMSE = ‖x̂−x‖²/‖x‖²; SRR = |S∩Ŝ|/|S∪Ŝ| with S = {x ≠ 0} and "
        "Ŝ = {|x̂| > 1e-3·max|x̂|}, for every method including the oracle (the authors' OLS.m "
        "reports 1 by definition; here it falls below 1 when a true entry, a product of three "
        "N(0, 1), is under 1e-3 of the largest); ± is the standard error of the mean.",
        "",
        "Run time per trial: each method's solve of a point's trials is bracketed by two host "
        "clock reads inside the compiled program (compilation, problem generation and metrics "
        "excluded), divided by the trials and by the points solved in the same call (all the "
        "points of one M_1 unless the run used `--max-batch 1`; then the vmapped loops also "
        "wait for the slowest point). Kronecker methods and OMP: amortised over a vmapped "
        "batch of trials; classical SBL: the mean of sequential solves. One CPU core; times "
        "depend on the machine and its load.",
        "",
        "Kronecker-OMP follows the authors' KroOMP.m: up to 10 indices per mode and a relative "
        "residual of 1e-2, which the noise keeps it from reaching below 40 dB, so it stops only "
        "when a step adds no index or every mode holds 10. With M_1 ≤ 10 rows, 10 indices in "
        "mode 1 make the least-squares refit underdetermined (minimum norm), and wrong early "
        "picks fill a mode before its true atoms are found: its NMSE stays far above the "
        "SBL methods'.",
        "",
    ]
    if studies:
        lines += [f"![results]({_figure(studies, ctx)})", ""]
    for study, recs in studies.items():
        axis, label, title = STUDIES[study]
        lines += [f"## {title}", "", _table(recs, axis, label), ""]
    if others:
        lines += ["## Other points", ""]
        for rec in others:
            lines += [f"{rec.point}", "", _table([rec], "m1", "M_1"), ""]

    ref_rows, notes = _reference_rows(studies.get("snr", []))
    lines += [
        "## Against the reference (project notes §1.6: a NumPy port, study (a))",
        "",
        "The reference is a NumPy re-implementation (mode-product E-step, the authors' "
        "initialisation, pruning, stopping and M-steps) run for 15 trials per point on a 2-core "
        "CPU; it is not the paper's figure data, which was not available.",
        "",
    ]
    if not ref_rows:
        lines += ["(No 10 dB or 25 dB point of study (a) in this run.)", ""]
        return "\n".join(lines)
    lines += [
        markdown_table(ref_rows),
        "",
        "Reading it: NMSE over trials is heavy-tailed (a few failed trials of NMSE near 1 "
        "carry the mean) and can spread over orders of magnitude between trials (the "
        "quartiles of each trial's NMSE over the oracle's on the same trial are in the "
        "table), so 15-trial statistics scatter widely. "
        "Each reference value is therefore checked against the spread that 15 trials "
        "resampled from this run's trials would show (90% range, 2000 draws); rows with "
        "fewer than 15 trials here (classical SBL) only against a factor 2. The ratios to the "
        "oracle's median remove most of the problem-draw variation that all methods share. "
        "A reference value counts as inside when the interval its printed digits stand for "
        "(0.0003: 0.00025 to 0.00035) meets that range. Times are not comparable "
        "in kind: the reference loops over trials in NumPy (and its KroSBL E-step forms no "
        "N x N matrix either), this run batches the Kronecker methods with vmap under jit on "
        "one core. Classical SBL here stops on max|Δγ| ≤ 1e-4·max γ (the library's rule) "
        "where the authors use ‖Δγ‖/‖γ_old‖ < 1e-4, and keeps the full dictionary (masked) "
        "until pruning lets the library compact it, where the authors shrink it every step.",
        "",
        "The authors' scripts do not agree on the error they save: `svd_kroSBL.m` and `OLS.m` "
        "return ‖x̂−x‖²/‖x‖², but `am_kroSBL.m`, `classicSBL.m` and `KroOMP.m` return "
        "‖x̂−x‖/‖x‖ (not squared). Here, as in the reference, every method gets the squared "
        "NMSE; a figure built from the saved values would show the latter three on a "
        "different scale.",
        "",
    ]
    if notes:
        lines += ["Where the reference falls outside this run's sampling spread:", ""]
        lines += [f"- {n}" for n in notes] + [""]
    else:
        lines += [
            "Every reference value lies within the spread of 15-trial values from this run "
            "(and the classical SBL medians within a factor 2).",
            "",
        ]
    return "\n".join(lines)


EXPERIMENT = Experiment(
    name="krosbl_synthetic",
    description="KroSBL synthetic study: NMSE, SRR and time vs SNR, M_1 and K (He and Joseph).",
    config_cls=Config,
    run=run,
    report=report,
    x64=True,
)
