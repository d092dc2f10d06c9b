"""Training loop of the sparse autoencoders of :mod:`jaxspec.pursuit._sae`.

One ``lax.scan`` over the optimizer steps, compiled once (``eqx.filter_jit``): minibatches
drawn from an in-memory data array, an optax update of the trainable arrays, the model's
constraints re-applied, and dead-latent bookkeeping.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jax import lax

from jaxspec._checks import as_float_array, check_int
from jaxspec.pursuit._sae import AbstractSAE


def _trainable(model: AbstractSAE):
    """Filter spec: the inexact arrays of ``model`` minus its ``frozen_fields``."""
    spec = jax.tree.map(eqx.is_inexact_array, model)
    frozen = [f for f in type(model).frozen_fields if getattr(model, f) is not None]
    if frozen:
        spec = eqx.tree_at(
            lambda m: [getattr(m, f) for f in frozen], spec, replace=[False] * len(frozen)
        )
    return spec


def _epoch_permutation(data_key: jax.Array, epoch, n: int) -> jax.Array:
    return jax.random.permutation(jax.random.fold_in(data_key, epoch), n)


def _batch_indices(key: jax.Array, step: int, n: int, batch_size: int) -> jax.Array:
    """Row indices of the minibatch of ``step`` in :func:`train_sae` (for tests and replays).

    Each epoch of ``n // batch_size`` steps walks through a fresh random permutation of the
    ``n`` rows, so a row appears at most once per epoch.
    """
    data_key = jax.random.split(key)[0]
    per_epoch = n // batch_size
    perm = _epoch_permutation(data_key, step // per_epoch, n)
    start = (step % per_epoch) * batch_size
    return perm[start : start + batch_size]


def _remove_parallel(grad: jax.Array, atoms: jax.Array) -> jax.Array:
    """Remove from each column of ``grad`` its component along the same column of ``atoms``."""
    sq = jnp.sum(atoms * atoms, axis=0, keepdims=True)
    coef = jnp.sum(grad * atoms, axis=0, keepdims=True) / jnp.where(sq > 0, sq, 1)
    return grad - coef * atoms


def _update_since_fired(since: jax.Array, codes: jax.Array) -> jax.Array:
    """Steps since each latent last fired: 0 where a code of the batch is nonzero, else +1."""
    fired = jnp.any(codes.reshape(-1, codes.shape[-1]) != 0, axis=0)
    return jnp.where(fired, 0, since + 1)


class _Carry(NamedTuple):
    params: Any
    state: Any  # frozen arrays (thresholds)
    opt_state: Any
    since_fired: jax.Array
    perm: jax.Array


@eqx.filter_jit
def _train(
    model,
    data,
    key,
    optimizer,
    num_steps,
    batch_size,
    dead_window,
    aux,
    remove_parallel_grad,
):
    spec = _trainable(model)
    params, rest = eqx.partition(model, spec)
    state, static = eqx.partition(rest, eqx.is_array)
    n = data.shape[0]
    per_epoch = n // batch_size
    data_key, loss_key = jax.random.split(key)
    field = type(model).decoder_field

    def loss_fn(p, s, xb, k, dead_mask):
        loss, diag, codes = eqx.combine(p, s, static)._loss_terms(xb, k, dead_mask)
        return loss, (diag, codes)

    def step(carry: _Carry, i):
        pos = i % per_epoch
        perm = lax.cond(
            pos == 0,
            lambda: _epoch_permutation(data_key, i // per_epoch, n),
            lambda: carry.perm,
        )
        xb = data[lax.dynamic_slice_in_dim(perm, pos * batch_size, batch_size)]
        dead_mask = carry.since_fired >= dead_window if aux else None
        (loss, (diag, codes)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            carry.params, carry.state, xb, jax.random.fold_in(loss_key, i), dead_mask
        )
        if remove_parallel_grad:
            atoms = getattr(carry.params, field)
            grads = eqx.tree_at(
                lambda g: getattr(g, field), grads, _remove_parallel(getattr(grads, field), atoms)
            )
        updates, opt_state = optimizer.update(grads, carry.opt_state, carry.params)
        new = eqx.combine(optax.apply_updates(carry.params, updates), carry.state, static)
        new = new.project()
        after = getattr(new, "_after_step", None)
        if after is not None:
            new = after(codes)
        new_params, new_rest = eqx.partition(new, spec)
        since = _update_since_fired(carry.since_fired, codes)
        dead = jnp.mean((since >= dead_window).astype(loss.dtype))
        record = (loss, diag["fvu"], diag["l0"], dead)
        new_state = eqx.filter(new_rest, eqx.is_array)
        return _Carry(new_params, new_state, opt_state, since, perm), record

    carry = _Carry(
        params,
        state,
        optimizer.init(params),
        jnp.zeros(model.num_latents, jnp.int32),
        jnp.arange(n),
    )
    carry, (loss, fvu, l0, dead) = lax.scan(step, carry, jnp.arange(num_steps))
    trained = eqx.combine(carry.params, carry.state, static)
    per_step = {"loss": loss, "fvu": fvu, "l0": l0, "dead_fraction": dead}
    return trained, per_step, carry.since_fired


@functools.partial(jax.jit, static_argnums=1)
def _block_means(per_step: dict[str, jax.Array], log_every: int) -> dict[str, jax.Array]:
    """Means over consecutive blocks of ``log_every`` steps (the last block may be shorter)."""
    if log_every == 1:
        return per_step
    num_steps = next(iter(per_step.values())).shape[0]
    num_logs = -(-num_steps // log_every)
    segment = jnp.arange(num_steps) // log_every
    out = {}
    for name, v in per_step.items():
        counts = jax.ops.segment_sum(jnp.ones_like(v), segment, num_logs)
        out[name] = jax.ops.segment_sum(v, segment, num_logs) / counts
    return out


def train_sae(
    model: AbstractSAE,
    data: jax.typing.ArrayLike,
    *,
    optimizer: optax.GradientTransformation,
    num_steps: int,
    batch_size: int,
    key: jax.Array,
    dead_window: int = 1000,
    aux: bool = False,
    remove_parallel_grad: bool = False,
    log_every: int = 1,
) -> tuple[AbstractSAE, dict[str, jax.Array]]:
    """Train a sparse autoencoder by minibatch gradient steps on an in-memory data array.

    Each step

    1. draws ``batch_size`` rows of ``data`` (a fresh random permutation per epoch of
       ``N // batch_size`` steps, so no row repeats within an epoch) and differentiates the
       model's training loss on them;
    2. optionally (``remove_parallel_grad``, OpenAI's recipe) removes from the gradient of
       each decoder atom its component along that atom, so the step moves unit-norm atoms
       tangentially to the sphere;
    3. applies one ``optimizer`` update to the trainable arrays (every floating array except
       the model's ``frozen_fields``, e.g. thresholds);
    4. re-applies the constraints, ``model.project()`` (unit-norm decoder atoms);
    5. lets the model update its state from the step's codes (the :class:`BatchTopKSAE`
       threshold EMA);
    6. updates the dead-latent counter: steps since each latent was last nonzero on a
       training batch. A latent is dead when its counter is ``>= dead_window``; with
       ``aux=True`` the dead mask is passed to the loss (the aux-K loss of
       :class:`TopKSAE` and :class:`BatchTopKSAE`; the other models ignore it).

    The whole loop is one ``lax.scan``, compiled once per model structure, data shape and
    option values (``eqx.filter_jit``); a second call with the same ``optimizer`` object
    reuses the compilation. Everything is deterministic given ``key``.

    Args:
        model: the SAE to start from (an :class:`AbstractSAE`, e.g. ``MPSAE.init(...)``).
        data: ``(N, d)`` floating training data (cast to the model's dtype).
        optimizer: an optax gradient transformation, e.g. ``optax.adam(1e-3)``.
        num_steps: number of updates, ``>= 1`` (static).
        batch_size: rows per update, ``1 <= batch_size <= N`` (static).
        key: PRNG key of the minibatch draws (and of the loss's ``key``).
        dead_window: steps without firing after which a latent counts as dead, ``>= 1``
            (SAELens's ``dead_feature_window`` is 1000 steps).
        aux: pass the dead mask to the loss (auxiliary dead-latent loss).
        remove_parallel_grad: project the decoder gradient as in step 2.
        log_every: history entries average blocks of this many steps (the last block may be
            shorter).

    Returns:
        ``(trained_model, history)``. ``history`` holds arrays of length
        ``ceil(num_steps / log_every)``: ``"loss"``, ``"fvu"`` and ``"l0"`` of the training
        minibatch *before* each update (for :class:`BatchTopKSAE` the training-time batch
        top-k codes), ``"dead_fraction"`` after each update; and ``"steps_since_fired"``, the
        final ``(K,)`` int32 counter.

    Raises:
        ValueError: for a model that is not an :class:`AbstractSAE`, an optimizer without
            ``init``/``update``, ``data`` that is not a floating ``(N, d)`` array with the
            model's ``d``, ``batch_size`` outside ``[1, N]``, or ``num_steps``,
            ``dead_window`` or ``log_every`` below 1.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from jaxspec import pursuit
        >>> atoms = jnp.eye(8)
        >>> codes = jax.random.uniform(jax.random.key(0), (256, 8)) * (
        ...     jax.random.uniform(jax.random.key(1), (256, 8)) < 0.25)
        >>> data = codes @ atoms.T
        >>> sae = pursuit.TopKSAE.init(jax.random.key(2), 8, 16, k=2)
        >>> sae, hist = pursuit.train_sae(sae, data, optimizer=optax.adam(1e-2),
        ...                               num_steps=200, batch_size=32, key=jax.random.key(3))
        >>> bool(hist["fvu"][-1] < hist["fvu"][0])
        True

    References:
        Gao et al., "Scaling and evaluating sparse autoencoders", arXiv:2406.04093, 2024
        (decoder renormalisation and gradient projection, aux-K loss).
    """
    if not isinstance(model, AbstractSAE):
        raise ValueError(f"`model` must be an AbstractSAE, got {type(model).__name__}.")
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise ValueError("`optimizer` must be an optax GradientTransformation.")
    data = as_float_array(data, "data", min_ndim=2)
    d = model.input_dim
    if data.ndim != 2 or data.shape[1] != d:
        raise ValueError(f"`data` must have shape (N, {d}), got {tuple(data.shape)}.")
    num_steps = check_int(num_steps, "num_steps")
    batch_size = check_int(batch_size, "batch_size")
    if batch_size > data.shape[0]:
        raise ValueError(f"`batch_size` must be <= N = {data.shape[0]}, got {batch_size}.")
    dead_window = check_int(dead_window, "dead_window")
    log_every = check_int(log_every, "log_every")
    data = data.astype(model.dictionary_matrix.dtype)
    trained, per_step, since_fired = _train(
        model,
        data,
        key,
        optimizer,
        num_steps,
        batch_size,
        dead_window,
        bool(aux),
        bool(remove_parallel_grad),
    )
    history = _block_means(per_step, log_every)
    history["steps_since_fired"] = since_fired
    return trained, history
