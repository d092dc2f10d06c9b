"""Spectral clipping as optax transforms: post-clipping, pre-clipping, and SPECTRA."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxspec._checks import check_choice, check_positive, check_update_tree, is_concrete
from jaxspec.spectral._clipping import hard_clip, soft_clip

Schedule = Callable[[jax.Array], jax.Array]
Mask = Any  # a pytree of bools matching the params, or a callable params -> such a pytree


def _default_matrix_mask(tree: Any) -> Any:
    return jax.tree.map(lambda leaf: jnp.ndim(leaf) >= 2, tree)


def _resolve_mask(mask: Mask | None, tree: Any) -> Any:
    if mask is None:
        return _default_matrix_mask(tree)
    return mask(tree) if callable(mask) else mask


def _vector_clip(g: jax.Array, c: jax.Array, soft: bool) -> jax.Array:
    """The matrix rule applied to a 1 x n matrix: one singular value, ``||g||``."""
    norm = jnp.sqrt(jnp.sum(jnp.abs(g) ** 2))
    if soft:
        factor = jax.lax.rsqrt(1.0 + (norm / c) ** 2)
    else:
        factor = jnp.minimum(1.0, c / jnp.where(norm > 0, norm, 1.0))
    return (g * factor.astype(g.dtype)).astype(g.dtype)


def _clip_leaf(
    leaf: jax.Array, c: jax.Array, soft: bool, steps: int | None, method: str, clip_vectors: bool
) -> jax.Array:
    if leaf.ndim >= 2:
        if soft:
            return soft_clip(leaf, c, steps, method=method)
        return hard_clip(leaf, c, steps)
    if leaf.ndim == 1 and clip_vectors:
        return _vector_clip(leaf, c, soft)
    return leaf


def _clip_tree(
    tree: Any,
    c: jax.Array,
    *,
    soft: bool,
    steps: int | None,
    method: str,
    clip_vectors: bool,
    mask: Mask | None,
) -> Any:
    if mask is None:
        min_ndim = 1 if clip_vectors else 2
        flags = jax.tree.map(lambda leaf: jnp.ndim(leaf) >= min_ndim, tree)
    else:
        flags = _resolve_mask(mask, tree)
    return jax.tree.map(
        lambda leaf, flag: _clip_leaf(leaf, c, soft, steps, method, clip_vectors) if flag else leaf,
        tree,
        flags,
    )


def _check_common(c: Any, method: str) -> None:
    if callable(c):  # (a schedule for c is not supported: it failed inside the update)
        raise ValueError(f"`c` must be a positive real number or array, got {c!r}.")
    check_positive(c, "c")
    check_choice(method, "method", ("polar", "gram", "coupled"))


def clip_updates(
    c: jax.typing.ArrayLike,
    soft: bool = True,
    steps: int | None = None,
    *,
    method: str = "polar",
    clip_vectors: bool = False,
    mask: Mask | None = None,
) -> optax.GradientTransformation:
    r"""Spectrally clip every matrix leaf of the updates (SPECTRA's post-clipping).

    Matrix leaves (``ndim >= 2``; leading axes are stacked matrices, clipped one by one) go
    through :func:`soft_clip` (``soft=True``) or :func:`hard_clip`. Vectors pass through unless
    ``clip_vectors=True``, which applies the same singular-value rule to the vector as a
    ``1 x n`` matrix (``g / sqrt(1 + ||g||^2 / c^2)``, or ``g min(1, c / ||g||)``); scalars
    always pass through. Use it after a base direction and before the learning rate, e.g.
    ``optax.chain(optax.scale_by_adam(), clip_updates(10.0), optax.scale_by_learning_rate(lr))``.
    For the full SPECTRA update with decoupled weight decay and the warm-up rule, use
    :func:`spectra`.

    Args:
        c: threshold > 0 (array-like; may be traced, e.g. swept).
        soft: soft clip ``sigma / sqrt(1 + sigma^2/c^2)`` (default) or hard ``min(sigma, c)``.
        steps: iteration count of the clip (default: the clip function's).
        method: soft-clip method, ``"polar"``, ``"gram"`` or ``"coupled"``.
        clip_vectors: also clip 1-D leaves.
        mask: pytree of bools (or callable on the updates) selecting leaves to clip; default:
            leaves with ``ndim >= 2`` (``ndim >= 1`` with ``clip_vectors``).

    Returns:
        A stateless :class:`optax.GradientTransformation`.

    Example:
        >>> import jax.numpy as jnp, optax
        >>> from jaxspec import spectral
        >>> tx = spectral.clip_updates(1.0, soft=False)
        >>> u, _ = tx.update({"w": 5.0 * jnp.eye(3)}, tx.init(None))
        >>> jnp.round(jnp.diag(u["w"]), 3)
        Array([1., 1., 1.], dtype=float32)

    References:
        Jiang, Semenov, Stich, "Enhancing LLM Training via Spectral Clipping",
        arXiv:2603.14315, 2026.
    """
    _check_common(c, method)

    def update_fn(updates, state, params=None):
        check_update_tree(updates, params)
        out = _clip_tree(
            updates,
            jnp.asarray(c),
            soft=soft,
            steps=steps,
            method=method,
            clip_vectors=clip_vectors,
            mask=mask,
        )
        return out, state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def clip_gradients(
    c: jax.typing.ArrayLike,
    soft: bool = True,
    steps: int | None = None,
    *,
    method: str = "polar",
    clip_vectors: bool = False,
    mask: Mask | None = None,
) -> optax.GradientTransformation:
    r"""Spectrally clip raw gradients before the base optimizer (SPECTRA's pre-clipping).

    The same map as :func:`clip_updates`, placed first in the chain so the optimizer's
    moments see clipped gradients: ``optax.chain(clip_gradients(0.1), optax.adamw(lr))``.
    Pre-clipping bounds spectral spikes in the stochastic gradient (rank-one noise of norm
    ``l >> ||G||`` is cut to ``c``) while keeping a descent direction when ``c >= ||G||_2``.
    SPECTRA's default pre-clip threshold is 0.1 and its authors do not recommend combining
    it with post-clipping.

    Args:
        c: threshold > 0 (may be traced).
        soft: soft (default) or hard clipping.
        steps: iteration count of the clip.
        method: soft-clip method.
        clip_vectors: also clip 1-D leaves.
        mask: leaves to clip (default ``ndim >= 2``).

    Returns:
        A stateless :class:`optax.GradientTransformation`.

    Example:
        >>> import jax.numpy as jnp, optax
        >>> from jaxspec import spectral
        >>> opt = optax.chain(spectral.clip_gradients(0.1), optax.adamw(1e-3))
        >>> state = opt.init({"w": jnp.ones((4, 4))})

    References:
        Jiang, Semenov, Stich, "Enhancing LLM Training via Spectral Clipping",
        arXiv:2603.14315, 2026 (Lemmas 4.2-4.3 on pre-clipping).
    """
    return clip_updates(c, soft, steps, method=method, clip_vectors=clip_vectors, mask=mask)


class SpectraState(NamedTuple):
    """State of :func:`spectra`: the step count and the base optimizer's state."""

    count: jax.Array
    base_state: optax.OptState


def _shape_factor(leaf: jax.Array) -> float:
    if leaf.ndim < 2:
        return 1.0
    rows, cols = leaf.shape[-2], leaf.shape[-1]
    return max(1.0, rows / cols) ** 0.5


def spectra(
    base_optimizer: optax.GradientTransformation,
    learning_rate: float | jax.Array | Schedule,
    c: jax.typing.ArrayLike = 10.0,
    weight_decay: jax.typing.ArrayLike = 0.0,
    *,
    soft: bool = True,
    steps: int | None = None,
    method: str = "polar",
    shape_factor: bool = True,
    warmup_steps: int = 0,
    clip_vectors: bool = False,
    clip_mask: Mask | None = None,
    weight_decay_mask: Mask | None = None,
) -> optax.GradientTransformation:
    r"""SPECTRA: spectrally post-clipped updates with decoupled weight decay, around any base.

    Implements ``X_{k+1} = (1 - lambda eta_k) X_k - alpha eta_k clip_{c_k}(U_k)`` where
    ``U_k`` is the direction produced by ``base_optimizer`` (any optax transformation *without*
    learning rate or weight decay: ``optax.scale_by_adam()``, ``optax.scale_by_lion()``,
    ``optax.contrib.scale_by_ademamix(...)``, a signed momentum, ...), ``clip`` is
    :func:`soft_clip` (or :func:`hard_clip`) applied per matrix, ``alpha = sqrt(max(1,
    rows/cols))`` (Muon's shape factor, as in the reference wrapper; ``shape_factor=False``
    sets ``alpha = 1``), and ``eta_k`` is the learning rate (a float, array or optax schedule).

    With ``warmup_steps > 0`` and a schedule, SPECTRA's warm-up rule holds ``c_k eta_k``
    constant during warm-up: ``c_k = c eta(warmup_steps) / eta_k`` for ``k < warmup_steps``
    (so the clipped step length ``eta_k c_k`` does not shrink with the warm-up), and
    ``c_k = c`` afterwards.

    Leaves that are not selected by ``clip_mask`` (default: ``ndim >= 2``) take the plain
    base update ``-eta_k U_k``. Weight decay applies to ``weight_decay_mask`` (default:
    ``ndim >= 2``, i.e. not to biases and norm gains, as in nanoGPT and the SPECTRA code).
    Stacked matrices (leading axes) are clipped per matrix.

    The composite problem this solves (paper, Sec. 3): post-clipping with momentum is a
    stochastic composite Frank-Wolfe method for ``min_{||X||_2 <= alpha c / lambda}
    f(X) + lambda/(2 alpha) ||X||_F^2``.

    Args:
        base_optimizer: transformation producing the direction ``U_k``.
        learning_rate: ``eta`` (float, array, or schedule ``count -> eta``).
        c: clipping threshold > 0 (paper default 10; may be traced).
        weight_decay: decoupled weight decay ``lambda`` (may be traced).
        soft: soft (default) or hard clipping.
        steps: clip iteration count (default: the clip function's).
        method: soft-clip method, ``"polar"``, ``"gram"`` or ``"coupled"`` (the reference code's).
        shape_factor: multiply by ``sqrt(max(1, rows/cols))``.
        warmup_steps: length of the ``c eta = const`` warm-up rule (0 disables it).
        clip_vectors: also clip 1-D leaves (see :func:`clip_updates`).
        clip_mask: leaves to clip.
        weight_decay_mask: leaves to decay.

    Returns:
        An :class:`optax.GradientTransformation` whose ``update`` needs ``params`` when
        ``weight_decay`` is non-zero.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from jaxspec import spectral
        >>> opt = spectral.spectra(optax.scale_by_adam(), 1e-3, c=10.0, weight_decay=0.1)
        >>> params = {"w": jnp.ones((4, 8)), "b": jnp.zeros(8)}
        >>> state = opt.init(params)
        >>> grads = jax.tree.map(jnp.ones_like, params)
        >>> updates, state = opt.update(grads, state, params)
        >>> params = optax.apply_updates(params, updates)

    References:
        Jiang, Semenov, Stich, "Enhancing LLM Training via Spectral Clipping",
        arXiv:2603.14315, ICML 2026.
    """
    _check_common(c, method)
    if not callable(learning_rate):
        check_positive(learning_rate, "learning_rate")
    if is_concrete(weight_decay) and not np.all(np.asarray(weight_decay) >= 0):
        raise ValueError(f"`weight_decay` must be >= 0, got {weight_decay!r}.")
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
        raise ValueError(f"`warmup_steps` must be an int >= 0, got {warmup_steps!r}.")
    if warmup_steps > 0 and not callable(learning_rate):
        raise ValueError(
            "`warmup_steps` > 0 needs `learning_rate` to be a schedule (callable), got a constant."
        )

    def init_fn(params):
        return SpectraState(jnp.zeros([], jnp.int32), base_optimizer.init(params))

    def update_fn(updates, state, params=None):
        check_update_tree(updates, params)
        direction, base_state = base_optimizer.update(updates, state.base_state, params)
        count = state.count
        eta = learning_rate(count) if callable(learning_rate) else jnp.asarray(learning_rate)
        c_k = jnp.asarray(c, dtype=jnp.result_type(float))
        if warmup_steps > 0:
            peak = learning_rate(warmup_steps)
            ratio = peak / jnp.maximum(eta, peak * 1e-6)
            c_k = jnp.where(count < warmup_steps, c_k * ratio, c_k)
        clipped = _clip_tree(
            direction,
            c_k,
            soft=soft,
            steps=steps,
            method=method,
            clip_vectors=clip_vectors,
            mask=clip_mask,
        )
        if shape_factor:
            clip_flags = _resolve_mask(clip_mask, direction)
            clipped = jax.tree.map(
                lambda u, flag: u * _shape_factor(u) if flag else u, clipped, clip_flags
            )
        decay_needed = not (isinstance(weight_decay, int | float) and weight_decay == 0)
        if decay_needed:
            if params is None:
                raise ValueError("`params` must be passed to update() when weight_decay != 0.")
            decay_flags = _resolve_mask(weight_decay_mask, params)
            clipped = jax.tree.map(
                lambda u, p, flag: u + weight_decay * p if flag else u,
                clipped,
                params,
                decay_flags,
            )
        out = jax.tree.map(lambda u: (-eta * u).astype(u.dtype), clipped)
        return out, SpectraState(count + 1, base_state)

    return optax.GradientTransformation(init_fn, update_fn)


def scale_by_signum(beta: float = 0.95, nesterov: bool = True) -> optax.GradientTransformation:
    """Signed momentum: ``sign(M_k)`` with ``M_k = beta M_{k-1} + (1 - beta) g_k``.

    With ``nesterov=True`` the sign is taken of ``beta M_k + (1 - beta) g_k``.
    """

    def init_fn(params):
        return optax.TraceState(trace=jax.tree.map(jnp.zeros_like, params))

    def update_fn(updates, state, params=None):
        del params
        check_update_tree(updates, state.trace, reference_name="state.trace")
        mom = jax.tree.map(lambda m, g: beta * m + (1 - beta) * g, state.trace, updates)
        look = (
            jax.tree.map(lambda m, g: beta * m + (1 - beta) * g, mom, updates) if nesterov else mom
        )
        return jax.tree.map(jnp.sign, look), optax.TraceState(trace=mom)

    return optax.GradientTransformation(init_fn, update_fn)


def spectra_adamw(
    learning_rate: float | jax.Array | Schedule,
    c: jax.typing.ArrayLike = 10.0,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: jax.typing.ArrayLike = 0.1,
    **kwargs: Any,
) -> optax.GradientTransformation:
    """SPECTRA-AdamW: :func:`spectra` around ``optax.scale_by_adam(b1, b2, eps)``.

    Example:
        >>> from jaxspec import spectral
        >>> opt = spectral.spectra_adamw(1e-3, c=10.0)

    References:
        Jiang, Semenov, Stich, arXiv:2603.14315. Loshchilov and Hutter, "Decoupled Weight
        Decay Regularization", ICLR 2019.
    """
    return spectra(optax.scale_by_adam(b1, b2, eps), learning_rate, c, weight_decay, **kwargs)


def spectra_signum(
    learning_rate: float | jax.Array | Schedule,
    c: jax.typing.ArrayLike = 10.0,
    beta: float = 0.95,
    nesterov: bool = True,
    weight_decay: jax.typing.ArrayLike = 0.1,
    **kwargs: Any,
) -> optax.GradientTransformation:
    """SPECTRA-Signum: :func:`spectra` around signed (Nesterov) momentum.

    Example:
        >>> from jaxspec import spectral
        >>> opt = spectral.spectra_signum(3e-4, c=10.0)

    References:
        Jiang, Semenov, Stich, arXiv:2603.14315. Bernstein et al., "signSGD", ICML 2018.
    """
    return spectra(scale_by_signum(beta, nesterov), learning_rate, c, weight_decay, **kwargs)
