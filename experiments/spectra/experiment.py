"""SPECTRA at small scale: AdamW / Signum with and without spectral post-clipping.

A byte-level decoder-only transformer (``model.py``) is trained on the Python standard
library's sources with each of four optimizers: AdamW, SPECTRA-AdamW, Signum and
SPECTRA-Signum (:func:`jaxspec.spectral.spectra` around the same base direction). All four
decay only matrices, use the same warm-up + cosine schedule, and each SPECTRA variant uses its
base optimizer's learning rate, so the only difference within a pair is the clip. The whole
training run is one ``jax.lax.scan`` inside ``run`` (pure: batches are drawn from the key).

Metrics: validation loss every ``eval_every`` steps on a fixed set of held-out windows, the
mean training loss over the same intervals, the spectral and Frobenius norm of every weight
matrix at the end, and how much the clip acted: ``||H_c(U)||_F / ||U||_F`` per matrix and
step (recovered exactly from the applied update) and ``sigma_max(U) / c``.

References:
    Jiang, Semenov, Stich, "Enhancing LLM Training via Spectral Clipping",
    arXiv:2603.14315, ICML 2026.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import sys
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxspec import spectral
from jaxspec.experiments import Experiment, Record, ReportContext, markdown_table, mean_std


def _load_sibling(name: str) -> Any:
    # experiment.py is imported by file path, not as a package: load model.py the same way.
    module_name = f"jaxspec_experiment_spectra_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, Path(__file__).parent / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


model_lib = _load_sibling("model")

OPTIMIZERS = ("adamw", "spectra_adamw", "signum", "spectra_signum")
PAIRS = (("adamw", "spectra_adamw"), ("signum", "spectra_signum"))
LABELS = {
    "adamw": "AdamW",
    "spectra_adamw": "SPECTRA-AdamW",
    "signum": "Signum",
    "spectra_signum": "SPECTRA-Signum",
}
COLORS = {"adamw": "C0", "spectra_adamw": "C1", "signum": "C2", "spectra_signum": "C3"}
ACTIVE_RATIO = 0.9  # a matrix's step counts as clipped when H_c removed > 10% of ||U||_F


@dataclasses.dataclass(frozen=True)
class DataConfig:
    budget_bytes: int = 8_000_000
    val_bytes: int = 500_000


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    seq_len: int = 256
    mlp_ratio: int = 4


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    steps: int = 5000
    batch_size: int = 64
    warmup_steps: int = 250
    final_lr_fraction: float = 0.1
    eval_every: int = 100
    eval_batches: int = 8
    diag_power_iters: int = 8


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    name: str = "adamw"
    lr: float = 1e-3
    c: float = 10.0
    weight_decay: float = 0.1
    b1: float = 0.9
    b2: float = 0.95
    eps: float = 1e-8
    momentum: float = 0.95
    nesterov: bool = True


@dataclasses.dataclass(frozen=True)
class Config:
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    optimizer: OptimizerConfig = OptimizerConfig()


# ---------------------------------------------------------------------------------------------
# Optimizers


def lr_schedule(peak: Any, steps: int, warmup_steps: int, final_fraction: Any):
    """Linear warm-up from ``peak / warmup_steps`` to ``peak``, then cosine to ``final * peak``.

    Never zero (the first step already moves), so the applied update can be divided by it.
    """

    def schedule(count: jax.Array) -> jax.Array:
        k = jnp.asarray(count, jnp.float32)
        warm = (k + 1.0) / max(warmup_steps, 1)
        progress = jnp.clip((k - warmup_steps) / max(steps - warmup_steps, 1), 0.0, 1.0)
        cosine = final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
        return peak * jnp.where(k < warmup_steps, warm, cosine)

    return schedule


def matrix_mask(tree: Any) -> Any:
    """Decay (and clip) matrices only: the SPECTRA default, used for every optimizer here."""
    return jax.tree.map(lambda leaf: jnp.ndim(leaf) >= 2, tree)


class DirectionState(NamedTuple):
    """The last direction ``U_k`` seen, kept for diagnostics."""

    direction: Any


def keep_direction() -> optax.GradientTransformation:
    """Identity transform that stores its input in the state (to measure ``U_k`` later)."""

    def init_fn(params):
        return DirectionState(jax.tree.map(jnp.zeros_like, params))

    def update_fn(updates, state, params=None):
        del state, params
        return updates, DirectionState(updates)

    return optax.GradientTransformation(init_fn, update_fn)


def make_optimizer(opt: OptimizerConfig, schedule: Any, warmup_steps: int):
    """The optimizer named ``opt.name``; SPECTRA variants get the ``c eta = const`` warm-up."""
    if opt.name not in OPTIMIZERS:
        raise ValueError(f"`optimizer.name` must be one of {OPTIMIZERS}, got {opt.name!r}.")
    if opt.name == "adamw":
        return optax.adamw(
            schedule, opt.b1, opt.b2, opt.eps, weight_decay=opt.weight_decay, mask=matrix_mask
        )
    if opt.name == "signum":
        return optax.chain(
            spectral.scale_by_signum(opt.momentum, opt.nesterov),
            optax.add_decayed_weights(opt.weight_decay, matrix_mask),
            optax.scale_by_learning_rate(schedule),
        )
    # spectral.spectra_adamw / spectra_signum, with the direction recorded for diagnostics.
    if opt.name == "spectra_adamw":
        base = optax.scale_by_adam(opt.b1, opt.b2, opt.eps)
    else:
        base = spectral.scale_by_signum(opt.momentum, opt.nesterov)
    return spectral.spectra(
        optax.chain(base, keep_direction()),
        schedule,
        opt.c,
        opt.weight_decay,
        warmup_steps=warmup_steps,
    )


def shape_factor(w: jax.Array) -> float:
    """SPECTRA's (Muon's) ``sqrt(max(1, rows / cols))``."""
    return math.sqrt(max(1.0, w.shape[-2] / w.shape[-1]))


def spectral_norms(matrices: dict[str, jax.Array], iters: int) -> dict[str, jax.Array]:
    """``sigma_max`` of every matrix, one batched power iteration per distinct shape.

    Matrices are turned wide (``sigma`` is transpose-invariant) and stacked by shape, so a
    model has 3-4 power-iteration loops instead of one per matrix (which dominated compile
    time on CPU).
    """
    groups: dict[tuple[int, ...], list[tuple[str, jax.Array]]] = {}
    for name, w in matrices.items():
        w = w if w.shape[-2] <= w.shape[-1] else w.T
        groups.setdefault(w.shape, []).append((name, w))
    out = {}
    for members in groups.values():
        sigma = spectral.spectral_norm(jnp.stack([w for _, w in members]), iters=iters)
        out.update({name: sigma[i] for i, (name, _) in enumerate(members)})
    return {name: out[name] for name in matrices}


def clip_diagnostics(opt: OptimizerConfig, updates, params, opt_state, eta, power_iters: int):
    """Per matrix: ``sigma_max(U) / c`` and ``||H_c(U)||_F / ||U||_F`` for this step.

    The applied update is ``-eta (alpha H + lambda W)`` (``H = U`` without clipping), so
    ``alpha H`` is recovered exactly from it; ``U`` is the base direction (kept in the state by
    :func:`keep_direction` for SPECTRA, equal to ``H`` for the baselines).
    """
    upd = updates.named_matrices()
    weights = params.named_matrices()
    clipped = opt.name.startswith("spectra")
    if clipped:
        raw = opt_state.base_state[1].direction.named_matrices()
    directions, ratio = {}, []
    for name, w in weights.items():
        h = -upd[name] / eta - opt.weight_decay * w
        if clipped:
            u = raw[name]
            h = h / shape_factor(w)
            ratio.append(jnp.linalg.norm(h) / jnp.maximum(jnp.linalg.norm(u), 1e-30))
        else:
            u = h
            ratio.append(jnp.ones((), jnp.float32))
        directions[name] = u
    sig = jnp.stack(list(spectral_norms(directions, power_iters).values())) / opt.c
    return sig, jnp.stack(ratio)


# ---------------------------------------------------------------------------------------------
# Training


def make_model(cfg: ModelConfig, key: jax.Array):
    return model_lib.Transformer(
        cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.seq_len, cfg.mlp_ratio, key
    )


def sample_windows(corpus: jax.Array, key: jax.Array, batch: int, seq_len: int) -> jax.Array:
    """``batch`` random windows of ``seq_len + 1`` bytes, as int32 tokens."""
    starts = jax.random.randint(key, (batch,), 0, corpus.shape[0] - seq_len)
    return corpus[starts[:, None] + jnp.arange(seq_len + 1)].astype(jnp.int32)


def val_windows(val: np.ndarray, n_batches: int, batch: int, seq_len: int) -> np.ndarray:
    """Fixed held-out windows, evenly spaced over the validation bytes: ``(n, batch, T + 1)``."""
    if val.size < seq_len + 2:
        raise ValueError(f"Validation set of {val.size} bytes is shorter than one window.")
    starts = np.linspace(0, val.size - seq_len - 1, n_batches * batch).astype(np.int64)
    windows = val[starts[:, None] + np.arange(seq_len + 1)].astype(np.int32)
    return windows.reshape(n_batches, batch, seq_len + 1)


def run(config: Config, key: jax.Array) -> dict[str, Any]:
    """Train one model with one optimizer; return curves, final norms and clip statistics."""
    tcfg, mcfg, ocfg = config.train, config.model, config.optimizer
    if tcfg.steps % tcfg.eval_every:
        raise ValueError(
            f"`train.steps` ({tcfg.steps}) must be a multiple of `train.eval_every` "
            f"({tcfg.eval_every})."
        )
    train_np, val_np, _ = model_lib.load_corpus(config.data.budget_bytes, config.data.val_bytes)
    train = jnp.asarray(train_np)
    val = jnp.asarray(val_windows(val_np, tcfg.eval_batches, tcfg.batch_size, mcfg.seq_len))

    k_init, k_data = jax.random.split(key)
    params = make_model(mcfg, k_init)
    schedule = lr_schedule(ocfg.lr, tcfg.steps, tcfg.warmup_steps, tcfg.final_lr_fraction)
    optimizer = make_optimizer(ocfg, schedule, tcfg.warmup_steps)
    opt_state = optimizer.init(params)
    loss_and_grad = jax.value_and_grad(model_lib.next_byte_loss)

    def val_loss(params):
        return jax.lax.map(lambda w: model_lib.next_byte_loss(params, w), val).mean()

    def train_step(carry, step):
        params, opt_state = carry
        batch = sample_windows(
            train, jax.random.fold_in(k_data, step), tcfg.batch_size, mcfg.seq_len
        )
        loss, grads = loss_and_grad(params, batch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        sig, ratio = clip_diagnostics(
            ocfg, updates, params, opt_state, schedule(step), tcfg.diag_power_iters
        )
        params = optax.apply_updates(params, updates)
        return (params, opt_state), (loss, sig, ratio)

    def chunk(carry, index):
        steps = index * tcfg.eval_every + jnp.arange(tcfg.eval_every)
        carry, (loss, sig, ratio) = jax.lax.scan(train_step, carry, steps)
        stats = {
            "train_loss": loss.mean(),
            "val_loss": val_loss(carry[0]),
            "sigma_over_c": sig.mean(),
            "clip_ratio": ratio.mean(),
            "clip_active": (ratio < ACTIVE_RATIO).mean(),
        }
        return carry, stats

    n_chunks = tcfg.steps // tcfg.eval_every
    init_val = val_loss(params)
    (params, _), stats = jax.lax.scan(chunk, (params, opt_state), jnp.arange(n_chunks))
    matrices = params.named_matrices()
    return {
        "step": jnp.arange(n_chunks + 1) * tcfg.eval_every,
        "val_loss": jnp.concatenate([init_val[None], stats["val_loss"]]),
        "train_loss": stats["train_loss"],
        "final_val_loss": stats["val_loss"][-1],
        "final_train_loss": stats["train_loss"][-1],
        "clip": {k: stats[k] for k in ("sigma_over_c", "clip_ratio", "clip_active")},
        "spectral_norm": spectral_norms(matrices, iters=50),
        "frobenius_norm": {n: jnp.linalg.norm(w) for n, w in matrices.items()},
    }


# ---------------------------------------------------------------------------------------------
# Report


def _by_optimizer(records: list[Record]) -> dict[str, list[Record]]:
    groups: dict[str, list[Record]] = {}
    for record in records:
        groups.setdefault(record.config["optimizer"]["name"], []).append(record)
    return {name: groups[name] for name in OPTIMIZERS if name in groups}


def _metric(recs: list[Record], key: str) -> np.ndarray:
    return np.stack([np.asarray(r.metrics[key], dtype=np.float64) for r in recs])


def _norms(rec: Record, kind: str) -> dict[str, float]:
    prefix = f"{kind}."
    return {k[len(prefix) :]: float(v) for k, v in rec.metrics.items() if k.startswith(prefix)}


def _matrix_order(names: list[str]) -> list[str]:
    """Embeddings, then each layer's q, k, v, o, mlp_in, mlp_out, then the head."""

    def rank(name: str) -> tuple[int, int, int]:
        if name.startswith("embed."):
            return (0, 0, ("embed.tok", "embed.pos").index(name))
        if name.startswith("L"):
            layer, kind = name.split(".", 1)
            return (1, int(layer[1:]), model_lib.MATRIX_TYPES.index(kind))
        return (2, 0, 0)

    return sorted(names, key=rank)


def _mean_norm(rec: Record, kind: str) -> float:
    return float(np.mean(list(_norms(rec, kind).values())))


def _paired(base: list[Record], other: list[Record], value) -> np.ndarray:
    """``value(other) - value(base)`` for the seeds both optimizers ran."""
    by_seed = {r.point.get("seed"): r for r in base}
    return np.asarray(
        [
            value(r) - value(by_seed[r.point.get("seed")])
            for r in other
            if r.point.get("seed") in by_seed
        ]
    )


def _verdict(diffs: np.ndarray, what: str, paper_sign: str) -> str:
    """One generated sentence on a paired difference (SPECTRA minus base) over seeds."""
    n = diffs.size
    if n == 0:
        return f"{what}: no paired seeds."
    mean = diffs.mean()
    lower = int(np.sum(diffs < 0))
    agrees = mean < 0 if paper_sign == "lower" else mean > 0
    text = (
        f"{what}: SPECTRA minus base = {mean:+.4g} (mean over {n} paired seed(s); SPECTRA lower "
        f"in {lower} of {n}); this {'agrees' if agrees else 'does not agree'} with the paper's "
        f"direction ({paper_sign} with SPECTRA)"
    )
    if n >= 2:
        se = diffs.std(ddof=1) / np.sqrt(n)
        clear = abs(mean) > 2 * se
        text += (
            f", and the difference is {'more' if clear else 'less'} than twice its standard "
            f"error ({2 * se:.2g})"
        )
        if not clear:
            text += ", i.e. within seed-to-seed noise"
        if n < 5:
            text += f" (a rough error bar from {n} seeds)"
    else:
        text += "; one seed gives no error bar"
    return text + "."


def _magnitude(gaps: dict[str, float]) -> str:
    """Set the observed validation-loss gaps beside the paper's 0.02-0.03 nats."""

    def size(gap: float) -> str:
        if gap >= 0:
            return "no gain"
        if gap < -0.03:
            return "a larger gain than the paper's"
        if gap <= -0.02:
            return "a gain of the paper's size"
        return "a smaller gain than the paper's"

    parts = [f"{pair} {gap:+.3f} ({size(gap)})" for pair, gap in gaps.items() if np.isfinite(gap)]
    if not parts:
        return ""
    return (
        "Validation-loss gap, SPECTRA minus base, in nats/byte (the paper: 0.02-0.03 lower): "
        + "; ".join(parts)
        + "."
    )


def _curve_figure(groups: dict[str, list[Record]], ctx: ReportContext) -> str:
    import matplotlib.pyplot as plt

    fig, (ax_val, ax_zoom, ax_train) = plt.subplots(1, 3, figsize=(16, 4.3))
    every = next(iter(groups.values()))[0].config["train"]["eval_every"]
    for name, recs in groups.items():
        steps = np.asarray(recs[0].metrics["step"])
        val = _metric(recs, "val_loss")
        train = _metric(recs, "train_loss")
        mean, std = val.mean(0), val.std(0)
        for ax in (ax_val, ax_zoom):
            label = f"{LABELS[name]} ({len(recs)} seeds)"
            ax.plot(steps, mean, color=COLORS[name], label=label)
            ax.fill_between(steps, mean - std, mean + std, color=COLORS[name], alpha=0.25)
        t_steps = steps[1:] - every / 2  # a chunk's mean sits at its middle
        t_mean, t_std = train.mean(0), train.std(0)
        ax_train.plot(t_steps, t_mean, color=COLORS[name], label=LABELS[name])
        ax_train.fill_between(
            t_steps, t_mean - t_std, t_mean + t_std, color=COLORS[name], alpha=0.25
        )
    half = steps[len(steps) // 2]
    ax_zoom.set_xlim(half, steps[-1])
    tail = [_metric(r, "val_loss")[:, len(steps) // 2 :] for r in groups.values()]
    lo, hi = min(t.min() for t in tail), max(t.max() for t in tail)
    ax_zoom.set_ylim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
    ax_val.axhline(np.log(256), color="gray", ls=":", lw=1, label="log 256 (uniform)")
    ax_val.set_title("validation loss (mean ± std over seeds)")
    ax_zoom.set_title("validation loss, second half of training")
    ax_train.set_title("training loss (mean over each eval interval)")
    for ax in (ax_val, ax_zoom, ax_train):
        ax.set_xlabel("step")
        ax.set_ylabel("cross-entropy (nats / byte)")
        ax.grid(True, alpha=0.3)
    ax_val.legend(fontsize=8)
    ax_train.set_ylim(top=min(np.log(256), ax_train.get_ylim()[1]))
    return ctx.save_figure(fig, "loss_curves.png")


def _norm_figure(groups: dict[str, list[Record]], ctx: ReportContext) -> str:
    import matplotlib.pyplot as plt

    names = list(_norms(next(iter(groups.values()))[0], "spectral_norm"))
    n_layers = 1 + max(int(n.split(".")[0][1:]) for n in names if n.startswith("L"))
    panels = [(t, [f"L{i}.{t}" for i in range(n_layers)]) for t in model_lib.MATRIX_TYPES]
    panels.append(("embeddings / head", ["embed.tok", "embed.pos", "head.out"]))
    fig, axes = plt.subplots(2, 4, figsize=(17, 7))
    axes = axes.ravel()
    width = 0.8 / len(groups)
    for ax, (title, keys) in zip(axes, panels):
        x = np.arange(len(keys))
        for j, (name, recs) in enumerate(groups.items()):
            vals = np.asarray([[_norms(r, "spectral_norm")[k] for k in keys] for r in recs])
            ax.bar(
                x + (j - (len(groups) - 1) / 2) * width,
                vals.mean(0),
                width,
                yerr=vals.std(0) if len(recs) > 1 else None,
                label=LABELS[name],
                color=COLORS[name],
                capsize=2,
            )
        ax.set_xticks(x, [k.split(".")[0] if k.startswith("L") else k for k in keys])
        ax.set_title(title)
        ax.set_ylabel("spectral norm")
        ax.grid(True, axis="y", alpha=0.3)
    axes[len(panels) - 1].legend(fontsize=8)
    ax = axes[len(panels)]
    for name, recs in groups.items():
        every = recs[0].config["train"]["eval_every"]
        steps = np.asarray(recs[0].metrics["step"])[1:] - every / 2
        ratio = _metric(recs, "clip.clip_ratio")
        if name.startswith("spectra"):
            ax.plot(steps, ratio.mean(0), color=COLORS[name], label=LABELS[name])
    ax.set_ylim(0, 1.05)
    ax.set_title("clip: mean ‖H_c(U)‖_F / ‖U‖_F per interval")
    ax.set_xlabel("step")
    ax.grid(True, alpha=0.3)
    if any(n.startswith("spectra") for n in groups):
        ax.legend(fontsize=8)
    fig.suptitle("Spectral norm of each weight matrix at the end (mean ± std over seeds)")
    fig.tight_layout()
    return ctx.save_figure(fig, "spectral_norms.png")


def _setup_text(records: list[Record], groups: dict[str, list[Record]]) -> list[str]:
    cfg = records[0].config
    data, model, train = cfg["data"], cfg["model"], cfg["train"]
    train_np, val_np, digest = model_lib.load_corpus(data["budget_bytes"], data["val_bytes"])
    params = make_model(ModelConfig(**model), jax.random.key(0))
    n_params = sum(x.size for x in jax.tree.leaves(params))
    seeds = sorted({r.point.get("seed") for r in records})
    opt_rows = []
    for name, recs in groups.items():
        o = recs[0].config["optimizer"]
        opt_rows.append(
            {
                "optimizer": LABELS[name],
                "peak lr": f"{o['lr']:g}",
                "weight decay": f"{o['weight_decay']:g}",
                "c": f"{o['c']:g}" if name.startswith("spectra") else "-",
                "base": f"Adam b1={o['b1']:g}, b2={o['b2']:g}"
                if "adamw" in name
                else f"signed momentum {o['momentum']:g}, nesterov={o['nesterov']}",
            }
        )
    return [
        "## Setup",
        "",
        f"- Corpus: the `*.py` sources of this Python's standard library "
        f"(`{sysconfig_stdlib()}`, Python {sys.version.split()[0]}), sorted by path and "
        f"concatenated; the first {data['budget_bytes']:,} bytes (sha1 `{digest}`), byte tokens "
        f"(vocabulary 256). Validation = the contiguous tail of {val_np.size:,} bytes; "
        f"training = the {train_np.size:,} bytes before it.",
        f"- Model: decoder-only transformer, d_model {model['d_model']}, {model['n_layers']} "
        f"layers, {model['n_heads']} heads, MLP x{model['mlp_ratio']}, context "
        f"{model['seq_len']}, pre-LayerNorm, learned positions, untied head, no linear biases "
        f"({n_params:,} parameters).",
        f"- Training: {train['steps']} steps of batch {train['batch_size']} x "
        f"{model['seq_len']} bytes; linear warm-up for {train['warmup_steps']} steps, then "
        f"cosine to {train['final_lr_fraction']:g} x peak. Validation loss every "
        f"{train['eval_every']} steps on the same {train['eval_batches'] * train['batch_size']} "
        f"held-out windows. Seeds: {seeds} (model init and batch order).",
        "- Every optimizer decays matrices only. SPECTRA = `jaxspec.spectral.spectra` around the "
        "same base direction: soft clip `H_c(U) = (I + UU^T/c^2)^(-1/2) U`, Muon's shape "
        f"factor, and `c_k eta_k` held constant during warm-up; {_lr_protocol(groups)}.",
        "",
        markdown_table(opt_rows),
        "",
    ]


def _lr_protocol(groups: dict[str, list[Record]]) -> str:
    lrs = {name: recs[0].config["optimizer"]["lr"] for name, recs in groups.items()}
    same = all(lrs.get(a) == lrs.get(b) for a, b in PAIRS if a in lrs and b in lrs)
    if same:
        return "each SPECTRA variant at its base optimizer's learning rate"
    return "learning rates set per optimizer, see the setup table"


def sysconfig_stdlib() -> str:
    import sysconfig

    return sysconfig.get_paths()["stdlib"]


def report(records: list[Record], ctx: ReportContext) -> str:
    groups = _by_optimizer(records)
    lines = _setup_text(records, groups)

    curves = _curve_figure(groups, ctx)
    lines += ["## Loss curves", "", f"![validation and training loss]({curves})", ""]

    rows = []
    for name, recs in groups.items():
        rows.append(
            {
                "optimizer": LABELS[name],
                "seeds": len(recs),
                "final val loss": mean_std(_metric(recs, "final_val_loss"), ".4f"),
                "final train loss": mean_std(_metric(recs, "final_train_loss"), ".4f"),
                "mean spectral norm": mean_std(
                    [_mean_norm(r, "spectral_norm") for r in recs], ".3f"
                ),
                "mean Frobenius norm": mean_std(
                    [_mean_norm(r, "frobenius_norm") for r in recs], ".3f"
                ),
            }
        )
    lines += [
        "## Final results",
        "",
        "Final losses are at the last step (validation on the fixed held-out windows; training "
        "= mean over the last eval interval). Norms: mean over all weight matrices (embeddings, "
        "head, q/k/v/o, MLP in/out) of each run, then mean ± std over seeds.",
        "",
        markdown_table(rows),
        "",
    ]

    findings: list[str] = []
    gaps: dict[str, float] = {}
    for base, clipped in PAIRS:
        if base not in groups or clipped not in groups:
            continue
        b, s = groups[base], groups[clipped]
        pair = f"{LABELS[clipped]} vs {LABELS[base]}"
        val = _paired(b, s, lambda r: float(r.metrics["final_val_loss"]))
        sn = _paired(b, s, lambda r: _mean_norm(r, "spectral_norm"))
        fro = _paired(b, s, lambda r: _mean_norm(r, "frobenius_norm"))
        rel = np.mean([_mean_norm(r, "spectral_norm") for r in s]) / np.mean(
            [_mean_norm(r, "spectral_norm") for r in b]
        )
        matrices = list(_norms(b[0], "spectral_norm"))
        smaller = sum(
            np.mean([_norms(r, "spectral_norm")[m] for r in s])
            < np.mean([_norms(r, "spectral_norm")[m] for r in b])
            for m in matrices
        )
        findings += [
            f"- {pair}, final validation loss. " + _verdict(val, "Difference", "lower"),
            f"- {pair}, mean spectral norm of the weights (SPECTRA / base = {rel:.3f}; "
            f"SPECTRA's is smaller for {smaller} of {len(matrices)} matrices). "
            + _verdict(sn, "Difference", "lower"),
            f"- {pair}, mean Frobenius norm. " + _verdict(fro, "Difference", "lower"),
        ]
        gaps[pair] = float(val.mean()) if val.size else float("nan")
    if findings:
        n_seeds = len({r.point.get("seed") for r in records})
        lines += [
            "## What this run shows",
            "",
            "The paper (Jiang, Semenov, Stich 2026) reports lower validation loss (by about "
            "0.02-0.03 nats at 160M-820M parameters and 16B tokens) and smaller weight norms "
            "with SPECTRA. Observed here (generated from the numbers above):",
            "",
            *findings,
            "",
            _magnitude(gaps),
            "",
            f"These are {n_seeds} seed(s) of a model far smaller and far shorter-trained than the "
            f"paper's, on a different corpus ({_lr_protocol(groups)}); they test the direction "
            "of the effects at small scale, not the paper's numbers.",
            "",
        ]

    clip_rows = []
    for name, recs in groups.items():
        ratio = _metric(recs, "clip.clip_ratio")
        active = _metric(recs, "clip.clip_active")
        sig = _metric(recs, "clip.sigma_over_c")
        spectra_run = name.startswith("spectra")
        clip_rows.append(
            {
                "optimizer": LABELS[name],
                "c": f"{recs[0].config['optimizer']['c']:g}",
                "sigma_max(U)/c, first interval": f"{sig[:, 0].mean():.3g}",
                "sigma_max(U)/c, last interval": f"{sig[:, -1].mean():.3g}",
                "mean ‖H_c(U)‖_F / ‖U‖_F": f"{ratio.mean():.3f}" if spectra_run else "-",
                f"matrix-steps clipped by > {1 - ACTIVE_RATIO:.0%}": f"{active.mean():.1%}"
                if spectra_run
                else "-",
            }
        )
    c_values = sorted({r.config["optimizer"]["c"] for r in records})
    clip_text = [
        "## Is the clip active?",
        "",
        "`U` is the base optimizer's direction at each step and `H_c` SPECTRA's soft clip "
        "(each singular value `s -> s / sqrt(1 + s^2/c^2)`). `sigma_max(U)` is estimated by "
        f"{records[0].config['train']['diag_power_iters']} power iterations (a lower bound), "
        "averaged over matrices and steps; for the baselines it shows what a clip at the same c "
        "would have met. The Frobenius ratio is measured from the applied update.",
        "",
        markdown_table(clip_rows),
        "",
    ]
    spectra_ratios = [
        _metric(recs, "clip.clip_ratio").mean()
        for name, recs in groups.items()
        if name.startswith("spectra")
    ]
    if spectra_ratios:
        weakest, strongest = max(spectra_ratios), min(spectra_ratios)
        c_text = ", ".join(f"{c:g}" for c in c_values)
        removed = f"{1 - weakest:.0%} to {1 - strongest:.0%}"
        if weakest < 0.95:
            clip_text.append(
                f"c = {c_text}: the clip is active at this scale, removing on average {removed} "
                "of each update's Frobenius norm, so the paper's threshold needs no rescaling for "
                "this model (a sign-like direction of a near-rank-one gradient has "
                "`sigma_max(U)` near `sqrt(rows x cols)`, large even for small matrices)."
            )
        else:
            clip_text.append(
                f"c = {c_text}: the clip is barely active here (it removes {removed} of the "
                "update's Frobenius norm), so SPECTRA is close to its base optimizer; a smaller c "
                "would test the method."
            )
        clip_text.append("")
    lines += clip_text

    norm_png = _norm_figure(groups, ctx)
    names = _matrix_order(list(_norms(records[0], "spectral_norm")))
    table = []
    for matrix in names:
        row = {"matrix": matrix}
        for name, recs in groups.items():
            vals = [_norms(r, "spectral_norm")[matrix] for r in recs]
            row[LABELS[name]] = mean_std(vals, ".3g")
        table.append(row)
    lines += [
        "## Spectral norm per matrix",
        "",
        f"![spectral norms per layer]({norm_png})",
        "",
        "Spectral norm at the end of training (mean ± std over seeds):",
        "",
        markdown_table(table),
    ]
    return "\n".join(lines)


EXPERIMENT = Experiment(
    name="spectra",
    description="SPECTRA at small scale: AdamW/Signum with and without spectral clipping, "
    "byte-level transformer on the stdlib sources.",
    config_cls=Config,
    run=run,
    report=report,
)
