"""Small matrix helpers shared by the manifold code (last two axes are the matrix axes)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxspec._checks import check_matrix


def mT(x: jax.Array) -> jax.Array:
    """Transpose of the last two axes."""
    return jnp.swapaxes(x, -1, -2)


def skew(a: jax.typing.ArrayLike) -> jax.Array:
    """Skew-symmetric part ``(a - a^T) / 2`` of square matrices ``(..., n, n)``."""
    a = jnp.asarray(a)
    return 0.5 * (a - mT(a))


def sym(a: jax.typing.ArrayLike) -> jax.Array:
    """Symmetric part ``(a + a^T) / 2`` of square matrices ``(..., n, n)``."""
    a = jnp.asarray(a)
    return 0.5 * (a + mT(a))


def eye_like(x: jax.Array, n: int | None = None) -> jax.Array:
    """Identity of size ``n`` (default: the last axis of ``x``) in ``x``'s dtype."""
    return jnp.eye(x.shape[-1] if n is None else n, dtype=x.dtype)


def qr_sign_fixed(a: jax.Array) -> jax.Array:
    """Q factor of the reduced QR of ``a (..., n, p)`` with ``diag(R) >= 0``.

    Fixing the signs makes the map unique and smooth (Manopt's ``qr_unique``); a zero diagonal
    entry keeps its column sign.
    """
    q, r = jnp.linalg.qr(a, mode="reduced")
    d = jnp.diagonal(r, axis1=-2, axis2=-1)
    signs = jnp.where(d < 0, -1.0, 1.0).astype(a.dtype)
    return q * signs[..., None, :]


def orthogonality_error(x: jax.typing.ArrayLike) -> jax.Array:
    r"""Distance of ``x`` from the Stiefel manifold, ``||x^T x - I||_F`` per matrix.

    Args:
        x: float array ``(..., n, p)`` with ``n >= p``; leading axes are batch axes.

    Returns:
        Array ``(...)`` of Frobenius norms (zero exactly on the manifold).

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxspec import manifolds
        >>> float(manifolds.orthogonality_error(jnp.eye(3)))
        0.0
    """
    x = check_matrix(x, "x")
    if x.shape[-2] < x.shape[-1]:
        raise ValueError(
            f"`x` must be tall or square (n >= p on the last two axes), got shape {x.shape}."
        )
    gram = mT(x) @ x
    return jnp.linalg.norm(gram - eye_like(gram), axis=(-2, -1))
