"""Small matrix helpers shared by the manifold code (last two axes are the matrix axes)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxspec._checks import as_float_array, check_matrix
from jaxspec._svd import svd


def polar_factor(y: jax.typing.ArrayLike, special: bool = False) -> jax.Array:
    r"""Orthogonal polar factor ``U V^T`` of ``y (..., n, p)``, ``n >= p``, from the thin SVD.

    With ``special=True`` (square ``y``) the last singular direction is flipped where
    ``det(U V^T) = -1``: the nearest rotation. The derivative is defined by its own JVP, not by
    differentiating the SVD (whose rule divides by ``s_i - s_j`` and is NaN at repeated singular
    values, e.g. at every point of the manifold): writing ``y = Q H``, the skew part of
    ``Q^T dQ`` solves ``Omega H + H Omega = Q^T dy - dy^T Q``, i.e. in the right singular basis
    ``Omega_ij = (M - M^T)_ij / (s_i + s_j)`` with ``M = U^T dy V``, and for tall ``y`` the
    normal part is ``(I - U U^T) dy H^{-1}``. The denominators only vanish for rank-deficient
    ``y`` (or, with ``special``, when the flipped singular value ties another one).

    Raises:
        ValueError: ``y`` is not a float array of matrices with ``n >= p`` (square with
            ``special``), or is empty.
    """
    y = as_float_array(y, "y", min_ndim=2)
    if y.shape[-2] < y.shape[-1] or (special and y.shape[-2] != y.shape[-1]):
        need = "square" if special else "tall or square (n >= p)"
        raise ValueError(f"`y` must be {need} matrices (..., n, p), got shape {y.shape}.")
    return _polar_factor(y, bool(special))


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _polar_factor(y: jax.Array, special: bool) -> jax.Array:
    u, s, vt = _signed_svd(y, special)
    return u @ vt


def _signed_svd(y, special):
    u, s, vt = svd(y)
    if special:
        det = jnp.linalg.det(u @ vt)  # one LU: two concurrent batched LAPACK calls can deadlock
        flip = jnp.where(det < 0, -1.0, 1.0).astype(y.dtype)[..., None]
        u = u.at[..., :, -1].multiply(flip)
        s = s.at[..., -1].multiply(flip[..., 0])
    return u, s, vt


@_polar_factor.defjvp
def _polar_factor_jvp(special, primals, tangents):
    (y,), (dy,) = primals, tangents
    u, s, vt = _signed_svd(y, special)
    v = mT(vt)
    m = mT(u) @ dy @ v
    omega = (m - mT(m)) / (s[..., :, None] + s[..., None, :])
    dq = u @ omega @ vt
    if y.shape[-2] > y.shape[-1]:
        dq = dq + ((dy - u @ (mT(u) @ dy)) @ (v / s[..., None, :])) @ vt
    return u @ vt, dq


def mT(x: jax.Array) -> jax.Array:
    """Transpose of the last two axes."""
    return jnp.swapaxes(x, -1, -2)


def _square(a: jax.typing.ArrayLike) -> jax.Array:
    a = as_float_array(a, "a", min_ndim=2, allow_complex=True)
    if a.shape[-1] != a.shape[-2]:
        raise ValueError(f"`a` must be square matrices (..., n, n), got shape {a.shape}.")
    return a


def skew(a: jax.typing.ArrayLike) -> jax.Array:
    """Skew-symmetric part ``(a - a^T) / 2`` of square matrices ``(..., n, n)``."""
    a = _square(a)
    return 0.5 * (a - mT(a))


def sym(a: jax.typing.ArrayLike) -> jax.Array:
    """Symmetric part ``(a + a^T) / 2`` of square matrices ``(..., n, n)``."""
    a = _square(a)
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
