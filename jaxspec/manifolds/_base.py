"""Shared geometry of matrices with orthonormal columns (Stiefel manifold and O(n))."""

from __future__ import annotations

from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp

from jaxspec._checks import check_matrix
from jaxspec.manifolds._linalg import mT, polar_factor, qr_sign_fixed, sym
from jaxspec.manifolds._retractions import (
    cayley_retraction,
    exp_retraction,
    iterative_cayley_retraction,
    polar_retraction,
    qr_retraction,
)

Metric = Literal["euclidean", "canonical"]
Retraction = Literal["qr", "polar", "polar_newton_schulz", "cayley", "exp", "iterative_cayley"]
METRICS: tuple[str, ...] = ("euclidean", "canonical")
RETRACTIONS: tuple[str, ...] = (
    "qr",
    "polar",
    "polar_newton_schulz",
    "cayley",
    "exp",
    "iterative_cayley",
)


class AbstractOrthonormalFrames(eqx.Module):
    """Geometry shared by :class:`Stiefel` and :class:`Orthogonal` (not instantiated directly).

    Points are ``(..., n, p)`` arrays with ``X^T X = I``; tangent vectors are ambient arrays of
    the same shape with ``X^T U`` skew-symmetric. Every method accepts leading batch axes.
    """

    n: int = eqx.field(static=True)
    p: int = eqx.field(static=True)
    metric: str = eqx.field(static=True)
    retraction: str = eqx.field(static=True)

    @property
    def shape(self) -> tuple[int, int]:
        """Matrix shape ``(n, p)`` of a point."""
        return (self.n, self.p)

    @property
    def dim(self) -> int:
        """Dimension of the manifold, ``n p - p (p + 1) / 2``."""
        return self.n * self.p - self.p * (self.p + 1) // 2

    def check_point(self, x: jax.typing.ArrayLike, name: str = "x") -> jax.Array:
        """Trace-time check that ``x`` is a float array ``(..., n, p)``; returns it as an array.

        Raises:
            ValueError: naming ``name`` when the dtype or the last two axes are wrong.
        """
        x = check_matrix(x, name)
        if x.shape[-2:] != self.shape:
            raise ValueError(
                f"`{name}` must have shape (..., {self.n}, {self.p}) for {self}, "
                f"got {tuple(x.shape)}."
            )
        return x

    def _pair(self, x, u, name: str = "u") -> tuple[jax.Array, jax.Array]:
        x = self.check_point(x)
        u = self.check_point(u, name)
        dtype = jnp.result_type(x, u)
        return x.astype(dtype), u.astype(dtype)

    def random(
        self,
        key: jax.Array,
        batch_shape: tuple[int, ...] = (),
        dtype: jax.typing.DTypeLike = jnp.float32,
    ) -> jax.Array:
        """Haar-distributed random point(s) ``(*batch_shape, n, p)`` (sign-fixed QR of a
        Gaussian matrix, Mezzadri 2007)."""
        g = jax.random.normal(key, (*tuple(batch_shape), self.n, self.p), dtype)
        return qr_sign_fixed(g)

    def random_tangent(self, key: jax.Array, x: jax.typing.ArrayLike) -> jax.Array:
        """Random tangent vector(s) at ``x`` with unit norm in the manifold's metric."""
        x = self.check_point(x)
        u = self.project(x, jax.random.normal(key, x.shape, x.dtype))
        return u / self.norm(x, u)[..., None, None]

    def project(self, x: jax.typing.ArrayLike, u: jax.typing.ArrayLike) -> jax.Array:
        """Orthogonal projection of the ambient ``u`` onto the tangent space at ``x``:
        ``u - x sym(x^T u)``."""
        x, u = self._pair(x, u)
        return u - x @ sym(mT(x) @ u)

    def egrad_to_rgrad(self, x: jax.typing.ArrayLike, g: jax.typing.ArrayLike) -> jax.Array:
        """Riemannian gradient from the Euclidean gradient ``g`` at ``x``.

        Embedded metric: ``g - x sym(x^T g)``; canonical metric: ``g - x g^T x``.
        """
        x, g = self._pair(x, g, "g")
        if self.metric == "canonical":
            return g - x @ (mT(g) @ x)
        return g - x @ sym(mT(x) @ g)

    def inner(
        self, x: jax.typing.ArrayLike, u: jax.typing.ArrayLike, v: jax.typing.ArrayLike
    ) -> jax.Array:
        """Metric inner product ``(...)`` of tangent vectors ``u``, ``v`` at ``x``.

        Embedded: ``tr(u^T v)``; canonical: ``tr(u^T (I - x x^T / 2) v)``.
        """
        x, u = self._pair(x, u)
        v = self.check_point(v, "v").astype(u.dtype)
        euclid = jnp.sum(u * v, axis=(-2, -1))
        if self.metric == "canonical":
            return euclid - 0.5 * jnp.sum((mT(x) @ u) * (mT(x) @ v), axis=(-2, -1))
        return euclid

    def norm(self, x: jax.typing.ArrayLike, u: jax.typing.ArrayLike) -> jax.Array:
        """Metric norm ``(...)`` of the tangent vector ``u`` at ``x``."""
        return jnp.sqrt(jnp.maximum(self.inner(x, u, u), 0))

    def retract(self, x: jax.typing.ArrayLike, u: jax.typing.ArrayLike) -> jax.Array:
        """Retraction ``R_x(u)`` chosen by :attr:`retraction` (see the retraction functions)."""
        x, u = self._pair(x, u)
        kind = self.retraction
        if kind == "qr":
            return qr_retraction(x, u)
        if kind == "polar":
            return polar_retraction(x, u, method="svd")
        if kind == "polar_newton_schulz":
            return polar_retraction(x, u, method="newton_schulz")
        if kind == "cayley":
            return cayley_retraction(x, u)
        if kind == "iterative_cayley":
            return iterative_cayley_retraction(x, u)
        return self.exp(x, u)

    def exp(self, x: jax.typing.ArrayLike, u: jax.typing.ArrayLike) -> jax.Array:
        """Exponential map of the embedded metric (the geodesic through ``x`` along ``u``)."""
        x, u = self._pair(x, u)
        return exp_retraction(x, u)

    def transport(
        self, x: jax.typing.ArrayLike, y: jax.typing.ArrayLike, v: jax.typing.ArrayLike
    ) -> jax.Array:
        """Vector transport of the tangent ``v`` at ``x`` to ``T_y`` (projection transport).

        ``x`` is accepted for the interface (transports along a retraction need it).
        """
        self.check_point(x)
        return self.project(y, v)

    def project_point(self, x: jax.typing.ArrayLike) -> jax.Array:
        """Nearest point on the manifold in Frobenius norm: the polar factor (thin SVD;
        differentiable for full-rank ``x``, see :func:`polar_factor`)."""
        x = self.check_point(x)
        return polar_factor(x)
