"""Retractions onto the Stiefel manifold ``St(n, p) = {X : X^T X = I_p}`` (O(n) when p = n).

Every retraction takes a point ``x (..., n, p)`` and a tangent vector ``u`` of the same shape
(the step, already scaled) and returns ``R_x(u)`` on the manifold. All are differentiable with
``jax.grad``: ``qr`` through JAX's QR rule (tall and square matrices), ``polar`` with
``method="svd"`` through its own polar-factor JVP (JAX's SVD rule is NaN at repeated singular
values, jax#2311, which is every point of the manifold; ours is not), the rest are
matmul/solve/expm based.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl

from jaxspec import spectral
from jaxspec._checks import check_choice, check_int, check_matrix
from jaxspec.manifolds._linalg import eye_like, mT, polar_factor, qr_sign_fixed, skew


def check_point_and_tangent(x, u) -> tuple[jax.Array, jax.Array]:
    """Common argument check: ``x`` and ``u`` float matrices of one shape with ``n >= p``."""
    x = check_matrix(x, "x")
    u = check_matrix(u, "u")
    if x.shape[-2] < x.shape[-1]:
        raise ValueError(f"`x` must be tall or square (n >= p), got shape {x.shape}.")
    if u.shape[-2:] != x.shape[-2:]:
        raise ValueError(f"`u` must have the matrix shape of `x` {x.shape[-2:]}, got {u.shape}.")
    dtype = jnp.result_type(x, u)
    x, u = jnp.broadcast_arrays(x.astype(dtype), u.astype(dtype))  # leading axes broadcast
    return x, u


def qr_retraction(x: jax.typing.ArrayLike, u: jax.typing.ArrayLike) -> jax.Array:
    r"""QR retraction ``qf(x + u)`` with the signs fixed so that ``diag(R) > 0``.

    First order; about ``2 n p^2`` flops (Householder QR). Differentiable for ``n >= p``.

    Args:
        x: point ``(..., n, p)``.
        u: tangent vector ``(..., n, p)``.

    Returns:
        The retracted point ``(..., n, p)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxspec import manifolds
        >>> x = jnp.eye(4)[:, :2]
        >>> y = manifolds.qr_retraction(x, 0.1 * jnp.ones((4, 2)))
        >>> bool(manifolds.orthogonality_error(y) < 1e-6)
        True

    References:
        Absil, Mahony, Sepulchre, "Optimization Algorithms on Matrix Manifolds", 2008, 4.1.1.
    """
    x, u = check_point_and_tangent(x, u)
    return qr_sign_fixed(x + u)


def polar_retraction(
    x: jax.typing.ArrayLike,
    u: jax.typing.ArrayLike,
    *,
    method: Literal["svd", "newton_schulz"] = "svd",
    steps: int = 10,
) -> jax.Array:
    r"""Polar retraction: the orthogonal polar factor of ``x + u``.

    Second order and equal to the metric projection onto the manifold. ``method="svd"`` is
    exact (``U V^T`` from the thin SVD). ``method="newton_schulz"`` runs
    :func:`jaxspec.spectral.orthogonalize` (Polar Express rows, Schatten-4 scaling) for
    ``steps`` matmul steps: for a tangent ``u``, ``(x + u)^T (x + u) = I + u^T u`` so every
    singular value lies in ``[1, sqrt(1 + ||u||_2^2)]`` and after the scaling in
    ``[p^{-1/4} / sqrt(1 + ||u||^2), 1]``; 10 steps reach the float32 floor (about 1e-6) for
    ``p <= 1000`` and ``||u||_2 <= 10``. Both paths are differentiable: Newton–Schulz by its
    matmuls, the SVD path by the polar-factor JVP of :func:`jaxspec.manifolds.polar_factor`
    (defined at repeated singular values).

    Args:
        x: point ``(..., n, p)``.
        u: tangent vector ``(..., n, p)``.
        method: ``"svd"`` or ``"newton_schulz"`` (static).
        steps: Newton–Schulz steps (static).

    Returns:
        The retracted point ``(..., n, p)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxspec import manifolds
        >>> x = jnp.eye(4)[:, :2]
        >>> y = manifolds.polar_retraction(x, 0.1 * jnp.ones((4, 2)), method="newton_schulz")
        >>> bool(manifolds.orthogonality_error(y) < 1e-5)
        True

    References:
        Absil and Malick, "Projection-like retractions on matrix manifolds", SIAM J. Optim.
        2012. Amsel et al., "The Polar Express", arXiv:2505.16932, 2025.
    """
    x, u = check_point_and_tangent(x, u)
    check_choice(method, "method", ("svd", "newton_schulz"))
    steps = check_int(steps, "steps")
    y = x + u
    if method == "svd":
        return polar_factor(y)
    return spectral.orthogonalize(y, "polar_express", steps, normalization="schatten4")


def _projected_step(x: jax.Array, u: jax.Array) -> jax.Array:
    """``P_x u = u - x (x^T u) / 2``: the Wen–Yin factor of the skew generator."""
    return u - 0.5 * (x @ (mT(x) @ u))


def cayley_retraction(
    x: jax.typing.ArrayLike,
    u: jax.typing.ArrayLike,
    *,
    method: Literal["auto", "solve", "woodbury"] = "auto",
) -> jax.Array:
    r"""Cayley retraction ``(I - W/2)^{-1} (I + W/2) x`` with ``W = P u x^T - x u^T P``.

    ``P = I - x x^T / 2`` (Wen & Yin 2013; Manifolds.jl's ``CayleyRetraction``). ``W`` is skew,
    so ``I - W/2`` is always invertible and the result is exactly on the manifold (up to the
    solve's round-off), and ``W x = u`` for tangent ``u``: it agrees with the geodesic to second
    order on O(n). ``method="solve"`` forms ``W`` (``n x n``) and solves densely, ``O(n^3)``;
    ``method="woodbury"`` writes ``W = U V^T`` with ``U = [P u, x]``, ``V = [x, -P u]``
    (rank ``2p``) and uses ``x + U (I - V^T U / 2)^{-1} V^T x``, ``O(n p^2 + p^3)``; ``"auto"``
    picks Woodbury when ``2p < n``. Differentiable (solves only).

    Args:
        x: point ``(..., n, p)``.
        u: tangent vector ``(..., n, p)``.
        method: ``"auto"``, ``"solve"`` or ``"woodbury"`` (static).

    Returns:
        The retracted point ``(..., n, p)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxspec import manifolds
        >>> x = jnp.eye(6)[:, :2]
        >>> u = manifolds.Stiefel(6, 2).project(x, jnp.ones((6, 2)))
        >>> y = manifolds.cayley_retraction(x, u, method="woodbury")
        >>> bool(manifolds.orthogonality_error(y) < 1e-5)
        True

    References:
        Wen and Yin, "A feasible method for optimization with orthogonality constraints",
        Math. Program. 142, 2013.
    """
    x, u = check_point_and_tangent(x, u)
    check_choice(method, "method", ("auto", "solve", "woodbury"))
    n, p = x.shape[-2:]
    if method == "auto":
        method = "woodbury" if 2 * p < n else "solve"
    pu = _projected_step(x, u)
    if method == "solve":
        w = pu @ mT(x) - x @ mT(pu)
        eye = eye_like(w)
        return jnp.linalg.solve(eye - 0.5 * w, x + 0.5 * (w @ x))
    big_u = jnp.concatenate([pu, x], axis=-1)
    big_v = jnp.concatenate([x, -pu], axis=-1)
    small = eye_like(x, 2 * p) - 0.5 * (mT(big_v) @ big_u)
    return x + big_u @ jnp.linalg.solve(small, mT(big_v) @ x)


def iterative_cayley_retraction(
    x: jax.typing.ArrayLike, u: jax.typing.ArrayLike, *, iterations: int = 2
) -> jax.Array:
    r"""Iterative Cayley retraction (Li, Li & Todorovic 2020): matmuls only.

    Runs the fixed point ``Y <- x + W (x + Y) / 2`` of the Cayley transform from
    ``Y_0 = x + u`` for ``iterations`` steps, with ``W = P u x^T - x u^T P`` applied in its
    rank-``2p`` form (``O(n p^2)`` per iteration). The map contracts when ``||W||_2 < 2``; the
    result is on the manifold only approximately: the error after ``s`` iterations is
    ``O(||u||^{s+1})`` (the paper uses ``s = 2``, its code 5). Pair it with an optimizer's
    periodic re-projection (``stabilize``) for long runs. Differentiable.

    Args:
        x: point ``(..., n, p)``.
        u: tangent vector ``(..., n, p)``.
        iterations: fixed-point iterations (static, >= 1).

    Returns:
        The (approximately) retracted point ``(..., n, p)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxspec import manifolds
        >>> x = jnp.eye(6)[:, :2]
        >>> u = manifolds.Stiefel(6, 2).project(x, 0.01 * jnp.ones((6, 2)))
        >>> y = manifolds.iterative_cayley_retraction(x, u, iterations=3)
        >>> bool(manifolds.orthogonality_error(y) < 1e-6)
        True

    References:
        Li, Li, Todorovic, "Efficient Riemannian Optimization on the Stiefel Manifold via the
        Cayley Transform", ICLR 2020, arXiv:2002.01113.
    """
    x, u = check_point_and_tangent(x, u)
    iterations = check_int(iterations, "iterations")
    pu = _projected_step(x, u)

    def apply_w(v):
        return pu @ (mT(x) @ v) - x @ (mT(pu) @ v)

    y = x + u
    for _ in range(iterations):
        y = x + 0.5 * apply_w(x + y)
    return y


def exp_retraction(x: jax.typing.ArrayLike, u: jax.typing.ArrayLike) -> jax.Array:
    r"""Geodesic of the embedded (Euclidean) metric: the exponential map.

    For a square ``x`` (O(n)) this is ``x expm(skew(x^T u))``. For ``p < n`` it is Edelman,
    Arias & Smith's formula ``[x, u] expm([[A, -S], [I, A]]) [I; 0] expm(-A)`` with
    ``A = x^T u`` and ``S = u^T u`` (one ``2p x 2p`` and one ``p x p`` exponential), with the
    block balanced so its norm grows like ``||u||``, not ``||u||^2``, and one Newton–Schulz
    step ``y (3 I - y^T y) / 2`` after it (round-off off the manifold otherwise compounds
    from step to step). Differentiable (``jax.scipy.linalg.expm``); the cost of the
    exponential grows with ``log2 ||u||``.

    Args:
        x: point ``(..., n, p)``.
        u: tangent vector ``(..., n, p)``.

    Returns:
        The point ``exp_x(u)`` ``(..., n, p)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxspec import manifolds
        >>> x = jnp.eye(3)
        >>> u = jnp.array([[0.0, -0.5, 0.0], [0.5, 0.0, 0.0], [0.0, 0.0, 0.0]])
        >>> y = manifolds.exp_retraction(x, u)
        >>> bool(abs(y[0, 0] - jnp.cos(0.5)) < 1e-6)
        True

    References:
        Edelman, Arias, Smith, "The Geometry of Algorithms with Orthogonality Constraints",
        SIAM J. Matrix Anal. Appl. 20(2), 1998.
    """
    x, u = check_point_and_tangent(x, u)
    n, p = x.shape[-2:]
    a = skew(mT(x) @ u)
    if n == p:
        return x @ _expm(a)
    # Balanced by the similarity diag(c I, I) with c = max(||u||_F, 1): the block then has norm
    # O(||u||) instead of O(||u||^2) (u^T u), which keeps expm accurate for long steps (at
    # ||u|| = 100 in float32 the orthogonality error drops from 3e-4 to 1e-6; unbalanced, the
    # exponential overflows its squarings near ||u|| = 1e4).
    c = jnp.sqrt(jnp.maximum(jnp.sum(u * u, axis=(-2, -1), keepdims=True), 1.0))
    s = (mT(u) @ u) / c
    eye = jnp.broadcast_to(eye_like(a), a.shape)
    block = jnp.concatenate(
        [jnp.concatenate([a, -s], axis=-1), jnp.concatenate([c * eye, a], axis=-1)], axis=-2
    )
    e = _expm(block)[..., :, :p]
    y = (x @ e[..., :p, :] + (u / c) @ e[..., p:, :]) @ _expm(-a)
    # The formula is exact only for x on the manifold and x^T u skew; round-off off it grew
    # about 4x per step (float32 riemannian_sgd: orthogonality error 0.35 after 50 steps). One
    # Newton-Schulz step towards the polar factor, y (3 I - y^T y) / 2, squares the error.
    return y @ (1.5 * eye - 0.5 * (mT(y) @ y))


def _expm(a: jax.Array) -> jax.Array:
    """``jax.scipy.linalg.expm`` over leading batch axes."""
    if a.ndim == 2:
        return jsl.expm(a)
    flat = a.reshape((-1, *a.shape[-2:]))
    return jax.vmap(jsl.expm)(flat).reshape(a.shape)
