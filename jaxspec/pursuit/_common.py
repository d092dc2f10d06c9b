"""Argument checks shared by the pursuit solvers."""

from __future__ import annotations

from typing import Any

import jax

from jaxspec._checks import as_float_array


def dictionary_and_signals(dictionary: Any, y: Any, name: str = "y") -> tuple[jax.Array, jax.Array]:
    """Check a ``(d, K)`` dictionary (atoms as columns) and ``(..., d)`` signals.

    Raises:
        ValueError: naming the argument, for a dictionary that is not a 2-D float array, or
            signals that are not float or whose last axis is not ``d``.
    """
    d = as_float_array(dictionary, "dictionary", min_ndim=2)
    if d.ndim != 2:
        raise ValueError(f"`dictionary` must have shape (d, K), got {tuple(d.shape)}.")
    y = as_float_array(y, name, min_ndim=1)
    if y.shape[-1] != d.shape[0]:
        raise ValueError(
            f"`{name}` must have last axis d = {d.shape[0]} (the dictionary's rows), got shape "
            f"{tuple(y.shape)}."
        )
    return d, y
