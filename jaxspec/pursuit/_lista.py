"""LISTA: learned ISTA, a fixed number of thresholded layers with trainable weights.

References:
    Gregor and LeCun, "Learning fast approximations of sparse coding", ICML 2010.
"""

from __future__ import annotations

import functools
from typing import Any, Literal, final

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jax import lax

from jaxspec._checks import as_float_array, check_choice, check_int
from jaxspec.pursuit._ista import lipschitz
from jaxspec.pursuit._thresholds import check_nonnegative, prox

LISTA_THRESHOLDS: tuple[str, ...] = ("soft", "hard", "half")


@final
class LISTA(eqx.Module):
    """Learned ISTA (Gregor and LeCun 2010): ``num_layers`` layers

        ``z_1 = h(W_e y, theta_0)``,  ``z_{t+1} = h(W_e y + S z_t, theta_t)``,

    with ``h`` the threshold named ``threshold`` (``"soft"``, ``"hard"`` or ``"half"``; see
    :func:`soft_threshold`), so ``theta_t`` plays the role of ``step * lam``. Initialised by
    :meth:`from_dictionary` with ``W_e = D^T / L``, ``S = I - D^T D / L`` and
    ``theta = lam / L`` (``L = |D|_2^2``), the network computes exactly ``num_layers`` ISTA
    steps from ``z = 0``; training (:func:`fit_lista`) then learns ``W_e``, ``S`` and
    ``theta`` to approximate the converged codes in few layers.

    CEL0 is not offered: its threshold depends on the atom norms and the step separately, not
    through one ``theta``. With ``"hard"`` the thresholds get no gradient (the map is
    piecewise constant in ``theta``); ``W_e`` and ``S`` still learn.

    Attributes:
        w_e: ``(K, d)`` input weights.
        s: ``(K, K)`` lateral (mutual inhibition) weights.
        theta: ``(num_layers,)`` per-layer thresholds, or ``(num_layers, K)`` per layer and
            atom. Not constrained to be positive during training.
        num_layers: the number of layers ``T`` (static).
        threshold: the threshold's name (static).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxspec import pursuit
        >>> D = jax.random.normal(jax.random.key(0), (16, 32)) / 4
        >>> y = jax.random.normal(jax.random.key(1), (5, 16))
        >>> net = pursuit.LISTA.from_dictionary(D, 0.1, num_layers=3)
        >>> ref = pursuit.ista(D, y, 0.1, max_steps=3, tol=0.0).codes
        >>> bool(jnp.allclose(net(y), ref, atol=1e-5))
        True

    References:
        Gregor and LeCun, "Learning fast approximations of sparse coding", ICML 2010.
    """

    w_e: jax.Array
    s: jax.Array
    theta: jax.Array
    num_layers: int = eqx.field(static=True)
    threshold: str = eqx.field(static=True)

    def __init__(
        self,
        w_e: jax.typing.ArrayLike,
        s: jax.typing.ArrayLike,
        theta: jax.typing.ArrayLike,
        threshold: Literal["soft", "hard", "half"] = "soft",
    ):
        """Build from the weights directly (see :meth:`from_dictionary` for the ISTA start).

        Raises:
            ValueError: for non-floating weights, ``w_e`` not 2-D, ``s`` not ``(K, K)``,
                ``theta`` not ``(T,)`` or ``(T, K)`` with ``T >= 1``, or an unknown
                ``threshold``.
        """
        check_choice(threshold, "threshold", LISTA_THRESHOLDS)
        w_e = as_float_array(w_e, "w_e", min_ndim=2)
        if w_e.ndim != 2:
            raise ValueError(f"`w_e` must have shape (K, d), got {tuple(w_e.shape)}.")
        n_atoms = w_e.shape[0]
        s = as_float_array(s, "s", min_ndim=2)
        if s.shape != (n_atoms, n_atoms):
            raise ValueError(f"`s` must have shape ({n_atoms}, {n_atoms}), got {tuple(s.shape)}.")
        theta = as_float_array(theta, "theta", min_ndim=1)
        if theta.ndim > 2 or (theta.ndim == 2 and theta.shape[1] != n_atoms):
            raise ValueError(
                f"`theta` must have shape (T,) or (T, {n_atoms}), got {tuple(theta.shape)}."
            )
        self.w_e = w_e
        self.s = s
        self.theta = theta
        self.num_layers = int(theta.shape[0])
        self.threshold = threshold

    @classmethod
    def from_dictionary(
        cls,
        dictionary: jax.typing.ArrayLike,
        lam: jax.typing.ArrayLike,
        num_layers: int,
        threshold: Literal["soft", "hard", "half"] = "soft",
    ) -> LISTA:
        """The LISTA network equal to ``num_layers`` ISTA steps from zero on ``dictionary``.

        ``W_e = D^T / L``, ``S = I - D^T D / L``, ``theta_t = lam / L`` with ``L = |D|_2^2``
        (the default step of :func:`ista`).

        Args:
            dictionary: ``(d, K)`` real array, atoms as columns.
            lam: penalty weight ``>= 0``: a scalar (``theta`` of shape ``(T,)``) or per atom
                ``(K,)`` (``theta`` of shape ``(T, K)``).
            num_layers: ``T >= 1`` (static).
            threshold: ``"soft"`` (default), ``"hard"`` or ``"half"``.

        Returns:
            A :class:`LISTA` in the dictionary's dtype.

        Raises:
            ValueError: for a dictionary that is not 2-D and floating, a concrete negative
                ``lam`` or one of another shape, ``num_layers < 1``, or an unknown
                ``threshold``.
        """
        d = as_float_array(dictionary, "dictionary", min_ndim=2)
        if d.ndim != 2:
            raise ValueError(f"`dictionary` must have shape (d, K), got {tuple(d.shape)}.")
        num_layers = check_int(num_layers, "num_layers")
        check_nonnegative(lam, "lam")
        lam = jnp.asarray(lam, d.dtype)
        n_atoms = d.shape[1]
        if lam.shape not in ((), (n_atoms,)):
            raise ValueError(f"`lam` must be a scalar or of shape ({n_atoms},), got {lam.shape}.")
        lip = lipschitz(d)
        w_e = d.T / lip
        s = jnp.eye(n_atoms, dtype=d.dtype) - (d.T @ d) / lip
        theta = jnp.broadcast_to(lam / lip, (num_layers,) + lam.shape)
        return cls(w_e, s, theta, threshold)

    def __call__(self, y: jax.typing.ArrayLike) -> jax.Array:
        """Codes ``(..., K)`` of signals ``y`` of shape ``(d,)`` or ``(..., d)``."""
        y = as_float_array(y, "y", min_ndim=1)
        if y.shape[-1] != self.w_e.shape[1]:
            raise ValueError(
                f"`y` must have last axis d = {self.w_e.shape[1]}, got shape {tuple(y.shape)}."
            )
        return _forward(self.w_e, self.s, self.theta, y.astype(self.w_e.dtype), self.threshold)


@functools.partial(jax.jit, static_argnames="threshold")
def _forward(w_e, s, theta, y, threshold):
    drive = y @ w_e.T

    def h(v, theta_t):
        return prox(threshold, v, theta_t, 1, None)

    def layer(z, theta_t):
        return h(drive + z @ s.T, theta_t), None

    z, _ = lax.scan(layer, h(drive, theta[0]), theta[1:])
    return z


def fit_lista(
    model: LISTA,
    y_train: jax.typing.ArrayLike,
    z_target: jax.typing.ArrayLike,
    *,
    optimizer: optax.GradientTransformation,
    num_steps: int,
    batch_size: int,
    key: jax.Array,
) -> tuple[LISTA, jax.Array]:
    """Train a :class:`LISTA` network to reproduce target codes, by minibatch gradient steps.

    The loss of a minibatch is the mean squared code error
    ``mean((model(y_b) - z_b)^2)`` over its signals and atoms; targets are typically
    converged :func:`ista`/:func:`fista` codes of ``y_train``. Each step draws
    ``batch_size`` distinct training signals at random and applies one ``optimizer`` update
    to every array field (``w_e``, ``s``, ``theta``). The loop is one ``lax.scan``.

    Args:
        model: the network to start from (e.g. :meth:`LISTA.from_dictionary`).
        y_train: ``(n, d)`` training signals.
        z_target: ``(n, K)`` target codes.
        optimizer: an optax gradient transformation (e.g. ``optax.adam(1e-3)``).
        num_steps: number of updates (static), ``>= 1``.
        batch_size: signals per update (static), ``1 <= batch_size <= n``.
        key: a JAX PRNG key for the minibatch draws.

    Returns:
        ``(trained_model, losses)`` with ``losses[i]`` the minibatch loss before update
        ``i``, shape ``(num_steps,)``.

    Raises:
        ValueError: for mismatched shapes, a ``batch_size`` outside ``[1, n]``, a
            ``num_steps < 1``, or an ``optimizer`` without ``init``/``update``.

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> from jaxspec import pursuit
        >>> D = jax.random.normal(jax.random.key(0), (8, 16)) / 3
        >>> y = jax.random.normal(jax.random.key(1), (64, 8))
        >>> target = pursuit.fista(D, y, 0.1, max_steps=2000).codes
        >>> net = pursuit.LISTA.from_dictionary(D, 0.1, num_layers=2)
        >>> net, losses = pursuit.fit_lista(net, y, target, optimizer=optax.adam(1e-3),
        ...                                 num_steps=100, batch_size=16, key=jax.random.key(2))
        >>> bool(jnp.mean((net(y) - target) ** 2) < losses[0])
        True

    References:
        Gregor and LeCun, "Learning fast approximations of sparse coding", ICML 2010.
    """
    if not isinstance(model, LISTA):
        raise ValueError(f"`model` must be a LISTA, got {type(model).__name__}.")
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise ValueError("`optimizer` must be an optax GradientTransformation.")
    n_atoms, dim = model.w_e.shape
    y_train = as_float_array(y_train, "y_train", min_ndim=2)
    z_target = as_float_array(z_target, "z_target", min_ndim=2)
    if y_train.ndim != 2 or y_train.shape[1] != dim:
        raise ValueError(f"`y_train` must have shape (n, {dim}), got {tuple(y_train.shape)}.")
    n = y_train.shape[0]
    if z_target.shape != (n, n_atoms):
        raise ValueError(
            f"`z_target` must have shape ({n}, {n_atoms}), got {tuple(z_target.shape)}."
        )
    num_steps = check_int(num_steps, "num_steps")
    batch_size = check_int(batch_size, "batch_size")
    if batch_size > n:
        raise ValueError(f"`batch_size` must be <= n = {n}, got {batch_size}.")
    dtype = model.w_e.dtype
    y_train, z_target = y_train.astype(dtype), z_target.astype(dtype)

    def loss_fn(net: LISTA, yb, zb):
        err = net(yb) - zb
        return jnp.mean(err * err)

    def update(carry: tuple[LISTA, Any], step_key):
        net, opt_state = carry
        idx = jax.random.choice(step_key, n, (batch_size,), replace=False)
        loss, grads = jax.value_and_grad(loss_fn)(net, y_train[idx], z_target[idx])
        updates, opt_state = optimizer.update(grads, opt_state, net)
        return (optax.apply_updates(net, updates), opt_state), loss

    keys = jax.random.split(key, num_steps)
    (model, _), losses = lax.scan(update, (model, optimizer.init(model)), keys)
    return model, losses
