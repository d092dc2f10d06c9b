"""Sparse autoencoders (SAEs) as equinox modules: MP-SAE and the standard baselines.

Every model stores its dictionary as a ``(d, K)`` matrix with the ``K`` atoms (latent
directions) as columns, takes data with any leading batch axes, ``x`` of shape ``(..., d)``,
and offers one interface (:class:`AbstractSAE`):

* ``encode(x) -> codes (..., K)``, ``decode(codes) -> (..., d)``,
  ``model(x) -> (x_hat, codes)``;
* ``loss(x, key=None, *, dead_mask=None) -> (scalar, aux)``: the training loss (reconstruction
  plus the architecture's penalty or auxiliary terms) and a dict of scalar diagnostics that
  always holds ``"sse"``, ``"fvu"`` and ``"l0"`` of the batch;
* ``project()``: the model with its constraints re-applied (unit-norm decoder atoms).

The reconstruction term of every loss is the squared error summed over features and averaged
over samples, ``mean_b |x_b - x_hat_b|^2`` (the MP-SAE code, SAELens, ``dictionary_learning``).
:func:`train_sae` trains any of them; :func:`sae_metrics` evaluates them.

Models:

* :class:`MPSAE` (Costa et al. 2025): tied, unit-norm dictionary; the encoder is nonnegative
  matching pursuit (:func:`unrolled_mp`) stopped per sample when the support stops changing or
  the residual norm falls below a threshold, so sparsity adapts per sample and at inference.
* :class:`ReLUSAE`: ReLU encoder, L1 penalty weighted by the decoder column norms (Anthropic's
  "April update").
* :class:`TopKSAE` (Gao et al. 2024): keep the ``k`` largest ReLU activations per sample, with
  the optional aux-K loss that makes dead latents reconstruct the residual.
* :class:`BatchTopKSAE` (Bussmann et al. 2024): keep the ``k * B`` largest activations over a
  batch of ``B`` in training; a single learned threshold at inference.
* :class:`JumpReLUSAE` (Rajamanoharan et al. 2024): per-latent thresholds trained through a
  rectangle-kernel straight-through estimator, with an L0 penalty.

References:
    Costa, Fel, Lubana, Tolooshams and Ba, "From flat to hierarchical: extracting sparse
    representations with matching pursuit", arXiv:2506.03093, NeurIPS 2025.
    Bricken et al., "Towards monosemanticity", Transformer Circuits Thread, 2023; Conerly et
    al., "Circuits updates - April 2024" (the L1 penalty weighted by decoder norms).
    Gao et al., "Scaling and evaluating sparse autoencoders", arXiv:2406.04093, 2024.
    Bussmann, Leask and Nanda, "BatchTopK sparse autoencoders", arXiv:2412.06410, 2024.
    Rajamanoharan et al., "Jumping ahead: improving reconstruction fidelity with JumpReLU
    sparse autoencoders", arXiv:2407.14435, 2024.
"""

from __future__ import annotations

import abc
import functools
from typing import Any, ClassVar, Literal, Self, final

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxspec._checks import as_float_array, check_choice, check_int, check_positive
from jaxspec.pursuit._sae_metrics import batch_fvu, mean_l0, mean_sse
from jaxspec.pursuit._thresholds import check_nonnegative
from jaxspec.pursuit._unrolled import unrolled_mp

MP_GRADIENTS: tuple[str, ...] = ("full", "lean", "decoder")

# ----------------------------------------------------------------------------------------------
# shared helpers


def _float_dtype(dtype: Any) -> np.dtype:
    dtype = jax.dtypes.canonicalize_dtype(float if dtype is None else dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"`dtype` must be a floating dtype, got {dtype}.")
    return dtype


def _unit_columns(w: jax.Array) -> jax.Array:
    """Columns scaled to unit Euclidean norm (zero columns stay zero)."""
    norm = jnp.linalg.norm(w, axis=0, keepdims=True)
    return jnp.where(norm > 0, w / jnp.where(norm > 0, norm, 1), w)


def _random_atoms(key: jax.Array, d: int, num_latents: int, dtype: Any) -> jax.Array:
    d = check_int(d, "d")
    num_latents = check_int(num_latents, "num_latents")
    return _normal_unit_columns(key, (d, num_latents), _float_dtype(dtype))


@functools.partial(jax.jit, static_argnums=(1, 2))
def _normal_unit_columns(key, shape, dtype):
    return _unit_columns(jax.random.normal(key, shape, dtype))


def _input(x: Any, d: int, dtype: Any, name: str = "x") -> jax.Array:
    x = as_float_array(x, name, min_ndim=1)
    if x.shape[-1] != d:
        raise ValueError(f"`{name}` must have last axis d = {d}, got shape {tuple(x.shape)}.")
    return x.astype(dtype)


def _dead_mask(dead_mask: Any, num_latents: int) -> jax.Array | None:
    if dead_mask is None:
        return None
    dead_mask = jnp.asarray(dead_mask)
    if dead_mask.shape != (num_latents,) or dead_mask.dtype != jnp.bool_:
        raise ValueError(
            f"`dead_mask` must be a boolean array of shape ({num_latents},), got "
            f"{dead_mask.dtype} {tuple(dead_mask.shape)}."
        )
    return dead_mask


def _affine_parts(w_enc, b_enc, decoder, b_dec):
    """Validate ``(W_enc (K, d), b_enc (K,), decoder (d, K), b_dec (d,))``; common dtype."""
    decoder = as_float_array(decoder, "decoder", min_ndim=2)
    if decoder.ndim != 2:
        raise ValueError(f"`decoder` must have shape (d, K), got {tuple(decoder.shape)}.")
    d, num_latents = decoder.shape
    w_enc = as_float_array(w_enc, "w_enc", min_ndim=2)
    if w_enc.shape != (num_latents, d):
        raise ValueError(f"`w_enc` must have shape ({num_latents}, {d}), got {w_enc.shape}.")
    b_enc = as_float_array(b_enc, "b_enc")
    if b_enc.shape != (num_latents,):
        raise ValueError(f"`b_enc` must have shape ({num_latents},), got {b_enc.shape}.")
    b_dec = as_float_array(b_dec, "b_dec")
    if b_dec.shape != (d,):
        raise ValueError(f"`b_dec` must have shape ({d},), got {b_dec.shape}.")
    dtype = decoder.dtype
    return w_enc.astype(dtype), b_enc.astype(dtype), decoder, b_dec.astype(dtype)


def _tied_init(key, d, num_latents, dtype):
    """Unit-norm random decoder columns, encoder = decoder transpose, zero biases."""
    decoder = _random_atoms(key, d, num_latents, dtype)
    zeros = functools.partial(jnp.zeros, dtype=decoder.dtype)
    return decoder.T, zeros(num_latents), decoder, zeros(d)


def _scatter_last(values: jax.Array, idx: jax.Array, num_latents: int) -> jax.Array:
    """Place ``values[..., j]`` at ``idx[..., j]`` of a zero ``(..., num_latents)`` array."""
    out = jnp.zeros(values.shape[:-1] + (num_latents,), values.dtype)
    return jnp.put_along_axis(out, idx, values, axis=-1, inplace=False)


def _top_k_codes(acts: jax.Array, k: int) -> jax.Array:
    """Keep the ``k`` largest entries of each row of ``acts`` (>= 0), zero elsewhere."""
    values, idx = lax.top_k(acts, k)
    return _scatter_last(values, idx, acts.shape[-1])


def _check_k(k: Any, name: str, num_latents: int) -> int:
    k = check_int(k, name)
    if k > num_latents:
        raise ValueError(f"`{name}` must be <= the number of latents K = {num_latents}, got {k}.")
    return k


def _aux_k_loss(pre, decoder, residual, dead_mask, aux_k):
    """OpenAI's aux-K loss: the top-``aux_k`` dead latents reconstruct the (detached) residual.

    Returns the normalised MSE ``sum |e - e_hat|^2 / sum |e - mean(e)|^2`` over the batch,
    with ``e_hat = decoder @ topk_dead(relu(pre))`` (no bias); 0 when no latent is dead.
    """
    residual = lax.stop_gradient(residual)
    masked = jnp.where(dead_mask, jax.nn.relu(pre), -jnp.inf)
    values, idx = lax.top_k(masked, aux_k)
    values = jnp.where(jnp.isfinite(values), values, 0.0)  # fewer than aux_k dead latents
    recon = _scatter_last(values, idx, pre.shape[-1]) @ decoder.T
    e, e_hat = residual.reshape(-1, residual.shape[-1]), recon.reshape(-1, residual.shape[-1])
    dev = e - jnp.mean(e, axis=0)
    num = jnp.sum((e - e_hat) ** 2)
    den = jnp.sum(dev * dev)
    nmse = jnp.where(den > 0, num / jnp.where(den > 0, den, 1), 0.0)
    return jnp.where(jnp.any(dead_mask), nmse, 0.0)


def _diagnostics(x, x_hat, codes) -> dict[str, jax.Array]:
    return {
        "sse": mean_sse(x, x_hat),
        "fvu": lax.stop_gradient(batch_fvu(x, x_hat)),
        "l0": lax.stop_gradient(mean_l0(codes)),
    }


# ----------------------------------------------------------------------------------------------
# interface


class AbstractSAE(eqx.Module):
    """Interface of the sparse autoencoders trained by :func:`train_sae`.

    A subclass stores its ``(d, K)`` decoder (atoms as columns) in the field named by the class
    variable ``decoder_field`` and implements ``encode``, ``decode``, ``project`` and
    ``_loss_terms(x, key, dead_mask) -> (loss, aux, codes)``. Array fields named in
    ``frozen_fields`` are state, not parameters: :func:`train_sae` never passes them to the
    optimizer. A subclass may define ``_after_step(codes) -> model`` to update such state from
    the training codes of each step (the BatchTopK threshold).
    """

    decoder_field: ClassVar[str] = "decoder"
    frozen_fields: ClassVar[tuple[str, ...]] = ()

    @abc.abstractmethod
    def encode(self, x: jax.typing.ArrayLike) -> jax.Array:
        """Codes ``(..., K)`` of data ``(..., d)``."""

    @abc.abstractmethod
    def decode(self, codes: jax.typing.ArrayLike) -> jax.Array:
        """Reconstructions ``(..., d)`` of codes ``(..., K)``."""

    @abc.abstractmethod
    def project(self) -> Self:
        """The model with its constraints (unit-norm atoms) re-applied."""

    @abc.abstractmethod
    def _loss_terms(self, x, key, dead_mask) -> tuple[jax.Array, dict[str, jax.Array], jax.Array]:
        """``(loss, aux, codes)`` of a training batch ``x`` (validated, model dtype)."""

    @property
    def dictionary_matrix(self) -> jax.Array:
        """The ``(d, K)`` decoder matrix (atoms as columns)."""
        return getattr(self, self.decoder_field)

    @property
    def input_dim(self) -> int:
        """The data dimension ``d``."""
        return self.dictionary_matrix.shape[0]

    @property
    def num_latents(self) -> int:
        """The number of latents (atoms) ``K``."""
        return self.dictionary_matrix.shape[1]

    @eqx.filter_jit
    def __call__(self, x: jax.typing.ArrayLike) -> tuple[jax.Array, jax.Array]:
        """``(x_hat, codes)`` of data ``x`` of shape ``(..., d)`` (inference encoder)."""
        codes = self.encode(x)
        return self.decode(codes), codes

    @eqx.filter_jit
    def loss(
        self, x: jax.typing.ArrayLike, key: jax.Array | None = None, *, dead_mask=None
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Training loss of a batch ``x`` of shape ``(..., d)`` and a dict of scalar diagnostics.

        Args:
            x: the batch; every leading axis counts as a sample axis.
            key: unused by the models here (kept for stochastic variants).
            dead_mask: optional ``(K,)`` boolean mask of dead latents, for the auxiliary
                dead-latent loss of :class:`TopKSAE` and :class:`BatchTopKSAE` (ignored by
                the other models).

        Returns:
            ``(loss, aux)`` with ``aux`` holding at least ``"sse"`` (the reconstruction term),
            ``"fvu"`` and ``"l0"`` (mean nonzeros per sample) of the batch.
        """
        x = _input(x, self.input_dim, self.dictionary_matrix.dtype)
        loss, aux, _ = self._loss_terms(x, key, _dead_mask(dead_mask, self.num_latents))
        return loss, aux


# ----------------------------------------------------------------------------------------------
# MP-SAE


@final
class MPSAE(AbstractSAE):
    """Matching pursuit sparse autoencoder (MP-SAE; Costa et al. 2025).

    One unit-norm dictionary ``D`` (``(d, K)``, atoms as columns) is both encoder and decoder.
    The encoder is nonnegative matching pursuit on ``r = x - b_pre``: each step picks
    ``j = argmax_i relu(<r, d_i>)``, adds ``c_j = <r, d_j>`` to code ``j`` and subtracts
    ``c_j d_j`` from the residual; an atom may be picked again. A sample stops when its support
    did not change in a step (a re-selection, or no positive correlation left) or when
    ``|r| < threshold``, and at most ``max_steps`` steps run (:func:`unrolled_mp` with
    ``selection="relu", reselect=True, stop="both"``). With ``fixed_k`` every sample takes
    exactly ``k`` steps instead (``stop="none"``). The decoder is ``x_hat = D z + b_pre``.

    The loss is the squared error summed over features and averaged over samples, with no
    sparsity penalty: sparsity comes from the stopping rule, and the residual threshold can be
    changed at inference (``encode(x, threshold=t)``) to trade reconstruction for sparsity
    with one trained model.

    Differences from the paper's code: ``max_steps`` bounds the pursuit (the paper loops until
    every sample stops; each of its samples stops within ``K + 1`` steps, so the default
    ``max_steps = K + 1`` reproduces it; a smaller budget trades exactness for speed, as
    SAELens's ``max_iterations``); a sample with ``|x - b_pre| < threshold`` takes no step
    (the paper applies one before testing); and :meth:`project` (called by :func:`train_sae`
    after each update) keeps the atoms on the unit sphere, whereas the paper normalises them
    only at initialisation.

    Attributes:
        dictionary: ``(d, K)`` atoms as columns (the decoder; tied encoder).
        b_pre: ``(d,)`` learned pre-bias subtracted before pursuit and added back after
            decoding, or ``None`` (the paper has none).
        threshold: scalar residual-norm threshold of the stopping rule (state, not trained;
            default 0.05 as in the paper's toy configuration).
        max_steps: the number of pursuit steps run (static).
        stop: ``"both"`` (support or residual rule) or ``"none"`` (fixed ``k``) (static).
        gradient: how :func:`unrolled_mp` is differentiated (static): ``"full"`` through
            the whole unrolled loop as in the paper, ``"lean"`` (the same gradient, with the
            argmax under ``stop_gradient`` and the selected value recomputed from the
            gathered atom: no ``(batch, K)`` tensor stored per step, as the SAELens fix), or
            ``"decoder"`` (codes treated as constants, gradient through decoding only).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxspec import pursuit
        >>> sae = pursuit.MPSAE.init(jax.random.key(0), 8, 16)
        >>> x = jax.random.normal(jax.random.key(1), (4, 8))
        >>> x_hat, codes = sae(x)
        >>> bool(jnp.all(codes >= 0))
        True
        >>> loose = sae.encode(x, threshold=2.0)  # earlier stop: sparser codes
        >>> bool(jnp.all((loose != 0).sum(-1) <= (codes != 0).sum(-1)))
        True

    References:
        Costa, Fel, Lubana, Tolooshams and Ba, "From flat to hierarchical: extracting sparse
        representations with matching pursuit", arXiv:2506.03093, NeurIPS 2025.
    """

    dictionary: jax.Array
    b_pre: jax.Array | None
    threshold: jax.Array
    max_steps: int = eqx.field(static=True)
    stop: str = eqx.field(static=True)
    gradient: str = eqx.field(static=True)

    decoder_field: ClassVar[str] = "dictionary"
    frozen_fields: ClassVar[tuple[str, ...]] = ("threshold",)

    def __init__(
        self,
        dictionary: jax.typing.ArrayLike,
        *,
        threshold: jax.typing.ArrayLike = 0.05,
        max_steps: int | None = None,
        fixed_k: int | None = None,
        b_pre: jax.typing.ArrayLike | None = None,
        gradient: Literal["full", "lean", "decoder"] = "full",
    ):
        """Build from a dictionary (see :meth:`init` for a random one).

        Args:
            dictionary: ``(d, K)`` atoms as columns, used as given (call :meth:`project`
                to normalise them).
            threshold: residual-norm threshold ``> 0`` of the stopping rule.
            max_steps: pursuit steps, ``>= 1`` (static); default ``K + 1``.
            fixed_k: run exactly this many steps per sample, ignoring the stopping rule
                (``stop="none"``); excludes ``max_steps``.
            b_pre: optional ``(d,)`` pre-bias.
            gradient: ``"full"`` (default), ``"lean"`` or ``"decoder"``.

        Raises:
            ValueError: for a dictionary that is not 2-D and floating, a non-positive
                ``threshold``, ``max_steps``/``fixed_k`` below 1 or both given, a ``b_pre``
                not of shape ``(d,)``, or an unknown ``gradient``.
        """
        dictionary = as_float_array(dictionary, "dictionary", min_ndim=2)
        if dictionary.ndim != 2:
            raise ValueError(f"`dictionary` must have shape (d, K), got {dictionary.shape}.")
        d, num_latents = dictionary.shape
        check_positive(threshold, "threshold")
        if fixed_k is not None and max_steps is not None:
            raise ValueError("`fixed_k` and `max_steps` exclude each other; give one.")
        if fixed_k is not None:
            self.max_steps, self.stop = check_int(fixed_k, "fixed_k"), "none"
        else:
            steps = num_latents + 1 if max_steps is None else max_steps
            self.max_steps, self.stop = check_int(steps, "max_steps"), "both"
        self.gradient = check_choice(gradient, "gradient", MP_GRADIENTS)
        if b_pre is not None:
            b_pre = as_float_array(b_pre, "b_pre")
            if b_pre.shape != (d,):
                raise ValueError(f"`b_pre` must have shape ({d},), got {b_pre.shape}.")
            b_pre = b_pre.astype(dictionary.dtype)
        self.dictionary = dictionary
        self.b_pre = b_pre
        self.threshold = jnp.asarray(threshold, dictionary.dtype)

    @classmethod
    def init(
        cls,
        key: jax.Array,
        d: int,
        num_latents: int,
        *,
        threshold: float = 0.05,
        max_steps: int | None = None,
        fixed_k: int | None = None,
        use_b_pre: bool = False,
        gradient: Literal["full", "lean", "decoder"] = "full",
        dtype: Any = None,
    ) -> MPSAE:
        """An MP-SAE with Gaussian random unit-norm atoms (and a zero ``b_pre`` if asked).

        Args:
            key: PRNG key of the atoms.
            d: data dimension.
            num_latents: number of atoms ``K``.
            threshold, max_steps, fixed_k, gradient: as in the constructor.
            use_b_pre: learn a pre-bias (initialised to zero).
            dtype: floating dtype (default: JAX's default float).

        Returns:
            The model.

        Raises:
            ValueError: for ``d`` or ``num_latents`` below 1, a non-floating ``dtype``, or a
                bad option (see the constructor).
        """
        atoms = _random_atoms(key, d, num_latents, dtype)
        b_pre = jnp.zeros(d, atoms.dtype) if use_b_pre else None
        return cls(
            atoms,
            threshold=threshold,
            max_steps=max_steps,
            fixed_k=fixed_k,
            b_pre=b_pre,
            gradient=gradient,
        )

    def encode(
        self, x: jax.typing.ArrayLike, threshold: jax.typing.ArrayLike | None = None
    ) -> jax.Array:
        """MP codes ``(..., K)`` of ``x`` (``(..., d)``), all ``>= 0``.

        Args:
            x: data.
            threshold: optional residual-norm threshold overriding the model's (may be
                traced, e.g. swept with ``vmap``): a larger one stops earlier (sparser codes,
                larger error). Ignored with ``fixed_k``.

        Raises:
            ValueError: for non-floating ``x``, a last axis other than ``d``, or a concrete
                non-positive ``threshold``.
        """
        x = _input(x, self.input_dim, self.dictionary.dtype)
        if threshold is None:
            threshold = self.threshold
        else:
            check_positive(threshold, "threshold")
            threshold = jnp.asarray(threshold, self.dictionary.dtype)
        if self.b_pre is not None:
            x = x - self.b_pre
        return unrolled_mp(
            self.dictionary,
            x,
            self.max_steps,
            selection="relu",
            reselect=True,
            stop=self.stop,
            threshold=None if self.stop == "none" else threshold,
            gradient=self.gradient,
        ).codes

    @eqx.filter_jit
    def decode(self, codes: jax.typing.ArrayLike) -> jax.Array:
        """``D z + b_pre`` for codes ``z`` of shape ``(..., K)``."""
        codes = _input(codes, self.num_latents, self.dictionary.dtype, "codes")
        out = codes @ self.dictionary.T
        return out if self.b_pre is None else out + self.b_pre

    def project(self) -> MPSAE:
        """The model with unit-norm atoms."""
        return eqx.tree_at(lambda m: m.dictionary, self, _unit_columns(self.dictionary))

    def _loss_terms(self, x, key, dead_mask):
        codes = self.encode(x)
        x_hat = self.decode(codes)
        aux = _diagnostics(x, x_hat, codes)
        return aux["sse"], aux, codes


# ----------------------------------------------------------------------------------------------
# ReLU (L1) SAE


@final
class ReLUSAE(AbstractSAE):
    """ReLU sparse autoencoder with an L1 penalty (the "standard" SAE).

    ``codes = relu(W_enc (x - b_dec) + b_enc)``, ``x_hat = decoder codes + b_dec``, and the loss
    is ``mean_b [ |x_b - x_hat_b|^2 + l1_coeff * sum_k |codes_bk| |decoder_k| ]``: the L1
    penalty weights each code by its decoder column norm, as in Anthropic's April 2024 update
    (and SAELens ``standard``), so the decoder needs no norm constraint and the penalty cannot
    be dodged by shrinking codes and growing atoms. ``normalize_decoder=True`` instead keeps
    unit-norm columns through :meth:`project` (the 2023 recipe); the weights are then all 1.

    Attributes:
        w_enc: ``(K, d)`` encoder.
        b_enc: ``(K,)`` encoder bias.
        decoder: ``(d, K)`` atoms as columns.
        b_dec: ``(d,)`` decoder bias, also subtracted from the input.
        l1_coeff: penalty weight (an array, so it can be swept under ``vmap``; not trained).
            It depends on the scale of the data.
        normalize_decoder: whether :meth:`project` normalises the decoder columns (static).

    Example:
        >>> import jax
        >>> from jaxspec import pursuit
        >>> sae = pursuit.ReLUSAE.init(jax.random.key(0), 8, 16, l1_coeff=1e-2)
        >>> loss, aux = sae.loss(jax.random.normal(jax.random.key(1), (4, 8)))
        >>> sorted(aux)
        ['fvu', 'l0', 'l1', 'sse']

    References:
        Bricken et al., "Towards monosemanticity", Transformer Circuits Thread, 2023.
        Conerly et al., "Circuits updates - April 2024", Transformer Circuits Thread, 2024.
    """

    w_enc: jax.Array
    b_enc: jax.Array
    decoder: jax.Array
    b_dec: jax.Array
    l1_coeff: jax.Array
    normalize_decoder: bool = eqx.field(static=True)

    frozen_fields: ClassVar[tuple[str, ...]] = ("l1_coeff",)

    def __init__(self, w_enc, b_enc, decoder, b_dec, *, l1_coeff=1e-2, normalize_decoder=False):
        """Build from the weights (see :meth:`init`).

        Raises:
            ValueError: for inconsistent shapes, non-floating weights, or a negative
                ``l1_coeff``.
        """
        self.w_enc, self.b_enc, self.decoder, self.b_dec = _affine_parts(
            w_enc, b_enc, decoder, b_dec
        )
        check_nonnegative(l1_coeff, "l1_coeff")
        self.l1_coeff = jnp.asarray(l1_coeff, self.decoder.dtype)  # traced: sweepable
        self.normalize_decoder = bool(normalize_decoder)

    @classmethod
    def init(
        cls,
        key: jax.Array,
        d: int,
        num_latents: int,
        *,
        l1_coeff: float = 1e-2,
        normalize_decoder: bool = False,
        dtype: Any = None,
    ) -> ReLUSAE:
        """Unit-norm random decoder columns, ``w_enc = decoder.T``, zero biases.

        Raises:
            ValueError: for ``d`` or ``num_latents`` below 1, a non-floating ``dtype`` or a
                negative ``l1_coeff``.
        """
        return cls(
            *_tied_init(key, d, num_latents, dtype),
            l1_coeff=l1_coeff,
            normalize_decoder=normalize_decoder,
        )

    @eqx.filter_jit
    def encode(self, x: jax.typing.ArrayLike) -> jax.Array:
        """``relu(W_enc (x - b_dec) + b_enc)``."""
        x = _input(x, self.input_dim, self.decoder.dtype)
        return jax.nn.relu((x - self.b_dec) @ self.w_enc.T + self.b_enc)

    @eqx.filter_jit
    def decode(self, codes: jax.typing.ArrayLike) -> jax.Array:
        """``decoder codes + b_dec``."""
        codes = _input(codes, self.num_latents, self.decoder.dtype, "codes")
        return codes @ self.decoder.T + self.b_dec

    def project(self) -> ReLUSAE:
        """Unit-norm decoder columns when ``normalize_decoder``, else the model unchanged."""
        if not self.normalize_decoder:
            return self
        return eqx.tree_at(lambda m: m.decoder, self, _unit_columns(self.decoder))

    def _loss_terms(self, x, key, dead_mask):
        codes = self.encode(x)
        x_hat = self.decode(codes)
        aux = _diagnostics(x, x_hat, codes)
        col_norms = jnp.linalg.norm(self.decoder, axis=0)
        aux["l1"] = jnp.mean(jnp.sum(jnp.abs(codes) * col_norms, axis=-1))
        return aux["sse"] + self.l1_coeff * aux["l1"], aux, codes


# ----------------------------------------------------------------------------------------------
# TopK and BatchTopK


def _aux_k_default(aux_k, d, num_latents):
    if aux_k is None:
        return max(1, min(num_latents, d // 2))
    return _check_k(aux_k, "aux_k", num_latents)


@final
class TopKSAE(AbstractSAE):
    """TopK sparse autoencoder (Gao et al. 2024).

    ``codes = topk_k(relu(W_enc (x - b_dec) + b_enc))``: each sample keeps its ``k`` largest
    positive pre-activations (fewer if fewer are positive); ``x_hat = decoder codes + b_dec``
    with unit-norm decoder columns (:meth:`project`).

    The loss is the summed squared error averaged over samples plus, when ``loss`` is given a
    ``dead_mask`` (``train_sae(..., aux=True)`` does), ``aux_coeff`` times the aux-K loss:
    the ``aux_k`` largest activations among the dead latents reconstruct the residual
    ``e = x - x_hat`` (detached, without bias), scored by the normalised MSE
    ``sum |e - e_hat|^2 / sum |e - mean(e)|^2`` over the batch (OpenAI); the term is 0 when no
    latent is dead. The mix of an unnormalised main term with a normalised aux term follows
    ``dictionary_learning``'s TopK trainer, whose defaults are used: ``aux_coeff = 1/32`` and
    ``aux_k = d // 2``.

    Attributes:
        w_enc: ``(K, d)`` encoder.
        b_enc: ``(K,)`` encoder bias.
        decoder: ``(d, K)`` atoms as columns.
        b_dec: ``(d,)`` decoder bias, also subtracted from the input.
        k: active latents per sample (static).
        aux_k: latents of the aux-K reconstruction (static).
        aux_coeff: weight of the aux-K loss (static).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxspec import pursuit
        >>> sae = pursuit.TopKSAE.init(jax.random.key(0), 8, 16, k=3)
        >>> codes = sae.encode(jax.random.normal(jax.random.key(1), (5, 8)))
        >>> bool(jnp.all(jnp.sum(codes != 0, axis=-1) <= 3))
        True

    References:
        Gao et al., "Scaling and evaluating sparse autoencoders", arXiv:2406.04093, 2024.
    """

    w_enc: jax.Array
    b_enc: jax.Array
    decoder: jax.Array
    b_dec: jax.Array
    k: int = eqx.field(static=True)
    aux_k: int = eqx.field(static=True)
    aux_coeff: float = eqx.field(static=True)

    def __init__(self, w_enc, b_enc, decoder, b_dec, *, k, aux_k=None, aux_coeff=1 / 32):
        """Build from the weights (see :meth:`init`).

        Raises:
            ValueError: for inconsistent shapes, non-floating weights, ``k`` or ``aux_k``
                outside ``[1, K]``, or a negative ``aux_coeff``.
        """
        self.w_enc, self.b_enc, self.decoder, self.b_dec = _affine_parts(
            w_enc, b_enc, decoder, b_dec
        )
        d, num_latents = self.decoder.shape
        self.k = _check_k(k, "k", num_latents)
        self.aux_k = _aux_k_default(aux_k, d, num_latents)
        check_nonnegative(aux_coeff, "aux_coeff")
        self.aux_coeff = float(aux_coeff)

    @classmethod
    def init(
        cls,
        key: jax.Array,
        d: int,
        num_latents: int,
        *,
        k: int,
        aux_k: int | None = None,
        aux_coeff: float = 1 / 32,
        dtype: Any = None,
    ) -> TopKSAE:
        """Unit-norm random decoder columns, ``w_enc = decoder.T``, zero biases (OpenAI).

        Raises:
            ValueError: for ``d``/``num_latents`` below 1, ``k`` or ``aux_k`` outside
                ``[1, K]``, a non-floating ``dtype`` or a negative ``aux_coeff``.
        """
        return cls(*_tied_init(key, d, num_latents, dtype), k=k, aux_k=aux_k, aux_coeff=aux_coeff)

    def _pre(self, x):
        return (x - self.b_dec) @ self.w_enc.T + self.b_enc

    @eqx.filter_jit
    def encode(self, x: jax.typing.ArrayLike) -> jax.Array:
        """The ``k`` largest positive pre-activations of each sample, zero elsewhere."""
        x = _input(x, self.input_dim, self.decoder.dtype)
        return _top_k_codes(jax.nn.relu(self._pre(x)), self.k)

    @eqx.filter_jit
    def decode(self, codes: jax.typing.ArrayLike) -> jax.Array:
        """``decoder codes + b_dec``."""
        codes = _input(codes, self.num_latents, self.decoder.dtype, "codes")
        return codes @ self.decoder.T + self.b_dec

    def project(self) -> TopKSAE:
        """The model with unit-norm decoder columns."""
        return eqx.tree_at(lambda m: m.decoder, self, _unit_columns(self.decoder))

    def _loss_terms(self, x, key, dead_mask):
        pre = self._pre(x)
        codes = _top_k_codes(jax.nn.relu(pre), self.k)
        x_hat = self.decode(codes)
        aux = _diagnostics(x, x_hat, codes)
        loss = aux["sse"]
        if dead_mask is not None:
            aux["aux_loss"] = _aux_k_loss(pre, self.decoder, x - x_hat, dead_mask, self.aux_k)
            loss = loss + self.aux_coeff * aux["aux_loss"]
        return loss, aux, codes


@final
class BatchTopKSAE(AbstractSAE):
    """BatchTopK sparse autoencoder (Bussmann, Leask and Nanda 2024).

    Training (``loss``, :meth:`encode_batch`): the ReLU pre-activations of a batch of ``B``
    samples (all leading axes of ``x``) keep their ``k * B`` largest entries over the whole
    batch, so samples share a budget of ``k`` active latents on average. Inference
    (:meth:`encode`): one global threshold, ``codes = a * (a > threshold)`` with
    ``a = relu(W_enc (x - b_dec) + b_enc)``, which makes a sample's codes independent of the
    rest of the batch.

    The threshold is state, not a parameter: :func:`train_sae` sets it after each step from
    the smallest positive activation kept by the batch top-k, ``t <- m`` at the first step
    and then the exponential moving average ``t <- decay t + (1 - decay) m``
    (``dictionary_learning``'s estimate, ``decay = 0.999`` there and by default here). Until a
    threshold is estimated (``threshold < 0``, the initial value) :meth:`encode` falls back to
    per-sample top-``k`` (``dictionary_learning`` keeps every positive activation instead).
    The aux-K dead-latent loss is that of :class:`TopKSAE`.

    Attributes:
        w_enc: ``(K, d)`` encoder.
        b_enc: ``(K,)`` encoder bias.
        decoder: ``(d, K)`` atoms as columns (unit norm through :meth:`project`).
        b_dec: ``(d,)`` decoder bias, also subtracted from the input.
        threshold: scalar inference threshold (state; ``-1`` until estimated).
        k: mean active latents per sample in training (static).
        aux_k: latents of the aux-K reconstruction (static).
        aux_coeff: weight of the aux-K loss (static).
        threshold_decay: EMA decay of the threshold estimate (static).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxspec import pursuit
        >>> sae = pursuit.BatchTopKSAE.init(jax.random.key(0), 8, 16, k=2)
        >>> codes = sae.encode_batch(jax.random.normal(jax.random.key(1), (10, 8)))
        >>> int(jnp.sum(codes != 0))
        20

    References:
        Bussmann, Leask and Nanda, "BatchTopK sparse autoencoders", arXiv:2412.06410, 2024.
    """

    w_enc: jax.Array
    b_enc: jax.Array
    decoder: jax.Array
    b_dec: jax.Array
    threshold: jax.Array
    k: int = eqx.field(static=True)
    aux_k: int = eqx.field(static=True)
    aux_coeff: float = eqx.field(static=True)
    threshold_decay: float = eqx.field(static=True)

    frozen_fields: ClassVar[tuple[str, ...]] = ("threshold",)

    def __init__(
        self,
        w_enc,
        b_enc,
        decoder,
        b_dec,
        *,
        k,
        threshold=-1.0,
        aux_k=None,
        aux_coeff=1 / 32,
        threshold_decay=0.999,
    ):
        """Build from the weights (see :meth:`init`).

        Raises:
            ValueError: for inconsistent shapes, non-floating weights, ``k`` or ``aux_k``
                outside ``[1, K]``, a negative ``aux_coeff``, or ``threshold_decay`` outside
                ``[0, 1)``.
        """
        self.w_enc, self.b_enc, self.decoder, self.b_dec = _affine_parts(
            w_enc, b_enc, decoder, b_dec
        )
        d, num_latents = self.decoder.shape
        self.k = _check_k(k, "k", num_latents)
        self.aux_k = _aux_k_default(aux_k, d, num_latents)
        check_nonnegative(aux_coeff, "aux_coeff")
        self.aux_coeff = float(aux_coeff)
        if not 0 <= threshold_decay < 1:
            raise ValueError(f"`threshold_decay` must be in [0, 1), got {threshold_decay!r}.")
        self.threshold_decay = float(threshold_decay)
        self.threshold = jnp.asarray(threshold, self.decoder.dtype)
        if self.threshold.shape != ():
            raise ValueError(f"`threshold` must be a scalar, got shape {self.threshold.shape}.")

    @classmethod
    def init(
        cls,
        key: jax.Array,
        d: int,
        num_latents: int,
        *,
        k: int,
        aux_k: int | None = None,
        aux_coeff: float = 1 / 32,
        threshold_decay: float = 0.999,
        dtype: Any = None,
    ) -> BatchTopKSAE:
        """Unit-norm random decoder columns, ``w_enc = decoder.T``, zero biases, no threshold.

        Raises:
            ValueError: as the constructor, and for ``d``/``num_latents`` below 1 or a
                non-floating ``dtype``.
        """
        return cls(
            *_tied_init(key, d, num_latents, dtype),
            k=k,
            aux_k=aux_k,
            aux_coeff=aux_coeff,
            threshold_decay=threshold_decay,
        )

    def _pre(self, x):
        return (x - self.b_dec) @ self.w_enc.T + self.b_enc

    def encode(
        self, x: jax.typing.ArrayLike, threshold: jax.typing.ArrayLike | None = None
    ) -> jax.Array:
        """Inference codes: ReLU activations above the threshold (per-sample top-k before one
        is estimated).

        Args:
            x: data ``(..., d)``.
            threshold: optional threshold overriding the model's (may be traced); a negative
                value selects the per-sample top-``k`` fallback.
        """
        x = _input(x, self.input_dim, self.decoder.dtype)
        t = self.threshold if threshold is None else jnp.asarray(threshold, self.decoder.dtype)
        acts = jax.nn.relu(self._pre(x))
        return jnp.where(t < 0, _top_k_codes(acts, self.k), jnp.where(acts > t, acts, 0.0))

    @eqx.filter_jit
    def encode_batch(self, x: jax.typing.ArrayLike) -> jax.Array:
        """Training codes: the ``k * B`` largest ReLU activations over the batch of ``B``."""
        x = _input(x, self.input_dim, self.decoder.dtype)
        return self._batch_codes(jax.nn.relu(self._pre(x)))

    def _batch_codes(self, acts):
        flat = acts.reshape(-1)
        values, idx = lax.top_k(flat, self.k * (flat.size // acts.shape[-1]))
        return jnp.zeros_like(flat).at[idx].set(values).reshape(acts.shape)

    @eqx.filter_jit
    def decode(self, codes: jax.typing.ArrayLike) -> jax.Array:
        """``decoder codes + b_dec``."""
        codes = _input(codes, self.num_latents, self.decoder.dtype, "codes")
        return codes @ self.decoder.T + self.b_dec

    def project(self) -> BatchTopKSAE:
        """The model with unit-norm decoder columns."""
        return eqx.tree_at(lambda m: m.decoder, self, _unit_columns(self.decoder))

    def _loss_terms(self, x, key, dead_mask):
        pre = self._pre(x)
        codes = self._batch_codes(jax.nn.relu(pre))
        x_hat = self.decode(codes)
        aux = _diagnostics(x, x_hat, codes)
        loss = aux["sse"]
        if dead_mask is not None:
            aux["aux_loss"] = _aux_k_loss(pre, self.decoder, x - x_hat, dead_mask, self.aux_k)
            loss = loss + self.aux_coeff * aux["aux_loss"]
        return loss, aux, codes

    def _after_step(self, codes: jax.Array) -> BatchTopKSAE:
        """Threshold update from the training codes of a step (see the class docstring)."""
        codes = lax.stop_gradient(codes)
        positive = codes > 0
        smallest = jnp.min(jnp.where(positive, codes, jnp.inf))
        t = self.threshold
        ema = self.threshold_decay * t + (1 - self.threshold_decay) * smallest
        new = jnp.where(jnp.any(positive), jnp.where(t < 0, smallest, ema), t)
        return eqx.tree_at(lambda m: m.threshold, self, new.astype(t.dtype))


# ----------------------------------------------------------------------------------------------
# JumpReLU


def _sum_to(g: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    lead = g.ndim - len(shape)
    return jnp.sum(g, axis=tuple(range(lead))) if lead else g


def _rectangle(u: jax.Array) -> jax.Array:
    return (jnp.abs(u) < 0.5).astype(u.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _jump_relu(z, theta, bandwidth):
    return jnp.where(z > theta, z, 0.0)


def _jump_relu_fwd(z, theta, bandwidth):
    return _jump_relu(z, theta, bandwidth), (z, theta)


def _jump_relu_bwd(bandwidth, res, g):
    z, theta = res
    g_z = jnp.where(z > theta, g, 0.0)
    g_theta = -(theta / bandwidth) * _rectangle((z - theta) / bandwidth) * g
    return g_z, _sum_to(g_theta, theta.shape)


_jump_relu.defvjp(_jump_relu_fwd, _jump_relu_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _heaviside(z, theta, bandwidth):
    return (z > theta).astype(z.dtype)


def _heaviside_fwd(z, theta, bandwidth):
    return _heaviside(z, theta, bandwidth), (z, theta)


def _heaviside_bwd(bandwidth, res, g):
    z, theta = res
    g_theta = -(1 / bandwidth) * _rectangle((z - theta) / bandwidth) * g
    return jnp.zeros_like(z), _sum_to(g_theta, theta.shape)


_heaviside.defvjp(_heaviside_fwd, _heaviside_bwd)


@final
class JumpReLUSAE(AbstractSAE):
    """JumpReLU sparse autoencoder (Rajamanoharan et al. 2024).

    ``codes = z * H(z - theta)`` with ``z = W_enc (x - b_dec) + b_enc`` and one learned
    threshold ``theta_k > 0`` per latent (stored as ``log_threshold``); the loss is
    ``mean_b [ |x_b - x_hat_b|^2 + l0_coeff * sum_k H(z_bk - theta_k) ]``. The step function
    has zero derivative almost everywhere, so ``theta`` is trained through the paper's
    straight-through estimator with the rectangle kernel ``K(u) = 1{|u| < 1/2}`` of width
    ``bandwidth`` ``eps``: ``d/dtheta JumpReLU = -(theta/eps) K((z - theta)/eps)`` and
    ``d/dtheta H = -(1/eps) K((z - theta)/eps)``; the codes' derivative in ``z`` is the exact
    ``H(z - theta)`` and the L0 term gives ``z`` none. The decoder columns are kept unit norm
    by :meth:`project`. Defaults: ``theta = 0.001`` at init and ``bandwidth = 0.001`` (the
    paper's values); ``l0_coeff`` depends on the data scale.

    Attributes:
        w_enc: ``(K, d)`` encoder.
        b_enc: ``(K,)`` encoder bias.
        decoder: ``(d, K)`` atoms as columns.
        b_dec: ``(d,)`` decoder bias, also subtracted from the input.
        log_threshold: ``(K,)`` logarithm of the thresholds.
        bandwidth: kernel width ``eps`` of the estimator (static).
        l0_coeff: weight of the L0 penalty (static).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxspec import pursuit
        >>> sae = pursuit.JumpReLUSAE.init(jax.random.key(0), 8, 16, threshold=0.5)
        >>> codes = sae.encode(jax.random.normal(jax.random.key(1), (5, 8)))
        >>> bool(jnp.all((codes == 0) | (codes > 0.5)))
        True

    References:
        Rajamanoharan, Lieberum, Sonnerat, Conmy, Varma, Kramar and Nanda, "Jumping ahead:
        improving reconstruction fidelity with JumpReLU sparse autoencoders",
        arXiv:2407.14435, 2024.
    """

    w_enc: jax.Array
    b_enc: jax.Array
    decoder: jax.Array
    b_dec: jax.Array
    log_threshold: jax.Array
    l0_coeff: jax.Array
    bandwidth: float = eqx.field(static=True)

    frozen_fields: ClassVar[tuple[str, ...]] = ("l0_coeff",)

    def __init__(
        self, w_enc, b_enc, decoder, b_dec, log_threshold, *, bandwidth=0.001, l0_coeff=1e-2
    ):
        """Build from the weights (see :meth:`init`).

        Raises:
            ValueError: for inconsistent shapes, non-floating weights, a non-positive
                ``bandwidth`` or a negative ``l0_coeff``.
        """
        self.w_enc, self.b_enc, self.decoder, self.b_dec = _affine_parts(
            w_enc, b_enc, decoder, b_dec
        )
        num_latents = self.decoder.shape[1]
        log_threshold = as_float_array(log_threshold, "log_threshold")
        if log_threshold.shape != (num_latents,):
            raise ValueError(
                f"`log_threshold` must have shape ({num_latents},), got {log_threshold.shape}."
            )
        self.log_threshold = log_threshold.astype(self.decoder.dtype)
        check_positive(bandwidth, "bandwidth")
        check_nonnegative(l0_coeff, "l0_coeff")
        self.bandwidth = float(bandwidth)
        self.l0_coeff = jnp.asarray(l0_coeff, self.decoder.dtype)  # traced: sweepable

    @classmethod
    def init(
        cls,
        key: jax.Array,
        d: int,
        num_latents: int,
        *,
        threshold: float = 0.001,
        bandwidth: float = 0.001,
        l0_coeff: float = 1e-2,
        dtype: Any = None,
    ) -> JumpReLUSAE:
        """Unit-norm random decoder columns, ``w_enc = decoder.T``, zero biases, one threshold.

        Raises:
            ValueError: for ``d``/``num_latents`` below 1, a non-positive ``threshold`` or
                ``bandwidth``, a negative ``l0_coeff`` or a non-floating ``dtype``.
        """
        check_positive(threshold, "threshold")
        w_enc, b_enc, decoder, b_dec = _tied_init(key, d, num_latents, dtype)
        log_threshold = jnp.full(decoder.shape[1], np.log(threshold), decoder.dtype)
        return cls(
            w_enc, b_enc, decoder, b_dec, log_threshold, bandwidth=bandwidth, l0_coeff=l0_coeff
        )

    @property
    def thresholds(self) -> jax.Array:
        """The ``(K,)`` thresholds ``theta = exp(log_threshold)``."""
        return jnp.exp(self.log_threshold)

    def _pre(self, x):
        return (x - self.b_dec) @ self.w_enc.T + self.b_enc

    @eqx.filter_jit
    def encode(self, x: jax.typing.ArrayLike) -> jax.Array:
        """``z * H(z - theta)`` of the pre-activations ``z``."""
        x = _input(x, self.input_dim, self.decoder.dtype)
        return _jump_relu(self._pre(x), self.thresholds, self.bandwidth)

    @eqx.filter_jit
    def decode(self, codes: jax.typing.ArrayLike) -> jax.Array:
        """``decoder codes + b_dec``."""
        codes = _input(codes, self.num_latents, self.decoder.dtype, "codes")
        return codes @ self.decoder.T + self.b_dec

    def project(self) -> JumpReLUSAE:
        """The model with unit-norm decoder columns."""
        return eqx.tree_at(lambda m: m.decoder, self, _unit_columns(self.decoder))

    def _loss_terms(self, x, key, dead_mask):
        pre = self._pre(x)
        theta = self.thresholds
        codes = _jump_relu(pre, theta, self.bandwidth)
        x_hat = self.decode(codes)
        aux = _diagnostics(x, x_hat, codes)
        aux["l0_penalty"] = jnp.mean(jnp.sum(_heaviside(pre, theta, self.bandwidth), axis=-1))
        return aux["sse"] + self.l0_coeff * aux["l0_penalty"], aux, codes
