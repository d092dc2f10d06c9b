"""Trace-time argument checks shared by every module.

Every public function validates shapes, dtypes and static arguments here, so a bad call fails
with a ``ValueError`` naming the argument before anything is compiled. Checks on traced values
(a swept threshold, say) use :func:`check_positive`, which raises when the value is concrete and
otherwise leaves a runtime guard to the caller (``eqx.error_if``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

_FLOAT_KINDS = ("f",)


def as_float_array(x: Any, name: str, *, min_ndim: int = 0, allow_complex: bool = False):
    """Convert ``x`` to a JAX array and check it is a floating (or complex) array.

    Raises:
        ValueError: naming ``name`` when the dtype is not floating, or the rank is below
            ``min_ndim``, or an axis is empty.
    """
    if not isinstance(x, jax.Array | np.ndarray | np.generic):
        x = np.asarray(x)
    dtype = jnp.result_type(x)
    kinds = _FLOAT_KINDS + (("c",) if allow_complex else ())
    if np.dtype(dtype).kind not in kinds and dtype != jnp.bfloat16:
        expected = "a floating-point" + (" or complex" if allow_complex else "")
        raise ValueError(f"`{name}` must be {expected} array, got dtype {dtype}.")
    x = jnp.asarray(x)
    if x.ndim < min_ndim:
        raise ValueError(
            f"`{name}` must have at least {min_ndim} dimensions (got shape {tuple(x.shape)})."
        )
    if any(s == 0 for s in x.shape[-min_ndim:] if min_ndim):
        raise ValueError(f"`{name}` must not be empty (got shape {tuple(x.shape)}).")
    return x


def check_matrix(x: Any, name: str = "x", *, allow_complex: bool = False) -> jax.Array:
    """Check ``x`` is a float array with at least 2 dimensions (matrices on the last two)."""
    return as_float_array(x, name, min_ndim=2, allow_complex=allow_complex)


def is_concrete(x: Any) -> bool:
    """True when ``x`` holds a known value at trace time (not a tracer)."""
    try:
        np.asarray(x)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return False
    return True


def check_positive(value: Any, name: str) -> None:
    """Raise ``ValueError`` if a concrete ``value`` is not > 0 (tracers are left alone)."""
    if is_concrete(value):
        arr = np.asarray(value)
        if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
            raise ValueError(f"`{name}` must be a positive real number, got {value!r}.")
        if not np.all(arr > 0) or not np.all(np.isfinite(arr)):
            raise ValueError(f"`{name}` must be positive and finite, got {value!r}.")


def check_int(value: Any, name: str, *, minimum: int = 1) -> int:
    """Check a static integer argument (step counts, iteration counts)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"`{name}` must be a Python int >= {minimum}, got {value!r}.")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value}.")
    return int(value)


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    """Check a static string option against its valid values."""
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}, got {value!r}.")
    return value


def _path_name(path: tuple[Any, ...]) -> str:
    return jax.tree_util.keystr(path) or "(root)"


def check_update_tree(updates: Any, reference: Any = None, *, reference_name: str = "params"):
    """Check an optax transform's incoming ``updates``: floating-point leaves and, when a
    ``reference`` tree is given (the params, or a state tree with one leaf per parameter), the
    same structure and leaf shapes.

    Raises:
        ValueError: naming ``updates`` and the leaf's path, for an integer, boolean or complex
            leaf, or a leaf whose shape differs from the reference's.
    """
    leaves = jax.tree_util.tree_flatten_with_path(updates)[0]
    for path, leaf in leaves:
        dtype = jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.floating):
            raise ValueError(
                f"`updates`: leaf {_path_name(path)} must be floating point, got dtype {dtype}."
            )
    if reference is None:
        return
    ref_leaves, ref_def = jax.tree_util.tree_flatten_with_path(reference)
    if jax.tree.structure(updates) != jax.tree.structure(reference):
        raise ValueError(
            f"`updates` must have the tree structure of `{reference_name}`, got "
            f"{jax.tree.structure(updates)} for {ref_def}."
        )
    for (path, leaf), (_, ref) in zip(leaves, ref_leaves, strict=True):
        if jnp.shape(leaf) != jnp.shape(ref):
            raise ValueError(
                f"`updates`: leaf {_path_name(path)} has shape {tuple(jnp.shape(leaf))}, but "
                f"`{reference_name}` has {tuple(jnp.shape(ref))} there."
            )
