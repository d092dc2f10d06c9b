"""Charts of the orthogonal group: Cayley, inverse Cayley (with the det -1 guard), the matrix
logarithm on SO(n), and the Householder-product parametrization."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxspec._checks import check_int, check_matrix, check_positive, is_concrete
from jaxspec.manifolds._linalg import eye_like, mT, skew


def _check_square(x, name: str) -> jax.Array:
    x = check_matrix(x, name)
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"`{name}` must hold square matrices (..., n, n), got shape {x.shape}.")
    return x


def cayley(a: jax.typing.ArrayLike) -> jax.Array:
    r"""Cayley transform ``(I - a)^{-1} (I + a)`` of skew-symmetric ``a``.

    Maps the Lie algebra so(n) onto the rotations without eigenvalue ``-1``. A rotation by
    ``theta`` in a 2-plane has generator eigenvalues ``+-i tan(theta / 2)`` (the matrix logarithm
    has ``+-i theta``); the two charts agree to first order at the identity. Only the
    skew-symmetric part of ``a`` is used. Differentiable (one solve).

    Args:
        a: float array ``(..., n, n)``.

    Returns:
        Orthogonal matrices ``(..., n, n)`` with determinant +1.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxspec import manifolds
        >>> a = jnp.array([[0.0, -1.0], [1.0, 0.0]])  # tan(theta/2) = 1: rotation by pi/2
        >>> manifolds.cayley(a).round(6).tolist()
        [[0.0, -1.0], [1.0, 0.0]]

    References:
        Cayley, "Sur quelques propriétés des déterminants gauches", 1846. Yang, Shi, Liu,
        "Orthogonal Model Merging", arXiv:2602.05943, 2026 (the convention used here).
    """
    a = skew(_check_square(a, "a"))
    eye = eye_like(a)
    return jnp.linalg.solve(eye - a, eye + a)


def _cayley_signature(r: jax.Array, min_pivot: jax.Array) -> jax.Array:
    """Signs ``d`` making ``r + diag(d)`` (hence ``I + diag(d) r``) safely invertible.

    Gaussian elimination without pivoting on ``r + diag(d)``, choosing ``d_k`` when the k-th
    pivot is reached: ``+1`` unless ``|s_kk + 1| < min_pivot`` (``s`` the Schur complement),
    then ``-1``, so every pivot has modulus ``>= min(min_pivot, 2 - min_pivot)``. This is the
    constructive proof that every orthogonal matrix is ``D (I - S)(I + S)^{-1}`` with a
    signature matrix ``D`` and skew ``S`` (arXiv:2601.16271), run greedily.
    """
    n = r.shape[-1]
    idx = jnp.arange(n)

    def body(k, carry):
        m, d = carry
        s = m[k, k]
        dk = jnp.where(jnp.abs(s + 1) < min_pivot, -1.0, 1.0).astype(r.dtype)
        pivot = s + dk
        below = idx > k
        col = jnp.where(below, m[:, k], 0.0)
        row = jnp.where(below, m[k, :], 0.0)
        m = m - jnp.outer(col, row) / pivot
        return m, d.at[k].set(dk)

    _, d = lax.fori_loop(0, n, body, (r, jnp.ones((n,), r.dtype)))
    return d


def inverse_cayley(
    r: jax.typing.ArrayLike,
    *,
    guard: bool = True,
    min_pivot: jax.typing.ArrayLike = 0.1,
) -> tuple[jax.Array, jax.Array]:
    r"""Skew generator ``a`` and signature ``d`` with ``r = diag(d) cayley(a)``.

    The plain inverse Cayley map ``a = (r + I)^{-1} (r - I)`` fails when ``r`` has an
    eigenvalue ``-1``, which every orthogonal matrix with determinant ``-1`` has (for instance
    a Procrustes solution over O(n)). With ``guard=True`` a signature ``d in {+1, -1}^n`` is
    chosen first by elimination on ``r + diag(d)``: ``d`` is all ones unless a pivot of
    ``I + r`` would fall below ``min_pivot`` in modulus, so rotations away from angle ``pi``
    keep ``d = 1`` and the chart of the paper's code. ``d`` is piecewise constant (no
    gradient); ``a`` is differentiable in ``r`` (one solve).

    Args:
        r: orthogonal matrices ``(..., n, n)``.
        guard: choose the signature (``True``) or take ``d = 1`` (``False``; non-finite where
            ``r`` has eigenvalue ``-1``).
        min_pivot: pivot threshold in ``(0, 1]`` (may be traced).

    Returns:
        ``(a, d)``: skew ``(..., n, n)`` and signs ``(..., n)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxspec import manifolds
        >>> reflection = jnp.diag(jnp.array([1.0, -1.0, 1.0]))
        >>> a, d = manifolds.inverse_cayley(reflection)
        >>> d.tolist(), bool(jnp.allclose(d[:, None] * manifolds.cayley(a), reflection))
        ([1.0, -1.0, 1.0], True)

    References:
        Yang, Shi, Liu, "Orthogonal Model Merging", arXiv:2602.05943, 2026.
        "A Constructive Cayley Representation of Orthogonal Matrices", arXiv:2601.16271.
    """
    r = _check_square(r, "r")
    check_positive(min_pivot, "min_pivot")
    if is_concrete(min_pivot) and not np.all(np.asarray(min_pivot) <= 1):
        # above 1, |s + 1| < min_pivot can hold for both signs: the pivots lose their bound
        raise ValueError(f"`min_pivot` must be in (0, 1], got {min_pivot!r}.")
    n = r.shape[-1]
    if guard:
        signature = _cayley_signature
        for _ in range(r.ndim - 2):
            signature = jax.vmap(signature, in_axes=(0, None))
        d = lax.stop_gradient(signature(r, jnp.asarray(min_pivot, r.dtype)))
    else:
        d = jnp.ones(r.shape[:-1], r.dtype)
    dr = d[..., :, None] * r
    eye = jnp.eye(n, dtype=r.dtype)
    return skew(jnp.linalg.solve(dr + eye, dr - eye)), d


def log_orthogonal(r: jax.typing.ArrayLike, *, throw: bool = True) -> jax.Array:
    r"""Principal matrix logarithm of rotations: skew ``a`` with ``expm(a) = r``.

    ``r`` is normal, so it shares eigenvectors with its inverse Cayley generator
    ``c = (r + I)^{-1} (r - I)``, whose eigenvalues ``i tan(theta_j / 2)`` separate distinct
    rotation angles. The Hermitian matrix ``i c`` is diagonalized by ``eigh``, the angles
    ``theta_j`` are read off ``r`` itself in that basis (accurate up to ``|theta| -> pi``), and
    ``a = V diag(i theta) V^H``. Cost: one solve and one complex ``n x n`` ``eigh``.
    Defined for ``r`` in SO(n) without eigenvalue ``-1`` (rotation angles below ``pi``, where
    the principal logarithm is unique); otherwise (determinant -1, or an angle of exactly
    ``pi``) the result is NaN and ``throw=True`` raises (``eqx.error_if``, works under
    ``jit``). Gradients go through ``eigh``: they are not defined at repeated angles.

    Args:
        r: rotations ``(..., n, n)``.
        throw: raise on inputs outside the domain (``True``) or return non-finite values.

    Returns:
        Skew-symmetric ``(..., n, n)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxspec import manifolds
        >>> c, s = jnp.cos(0.3), jnp.sin(0.3)
        >>> a = manifolds.log_orthogonal(jnp.array([[c, -s], [s, c]]))
        >>> round(float(a[1, 0]), 6)
        0.3

    References:
        Higham, "Functions of Matrices: Theory and Computation", SIAM 2008, Ch. 11.
    """
    r = _check_square(r, "r")
    eye = eye_like(r)
    c = skew(jnp.linalg.solve(r + eye, r - eye))
    cdtype = jnp.result_type(r.dtype, jnp.complex64)
    _, v = jnp.linalg.eigh(1j * c.astype(cdtype))
    rv = r.astype(cdtype) @ v
    mu = jnp.sum(jnp.conj(v) * rv, axis=-2)
    theta = jnp.angle(mu)
    a = jnp.real((v * (1j * theta)[..., None, :]) @ jnp.conj(mT(v))).astype(r.dtype)
    # Determinant -1: r + I is singular only up to round-off, so the solve returns large but
    # finite values and a finite, wrong logarithm (||expm(a) - r|| ~ 2); it is marked here.
    reflection = jnp.linalg.det(r) <= 0
    a = jnp.where(reflection[..., None, None], jnp.nan, skew(a))
    if throw:
        a = eqx.error_if(
            a,
            ~jnp.all(jnp.isfinite(a)),
            "log_orthogonal: `r` has an eigenvalue -1 (determinant -1 or a rotation by pi); "
            "the principal logarithm on SO(n) is not defined there.",
        )
    return a


def householder_product(v: jax.typing.ArrayLike, p: int | None = None) -> jax.Array:
    r"""Orthogonal matrix from Householder vectors: ``(H_1 H_2 ... H_k)[:, :p]``.

    ``H_j = I - 2 v_j v_j^T / ||v_j||^2`` with ``v_j`` the j-th column of ``v``; a zero column
    is the identity (no reflection). ``k = n`` vectors reach all of O(n) and ``k`` columns
    give a ``k``-reflector subset; the result is exactly orthogonal for any ``v``, so it is an
    unconstrained parametrization for Euclidean optimizers. ``O(n k p)`` flops, applied in
    reverse to ``I[:, :p]``; differentiable.

    Args:
        v: float array ``(..., n, k)`` of reflector vectors.
        p: number of columns returned (static; default ``n``).

    Returns:
        ``(..., n, p)`` with orthonormal columns.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxspec import manifolds
        >>> q = manifolds.householder_product(jax.random.normal(jax.random.key(0), (5, 3)), 2)
        >>> q.shape, bool(manifolds.orthogonality_error(q) < 1e-5)
        ((5, 2), True)

    References:
        Mhammedi, Hellicar, Rahman, Bailey, "Efficient Orthogonal Parametrisation of Recurrent
        Neural Networks Using Householder Reflections", ICML 2017.
    """
    v = check_matrix(v, "v")
    n = v.shape[-2]
    p = n if p is None else check_int(p, "p")
    if p > n:
        raise ValueError(f"`p` must be <= n = {n}, got {p}.")
    norms2 = jnp.sum(v * v, axis=-2, keepdims=True)
    safe = jnp.where(norms2 > 0, norms2, 1.0)
    scaled = jnp.where(norms2 > 0, 2.0 * v / safe, 0.0)
    y0 = jnp.broadcast_to(jnp.eye(n, p, dtype=v.dtype), (*v.shape[:-2], n, p))

    def reflect(y, vw):
        vj, wj = vw
        return y - wj[..., :, None] * jnp.sum(vj[..., :, None] * y, axis=-2, keepdims=True), None

    cols = (jnp.moveaxis(v, -1, 0)[::-1], jnp.moveaxis(scaled, -1, 0)[::-1])
    y, _ = lax.scan(reflect, y0, cols)
    return y
