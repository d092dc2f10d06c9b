"""Orthogonal Procrustes problems in closed form."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxspec._checks import check_matrix
from jaxspec.manifolds._linalg import polar_factor


def procrustes(
    a: jax.typing.ArrayLike, b: jax.typing.ArrayLike, special: bool = False
) -> jax.Array:
    r"""Orthogonal ``R`` minimizing ``||a R - b||_F`` (over SO(p) when ``special``).

    Closed form (Schönemann 1966): ``R = U V^T`` with ``U S V^T = svd(a^T b)``. With
    ``special=True`` the last singular direction is flipped when ``det(U V^T) = -1``
    (Kabsch 1976), giving the best rotation. The same convention as
    :func:`scipy.linalg.orthogonal_procrustes`. Differentiable through the polar-factor JVP of
    :func:`jaxspec.manifolds.polar_factor` wherever ``a^T b`` has full rank (repeated
    singular values are fine; with ``special`` and a flip, the flipped singular value must not
    tie another one, where the minimizer itself is not unique).

    Args:
        a: float array ``(..., m, p)``.
        b: float array ``(..., m, p)`` (same shape; leading axes are batch axes).
        special: restrict to rotations (determinant +1).

    Returns:
        ``(..., p, p)`` orthogonal matrices.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxspec import manifolds
        >>> a = jax.random.normal(jax.random.key(0), (10, 3))
        >>> r0 = manifolds.Orthogonal(3).random(jax.random.key(1))
        >>> bool(jnp.allclose(manifolds.procrustes(a, a @ r0), r0, atol=1e-4))
        True

    References:
        Schönemann, "A generalized solution of the orthogonal Procrustes problem",
        Psychometrika 31, 1966. Kabsch, "A solution for the best rotation to relate two sets
        of vectors", Acta Cryst. A32, 1976.
    """
    a = check_matrix(a, "a")
    b = check_matrix(b, "b")
    if a.shape[-2:] != b.shape[-2:]:
        raise ValueError(
            f"`b` must have the matrix shape of `a` {a.shape[-2:]}, got {tuple(b.shape)}."
        )
    if not isinstance(special, bool):
        raise ValueError(f"`special` must be a bool, got {special!r}.")
    dtype = jnp.result_type(a, b)
    m = jnp.swapaxes(a.astype(dtype), -1, -2) @ b.astype(dtype)
    return polar_factor(m, special)
