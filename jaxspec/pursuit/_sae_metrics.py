"""Evaluation metrics of sparse autoencoders, with the SAE libraries' definitions.

* ``fvu`` (fraction of variance unexplained) is the summed squared error over the summed
  squared deviation from the data mean, ``sum |x - x_hat|^2 / sum |x - mean(x)|^2``: the
  SAELens ``explained_variance`` (``1 - fvu``) and the EleutherAI ``sparsify`` ``fvu``.
  ``r2`` and ``explained_variance`` are both ``1 - fvu`` (the "R^2" of the MP-SAE paper).
* ``l0`` counts the nonzero codes of a sample; ``l0_mean``/``l0_min``/``l0_max`` run over the
  samples (the min/max matter for MP-SAE, whose sparsity varies per sample).
* ``dead_fraction`` is the fraction of latents that are zero on every sample given.
* ``cosine`` is the mean over samples of ``<x, x_hat> / (|x| |x_hat|)`` (SAELens ``cossim``,
  ``dictionary_learning`` ``cossim``); a zero vector counts as cosine 0.
* ``mse`` is the mean of the squared error over every entry (PyTorch ``mse_loss``);
  ``sse`` is the squared error summed over features and averaged over samples (the
  reconstruction term of the training losses here).

References:
    Bricken et al., "Towards monosemanticity", Transformer Circuits Thread, 2023.
    Gao et al., "Scaling and evaluating sparse autoencoders", arXiv:2406.04093, 2024.
"""

from __future__ import annotations

import inspect
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from jaxspec._checks import as_float_array


def _flat(a: jax.Array) -> jax.Array:
    return a.reshape((-1, a.shape[-1]))


def batch_fvu(x: jax.Array, x_hat: jax.Array) -> jax.Array:
    """FVU of a batch: all leading axes of ``x`` and ``x_hat`` count as samples."""
    x, x_hat = _flat(x), _flat(x_hat)
    err = x - x_hat
    dev = x - jnp.mean(x, axis=0)
    return jnp.sum(err * err) / jnp.sum(dev * dev)


def mean_l0(codes: jax.Array) -> jax.Array:
    """Mean number of nonzero codes per sample, over all leading axes."""
    return jnp.mean(jnp.sum(codes != 0, axis=-1).astype(codes.dtype))


def mean_sse(x: jax.Array, x_hat: jax.Array) -> jax.Array:
    """Squared error summed over the last axis, averaged over all leading axes."""
    err = x - x_hat
    return jnp.mean(jnp.sum(err * err, axis=-1))


@jax.jit
def _metrics(x: jax.Array, x_hat: jax.Array, codes: jax.Array) -> dict[str, jax.Array]:
    x, x_hat, codes = _flat(x), _flat(x_hat), _flat(codes)
    err = x - x_hat
    fvu = batch_fvu(x, x_hat)
    l0 = jnp.sum(codes != 0, axis=-1)
    tiny = jnp.finfo(x.dtype).tiny
    norms = jnp.linalg.norm(x, axis=-1) * jnp.linalg.norm(x_hat, axis=-1)
    cos = jnp.sum(x * x_hat, axis=-1) / jnp.maximum(norms, tiny)
    fired = jnp.any(codes != 0, axis=0)
    return {
        "fvu": fvu,
        "explained_variance": 1 - fvu,
        "r2": 1 - fvu,
        "mse": jnp.mean(err * err),
        "sse": jnp.mean(jnp.sum(err * err, axis=-1)),
        "cosine": jnp.mean(jnp.where(norms > 0, cos, 0.0)),
        "l0_mean": jnp.mean(l0.astype(x.dtype)),
        "l0_min": jnp.min(l0),
        "l0_max": jnp.max(l0),
        "dead_fraction": 1 - jnp.mean(fired.astype(x.dtype)),
    }


def reconstruction_metrics(
    x: jax.typing.ArrayLike, x_hat: jax.typing.ArrayLike, codes: jax.typing.ArrayLike
) -> dict[str, jax.Array]:
    """SAE metrics from data, reconstructions and codes (see the module docstring).

    Args:
        x: ``(..., d)`` data; every leading axis counts as a sample axis.
        x_hat: ``(..., d)`` reconstructions, same shape as ``x``.
        codes: ``(..., K)`` codes, same leading axes as ``x``.

    Returns:
        A dict of scalars: ``fvu``, ``explained_variance``, ``r2``, ``mse``, ``sse``,
        ``cosine``, ``l0_mean``, ``l0_min``, ``l0_max`` (int32) and ``dead_fraction``.
        ``fvu`` is ``nan``/``inf`` when every sample is the same (zero variance).

    Raises:
        ValueError: for non-floating arrays or mismatched shapes.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxspec import pursuit
        >>> x = jnp.array([[1.0, 0.0], [0.0, 1.0]])
        >>> codes = jnp.array([[2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
        >>> m = pursuit.reconstruction_metrics(x, 0.5 * x, codes)
        >>> float(m["fvu"]), int(m["l0_max"]), float(m["dead_fraction"])
        (0.5, 1, 0.75)
    """
    x = as_float_array(x, "x", min_ndim=1)
    x_hat = as_float_array(x_hat, "x_hat", min_ndim=1)
    codes = as_float_array(codes, "codes", min_ndim=1)
    if x_hat.shape != x.shape:
        raise ValueError(
            f"`x_hat` must have the shape of `x` {tuple(x.shape)}, got {tuple(x_hat.shape)}."
        )
    if codes.shape[:-1] != x.shape[:-1]:
        raise ValueError(
            f"`codes` must have the leading axes of `x` {tuple(x.shape[:-1])}, got shape "
            f"{tuple(codes.shape)}."
        )
    dtype = jnp.result_type(x, x_hat)
    return _metrics(x.astype(dtype), x_hat.astype(dtype), codes.astype(dtype))


@eqx.filter_jit
def _model_outputs(model, x, threshold):
    codes = model.encode(x) if threshold is None else model.encode(x, threshold=threshold)
    return model.decode(codes), codes


def sae_metrics(model: Any, x: jax.typing.ArrayLike, *, threshold=None) -> dict[str, jax.Array]:
    """Evaluate a sparse autoencoder on a data array in one (jit-compiled) pass.

    The codes are the model's inference codes, ``model.encode(x)`` (for
    :class:`BatchTopKSAE`, the thresholded encoder, not the training-time batch top-k).

    Args:
        model: any SAE with ``encode`` and ``decode`` (e.g. :class:`MPSAE`, :class:`TopKSAE`).
        x: ``(..., d)`` data, evaluated as one batch (``(N, K)`` codes are formed).
        threshold: optional inference threshold passed to ``model.encode`` (models whose
            ``encode`` takes one: :class:`MPSAE`'s residual-norm threshold, the adaptive
            sparsity of MP-SAE, or :class:`BatchTopKSAE`'s activation threshold).

    Returns:
        The dict of :func:`reconstruction_metrics`.

    Raises:
        ValueError: for bad data (non-floating, wrong feature dimension), or a
            ``threshold`` for a model whose ``encode`` takes none.

    Example:
        >>> import jax
        >>> from jaxspec import pursuit
        >>> sae = pursuit.TopKSAE.init(jax.random.key(0), 8, 16, k=2)
        >>> x = jax.random.normal(jax.random.key(1), (32, 8))
        >>> m = pursuit.sae_metrics(sae, x)
        >>> int(m["l0_max"]) <= 2
        True
    """
    if not (hasattr(model, "encode") and hasattr(model, "decode")):
        raise ValueError(f"`model` must have `encode` and `decode`, got {type(model).__name__}.")
    if threshold is not None and "threshold" not in inspect.signature(model.encode).parameters:
        raise ValueError(
            f"`threshold` is not supported by {type(model).__name__}.encode (no inference "
            "threshold)."
        )
    x = as_float_array(x, "x", min_ndim=1)
    x_hat, codes = _model_outputs(model, x, threshold)
    x = x.astype(x_hat.dtype)
    return _metrics(x, x_hat, codes.astype(x_hat.dtype))
