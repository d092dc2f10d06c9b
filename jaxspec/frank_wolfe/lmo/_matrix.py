"""Oracles of matrix sets: nuclear-norm (trace-norm) and spectral-norm balls.

Every leaf ``(..., m, n)`` of the iterate holds matrices on its last two axes, and every leaf
and every leading batch index is its *own* ball: the set is the product of the balls
``{X_b : ||X_b|| <= radius}``. (A single ball over a whole pytree of matrices is not a
nuclear-norm ball of any one matrix; stack the blocks yourself if that is what you need.)
"""

from __future__ import annotations

import functools
from typing import Any, Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from jaxspec import spectral
from jaxspec._checks import check_choice, check_int
from jaxspec._ordering import serialized
from jaxspec._svd import svd
from jaxspec.frank_wolfe.lmo._base import LinearMinimizationOracle
from jaxspec.frank_wolfe.lmo._common import (
    check_radius,
    matrix_leaves,
    optional_tol,
    project_simplex_flat,
    safe_norm,
)
from jaxspec.spectral._newton_schulz import mT, wide

PyTree = Any

_DEFAULT_TOL = 1e-10
_DEFAULT_MAX_ITERS = {"power": 200, "lanczos": 64}


class NuclearState(NamedTuple):
    """Warm-start state of :func:`nuclear_ball` (``method="power"`` or ``"lanczos"``).

    Attributes:
        vector: per leaf ``(..., min(m, n))``: the last top singular vector on the smaller
            side of each matrix (the start of the next call).
        num_iters: per leaf int32 ``(...)``: power iterations (or Lanczos steps) taken by the
            last call; 0 after :meth:`NuclearBall.init`.
    """

    vector: PyTree
    num_iters: PyTree


def _normalize(v: jax.Array) -> jax.Array:
    norm, positive = safe_norm(jnp.sum(v * v, axis=-1, keepdims=True))
    return jnp.where(positive, v / jnp.where(positive, norm, 1.0), 0.0)


def _start_vector(p: int, dtype) -> jax.Array:
    """Fixed pseudo-random unit vector (drawn in float32 so every dtype starts alike)."""
    return _normalize(jax.random.normal(jax.random.key(0), (p,), jnp.float32).astype(dtype))


def _warm_start(g: jax.Array, u0: jax.Array) -> jax.Array:
    """The start vector: ``u0`` mixed with a fixed pseudo-random vector, normalized.

    In a Frank–Wolfe solve the previous vertex is part of the iterate, so the previous top
    singular vector is often an *exact* singular vector of the new gradient, no longer the top
    one. Power iteration (or Lanczos) from it would stay there; the random component (weight
    ``eps^(1/3)``: 6e-6 in float64, 5e-3 in float32) lets the true top direction grow. A start
    that misses the range of ``g`` (``||g^T u0||^2 <= eps ||g||_F^2``, e.g. a zero state) is
    replaced by the random vector.
    """
    eps = jnp.finfo(g.dtype).eps
    w = _start_vector(g.shape[0], g.dtype)
    u0 = _normalize(u0)
    energy = jnp.sum(jnp.square(u0 @ g))  # ``u0 @ g``, not ``g.T @ u0``: no transpose copy
    fresh = energy <= eps * jnp.sum(jnp.square(g))
    return jnp.where(fresh, w, _normalize(u0 + eps ** (1 / 3) * w))


def _gram(g: jax.Array, q: jax.Array) -> jax.Array:
    """``g g^T q`` written transpose-free (XLA:CPU copies ``g.T`` on every product)."""
    return g @ (q @ g)


def _power_top(g: jax.Array, u0: jax.Array, tol: jax.Array, max_iters: int):
    """Top left singular vector of one wide matrix ``g (p, n)``, ``p <= n``, by power iteration.

    Iterates ``u <- normalize(g g^T u)`` until ``||u_new - u|| <= tol`` (at least one step) or
    ``max_iters`` steps. Returns ``(u, steps)``.
    """
    u = _warm_start(g, u0)

    def cond(carry):
        _, change, it = carry
        return (it < max_iters) & (change > tol)

    def body(carry):
        u, _, it = carry
        u_new = _normalize(_gram(g, u))
        change, _ = safe_norm(jnp.sum(jnp.square(u_new - u)))
        return u_new, change, it + 1

    init = (u, jnp.asarray(jnp.inf, g.dtype), jnp.int32(0))
    u, _, it = jax.lax.while_loop(cond, body, init)
    return u, it


# Lanczos schedule: the first convergence check after _FIRST_CHECK steps (a dense eigh of the
# leading block), then one every _CHECK_EVERY steps (Rayleigh quotient iteration on the
# tridiagonal matrix, certified by a Cholesky factorization).
_FIRST_CHECK = 16
_CHECK_EVERY = 3
_RQI_STEPS = 3


def _tri_matvec(a: jax.Array, b: jax.Array, y: jax.Array) -> jax.Array:
    """``T y`` for the symmetric tridiagonal ``T`` with diagonal ``a (k,)``, off-diagonal
    ``b (k - 1,)``."""
    zero = jnp.zeros((1,), y.dtype)
    return a * y + jnp.concatenate([b * y[1:], zero]) + jnp.concatenate([zero, b * y[:-1]])


def _tri_dense(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.diag(a) + jnp.diag(b, 1) + jnp.diag(b, -1)


def _tri_top(a: jax.Array, b: jax.Array, y: jax.Array):
    """Top eigenpair of the tridiagonal ``T`` (diagonal ``a``, off-diagonal ``b``), PSD.

    Rayleigh quotient iteration from ``y`` (the previous top Ritz vector, zero-padded), then a
    certificate: ``T`` has no eigenvalue above ``theta (1 + 1e-10)`` when
    ``(theta (1 + 1e-10) + tiny) I - T`` has a Cholesky factor. Without the certificate (RQI
    found a lower eigenpair) a dense ``eigh`` decides (rare: a ``lax.cond`` under ``jit``).
    Returns ``(theta, y)``.
    """
    k = a.shape[0]
    dtype = a.dtype
    zero = jnp.zeros((1,), dtype)
    lower = jnp.concatenate([zero, b])
    upper = jnp.concatenate([b, zero])
    tiny = jnp.finfo(dtype).tiny / jnp.finfo(dtype).eps

    for _ in range(_RQI_STEPS):
        theta = jnp.dot(y, _tri_matvec(a, b, y))
        z = jax.lax.linalg.tridiagonal_solve(lower, a - theta, upper, y[:, None])[:, 0]
        z = _normalize(z)
        ok = jnp.all(jnp.isfinite(z)) & jnp.any(z != 0)
        y = jnp.where(ok, z, y)
    theta = jnp.dot(y, _tri_matvec(a, b, y))
    shift = theta * (1 + 1e-10) + tiny
    chol = jnp.linalg.cholesky(shift * jnp.eye(k, dtype=dtype) - _tri_dense(a, b))
    certified = jnp.all(jnp.isfinite(jnp.diagonal(chol)))

    def dense(_):
        values, vectors = jnp.linalg.eigh(_tri_dense(a, b))
        return values[-1], vectors[:, -1]

    return jax.lax.cond(certified, lambda _: (theta, y), dense, None)


def _lanczos_top(g: jax.Array, u0: jax.Array, tol: jax.Array, max_iters: int):
    """Top eigenvector of ``g g^T`` (``g (p, n)``, ``p <= n``) by Lanczos, stopped early.

    Full reorthogonalization (one classical Gram–Schmidt pass after the three-term recurrence)
    against every previous Lanczos vector; a breakdown (an invariant subspace) leaves the
    remaining vectors zero. Stops when the top Ritz pair ``(theta, u)`` has
    ``||g g^T u - theta u|| = beta_j |e_j^T y| <= tol * theta`` (checked after
    ``_FIRST_CHECK`` steps, then every ``_CHECK_EVERY``), or after ``max_iters`` (capped at
    ``p``) steps. Returns ``(u, steps)``.
    """
    p = g.shape[0]
    k = min(max_iters, p)
    eps = jnp.finfo(g.dtype).eps
    scale = jnp.sum(jnp.square(g))  # ||g||_F^2 >= ||g g^T||_2
    q0 = _warm_start(g, u0)

    def step(j, carry):
        basis, alpha, beta, q, q_prev = carry
        basis = basis.at[j].set(q)
        w = _gram(g, q)
        a = jnp.dot(q, w)
        b_prev = jnp.where(j > 0, beta[jnp.maximum(j - 1, 0)], 0)
        w = w - a * q - b_prev * q_prev
        w = w - (basis @ w) @ basis
        b, _ = safe_norm(jnp.sum(w * w))
        alive = b > 10 * eps * scale
        q_next = jnp.where(alive, w / jnp.where(alive, b, 1), 0)
        beta = beta.at[j].set(jnp.where(alive, b, 0))
        return basis, alpha.at[j].set(a), beta, q_next, q

    zeros = jnp.zeros((k,), g.dtype)
    init = (jnp.zeros((k, p), g.dtype), zeros, zeros, q0, jnp.zeros_like(q0))

    def residual(alpha, beta, theta, y, j):
        # ||g g^T u - theta u|| for u = basis^T y: the tridiagonal part is ~0 by construction.
        return jnp.abs(beta[j - 1] * y[j - 1]) + jnp.linalg.norm(
            _tri_matvec(alpha, beta[:-1], y) - theta * y
        )

    if k <= _FIRST_CHECK:
        basis, alpha, beta, _, _ = jax.lax.fori_loop(0, k, step, init)
        values, vectors = jnp.linalg.eigh(_tri_dense(alpha, beta[:-1]))
        return _normalize(vectors[:, -1] @ basis), jnp.int32(k)

    carry = jax.lax.fori_loop(0, _FIRST_CHECK, step, init)
    _, alpha, beta, _, _ = carry
    m = _FIRST_CHECK
    values, vectors = jnp.linalg.eigh(_tri_dense(alpha[:m], beta[: m - 1]))
    theta = values[-1]
    y = jnp.zeros((k,), g.dtype).at[:m].set(vectors[:, -1])
    res = residual(alpha, beta, theta, y, m)

    def cond(state):
        carry, theta, y, res, j = state
        return (j < k) & (res > tol * theta)

    def body(state):
        carry, theta, y, res, j = state
        stop = jnp.minimum(j + _CHECK_EVERY, k)
        carry = jax.lax.fori_loop(j, stop, step, carry)
        _, alpha, beta, _, _ = carry
        theta, y = _tri_top(alpha, beta[:-1], y)
        return carry, theta, y, residual(alpha, beta, theta, y, stop), stop

    state = (carry, theta, y, res, jnp.int32(m))
    carry, theta, y, res, j = jax.lax.while_loop(cond, body, state)
    basis = carry[0]
    return _normalize(y @ basis), j


def _floored_tol(tol: jax.Array | None, dtype, p: int) -> jax.Array:
    """``tol`` (default ``1e-10``) raised to the round-off floor ``10 sqrt(p) eps``."""
    tol = _DEFAULT_TOL if tol is None else tol
    floor = 10 * np.sqrt(p) * np.finfo(dtype).eps
    return jnp.maximum(jnp.asarray(tol, dtype), jnp.asarray(floor, dtype))


# The kernels below are jitted at module level so that eager calls reuse their compilation;
# inside an outer jit they are inlined.


@functools.partial(jax.jit, static_argnames=("method", "max_iters"))
def _nuclear_vertex(g, u0, radius, tol, *, method: str, max_iters: int):
    """Vertex, next start vector and step counts of one leaf ``(..., m, n)``."""
    transposed = g.shape[-2] > g.shape[-1]
    gw, _ = wide(g)
    p, n = gw.shape[-2:]
    batch = gw.shape[:-2]
    flat_g = gw.reshape((-1, p, n))
    flat_u = jnp.broadcast_to(u0.astype(g.dtype), batch + (p,)).reshape(-1, p)
    tol = _floored_tol(tol, g.dtype, p)
    top = _power_top if method == "power" else _lanczos_top
    if flat_g.shape[0] == 1:
        # No vmap for a single matrix: it would turn the early-stopped loops' ``lax.cond``
        # (the rare dense-eigh fallback of Lanczos) into a ``select`` that always runs both.
        u, steps = top(flat_g[0], flat_u[0], tol, max_iters)
        u, steps = u[None], steps[None]
    else:
        u, steps = jax.vmap(lambda a, b: top(a, b, tol, max_iters))(flat_g, flat_u)
    v = _normalize(jax.vmap(lambda a, b: b @ a)(flat_g, u))
    s = (-radius.astype(g.dtype) * (u[:, :, None] * v[:, None, :])).reshape(gw.shape)
    # A zero result (g == 0) keeps the previous start vector for the next call.
    keep = jnp.sum(u * u, axis=-1, keepdims=True) > 0
    new_u = jnp.where(keep, u, _normalize(flat_u)).reshape(batch + (p,)).astype(u0.dtype)
    return (mT(s) if transposed else s), new_u, steps.reshape(batch)


@jax.jit
def _nuclear_vertex_svd(g, radius):
    u, _, vh = svd(g)
    return -radius.astype(g.dtype) * (u[..., :, :1] @ vh[..., :1, :])


@jax.jit
def _nuclear_project(x, radius):
    u, s, vh = svd(x)
    r = radius.astype(x.dtype)
    flat_s = s.reshape(-1, s.shape[-1])
    ps = jax.vmap(lambda t: project_simplex_flat(t, r, equality=False))(flat_s)
    # X + U (P(s) - s) V^T: exactly X when the ball already holds it.
    return x + (u * (ps.reshape(s.shape) - s)[..., None, :]) @ vh


@functools.partial(jax.jit, static_argnames=("method", "steps"))
def _spectral_vertex(g, radius, tol, *, method: str, steps: int):
    if method == "svd":
        u, _, vh = svd(g)
        q = u @ vh
    elif method == "newton_schulz":
        q = spectral.orthogonalize(g, steps=steps)
    else:
        q = spectral.polar(g, _floored_tol(tol, g.dtype, min(g.shape[-2:]))).factor
    return -radius.astype(g.dtype) * q


@jax.jit
def _spectral_project(x, radius):
    u, s, vh = svd(x)
    r = radius.astype(x.dtype)
    # X + U (min(s, r) - s) V^T: exactly X when no singular value exceeds r.
    return x + (u * (jnp.minimum(s, r) - s)[..., None, :]) @ vh


class NuclearBall(LinearMinimizationOracle):
    r"""Product of nuclear-norm balls ``{X : ||X||_* <= radius}``; see :func:`nuclear_ball`."""

    radius: jax.Array
    tol: jax.Array | None
    method: str = eqx.field(static=True)
    max_iters: int = eqx.field(static=True)

    def __init__(
        self,
        radius: jax.typing.ArrayLike = 1.0,
        *,
        method: Literal["power", "lanczos", "svd"] = "lanczos",
        max_iters: int | None = None,
        tol: jax.typing.ArrayLike | None = None,
    ):
        self.radius = check_radius(radius)
        self.method = check_choice(method, "method", ("power", "lanczos", "svd"))
        if max_iters is None:
            max_iters = _DEFAULT_MAX_ITERS.get(method, 1)
        self.max_iters = check_int(max_iters, "max_iters", minimum=1)
        self.tol = optional_tol(tol)

    def init(self, x: PyTree) -> PyTree:
        if self.method == "svd":
            return ()
        leaves, treedef = matrix_leaves(x, "x")
        vectors, counts = [], []
        for leaf in leaves:
            p = min(leaf.shape[-2:])
            batch = leaf.shape[:-2]
            vectors.append(jnp.broadcast_to(_start_vector(p, leaf.dtype), batch + (p,)))
            counts.append(jnp.zeros(batch, jnp.int32))
        return NuclearState(
            jax.tree.unflatten(treedef, vectors), jax.tree.unflatten(treedef, counts)
        )

    def minimize(self, grad: PyTree, state: PyTree) -> tuple[PyTree, PyTree]:
        leaves, treedef = matrix_leaves(grad, "grad")
        if self.method == "svd":
            out = serialized(leaves, lambda g: _nuclear_vertex_svd(g, self.radius))
            return jax.tree.unflatten(treedef, out), state
        try:
            starts = treedef.flatten_up_to(state.vector)
        except (ValueError, TypeError, AttributeError) as err:
            raise ValueError(
                f"`state` must be the NuclearState of `init` for this pytree: {err}"
            ) from None
        # Lanczos ends in a batched eigh (LAPACK): serialized like the SVDs.
        pending = iter(starts)
        results = serialized(
            leaves,
            lambda g: _nuclear_vertex(
                g,
                next(pending),
                self.radius,
                self.tol,
                method=self.method,
                max_iters=self.max_iters,
            ),
        )
        vertices, vectors, counts = (list(v) for v in zip(*results))
        new_state = NuclearState(
            jax.tree.unflatten(treedef, vectors), jax.tree.unflatten(treedef, counts)
        )
        return jax.tree.unflatten(treedef, vertices), new_state

    @property
    def has_projection(self) -> bool:
        return True

    def project(self, y: PyTree) -> PyTree:
        leaves, treedef = matrix_leaves(y, "y")
        out = serialized(leaves, lambda x: _nuclear_project(x, self.radius))
        return jax.tree.unflatten(treedef, out)


def nuclear_ball(
    radius: jax.typing.ArrayLike = 1.0,
    *,
    method: Literal["power", "lanczos", "svd"] = "lanczos",
    max_iters: int | None = None,
    tol: jax.typing.ArrayLike | None = None,
) -> NuclearBall:
    r"""Oracle of the nuclear-norm (trace-norm) ball ``{X : ||X||_* <= radius}``.

    Each matrix of each leaf ``(..., m, n)`` is its own ball (a product of balls over leaves
    and leading batch axes). The vertex is ``-radius u_1 v_1^T`` from the top singular pair of
    ``g``, a rank-one matrix, so ``<g, s> = -radius sigma_1(g)``.

    Methods:

    * ``"lanczos"`` (default): Lanczos on the Gram matrix of the smaller side with full
      reorthogonalization, warm-started from the oracle state (:meth:`NuclearBall.init` gives
      a fixed pseudo-random vector per matrix; :meth:`~NuclearBall.minimize` returns the new
      top vector). The start is mixed with a fixed pseudo-random vector (weight
      ``eps^(1/3)``): the previous vertex is part of the iterate, so its singular vector is
      often an *exact*, no longer top, singular vector of the new gradient, which a Krylov
      method could not leave. It stops when the top Ritz pair ``(theta, u)`` of ``G = g g^T``
      (or ``g^T g``) has ``||G u - theta u|| <= tol * theta`` (default ``tol = 1e-10``, raised
      to the round-off floor ``10 sqrt(min(m, n)) eps``; checked after 16 steps, then every
      3), or after ``max_iters`` steps (default 64, capped at ``min(m, n)``; smaller matrices
      run all ``min(m, n)`` steps, which is exact). Convergence depends on the square root of
      the relative gap of the top eigenvalue, so nearly repeated top singular values (Frank–
      Wolfe runs towards solutions of rank > 1 produce them) cost tens of steps, not
      thousands. The small tridiagonal eigenproblem is solved by Rayleigh quotient iteration,
      certified to be the top pair by a Cholesky factorization (a dense ``eigh`` otherwise).
      With the defaults a float64 Frank–Wolfe solve agrees with the exact-SVD oracle to
      round-off (tested to ``1e-8`` relative in objective on a matrix-completion problem whose
      gradients have ``sigma_2 / sigma_1`` up to 0.999). Under ``vmap`` (or with leading
      batch axes) the loop runs until every matrix has converged, and the rare ``eigh``
      fallback runs at every check.
    * ``"power"``: power iteration on the same Gram matrix, warm-started the same way, in a
      ``lax.while_loop`` until the unit vector changes by at most ``tol`` in one step (the
      direction error is then about ``tol / (1 - (sigma_2 / sigma_1)^2)``, the value error
      its square) or ``max_iters`` steps (default 200). Convergence is at the rate
      ``(sigma_2 / sigma_1)^2`` per step, so nearly repeated top singular values exhaust
      ``max_iters``; the vertex is then still nearly optimal in value but not in direction.
    * ``"svd"``: exact, from ``jnp.linalg.svd`` (stateless, the reference).

    The projection computes the SVD and projects the singular values onto
    ``{s >= 0, sum s <= radius}`` (sort-based, exact), differentiable in ``y`` (where the
    singular values are distinct) and ``radius``.

    Args:
        radius: the radius ``> 0`` (array field; may be traced).
        method: ``"power"``, ``"lanczos"`` or ``"svd"`` (static).
        max_iters: power-iteration or Lanczos-step budget (static int ``>= 1``).
        tol: relative Ritz-residual tolerance of ``"lanczos"``, tolerance on the per-step
            change of the unit vector of ``"power"`` (array field); ``None`` means ``1e-10``.

    Returns:
        A :class:`NuclearBall`. Its state is a :class:`NuclearState` (``()`` for ``"svd"``);
        ``state.num_iters`` counts the iterations of the last call.

    Raises:
        ValueError: naming ``radius``, ``method``, ``max_iters`` or ``tol`` at construction;
            ``grad`` (or ``x``/``y``) when a leaf is not a float array of rank >= 2.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxspec.frank_wolfe import lmo
        >>> g = jnp.diag(jnp.array([1.0, -4.0, 2.0]))
        >>> oracle = lmo.nuclear_ball(2.0)
        >>> s, state = oracle.minimize(g, oracle.init(g))
        >>> jnp.round(jnp.vdot(g, s), 4)  # -radius * sigma_1
        Array(-8., dtype=float32)

    References:
        Jaggi, "Revisiting Frank-Wolfe: Projection-Free Sparse Convex Optimization", ICML 2013.
        Golub and Van Loan, "Matrix Computations", 4th ed., Sec. 8.2 (power method) and
        Ch. 10 (Lanczos).
    """
    return NuclearBall(radius, method=method, max_iters=max_iters, tol=tol)


class SpectralBall(LinearMinimizationOracle):
    r"""Product of spectral-norm balls ``{X : ||X||_2 <= radius}``; see
    :func:`spectral_ball`."""

    radius: jax.Array
    tol: jax.Array | None
    method: str = eqx.field(static=True)
    steps: int = eqx.field(static=True)

    def __init__(
        self,
        radius: jax.typing.ArrayLike = 1.0,
        *,
        method: Literal["svd", "polar", "newton_schulz"] = "svd",
        steps: int = 5,
        tol: jax.typing.ArrayLike | None = None,
    ):
        self.radius = check_radius(radius)
        self.method = check_choice(method, "method", ("svd", "polar", "newton_schulz"))
        self.steps = check_int(steps, "steps", minimum=1)
        self.tol = optional_tol(tol)

    def minimize(self, grad: PyTree, state: PyTree) -> tuple[PyTree, PyTree]:
        leaves, treedef = matrix_leaves(grad, "grad")

        def vertex(g):
            return _spectral_vertex(g, self.radius, self.tol, method=self.method, steps=self.steps)

        out = serialized(leaves, vertex) if self.method == "svd" else [vertex(g) for g in leaves]
        return jax.tree.unflatten(treedef, out), state

    @property
    def has_projection(self) -> bool:
        return True

    def project(self, y: PyTree) -> PyTree:
        leaves, treedef = matrix_leaves(y, "y")
        out = serialized(leaves, lambda x: _spectral_project(x, self.radius))
        return jax.tree.unflatten(treedef, out)


def spectral_ball(
    radius: jax.typing.ArrayLike = 1.0,
    *,
    method: Literal["svd", "polar", "newton_schulz"] = "svd",
    steps: int = 5,
    tol: jax.typing.ArrayLike | None = None,
) -> SpectralBall:
    r"""Oracle of the spectral-norm (operator-norm) ball ``{X : ||X||_2 <= radius}``.

    Each matrix of each leaf ``(..., m, n)`` is its own ball (a product of balls over leaves
    and leading batch axes). The vertex is ``-radius * polar(g) = -radius U V^T`` for
    ``g = U S V^T``, with ``<g, s> = -radius * sum(sigma)`` (the nuclear norm, the dual norm):
    the oracle of Xue and Lau's online orthogonal dictionary learning and, up to scale, the
    Muon update.

    Methods (static):

    * ``"svd"`` (default): exact, ``U V^T`` from ``jnp.linalg.svd``.
    * ``"polar"``: :func:`jaxspec.spectral.polar` iterated until ``||Q Q^T - I||_F <= tol``
      (default ``1e-10``, raised to the floor ``10 sqrt(min(m, n)) eps``; past it the
      iteration stops on stagnation). Matmuls only. Rank-deficient ``g`` keeps its zero
      singular values at zero (still a minimizer).
    * ``"newton_schulz"``: :func:`jaxspec.spectral.orthogonalize` with ``steps`` Polar
      Express steps (Muon-style, fast and approximate). With 5 steps the vertex's singular
      values lie in ``[0.85, 1.12] radius`` for normalized singular values in ``[1e-3, 1]``,
      so the vertex may leave the ball by up to 12%; use ``"polar"`` or ``"svd"`` when
      feasibility matters.

    The projection clips the singular values at ``radius`` (an SVD; exact, differentiable in
    ``y`` where the singular values are distinct, and in ``radius``).

    Args:
        radius: the radius ``> 0`` (array field; may be traced).
        method: ``"svd"``, ``"polar"`` or ``"newton_schulz"``.
        steps: Newton–Schulz steps of ``"newton_schulz"`` (static int ``>= 1``).
        tol: tolerance of ``"polar"`` (array field); ``None`` means ``1e-10``.

    Returns:
        A :class:`SpectralBall` (stateless).

    Raises:
        ValueError: naming ``radius``, ``method``, ``steps`` or ``tol`` at construction;
            ``grad`` (or ``y``) when a leaf is not a float array of rank >= 2.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxspec.frank_wolfe import lmo
        >>> g = jnp.array([[3.0, 0.0], [0.0, -0.5]])
        >>> s = lmo.spectral_ball(2.0)(g)
        >>> float(jnp.vdot(g, s))  # -radius * (3 + 0.5)
        -7.0

    References:
        Jaggi, "Revisiting Frank-Wolfe: Projection-Free Sparse Convex Optimization", ICML 2013.
        Xue and Lau, "Online Orthogonal Dictionary Learning Based on Frank-Wolfe Method",
        arXiv:2103.01484.
        Pethick et al., "Training Deep Learning Models with Norm-Constrained LMOs",
        arXiv:2502.07529.
    """
    return SpectralBall(radius, method=method, steps=steps, tol=tol)
