"""Argument checks and small helpers shared by the SBL solvers."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxspec._checks import as_float_array, check_positive, is_concrete

NOISE_FLOOR = 100.0
"""A learned noise variance stays >= ``NOISE_FLOOR * eps * ||y||^2 / M`` (per measurement
vector), which keeps the Cholesky factors finite when the model interpolates the data."""


def herm(x: jax.Array) -> jax.Array:
    """Conjugate transpose of the last two axes."""
    return jnp.conj(jnp.swapaxes(x, -1, -2))


def abs2(x: jax.Array) -> jax.Array:
    """``|x|^2`` as a real array (no square root for complex ``x``)."""
    if jnp.iscomplexobj(x):
        return jnp.real(x) ** 2 + jnp.imag(x) ** 2
    return x * x


def real_dtype(dtype) -> jnp.dtype:
    """The real dtype matching a real or complex dtype."""
    return jnp.finfo(dtype).dtype


def check_dictionary_and_data(a: Any, y: Any) -> tuple[jax.Array, jax.Array, bool]:
    """Check ``A (M, N)`` and ``y (M,)`` or ``(M, L)``; promote both to one float/complex dtype.

    Returns:
        ``(A, Y, vector)`` with ``Y`` of shape ``(M, L)`` and ``vector`` telling whether ``y``
        was one vector.

    Raises:
        ValueError: naming ``A`` or ``y`` for integer dtypes, wrong ranks or mismatched rows.
    """
    a = as_float_array(a, "A", allow_complex=True)
    y = as_float_array(y, "y", allow_complex=True)
    if a.ndim != 2 or 0 in a.shape:
        raise ValueError(f"`A` must be a non-empty matrix (M, N), got shape {tuple(a.shape)}.")
    if y.ndim not in (1, 2) or y.shape[0] != a.shape[0] or 0 in y.shape:
        raise ValueError(
            f"`y` must have shape ({a.shape[0]},) or ({a.shape[0]}, L) to match `A` of shape "
            f"{tuple(a.shape)}, got {tuple(y.shape)}."
        )
    dtype = jnp.result_type(a.dtype, y.dtype)
    if dtype == jnp.bfloat16 or dtype == jnp.float16:
        raise ValueError(f"`A` and `y` must be float32/float64 or complex, got {dtype}.")
    vector = y.ndim == 1
    y2 = y[:, None] if vector else y
    return a.astype(dtype), y2.astype(dtype), vector


def check_unit_interval(value: Any, name: str, *, closed_low: bool = True) -> None:
    """``value`` in ``[0, 1)`` (or ``(0, 1)``) when concrete."""
    if value is None or not is_concrete(value):
        return
    arr = np.asarray(value)
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"`{name}` must be a real number, got {value!r}.")
    low_ok = np.all(arr >= 0) if closed_low else np.all(arr > 0)
    if not (low_ok and np.all(arr < 1)):
        interval = "[0, 1)" if closed_low else "(0, 1)"
        raise ValueError(f"`{name}` must lie in {interval}, got {value!r}.")


def check_noise_var(value: Any) -> None:
    """A given noise variance must be a scalar, positive when concrete."""
    if value is not None:
        if jnp.ndim(value) != 0:  # an array broadcast into the posterior's shapes silently
            raise ValueError(f"`noise_var` must be a scalar, got shape {jnp.shape(value)}.")
        check_positive(value, "noise_var")
