"""OrthoMerge at small scale: merging fine-tuned MLPs on transformed scikit-learn digits.

A GELU MLP ``64 -> hidden -> hidden -> 10`` is pretrained on the clean 8x8 digits of
``sklearn.datasets.load_digits`` (bundled, no download). Each task is the same 10-class problem
on transformed images (rotated, mirrored, zoomed, thickened strokes, ...), where the pretrained
model is much worse. Copies of the base model are fine-tuned on every task in two ways:

* **OFT** (orthogonal fine-tuning, Qiu et al.): every weight matrix ``W_0 (out, in)`` becomes
  ``W_0 R`` with ``R = blockdiag(cayley(Q_k))`` acting on the input side; only the skew
  generators ``Q_k`` (blocks of ``block_size``) are trained, biases stay frozen;
* **full fine-tuning** of every parameter.

The experts are then merged into one model and evaluated on every task:

* OFT experts: task arithmetic on the weights (``W_0 + lambda sum_i (W_0 R_i - W_0)``), task
  arithmetic on the generators (``cayley(lambda sum_i Q_i)``), and OrthoMerge
  (:func:`jaxspec.manifolds.orthomerge`; magnitude-corrected merge of the generators per layer,
  Cayley chart as the paper's code, exp chart as a variant);
* fully fine-tuned experts: task arithmetic, and OrthoMerge with orthogonal-residual decoupling
  (:func:`jaxspec.manifolds.orthomerge_weights`: per-layer Procrustes ``R_i``, merged rotation,
  residuals added with ``lambda``), at the paper's ``lambda = 0.2``, at a tuned ``lambda`` and
  at ``lambda = 0`` (rotation only).

Every ``lambda`` marked "tuned" is picked from ``merge.scales`` by mean validation accuracy
over the tasks (a held-out split, not the test split); weight averaging is ``lambda = 1/T``.
The run also measures how each merge changes the hyperspherical energy (sum over pairs of rows
of ``1 / ||w_i/|w_i| - w_j/|w_j|||``) and the singular values of every weight matrix relative
to the base model. Seeds (model init, minibatch order) are vmapped by the runner.

References:
    Yang, Shi, Liu, "Orthogonal Model Merging", arXiv:2602.05943, 2026.
    Qiu et al., "Controlling Text-to-Image Diffusion by Orthogonal Finetuning",
    arXiv:2306.07280, 2023.
    Ilharco et al., "Editing Models with Task Arithmetic", arXiv:2212.04089, 2023.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxspec import manifolds, spectral
from jaxspec.experiments import Experiment, Record, ReportContext, markdown_table, mean_std

LAYERS = ("w1", "w2", "w3")
BIASES = ("b1", "b2", "b3")


# ----------------------------------------------------------------------------- config


@dataclasses.dataclass(frozen=True)
class DataConfig:
    tasks: tuple[str, ...] = ("rotate", "flip", "zoom", "dilate")
    train: int = 1000
    val: int = 300
    split_seed: int = 0


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    hidden: int = 128


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    steps: int = 800
    batch_size: int = 128
    lr: float = 3e-3


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    steps: int = 300
    batch_size: int = 128
    lr_full: float = 1e-3
    lr_oft: float = 1e-2
    block_size: int = 16


@dataclasses.dataclass(frozen=True)
class MergeConfig:
    scales: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    residual_scale: float = 0.2  # the paper's lambda for OrthoMerge + task arithmetic


@dataclasses.dataclass(frozen=True)
class Config:
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    pretrain: PretrainConfig = PretrainConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    merge: MergeConfig = MergeConfig()


# ----------------------------------------------------------------------------- data


def _rotate(images: np.ndarray, degrees: float) -> np.ndarray:
    from scipy import ndimage

    return np.stack([ndimage.rotate(im, degrees, reshape=False, order=1) for im in images])


def _zoom(images: np.ndarray, factor: float) -> np.ndarray:
    from scipy import ndimage

    out = []
    for im in images:
        z = ndimage.zoom(im, factor, order=1)
        c = (z.shape[0] - 8) // 2
        out.append(z[c : c + 8, c : c + 8])
    return np.stack(out)


def _dilate(images: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return np.stack([ndimage.grey_dilation(im, size=(2, 2)) for im in images])


def _shift(images: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return np.stack([ndimage.shift(im, (1, 1), order=0) for im in images])


def _blur(images: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return np.stack([ndimage.gaussian_filter(im, 0.8) for im in images])


# name -> (description, transform of (N, 8, 8) images in [0, 1])
TASKS = {
    "rotate": ("rotated 35° counter-clockwise", lambda x: _rotate(x, 35.0)),
    "rotate_cw": ("rotated 35° clockwise", lambda x: _rotate(x, -35.0)),
    "flip": ("mirrored left-right", lambda x: x[:, :, ::-1]),
    "zoom": ("zoomed in 1.5x (centre crop)", lambda x: _zoom(x, 1.5)),
    "dilate": ("strokes thickened (2x2 grey dilation)", _dilate),
    "shift": ("shifted one pixel right and down", _shift),
    "blur": ("Gaussian blur, sigma 0.8 px", _blur),
    "invert": ("intensities inverted (1 - x)", lambda x: 1.0 - x),
    "transpose": ("transposed (mirrored about the diagonal)", lambda x: np.swapaxes(x, 1, 2)),
}


@functools.lru_cache(maxsize=4)
def load_tasks(tasks: tuple[str, ...], train: int, val: int, split_seed: int) -> dict[str, Any]:
    """Clean and transformed digits, one fixed train/val/test split shared by every task.

    Returns a dict of float32 NumPy arrays: ``pre_x (train, 64)`` (clean) and, per task,
    ``x_train (T, train, 64)``, ``x_val``, ``x_test``; int32 labels ``y_train``, ``y_val``,
    ``y_test`` shared by all tasks (the transforms keep the digit's class).
    """
    from sklearn.datasets import load_digits

    for name in tasks:
        if name not in TASKS:
            raise ValueError(f"`data.tasks`: unknown task {name!r}; known: {tuple(TASKS)}.")
    if not tasks:
        raise ValueError("`data.tasks` must name at least one task.")
    digits = load_digits()
    images = digits.images / 16.0
    labels = digits.target
    if train + val >= len(labels):
        raise ValueError(f"`data.train` + `data.val` must be < {len(labels)} (the test rest).")
    order = np.random.default_rng(split_seed).permutation(len(labels))
    images, labels = images[order], labels[order]
    parts = {
        "train": slice(0, train),
        "val": slice(train, train + val),
        "test": slice(train + val, None),
    }
    transformed = [TASKS[name][1](images).reshape(len(images), 64) for name in tasks]
    out: dict[str, Any] = {"pre_x": images.reshape(len(images), 64)[parts["train"]]}
    for part, sl in parts.items():
        out[f"x_{part}"] = np.stack([t[sl] for t in transformed])
        out[f"y_{part}"] = labels[sl].astype(np.int32)
    return {k: v.astype(np.float32) if k.startswith(("x", "pre")) else v for k, v in out.items()}


# ----------------------------------------------------------------------------- model


def init_mlp(key: jax.Array, hidden: int) -> dict[str, jax.Array]:
    """GELU MLP with weights in ``(out, in)`` layout (``x @ W.T + b``), LeCun-normal init."""
    k1, k2, k3 = jax.random.split(key, 3)
    sizes = {"w1": (hidden, 64), "w2": (hidden, hidden), "w3": (10, hidden)}
    keys = {"w1": k1, "w2": k2, "w3": k3}
    params = {n: jax.random.normal(keys[n], s) / np.sqrt(s[1]) for n, s in sizes.items()}
    params.update({b: jnp.zeros(sizes[w][0]) for w, b in zip(LAYERS, BIASES)})
    return params


def forward(params: dict[str, jax.Array], x: jax.Array) -> jax.Array:
    h = jax.nn.gelu(x @ params["w1"].T + params["b1"])
    h = jax.nn.gelu(h @ params["w2"].T + params["b2"])
    return h @ params["w3"].T + params["b3"]


def loss_fn(params, x, y) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(forward(params, x), y).mean()


def accuracy(params, x, y) -> jax.Array:
    return jnp.mean(jnp.argmax(forward(params, x), axis=-1) == y)


def train(params_fn, trainable, x, y, key, steps: int, batch_size: int, lr):
    """Adam on ``loss(params_fn(trainable))`` with uniformly drawn minibatches."""
    opt = optax.adam(lr)

    def step(carry, k):
        p, state = carry
        idx = jax.random.randint(k, (batch_size,), 0, x.shape[0])
        grads = jax.grad(lambda q: loss_fn(params_fn(q), x[idx], y[idx]))(p)
        updates, state = opt.update(grads, state, p)
        return (optax.apply_updates(p, updates), state), None

    (trainable, _), _ = jax.lax.scan(
        step, (trainable, opt.init(trainable)), jax.random.split(key, steps)
    )
    return trainable


# ----------------------------------------------------------------------------- OFT


def oft_layout(hidden: int, block_size: int) -> dict[str, tuple[int, int]]:
    """Per layer: ``(first block, number of blocks)`` in the stacked generator array."""
    if 64 % block_size or hidden % block_size:
        raise ValueError(
            f"`finetune.block_size` ({block_size}) must divide 64 and `model.hidden` ({hidden})."
        )
    counts = {"w1": 64 // block_size, "w2": hidden // block_size, "w3": hidden // block_size}
    layout, start = {}, 0
    for name in LAYERS:
        layout[name] = (start, counts[name])
        start += counts[name]
    return layout


def cayley_matmul(gen: jax.Array) -> jax.Array:
    """``cayley(Q)`` with matmuls only (used while training): the polar factor of ``(I + Q)^2``.

    For skew ``Q``, ``(I + Q)^2 ((I - Q^2)^2)^{-1/2} = (I + Q)(I - Q)^{-1}``, the Cayley
    transform. The polar factor takes six Polar Express steps
    (:func:`jaxspec.spectral.orthogonalize`, Schatten-4 scaling) and two Newton–Schulz
    refinements ``X <- 1.5 X - 0.5 X X^T X``: float32 round-off, within 1e-6 of the LAPACK solve
    for block norms up to 12 (see the tests; gradients agree too). The training loop avoids
    LAPACK because jaxlib's batched CPU kernels can deadlock a 2-thread pool when two run at
    once (see :func:`after`); merges use the exact solve.
    """
    q = manifolds.skew(gen)
    eye = jnp.eye(q.shape[-1], dtype=q.dtype)
    x = spectral.orthogonalize((eye + q) @ (eye + q), steps=6, normalization="schatten4")
    for _ in range(2):
        x = 1.5 * x - 0.5 * x @ (jnp.swapaxes(x, -1, -2) @ x)
    return x


def split_blocks(blocks: jax.Array, layout) -> dict[str, jax.Array]:
    """``(..., N, b, b)`` stacked blocks -> ``{layer: (..., n_layer, b, b)}``."""
    return {n: blocks[..., s : s + c, :, :] for n, (s, c) in layout.items()}


def rotate_weights(base, rotations: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """``W_0 blockdiag(R)`` for each layer; ``rotations[layer]`` is ``(n_blocks, b, b)``."""
    out = dict(base)
    for name, r in rotations.items():
        w = base[name]
        nb, b = r.shape[-3], r.shape[-1]
        wb = w.reshape(w.shape[0], nb, b)
        out[name] = jnp.einsum("okb,kbc->okc", wb, r).reshape(w.shape)
    return out


def _take(leaf: jax.Array, index: jax.Array) -> jax.Array:
    return leaf[index]


def after(tree, previous):
    """``tree``, made to wait until ``previous`` is computed (an exact zero added from it).

    Serializes the batched CPU LAPACK calls (solve, SVD, eigh) of ``run``: jaxlib's kernels
    split a batch over XLA's thread pool and block on it, and two of them running at once can
    deadlock a 2-thread pool (jax 0.10.2; seen here with an SVD next to the OFT solves).
    ``lax.optimization_barrier`` does not order them on CPU (its output aliases its input).
    """
    firsts = [jax.lax.stop_gradient(leaf).ravel()[0] for leaf in jax.tree.leaves(previous)]
    zero = jnp.minimum(jnp.abs(jnp.stack(firsts)), 0).sum()  # depends on every leaf
    zero = jnp.where(zero == zero, zero, 0)
    return jax.tree.map(lambda x: x + zero.astype(x.dtype), tree)


# ----------------------------------------------------------------------------- measurements


def hyperspherical_energy(w: jax.Array) -> jax.Array:
    """``sum_{i<j} 1 / ||u_i - u_j||`` over the unit-normalized rows ``u_i`` of ``w``."""
    u = w / jnp.linalg.norm(w, axis=-1, keepdims=True)
    gram = u @ u.T
    dist2 = jnp.maximum(2.0 - 2.0 * gram, 1e-12)
    mask = jnp.triu(jnp.ones(gram.shape, bool), 1)
    return jnp.sum(jnp.where(mask, jax.lax.rsqrt(dist2), 0.0))


def preservation(models: dict[str, dict], base: dict, previous) -> dict[str, dict[str, Any]]:
    """Per model and layer: HE ratio, sigma_max ratio, max_i |sigma_i / sigma_i^0 - 1|.

    A model's weight leaves may carry a leading task axis (experts): the statistics are then
    averaged over it. One SVD per layer covers every model (each ordered after the last).
    """
    stats = {name: {"he": [], "sigma": [], "spectrum": []} for name in models}
    for layer in LAYERS:
        w0 = base[layer]
        mats = [models[n][layer].reshape(-1, *w0.shape) for n in models]
        stacked = after(jnp.concatenate([w0[None], *mats]), previous)
        sv = jnp.linalg.svd(stacked, compute_uv=False)
        previous = sv
        he = jax.vmap(hyperspherical_energy)(stacked)
        he_ratio, sv_ratio = he[1:] / he[0], sv[1:] / sv[0]
        start = 0
        for name, mat in zip(models, mats):
            sl = slice(start, start + mat.shape[0])
            start += mat.shape[0]
            stats[name]["he"].append(jnp.mean(he_ratio[sl]))
            stats[name]["sigma"].append(jnp.mean(sv_ratio[sl, 0]))
            stats[name]["spectrum"].append(jnp.mean(jnp.max(jnp.abs(sv_ratio[sl] - 1), axis=-1)))
    return {n: {k: jnp.stack(v) for k, v in d.items()} for n, d in stats.items()}


# ----------------------------------------------------------------------------- run


OFT_MERGES = ("oft_avg", "oft_ta", "oft_generator_ta", "oft_orthomerge", "oft_orthomerge_exp")
FULL_MERGES = ("full_avg", "full_ta", "full_orthomerge", "full_orthomerge_tuned", "full_rotation")


def run(config: Config, key: jax.Array) -> dict[str, Any]:
    """Pretrain, fine-tune (OFT and full) on every task, merge, evaluate; one seed."""
    d, m, pre, ft, mg = config.data, config.model, config.pretrain, config.finetune, config.merge
    data = load_tasks(d.tasks, d.train, d.val, d.split_seed)
    layout = oft_layout(m.hidden, ft.block_size)
    num_tasks = len(d.tasks)
    scales = jnp.asarray(mg.scales, jnp.float32)
    if not mg.scales:
        raise ValueError("`merge.scales` must hold at least one value.")
    x_tr, x_va, x_te = (jnp.asarray(data[k]) for k in ("x_train", "x_val", "x_test"))
    y_tr, y_va, y_te = (jnp.asarray(data[k]) for k in ("y_train", "y_val", "y_test"))
    k_init, k_pre, k_oft, k_full = jax.random.split(key, 4)

    # Pretraining on clean digits.
    base = train(lambda p: p, init_mlp(k_init, m.hidden), jnp.asarray(data["pre_x"]), y_tr,
                 k_pre, pre.steps, pre.batch_size, pre.lr)  # fmt: skip

    # OFT experts (vmapped over tasks): only the block generators are trained.
    n_blocks, b = sum(c for _, c in layout.values()), ft.block_size

    def oft_params(gen):
        return rotate_weights(base, split_blocks(cayley_matmul(gen), layout))

    def finetune_oft(x, k):
        g0 = jnp.zeros((n_blocks, b, b), jnp.float32)
        return manifolds.skew(train(oft_params, g0, x, y_tr, k, ft.steps, ft.batch_size, ft.lr_oft))

    generators = jax.vmap(finetune_oft)(x_tr, jax.random.split(k_oft, num_tasks))  # (T, N, b, b)

    # Fully fine-tuned experts, started after OFT (its solves) is done.
    base_for_full = after(base, generators)

    def finetune_full(x, k):
        return train(lambda p: p, base_for_full, x, y_tr, k, ft.steps, ft.batch_size, ft.lr_full)

    full = jax.vmap(finetune_full)(x_tr, jax.random.split(k_full, num_tasks))

    # Every batched LAPACK call below (solve, SVD, eigh) is chained after the previous one:
    # jaxlib's CPU kernels split a batch over XLA's thread pool and block on it, and two of
    # them running concurrently can deadlock a 2-thread pool (jax 0.10.2).
    oft_rot = manifolds.cayley(generators)  # (T, N, b, b), exact
    training_map_error = jnp.max(jnp.abs(cayley_matmul(generators) - oft_rot))
    oft_experts = jax.vmap(lambda r: rotate_weights(base, split_blocks(r, layout)))(oft_rot)
    per_layer = split_blocks(oft_rot, layout)
    om_cayley = manifolds.orthomerge(per_layer, chart="cayley", scope="leaf")
    om_exp = manifolds.orthomerge(after(per_layer, om_cayley.rotation), chart="exp", scope="leaf")
    gen_sum = after(jnp.sum(generators, axis=0), om_exp.rotation)
    gen_ta_rot = manifolds.cayley(scales[:, None, None, None] * gen_sum)  # (S, N, b, b)

    tall = {n: (n in LAYERS and n != "w3") for n in base}  # Procrustes where W_0 has full col rank
    # W(lambda) = W_0 R_merged + lambda sum_i rho_i at lambda = 0 and 1 in one call: the
    # Procrustes and merge steps do not depend on lambda, so vmap leaves them unbatched.
    both = jax.vmap(
        lambda lam: manifolds.orthomerge_weights(
            base, after(full, gen_ta_rot), residual_scale=lam, mask=tall
        )
    )(jnp.array([0.0, 1.0], jnp.float32))
    orth0, orth1 = (jax.tree.map(functools.partial(_take, index=i), both) for i in (0, 1))

    # Merged models as functions of lambda (all are affine in lambda except the generator TA).
    oft_delta = manifolds.task_arithmetic(base, oft_experts, 1.0)
    full_delta = manifolds.task_arithmetic(base, full, 1.0)

    def affine(p0, p1, lam):
        return jax.tree.map(lambda a, c: a + lam * (c - a), p0, p1)

    candidates = {
        "oft_ta": jax.vmap(lambda s: affine(base, oft_delta, s))(scales),
        "oft_generator_ta": jax.vmap(lambda r: rotate_weights(base, split_blocks(r, layout)))(
            gen_ta_rot
        ),
        "full_ta": jax.vmap(lambda s: affine(base, full_delta, s))(scales),
        "full_orthomerge_tuned": jax.vmap(lambda s: affine(orth0, orth1, s))(scales),
    }

    def task_accuracies(params, x, y):
        return jax.vmap(lambda xt: accuracy(params, xt, y))(x)  # (T,)

    chosen, lam = {}, {}
    for name, stack in candidates.items():
        val = jax.vmap(lambda p: task_accuracies(p, x_va, y_va).mean())(stack)  # (S,)
        best = jnp.argmax(val)
        chosen[name] = jax.tree.map(functools.partial(_take, index=best), stack)
        lam[name] = scales[best]

    inv_t = 1.0 / num_tasks
    models = {
        "oft_avg": affine(base, oft_delta, inv_t),
        "oft_ta": chosen["oft_ta"],
        "oft_generator_ta": chosen["oft_generator_ta"],
        "oft_orthomerge": rotate_weights(base, om_cayley.rotation),
        "oft_orthomerge_exp": rotate_weights(base, om_exp.rotation),
        "full_avg": affine(base, full_delta, inv_t),
        "full_ta": chosen["full_ta"],
        "full_orthomerge": affine(orth0, orth1, mg.residual_scale),
        "full_orthomerge_tuned": chosen["full_orthomerge_tuned"],
        "full_rotation": orth0,
    }
    acc = {name: task_accuracies(p, x_te, y_te) for name, p in models.items()}
    acc["base"] = task_accuracies(base, x_te, y_te)
    acc["oft_expert"] = jax.vmap(accuracy, in_axes=(0, 0, None))(oft_experts, x_te, y_te)
    acc["full_expert"] = jax.vmap(accuracy, in_axes=(0, 0, None))(full, x_te, y_te)
    acc["base_clean"] = accuracy(base, jnp.asarray(data["pre_x"]), y_tr)

    weights = {n: {k: p[k] for k in LAYERS} for n, p in models.items()}
    weights["oft_expert"] = {k: oft_experts[k] for k in LAYERS}
    weights["full_expert"] = {k: full[k] for k in LAYERS}
    kept = preservation(weights, base, orth1["w2"])
    return {
        "acc": acc,
        "lambda": lam,
        "preservation": kept,
        "signatures_agree": jnp.all(
            jnp.concatenate([a.ravel() for a in jax.tree.leaves(om_cayley.signatures_agree)])
        ),
        "generator_norm": jnp.linalg.norm(generators.reshape(num_tasks, -1), axis=-1),
        "training_map_error": training_map_error,
    }


# ----------------------------------------------------------------------------- report

LABELS = {
    "base": "base model (pretrained on clean digits)",
    "oft_expert": "individual OFT experts (each on its own task)",
    "oft_avg": "OFT: weight averaging (λ = 1/T)",
    "oft_ta": "OFT: task arithmetic on weights (λ tuned)",
    "oft_generator_ta": "OFT: task arithmetic on generators (λ tuned)",
    "oft_orthomerge": "OFT: OrthoMerge (Cayley chart)",
    "oft_orthomerge_exp": "OFT: OrthoMerge (exp chart)",
    "full_expert": "individual fully fine-tuned experts",
    "full_avg": "full FT: weight averaging (λ = 1/T)",
    "full_ta": "full FT: task arithmetic (λ tuned)",
    "full_orthomerge": "full FT: OrthoMerge + residuals (λ = paper's)",
    "full_orthomerge_tuned": "full FT: OrthoMerge + residuals (λ tuned)",
    "full_rotation": "full FT: OrthoMerge rotation only (λ = 0)",
}


def _acc(records: list[Record], name: str) -> np.ndarray:
    return 100 * np.stack([np.asarray(r.metrics[f"acc.{name}"], np.float64) for r in records])


Group = tuple[tuple[str, ...], float, float]  # (tasks, lr_oft, lr_full)


def _groups(records: list[Record]) -> dict[Group, list[Record]]:
    """Records by task set and fine-tuning learning rates (each group: its seeds)."""
    groups: dict[Group, list[Record]] = {}
    for r in records:
        ft = r.config["finetune"]
        key = (tuple(r.config["data"]["tasks"]), float(ft["lr_oft"]), float(ft["lr_full"]))
        groups.setdefault(key, []).append(r)
    return dict(sorted(groups.items(), key=lambda kv: (-kv[0][1], len(kv[0][0]))))


def _short(key: Group) -> str:
    tasks, lr_oft, lr_full = key
    return f"{len(tasks)} tasks, lr {lr_oft:g}/{lr_full:g}"


def _accuracy_table(records, names, tasks) -> list[dict[str, str]]:
    rows = []
    for name in names:
        a = _acc(records, name)  # (seeds, T)
        row = {"model": LABELS[name]}
        row.update({t: mean_std(a[:, i], ".1f") for i, t in enumerate(tasks)})
        row["average"] = mean_std(a.mean(1), ".1f")
        if f"lambda.{name}" in records[0].metrics:
            lam = np.array([float(r.metrics[f"lambda.{name}"]) for r in records])
            row["λ"] = f"{np.median(lam):g} (median)"
        elif name == "full_orthomerge":
            row["λ"] = f"{records[0].config['merge']['residual_scale']:g}"
        else:
            row["λ"] = "-"
        rows.append(row)
    return rows


def _paired(records, a: str, b: str) -> tuple[float, float, int, int]:
    diff = _acc(records, a).mean(1) - _acc(records, b).mean(1)
    return float(diff.mean()), float(diff.std()), int(np.sum(diff > 0)), len(diff)


def _verdict(records, a: str, b: str) -> str:
    mean, std, wins, n = _paired(records, a, b)
    if n > 1 and abs(mean) > 2 * std / np.sqrt(n - 1):
        sig = ("higher" if mean > 0 else "lower") + " beyond 2 standard errors"
    else:
        sig = "within 2 standard errors of zero"
    return (
        f"{LABELS[a]} minus {LABELS[b]}: {mean:+.2f} ± {std:.2f} points of average accuracy "
        f"(paired over {n} seeds; higher in {wins}/{n}), {sig}"
    )


COMPARISONS = (
    ("oft_orthomerge", "oft_ta"),
    ("oft_orthomerge", "oft_avg"),
    ("oft_orthomerge", "oft_generator_ta"),
    ("oft_orthomerge_exp", "oft_orthomerge"),
    ("full_orthomerge", "full_ta"),
    ("full_orthomerge_tuned", "full_ta"),
    ("full_orthomerge", "full_avg"),
)


def _task_figure(records, ctx: ReportContext, key: Group, index: int) -> str:
    import matplotlib.pyplot as plt

    groups = [
        ("OFT experts", ["base", "oft_expert", *OFT_MERGES]),
        ("fully fine-tuned experts", ["base", "full_expert", *FULL_MERGES]),
    ]
    tasks = list(key[0])
    fig, axes = plt.subplots(1, 2, figsize=(max(12, 2.2 * len(tasks) + 6), 4.8))
    for ax, (title, names) in zip(axes, groups):
        width = 0.8 / len(names)
        x = np.arange(len(tasks) + 1)
        for j, name in enumerate(names):
            a = _acc(records, name)
            vals = np.concatenate([a, a.mean(1, keepdims=True)], axis=1)
            ax.bar(x + (j - (len(names) - 1) / 2) * width, vals.mean(0), width,
                   yerr=vals.std(0) if len(records) > 1 else None, capsize=1.5,
                   label=LABELS[name], color=f"C{j}")  # fmt: skip
        ax.set_xticks(x, [*tasks, "average"])
        ax.set_ylabel("test accuracy (%)")
        ax.set_ylim(0, 100)
        ax.set_title(f"{title}; {_short(key)} (OFT/full)")
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    fig.suptitle("Test accuracy on every task (mean ± std over seeds)")
    fig.tight_layout()
    return ctx.save_figure(fig, f"orthomerge_accuracy_{index}.png")


def _count_figure(groups: dict[Group, list[Record]], ctx: ReportContext) -> str:
    import matplotlib.pyplot as plt

    rates = sorted({(k[1], k[2]) for k in groups}, reverse=True)
    styles = ["-", "--", ":", "-."]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6), sharey=True)
    panels = [("OFT experts", ["base", "oft_expert", *OFT_MERGES]),
              ("fully fine-tuned experts", ["base", "full_expert", *FULL_MERGES])]  # fmt: skip
    for ax, (title, names) in zip(axes, panels):
        for r, rate in enumerate(rates):
            keys = sorted((k for k in groups if (k[1], k[2]) == rate), key=lambda k: len(k[0]))
            counts = [len(k[0]) for k in keys]
            for j, name in enumerate(names):
                avg = [_acc(groups[k], name).mean(1) for k in keys]
                ax.errorbar(counts, [a.mean() for a in avg], yerr=[a.std() for a in avg],
                            marker="o", capsize=2, color=f"C{j}", ls=styles[r % len(styles)],
                            label=LABELS[name] if r == 0 else None)  # fmt: skip
            ax.set_xticks(counts)
        ax.set_xlabel("number of tasks merged")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("average test accuracy over the tasks (%)")
    lr_text = "; ".join(
        f"{styles[r % len(styles)]} lr OFT {a:g} / full {b:g}" for r, (a, b) in enumerate(rates)
    )
    fig.suptitle(f"Mean ± std over seeds ({lr_text})")
    fig.tight_layout()
    return ctx.save_figure(fig, "orthomerge_vs_task_count.png")


def _setup(records: list[Record], groups: dict[Group, list[Record]]) -> list[str]:
    cfg = records[0].config
    d, m, pre, ft, mg = (cfg[k] for k in ("data", "model", "pretrain", "finetune", "merge"))
    data = load_tasks(next(iter(groups))[0], d["train"], d["val"], d["split_seed"])
    n_test = data["y_test"].shape[0]
    seeds = sorted({r.point["seed"] for r in records})
    clean = 100 * np.array([float(r.metrics["acc.base_clean"]) for r in records])
    agree = all(bool(r.metrics["signatures_agree"]) for r in records)
    map_error = max(float(r.metrics["training_map_error"]) for r in records)
    names = sorted({t for key in groups for t in key[0]}, key=list(TASKS).index)
    sets = "; ".join(sorted({f"{len(k[0])} tasks: {', '.join(k[0])}" for k in groups}, key=len))
    rates = sorted({(k[1], k[2]) for k in groups}, reverse=True)
    norms = []
    for lr_oft, lr_full in rates:
        recs = [r for k, g in groups.items() if k[1:] == (lr_oft, lr_full) for r in g]
        vals = np.concatenate([np.asarray(r.metrics["generator_norm"]) for r in recs])
        norms.append(f"lr {lr_oft:g}: {mean_std(vals, '.3g')}")
    rate_text = ", ".join(f"{a:g} (OFT) / {b:g} (full)" for a, b in rates)
    return [
        "## Setup",
        "",
        f"- Data: scikit-learn's bundled `load_digits` (1797 8x8 images, 10 classes), one fixed "
        f"split (seed {d['split_seed']}): {d['train']} train / {d['val']} validation / {n_test} "
        "test images, the same images in every task.",
        "- Tasks (same labels, transformed inputs): "
        + "; ".join(f"**{t}**: {TASKS[t][0]}" for t in names)
        + f". Task sets merged: {sets}.",
        f"- Model: MLP 64 → {m['hidden']} → {m['hidden']} → 10, GELU, weights `(out, in)`. "
        f"Pretrained on clean digits: {pre['steps']} Adam steps, batch {pre['batch_size']}, lr "
        f"{pre['lr']:g} (train accuracy {mean_std(clean, '.1f')} %).",
        f"- Fine-tuning of a copy per task, {ft['steps']} Adam steps of batch {ft['batch_size']}: "
        f"**OFT** `W = W_0 blockdiag(cayley(Q_k))` on all three weight matrices (input side, "
        f"blocks of {ft['block_size']}, biases frozen) and **full fine-tuning** of every "
        f"parameter; learning rates {rate_text}. Generator norm ‖Q‖_F over all blocks of an OFT "
        f"expert: {'; '.join(norms)}. OFT trains through a matmul-only Cayley map (polar factor "
        f"of (I+Q)², Newton–Schulz); it is within {map_error:.1e} of the exact solve used for "
        "merging.",
        f"- Merging: a λ marked tuned is chosen from {list(mg['scales'])} by mean validation "
        "accuracy over the tasks; OrthoMerge has no tuned parameter. OrthoMerge of OFT "
        "experts merges each layer's block generators with one norm per layer (the paper's OFT "
        'script; `scope="leaf"`). For fully fine-tuned experts the orthogonal part is fitted '
        "(right Procrustes) on `w1` (128x64) and `w2` (128x128); `w3` (10x128) is wide, so its "
        "Procrustes rotation is not unique, and it is merged like the biases, by task "
        f"arithmetic with the same λ. The paper's λ = {mg['residual_scale']:g} with a sum of "
        "residuals (its `OrthoMerge_G_TA.py`).",
        f"- Seeds {seeds} (model init and minibatch order; vmapped); float32. The det −1 guard "
        f"kept one signature across tasks in every OFT layer and run: {agree}.",
        "",
    ]


def _significance(records, a: str, b: str) -> int:
    """+1 / -1 when ``a - b`` is beyond 2 standard errors above / below zero, else 0."""
    mean, std, _, n = _paired(records, a, b)
    if n > 1 and abs(mean) > 2 * std / np.sqrt(n - 1):
        return 1 if mean > 0 else -1
    return 0


def _tally(groups, a: str, b: str) -> str:
    signs = [_significance(recs, a, b) for recs in groups.values()]
    return (
        f"higher in {signs.count(1)}, lower in {signs.count(-1)}, indistinguishable in "
        f"{signs.count(0)} of {len(signs)} settings"
    )


def report(records: list[Record], ctx: ReportContext) -> str:
    groups = _groups(records)
    lines = _setup(records, groups)
    all_names = ["base", "oft_expert", *OFT_MERGES, "full_expert", *FULL_MERGES]

    summary = []
    for name in all_names:
        row = {"model": LABELS[name]}
        for key, recs in groups.items():
            row[_short(key)] = mean_std(_acc(recs, name).mean(1), ".1f")
        summary.append(row)
    lines += [
        "## Average test accuracy (%) over the tasks, mean ± std over seeds",
        "",
        "Columns: task count, and the OFT / full fine-tuning learning rates.",
        "",
        markdown_table(summary),
        "",
    ]
    if len({len(k[0]) for k in groups}) > 1:
        lines += [f"![accuracy vs task count]({_count_figure(groups, ctx)})", ""]

    for index, (key, recs) in enumerate(groups.items()):
        tasks = list(key[0])
        lines += [
            f"## {_short(key)}: {', '.join(tasks)}",
            "",
            "Test accuracy (%) per task, mean ± std over seeds.",
            "",
            markdown_table(_accuracy_table(recs, ["base", "oft_expert", *OFT_MERGES], tasks)),
            "",
            markdown_table(_accuracy_table(recs, ["base", "full_expert", *FULL_MERGES], tasks)),
            "",
            f"![accuracy per task]({_task_figure(recs, ctx, key, index)})",
            "",
            *("- " + _verdict(recs, a, b) + "." for a, b in COMPARISONS),
            "",
        ]

    prows = []
    for key, recs in groups.items():
        for name in ["oft_expert", *OFT_MERGES, "full_expert", *FULL_MERGES]:
            stat = {
                k: np.stack([np.asarray(r.metrics[f"preservation.{name}.{k}"]) for r in recs])
                for k in ("he", "sigma", "spectrum")
            }
            row = {"setting": _short(key), "model": LABELS[name]}
            for i, layer in enumerate(LAYERS):
                row[f"HE/HE₀ {layer}"] = f"{stat['he'][:, i].mean():.4f}"
            for i, layer in enumerate(LAYERS):
                row[f"σ_max/σ_max,0 {layer}"] = f"{stat['sigma'][:, i].mean():.4f}"
            row["max_i |σ_i/σ_i,0 − 1|"] = f"{stat['spectrum'].mean():.2e}"
            prows.append(row)
    lines += [
        "## Preservation of hyperspherical energy and spectrum",
        "",
        "Hyperspherical energy HE = Σ_{i<j} 1/‖ŵ_i − ŵ_j‖ over the unit-normalized rows "
        "(neurons) of each weight matrix, and its singular values σ_i, relative to the base "
        "model (mean over seeds; for experts also over tasks; the last column is averaged over "
        "the three layers). A rotation on the input side, `W_0 R`, keeps all of them exactly; "
        "what remains is float32 round-off.",
        "",
        markdown_table(prows),
        "",
    ]

    findings = []
    for key, recs in groups.items():
        oft = _paired(recs, "oft_orthomerge", "oft_ta")
        full = _paired(recs, "full_orthomerge", "full_ta")
        tuned = _paired(recs, "full_orthomerge_tuned", "full_ta")
        expert = _acc(recs, "oft_expert").mean()
        best = max(_acc(recs, n).mean() for n in OFT_MERGES)
        findings.append(
            f"- {_short(key)}: OrthoMerge − tuned task arithmetic = {oft[0]:+.2f} ± "
            f"{oft[1]:.2f} points for OFT experts ({oft[2]}/{oft[3]} seeds higher); for full "
            f"fine-tuning {full[0]:+.2f} ± {full[1]:.2f} at the paper's λ and {tuned[0]:+.2f} ± "
            f"{tuned[1]:.2f} with λ tuned as for task arithmetic. Best OFT merge {best:.1f} % "
            f"vs {expert:.1f} % for the OFT experts on their own tasks."
        )
    lines += [
        "## What this run shows",
        "",
        "The paper reports OrthoMerge above task arithmetic, for OFT experts (Llama-3.1-8B, 5 "
        "experts: 46.25 vs 41.46 in-domain average) and as an add-on for fully fine-tuned "
        "experts (MergeBench, Llama-3.2-3B: 35.48 vs 34.16). Here, paired by seed (mean ± std "
        "of the difference in average accuracy):",
        "",
        *findings,
        "",
        "Tally over the settings above (an ordering counts only beyond 2 standard errors):",
        "",
        f"- OFT experts, OrthoMerge (Cayley) vs task arithmetic on weights with tuned λ: "
        f"{_tally(groups, 'oft_orthomerge', 'oft_ta')}.",
        f"- OFT experts, OrthoMerge (Cayley) vs weight averaging: "
        f"{_tally(groups, 'oft_orthomerge', 'oft_avg')}.",
        f"- OFT experts, OrthoMerge (Cayley) vs task arithmetic on generators with tuned λ: "
        f"{_tally(groups, 'oft_orthomerge', 'oft_generator_ta')}.",
        f"- Full fine-tuning, OrthoMerge + residuals at the paper's λ vs tuned task arithmetic: "
        f"{_tally(groups, 'full_orthomerge', 'full_ta')}.",
        f"- Full fine-tuning, OrthoMerge + residuals with tuned λ vs tuned task arithmetic: "
        f"{_tally(groups, 'full_orthomerge_tuned', 'full_ta')}.",
        "",
        "Task arithmetic's tuned λ per setting (median over seeds; OFT weights / generators / "
        "full fine-tuning): "
        + "; ".join(
            f"{_short(key)}: "
            + " / ".join(
                f"{np.median([float(r.metrics[f'lambda.{n}']) for r in recs]):g}"
                for n in ("oft_ta", "oft_generator_ta", "full_ta")
            )
            for key, recs in groups.items()
        )
        + ". A small tuned λ means the tasks conflict and the best merge stays near the base "
        "model; OrthoMerge has no such knob (its rotation has the mean of the task magnitudes "
        "whatever the agreement of their directions), which is where it loses to a tuned λ.",
        "",
        "The paper's OrthoMerge also exceeded its experts' own average; no merge comes close "
        "to the experts here: these tasks (input transformations the base model handles badly) "
        "pull the shared weights in conflicting directions.",
        "",
    ]
    return "\n".join(lines)


EXPERIMENT = Experiment(
    name="orthomerge",
    description="OrthoMerge vs task arithmetic: merging OFT and fully fine-tuned MLPs on "
    "transformed sklearn digits.",
    config_cls=Config,
    run=run,
    report=report,
)
