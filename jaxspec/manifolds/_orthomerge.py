"""OrthoMerge: merging orthogonal updates in the Lie algebra of O(n), orthogonal-residual
decoupling of fully fine-tuned weights, and the task-arithmetic baseline.

Every function works on pytrees. Task models are given *stacked*: each leaf of ``finetuned``
(or ``rotations``) carries the tasks on axis 0, so ``T`` fine-tuned copies of a model with a
leaf of shape ``(out, in)`` give a leaf of shape ``(T, out, in)`` (``jax.tree.map(lambda
*x: jnp.stack(x), *models)`` builds it).
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np

from jaxspec._checks import as_float_array, check_choice, is_concrete
from jaxspec._ordering import after
from jaxspec.manifolds._charts import cayley, inverse_cayley, log_orthogonal
from jaxspec.manifolds._procrustes import procrustes

PyTree = Any
Chart = Literal["cayley", "exp"]
CHARTS = ("cayley", "exp")
THETA_AGGS = ("mean", "median", "max")
DIRECTION_WEIGHTS = ("theta", "uniform")
SCOPES = ("matrix", "leaf")
REDUCTIONS = ("sum", "mean")


class OrthoMergeSolution(NamedTuple):
    """Result of :func:`orthomerge`; each field has the structure of one task's pytree.

    Attributes:
        rotation: merged orthogonal matrices ``diag(d) phi(Q)`` ``(..., n, n)``, where ``phi``
            is the chart's map back (Cayley transform or ``expm``).
        generator: merged skew-symmetric generator ``Q`` ``(..., n, n)``.
        signature: merged signs ``d`` ``(..., n)`` (all ones unless the det -1 guard acted).
        signatures_agree: bool ``(...)``: whether every task had the same signature for
            this matrix. Where it is ``False`` the tasks' generators are coordinates around
            different base points ``diag(d_i)``, and the merge is orthogonal but not a
            meaningful average (see :func:`orthomerge`).
    """

    rotation: PyTree
    generator: PyTree
    signature: PyTree
    signatures_agree: PyTree


# ----------------------------------------------------------------------------- checks


def _task_count(leaves: list[jax.Array], name: str, min_ndim: int) -> int:
    if not leaves:
        raise ValueError(f"`{name}` has no array leaves.")
    counts = set()
    for leaf in leaves:
        if leaf.ndim < min_ndim:
            raise ValueError(
                f"`{name}` leaves must be stacked over tasks on axis 0 with at least "
                f"{min_ndim} dimensions, got shape {leaf.shape}."
            )
        counts.add(leaf.shape[0])
    if len(counts) != 1:
        raise ValueError(f"`{name}` leaves disagree on the task count (axis 0): {sorted(counts)}.")
    (count,) = counts
    if count < 1:
        raise ValueError(f"`{name}` must hold at least one task (axis 0 is empty).")
    return count


def _float_leaves(tree: PyTree, name: str) -> tuple[list[jax.Array], Any]:
    leaves, treedef = jax.tree.flatten(tree)
    return [as_float_array(leaf, name) for leaf in leaves], treedef


def _check_square_stack(leaves: list[jax.Array], name: str) -> None:
    for leaf in leaves:
        if leaf.shape[-1] != leaf.shape[-2]:
            raise ValueError(
                f"`{name}` leaves must hold square matrices (T, ..., n, n), got {leaf.shape}."
            )


def _check_nonnegative(value: Any, name: str) -> None:
    """Raise ``ValueError`` if a concrete ``value`` is negative or not finite."""
    if is_concrete(value):
        arr = np.asarray(value)
        if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
            raise ValueError(f"`{name}` must be a real number >= 0, got {value!r}.")
        if not np.all(arr >= 0) or not np.all(np.isfinite(arr)):
            raise ValueError(f"`{name}` must be finite and >= 0, got {value!r}.")


def _check_models(base: PyTree, finetuned: PyTree) -> tuple[list, list, Any, int]:
    base_leaves, treedef = _float_leaves(base, "base")
    ft_leaves, ft_def = _float_leaves(finetuned, "finetuned")
    if ft_def != treedef:
        raise ValueError(
            f"`finetuned` must have the tree structure of `base` (each leaf stacked over tasks "
            f"on axis 0); got {ft_def} and {treedef}."
        )
    count = _task_count(ft_leaves, "finetuned", 1)
    for b, f in zip(base_leaves, ft_leaves):
        if f.shape[1:] != b.shape:
            raise ValueError(
                f"`finetuned` leaves must have shape (T, *base_leaf.shape); got {f.shape} for a "
                f"`base` leaf of shape {b.shape}."
            )
    return base_leaves, ft_leaves, treedef, count


# ----------------------------------------------------------------------------- generators


def _safe_norm(x: jax.Array, axes: tuple[int, ...]) -> jax.Array:
    """Frobenius norm over ``axes`` (kept) with a finite gradient at zero."""
    sq = jnp.sum(x * x, axis=axes, keepdims=True)
    positive = sq > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def _merge_generator_leaf(q: jax.Array, theta_agg: str, direction_weight: str, scope: str):
    """Magnitude-corrected merge of one stacked leaf ``(T, ...)`` over axis 0."""
    axes = tuple(range(1, q.ndim)) if scope == "leaf" else (q.ndim - 2, q.ndim - 1)
    theta = _safe_norm(q, axes)  # (T, ...) with the reduced axes kept as 1
    if direction_weight == "theta":
        summed = jnp.sum(q, axis=0)  # sum_i theta_i u_i
    else:
        units = jnp.where(theta > 0, q / jnp.where(theta > 0, theta, 1.0), 0.0)
        summed = jnp.sum(units, axis=0)
    axes_merged = tuple(a - 1 for a in axes)
    norm_sum = _safe_norm(summed, axes_merged)
    if theta_agg == "mean":
        magnitude = jnp.mean(theta, axis=0)
    elif theta_agg == "median":
        magnitude = jnp.median(theta, axis=0)
    else:
        magnitude = jnp.max(theta, axis=0)
    # Directions that cancel (up to round-off of the sum) give no rotation, as the paper's code.
    scale_ref = jnp.sum(theta if direction_weight == "theta" else (theta > 0), axis=0)
    tiny = 8 * jnp.finfo(q.dtype).eps * scale_ref
    ok = norm_sum > tiny
    return jnp.where(ok, summed * (magnitude / jnp.where(ok, norm_sum, 1.0)), 0.0)


def merge_generators(
    generators: PyTree,
    *,
    theta_agg: Literal["mean", "median", "max"] = "mean",
    direction_weight: Literal["theta", "uniform"] = "theta",
    scope: Literal["matrix", "leaf"] = "matrix",
) -> PyTree:
    r"""OrthoMerge's magnitude-corrected average of Lie-algebra generators.

    With ``theta_i = ||Q_i||_F`` and ``u_i = Q_i / theta_i`` the merged generator is

    .. math::  Q = \operatorname{agg}_i(\theta_i)\,
               \frac{\sum_i w_i u_i}{\|\sum_i w_i u_i\|_F},

    ``w_i = theta_i`` (``direction_weight="theta"``: the direction of the plain sum
    ``sum_i Q_i``) or ``w_i = 1`` (``"uniform"``), and ``agg`` the mean, median or max of the
    norms. With the defaults ``Q = mean_i ||Q_i|| * sum_i Q_i / ||sum_i Q_i||``: the direction of
    task arithmetic with the mean magnitude, so disagreeing tasks do not shrink the update
    the way a plain average does. A zero task (``theta_i = 0``) has no direction. Directions that
    cancel (``||sum_i w_i u_i||`` at round-off level) give ``Q = 0``.

    Args:
        generators: pytree whose leaves are stacked over tasks on axis 0: ``(T, ..., n, n)``
            (any trailing shape with ``scope="leaf"``).
        theta_agg: aggregate of the norms: ``"mean"``, ``"median"`` (``jnp.median``: the mean of
            the two middle values for even ``T``) or ``"max"``.
        direction_weight: ``"theta"`` or ``"uniform"``.
        scope: what one norm covers: ``"matrix"`` (each ``(n, n)`` matrix; leading axes after
            the task axis are independent batch axes) or ``"leaf"`` (all of a leaf but its
            task axis, as the paper's OFT script does for a block-diagonal layer stored as
            ``(T, blocks, b, b)``).

    Returns:
        The merged generators, a pytree with one task's structure: leaves ``(..., n, n)``.

    Raises:
        ValueError: naming the argument, for non-float leaves, leaves without a task axis or
            disagreeing on ``T``, or unknown option strings.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxspec import manifolds
        >>> j = jnp.array([[0.0, -1.0], [1.0, 0.0]])
        >>> q = manifolds.merge_generators(jnp.stack([0.2 * j, 0.4 * j]))
        >>> round(float(q[1, 0]), 6)  # same plane: the mean of the two magnitudes
        0.3

    References:
        Yang, Shi, Liu, "Orthogonal Model Merging", arXiv:2602.05943, 2026.
    """
    check_choice(theta_agg, "theta_agg", THETA_AGGS)
    check_choice(direction_weight, "direction_weight", DIRECTION_WEIGHTS)
    check_choice(scope, "scope", SCOPES)
    leaves, treedef = _float_leaves(generators, "generators")
    _task_count(leaves, "generators", 3 if scope == "matrix" else 2)
    merged = [_merge_generator_leaf(q, theta_agg, direction_weight, scope) for q in leaves]
    return jax.tree.unflatten(treedef, merged)


# ----------------------------------------------------------------------------- charts


def _to_algebra(r: jax.Array, chart: str, min_pivot: Any) -> tuple[jax.Array, jax.Array]:
    """Generator and signature of orthogonal ``r`` with ``r = diag(d) phi(a)``."""
    a, d = inverse_cayley(r, guard=True, min_pivot=min_pivot)
    if chart == "exp":
        # diag(d) r = cayley(a) lies in SO(n) with no eigenvalue -1: its principal log exists.
        a = log_orthogonal(after(d[..., :, None] * r, a), throw=False)
    return a, d


def _expm(a: jax.Array) -> jax.Array:
    flat = a.reshape((-1, *a.shape[-2:]))
    return jax.vmap(jsl.expm)(flat).reshape(a.shape)


def _from_algebra(a: jax.Array, d: jax.Array, chart: str) -> jax.Array:
    rot = cayley(a) if chart == "cayley" else _expm(a)
    return d[..., :, None] * rot


def _merge_signatures(d: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Entrywise majority of ``d (T, ..., n)`` (ties -> +1) and whether all tasks agree."""
    merged = jnp.where(jnp.sum(d, axis=0) >= 0, 1.0, -1.0).astype(d.dtype)
    agree = jnp.all(d == d[:1], axis=(0, -1))
    return merged, agree


def orthomerge(
    rotations: PyTree,
    *,
    chart: Chart = "cayley",
    theta_agg: Literal["mean", "median", "max"] = "mean",
    direction_weight: Literal["theta", "uniform"] = "theta",
    scope: Literal["matrix", "leaf"] = "matrix",
    min_pivot: jax.typing.ArrayLike = 0.1,
) -> OrthoMergeSolution:
    r"""Merge task-specific orthogonal matrices in the Lie algebra (OrthoMerge).

    Each task's orthogonal matrix is mapped to a skew generator, ``Q_i = cayley^{-1}(R_i)``
    (``chart="cayley"``, as the paper's code) or ``Q_i = log(R_i)`` (``chart="exp"``); the
    generators are merged by :func:`merge_generators` (direction of their sum, mean of their
    norms by default) and mapped back with ``cayley`` or ``expm``. In a 2-plane the Cayley
    generator of a rotation by ``theta`` has magnitude ``tan(theta / 2)``, the logarithm's
    ``theta``: two rotations in one plane merge to ``2 atan(mean tan(theta_i / 2))`` with the
    Cayley chart and to the mean angle with the exp chart.

    **The det -1 guard.** The inverse Cayley map is singular at an eigenvalue ``-1`` (every
    orthogonal matrix with determinant ``-1`` has one, e.g. a Procrustes solution over O(n)).
    :func:`inverse_cayley` therefore writes ``R_i = diag(d_i) cayley(Q_i)`` with a signature
    ``d_i in {+1, -1}^n``, all ones unless ``I + R_i`` has a pivot below ``min_pivot``. The
    exp chart uses the same ``d_i`` and takes ``Q_i = log(diag(d_i) R_i)`` (a rotation without
    eigenvalue ``-1``, so the principal logarithm exists). The merged matrix is
    ``diag(d) phi(Q)`` with ``d`` the entrywise majority of the ``d_i`` (ties give ``+1``).
    When all tasks share one signature (``signatures_agree``) this is the same merge in the
    chart centred at ``diag(d)``; when they differ, each ``Q_i`` is a coordinate around its own
    ``diag(d_i)``, and the result is orthogonal and finite but not a meaningful average: check
    ``signatures_agree`` (``False`` is reported, nothing is raised, so the call works under
    ``jit``).

    Args:
        rotations: pytree of orthogonal matrices stacked over tasks on axis 0:
            leaves ``(T, ..., n, n)``.
        chart: ``"cayley"`` or ``"exp"``.
        theta_agg: ``"mean"``, ``"median"`` or ``"max"`` of the generator norms.
        direction_weight: ``"theta"`` (direction of ``sum_i Q_i``) or ``"uniform"``
            (direction of ``sum_i Q_i / ||Q_i||``).
        scope: ``"matrix"`` (a norm per ``(n, n)`` matrix; axes between the task axis and the
            matrix axes are batch axes) or ``"leaf"`` (one norm over the whole leaf, as the
            paper's OFT script for a block-diagonal layer ``(T, blocks, b, b)``).
        min_pivot: pivot threshold of the guard, in ``(0, 1]`` (may be traced).

    Returns:
        An :class:`OrthoMergeSolution` ``(rotation, generator, signature,
        signatures_agree)``, each a pytree with one task's structure.

    Raises:
        ValueError: naming the argument, for non-float or non-square leaves, leaves without a
            task axis or disagreeing on ``T``, or unknown option strings.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxspec import manifolds
        >>> def rot(t):
        ...     return jnp.array([[jnp.cos(t), -jnp.sin(t)], [jnp.sin(t), jnp.cos(t)]])
        >>> sol = manifolds.orthomerge(jnp.stack([rot(0.2), rot(0.6)]), chart="exp")
        >>> round(float(jnp.arctan2(sol.rotation[1, 0], sol.rotation[0, 0])), 5)
        0.4

    References:
        Yang, Shi, Liu, "Orthogonal Model Merging", arXiv:2602.05943, 2026.
        Qiu et al., "Controlling Text-to-Image Diffusion by Orthogonal Finetuning" (OFT),
        arXiv:2306.07280, 2023.
        "A Constructive Cayley Representation of Orthogonal Matrices", arXiv:2601.16271.
    """
    check_choice(chart, "chart", CHARTS)
    check_choice(theta_agg, "theta_agg", THETA_AGGS)
    check_choice(direction_weight, "direction_weight", DIRECTION_WEIGHTS)
    check_choice(scope, "scope", SCOPES)
    leaves, treedef = _float_leaves(rotations, "rotations")
    _task_count(leaves, "rotations", 3)
    _check_square_stack(leaves, "rotations")
    out = []
    for r in leaves:
        r = after(r, out[-1][0] if out else None)
        q, d = _to_algebra(r, chart, min_pivot)
        merged_q = _merge_generator_leaf(q, theta_agg, direction_weight, scope)
        merged_d, agree = _merge_signatures(d)
        out.append((_from_algebra(merged_q, merged_d, chart), merged_q, merged_d, agree))
    fields = [jax.tree.unflatten(treedef, [o[k] for o in out]) for k in range(4)]
    return OrthoMergeSolution(*fields)


# ----------------------------------------------------------------------------- weights


def task_arithmetic(
    base: PyTree,
    finetuned: PyTree,
    scale: jax.typing.ArrayLike,
    *,
    reduce: Literal["sum", "mean"] = "sum",
) -> PyTree:
    r"""Task arithmetic: ``W = W_0 + scale * sum_i (W_i - W_0)`` on every leaf.

    ``reduce="mean"`` divides the sum of task vectors by ``T`` (so ``scale = 1`` is weight
    averaging).

    Args:
        base: pytree of the pretrained weights ``W_0``.
        finetuned: the fine-tuned copies, each leaf stacked over tasks on axis 0:
            ``(T, *base_leaf.shape)``.
        scale: the scaling ``lambda >= 0`` (may be traced, e.g. swept under ``vmap``).
        reduce: ``"sum"`` (task arithmetic, Ilharco et al.) or ``"mean"``.

    Returns:
        The merged pytree, with ``base``'s structure and shapes.

    Raises:
        ValueError: naming the argument, for mismatched structures or shapes, non-float
            leaves, a negative ``scale`` or an unknown ``reduce``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxspec import manifolds
        >>> base = {"w": jnp.zeros((2, 2))}
        >>> tuned = {"w": jnp.stack([jnp.eye(2), 3 * jnp.eye(2)])}
        >>> manifolds.task_arithmetic(base, tuned, 0.5)["w"].tolist()
        [[2.0, 0.0], [0.0, 2.0]]

    References:
        Ilharco et al., "Editing Models with Task Arithmetic", ICLR 2023, arXiv:2212.04089.
    """
    check_choice(reduce, "reduce", REDUCTIONS)
    _check_nonnegative(scale, "scale")
    base_leaves, ft_leaves, treedef, count = _check_models(base, finetuned)
    factor = jnp.asarray(scale) / (count if reduce == "mean" else 1)
    out = []
    for b, f in zip(base_leaves, ft_leaves):
        dtype = jnp.result_type(b, f)
        delta = jnp.sum(f.astype(dtype) - b.astype(dtype), axis=0)
        out.append(b.astype(dtype) + factor.astype(dtype) * delta)
    return jax.tree.unflatten(treedef, out)


def _resolve_mask(mask: Any, base: PyTree, treedef: Any, base_leaves: list) -> list[bool]:
    if mask is None:
        return [leaf.ndim == 2 for leaf in base_leaves]
    flags = mask(base) if callable(mask) else mask
    flat, mask_def = jax.tree.flatten(flags)
    if mask_def != treedef:
        raise ValueError(
            f"`mask` must be a pytree of bools with the structure of `base` (or a callable "
            f"returning one); got {mask_def} for {treedef}."
        )
    out = []
    for flag, leaf in zip(flat, base_leaves):
        if not isinstance(flag, bool | np.bool_):
            raise ValueError(f"`mask` leaves must be Python bools (static), got {flag!r}.")
        if flag and leaf.ndim < 2:
            raise ValueError(
                f"`mask` selects a leaf of shape {leaf.shape}; only leaves with >= 2 "
                "dimensions (matrices, or batches of them) can be decoupled."
            )
        out.append(bool(flag))
    return out


def orthomerge_weights(
    base: PyTree,
    finetuned: PyTree,
    *,
    residual_scale: jax.typing.ArrayLike = 0.2,
    residual_merge: Literal["sum", "mean"] = "sum",
    chart: Chart = "cayley",
    theta_agg: Literal["mean", "median", "max"] = "mean",
    direction_weight: Literal["theta", "uniform"] = "theta",
    mask: Any = None,
    min_pivot: jax.typing.ArrayLike = 0.1,
) -> PyTree:
    r"""OrthoMerge with orthogonal-residual decoupling for fully fine-tuned weights.

    For each selected matrix leaf (default: every 2-D leaf), each task's weight is split into
    an orthogonal part and a residual against the base weight,

    .. math::  R_i = \arg\min_{R \in O(c)} \|W_0 R - W_i\|_F \ \text{(right Procrustes)},
               \qquad \rho_i = W_i - W_0 R_i,

    the rotations are merged by :func:`orthomerge` and the residuals by task arithmetic:

    .. math::  W = W_0 R_{\mathrm{merged}} + \lambda \sum_i \rho_i

    (``residual_merge="mean"`` replaces the sum by the mean). Every other leaf (biases, norms;
    and matrices the mask leaves out) is merged by task arithmetic with the same ``lambda``
    and reduction, ``W_0 + lambda * sum_i (W_i - W_0)``. The defaults, ``lambda = 0.2`` with a
    sum, are the paper's task-arithmetic scripts (``OrthoMerge_{C,G}_TA.py``); its TIES
    variant uses ``lambda = 1``. ``W_0 R_merged`` has exactly the singular values of ``W_0``
    and the pairwise angles between its rows (its hyperspherical energy), for any number of
    tasks.

    Matrices are ``(rows, cols)`` with ``R`` acting on the ``cols`` side (PyTorch's
    ``(out, in)`` layout: the input space is rotated, as in OFT). ``R_i`` is unique when
    ``W_0`` has full column rank (``rows >= cols``); for a wide ``W_0`` the Procrustes solution
    is one of many (the split is still exact, ``W_i = W_0 R_i + rho_i``).

    Args:
        base: pytree of pretrained weights ``W_0``.
        finetuned: the fine-tuned copies stacked over tasks on axis 0:
            ``(T, *base_leaf.shape)``.
        residual_scale: ``lambda >= 0`` (may be traced).
        residual_merge: ``"sum"`` (task arithmetic) or ``"mean"``.
        chart: ``"cayley"`` or ``"exp"`` (see :func:`orthomerge`).
        theta_agg: ``"mean"``, ``"median"`` or ``"max"`` (see :func:`merge_generators`).
        direction_weight: ``"theta"`` or ``"uniform"``.
        mask: which leaves get the orthogonal decomposition: ``None`` (every 2-D leaf), a pytree
            of Python bools with ``base``'s structure, or a callable ``base -> such a pytree``.
            A selected leaf with more than 2 dimensions is a batch of matrices.
        min_pivot: pivot threshold of the det -1 guard (see :func:`orthomerge`).

    Returns:
        The merged pytree, with ``base``'s structure and shapes.

    Raises:
        ValueError: naming the argument, for mismatched structures or shapes, non-float
            leaves, a mask selecting a vector, a negative ``residual_scale`` or an unknown
            option string.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxspec import manifolds
        >>> w0 = jax.random.normal(jax.random.key(0), (6, 4))
        >>> r = manifolds.Orthogonal(4, special=True).random(jax.random.key(1), (2,))
        >>> tuned = {"w": w0 @ r, "b": jnp.array([[1.0] * 4, [1.5] * 4])}  # two tasks
        >>> merged = manifolds.orthomerge_weights({"w": w0, "b": jnp.zeros(4)}, tuned)
        >>> s0, s = jnp.linalg.svd(w0, compute_uv=False), jnp.linalg.svd(merged["w"],
        ...                                                              compute_uv=False)
        >>> bool(jnp.allclose(s, s0, rtol=1e-4)), merged["b"].tolist()
        (True, [0.5, 0.5, 0.5, 0.5])

    References:
        Yang, Shi, Liu, "Orthogonal Model Merging", arXiv:2602.05943, 2026.
        Schönemann, "A generalized solution of the orthogonal Procrustes problem",
        Psychometrika 1966.
    """
    check_choice(residual_merge, "residual_merge", REDUCTIONS)
    check_choice(chart, "chart", CHARTS)
    check_choice(theta_agg, "theta_agg", THETA_AGGS)
    check_choice(direction_weight, "direction_weight", DIRECTION_WEIGHTS)
    _check_nonnegative(residual_scale, "residual_scale")
    base_leaves, ft_leaves, treedef, count = _check_models(base, finetuned)
    flags = _resolve_mask(mask, base, treedef, base_leaves)
    factor = jnp.asarray(residual_scale) / (count if residual_merge == "mean" else 1)
    out, previous = [], None
    for b, f, flag in zip(base_leaves, ft_leaves, flags):
        dtype = jnp.result_type(b, f)
        b, f = b.astype(dtype), f.astype(dtype)
        lam = factor.astype(dtype)
        if not flag:
            out.append(b + lam * jnp.sum(f - b, axis=0))
            continue
        f = after(f, previous)
        rotations = procrustes(jnp.broadcast_to(b, f.shape), f)  # (T, ..., c, c)
        residuals = f - b @ rotations
        merged = orthomerge(
            rotations,
            chart=chart,
            theta_agg=theta_agg,
            direction_weight=direction_weight,
            scope="matrix",
            min_pivot=min_pivot,
        )
        previous = merged.rotation
        out.append(b @ merged.rotation + lam * jnp.sum(residuals, axis=0))
    return jax.tree.unflatten(treedef, out)
