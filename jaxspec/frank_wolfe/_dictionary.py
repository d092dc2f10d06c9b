"""Orthogonal dictionary learning by l_p-norm maximization: online Frank–Wolfe and MSP/GPM.

Data ``Y = D0 X`` with ``D0`` orthogonal and sparse codes ``X``. A matrix ``A`` whose rows
are the atoms (``A ~ D0^T`` up to a signed permutation) maximizes the convex function
``f(A) = E (1/p) ||A y||_p^p`` over the orthogonal group; Xue and Lau relax the group to its
convex hull, the unit spectral-norm ball, where the linear minimization oracle is the polar
factor and Frank–Wolfe applies (maximizers of a convex function sit at extreme points, the
orthogonal matrices).
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

from jaxspec import spectral
from jaxspec._checks import as_float_array, check_choice, check_int, check_positive
from jaxspec._status import classify
from jaxspec._svd import svd
from jaxspec.frank_wolfe._solution import Solution
from jaxspec.frank_wolfe._stochastic import Schedule, stochastic_solve
from jaxspec.frank_wolfe.lmo import spectral_ball


def _check_p(p: int) -> int:
    if isinstance(p, bool) or p not in (3, 4):
        raise ValueError(f"`p` must be 3 or 4, got {p!r}.")
    return int(p)


def _polar(a: jax.Array) -> jax.Array:
    u, _, vh = svd(a)
    return u @ vh


def _polar_newton_schulz(a: jax.Array) -> jax.Array:
    tol = 1e-10 if a.dtype == jnp.float64 else 1e-4
    return spectral.polar(a, tol=tol).factor


def _lp_inputs(a, y, p):
    a = as_float_array(a, "a", min_ndim=2)
    y = as_float_array(y, "y", min_ndim=2)
    if a.ndim != 2 or y.ndim != 2 or a.shape[1] != y.shape[0]:
        raise ValueError(
            f"`a` (k, n) and `y` (n, b) must be matrices with matching n, got shapes "
            f"{a.shape} and {y.shape}."
        )
    _check_p(p)
    return a, y


def lp_objective(a: jax.typing.ArrayLike, y: jax.typing.ArrayLike, p: int = 3) -> jax.Array:
    """``(1/p) mean_j ||A y_j||_p^p`` for samples ``y`` of shape ``(n, b)`` (columns)."""
    a, y = _lp_inputs(a, y, p)
    return jnp.mean(jnp.sum(jnp.abs(a @ y) ** p, axis=0)) / p


def lp_gradient(a: jax.typing.ArrayLike, y: jax.typing.ArrayLike, p: int = 3) -> jax.Array:
    """Gradient of :func:`lp_objective`: ``(|AY|^(p-1) sign(AY)) Y^T / b``."""
    a, y = _lp_inputs(a, y, p)
    ay = a @ y
    return (jnp.abs(ay) ** (p - 1) * jnp.sign(ay)) @ y.T / y.shape[1]


def dictionary_recovery_error(a: jax.typing.ArrayLike, d0: jax.typing.ArrayLike) -> jax.Array:
    r"""``| ||A D0||_4^4 / n - 1 |``: zero exactly when ``A D0`` is a signed permutation.

    For orthogonal ``A`` every row of ``A D0`` has unit norm, so ``||A D0||_4^4 <= n`` with
    equality only for signed permutations (Zhai et al.; Xue and Lau). Leading axes batch.

    Args:
        a: learned matrix ``(..., n, n)`` (rows are atoms).
        d0: true dictionary ``(..., n, n)``.

    Returns:
        The error, shape ``(...)``.
    """
    a = as_float_array(a, "a", min_ndim=2)
    d0 = as_float_array(d0, "d0", min_ndim=2)
    if a.shape[-2:] != d0.shape[-2:] or a.shape[-1] != a.shape[-2]:
        raise ValueError(
            f"`a` and `d0` must be square (n, n) of the same size, got {a.shape} and {d0.shape}."
        )
    n = a.shape[-1]
    return jnp.abs(jnp.sum((a @ d0) ** 4, axis=(-2, -1)) / n - 1.0)


def online_orthogonal_dictionary(
    samples: jax.typing.ArrayLike,
    a0: jax.typing.ArrayLike,
    *,
    p: int = 3,
    batch_size: int = 10,
    schedule: Schedule = "online_odl",
    reproject: bool = True,
    polar_method: Literal["svd", "polar"] = "svd",
    d0: jax.typing.ArrayLike | None = None,
    record_every: int | None = None,
) -> Solution:
    r"""Online orthogonal dictionary learning by stochastic Frank–Wolfe (Xue and Lau).

    Streams the columns of ``samples`` in minibatches ``Y_t`` of ``batch_size`` and, for
    ``t = 0, 1, ...``:

    1. ``G_t = (1 - rho_t) G_{t-1} + rho_t grad f(A_{t-1}; Y_t)`` with the minibatch gradient
       ``(|A Y_t|^(p-1) sign(A Y_t)) Y_t^T / b`` (``G_{-1} = 0``);
    2. ``S_t = polar(G_t) = U V^T`` (the oracle of the unit spectral-norm ball, maximizing);
    3. ``A_t = (1 - gamma_t) A_{t-1} + gamma_t S_t``;
    4. ``A_t <- polar(A_t)`` (re-projection onto the orthogonal group; ``reproject=False``
       skips it, as copt-style stochastic FW would).

    ``schedule="online_odl"`` is the paper's nonconvex schedule ``rho_t = 4/(t+1)^(1/2)``,
    ``gamma_t = 2/(t+2)^(3/4)``; ``"mhk"`` is the convex schedule ``4/(t+8)^(2/3)``,
    ``2/(t+8)`` (the paper's SFW baseline). Both weights are clipped to 1 (the authors' code
    does not clip ``rho``; see :func:`jaxspec.frank_wolfe.stochastic_schedule`). No sample is
    stored; the loop is a ``lax.scan`` and vmaps over trials.

    Args:
        samples: ``Y``, float array ``(n, N)``, one sample per column; ``N`` must be a multiple
            of ``batch_size``.
        a0: starting matrix ``(n, n)`` (orthogonal, e.g. the Q factor of a random matrix).
        p: 3 (the paper's default) or 4.
        batch_size: minibatch size ``b`` (static).
        schedule: ``"online_odl"``, ``"mhk"``, ``"open_loop"`` or a callable
            ``t -> (rho_t, gamma_t)``.
        reproject: project each iterate back onto the orthogonal group.
        polar_method: ``"svd"`` (exact ``U V^T``, as the paper) or ``"polar"``
            (:func:`jaxspec.spectral.polar`: Newton–Schulz to a tolerance, matmuls only; much
            faster for batched trials on CPU, where batched SVDs are slow) for the oracle and
            the re-projection. On rank-deficient averaged gradients (the first steps with
            ``batch_size < n``) Newton–Schulz keeps zero singular values at zero while the SVD
            completes ``U V^T`` arbitrarily; both are valid oracle answers.
        d0: optional true dictionary ``(n, n)``: records
            :func:`dictionary_recovery_error` in ``stats["trace"]``.
        record_every: recording period in steps (default: about 100 points per run).

    Returns:
        A :class:`jaxspec.frank_wolfe.Solution`: ``x`` is ``A`` (rows are atoms; the
        dictionary is ``A^T``), ``value`` the objective on the last minibatch, ``gap`` the
        Frank–Wolfe gap of the averaged gradient; with ``d0``, ``stats["trace"]`` and
        ``stats["trace_steps"]``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxspec import frank_wolfe
        >>> k1, k2, k3, k4 = jax.random.split(jax.random.key(0), 4)
        >>> d0, _ = jnp.linalg.qr(jax.random.normal(k1, (8, 8)))
        >>> x = jax.random.normal(k2, (8, 20000)) * jax.random.bernoulli(k3, 0.3, (8, 20000))
        >>> a0, _ = jnp.linalg.qr(jax.random.normal(k4, (8, 8)))
        >>> sol = frank_wolfe.online_orthogonal_dictionary(d0 @ x, a0, d0=d0)
        >>> bool(sol.stats["trace"][-1] < 0.05)
        True

    References:
        Xue and Lau, "Online Orthogonal Dictionary Learning Based on Frank-Wolfe Method",
        arXiv:2103.01484 (IEEE TNNLS).
        Shen et al., "Complete Dictionary Learning via l_p-norm Maximization", UAI 2020,
        arXiv:2002.10043.
        Mokhtari, Hassani, Karbasi, arXiv:1804.09554.
    """
    y = as_float_array(samples, "samples", min_ndim=2)
    a0 = as_float_array(a0, "a0", min_ndim=2)
    p = _check_p(p)
    batch_size = check_int(batch_size, "batch_size")
    check_choice(polar_method, "polar_method", ("svd", "polar"))
    n, total = y.shape[-2], y.shape[-1]
    if y.ndim != 2:
        raise ValueError(f"`samples` must be 2-D (n, N), got shape {y.shape}.")
    if a0.shape != (n, n):
        raise ValueError(f"`a0` must have shape ({n}, {n}) to match `samples`, got {a0.shape}.")
    if total % batch_size or total < batch_size:
        raise ValueError(
            f"`batch_size` ({batch_size}) must divide the number of samples ({total})."
        )
    steps = total // batch_size
    if record_every is None:
        record_every = next(k for k in range(max(1, steps // 100), steps + 1) if steps % k == 0)
    batches = jnp.moveaxis(y.reshape(n, steps, batch_size), 1, 0)
    metric = None
    if d0 is not None:
        d0 = as_float_array(d0, "d0", min_ndim=2)
        metric = lambda a: dictionary_recovery_error(a, d0)  # noqa: E731
    oracle = spectral_ball(1.0, method=polar_method)
    return stochastic_solve(
        lambda a, batch: lp_objective(a, batch, p),
        a0.astype(y.dtype),
        oracle,
        batches,
        schedule=schedule,
        maximize=True,
        reproject=(_polar if polar_method == "svd" else _polar_newton_schulz)
        if reproject
        else None,
        metric=metric,
        record_every=record_every,
        grad_fn=lambda a, batch: lp_gradient(a, batch, p),
    )


def msp(
    samples: jax.typing.ArrayLike,
    a0: jax.typing.ArrayLike,
    *,
    p: int = 4,
    max_steps: int = 200,
    tol: jax.typing.ArrayLike = 1e-10,
) -> Solution:
    r"""Batch l_p maximization by full-step Frank–Wolfe: MSP (p = 4) / GPM (p = 3).

    ``A <- polar(grad f(A))`` with ``grad f(A) = (|AY|^(p-1) sign(AY)) Y^T / N``: Frank–Wolfe
    with step 1 on the spectral-norm ball, the Matching, Stretching and Projection iteration
    of Zhai et al. (p = 4) and the generalized power method of Shen et al. (p = 3). Stops
    when the relative Frank–Wolfe gap ``<G, polar(G) - A> / ||G||_*`` is ``<= tol`` (0 at a
    fixed point ``A = polar(G)``), inside a ``lax.while_loop``.

    Args:
        samples: ``Y``, ``(n, N)``, one sample per column.
        a0: starting matrix ``(n, n)``.
        p: 3 or 4.
        max_steps: iteration budget (static).
        tol: tolerance on the relative gap (may be traced).

    Returns:
        A :class:`jaxspec.frank_wolfe.Solution` (``value`` is ``f(A)`` on all samples).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxspec import frank_wolfe
        >>> k1, k2, k3, k4 = jax.random.split(jax.random.key(1), 4)
        >>> d0, _ = jnp.linalg.qr(jax.random.normal(k1, (6, 6)))
        >>> x = jax.random.normal(k2, (6, 4000)) * jax.random.bernoulli(k3, 0.3, (6, 4000))
        >>> a0, _ = jnp.linalg.qr(jax.random.normal(k4, (6, 6)))
        >>> sol = frank_wolfe.msp(d0 @ x, a0, tol=1e-6)
        >>> int(sol.status), bool(frank_wolfe.dictionary_recovery_error(sol.x, d0) < 0.05)
        (0, True)

    References:
        Zhai, Yang, Liao, Wright, Ma, "Complete Dictionary Learning via l4-Norm Maximization
        over the Orthogonal Group", JMLR 2020, arXiv:1906.02435.
        Shen et al., UAI 2020, arXiv:2002.10043.
    """
    y = as_float_array(samples, "samples", min_ndim=2)
    a0 = as_float_array(a0, "a0", min_ndim=2)
    p = _check_p(p)
    max_steps = check_int(max_steps, "max_steps", minimum=0)
    check_positive(tol, "tol")
    n = y.shape[0]
    if y.ndim != 2 or a0.shape != (n, n):
        raise ValueError(f"`samples` must be (n, N) and `a0` (n, n); got {y.shape} and {a0.shape}.")
    tol = jnp.asarray(tol, y.dtype)

    def measure(a):
        g = lp_gradient(a, y, p)
        u, s, vh = svd(g)
        target = u @ vh
        gap = (jnp.sum(s) - jnp.vdot(g, a)) / jnp.maximum(jnp.sum(s), jnp.finfo(y.dtype).tiny)
        return target, gap

    def cond(state):
        _, _, gap, t = state
        return (t < max_steps) & (gap > tol) & jnp.isfinite(gap)

    def body(state):
        _, target, _, t = state
        a = target
        target, gap = measure(a)
        return a, target, gap, t + 1

    a0 = a0.astype(y.dtype)
    target, gap = measure(a0)
    a, _, gap, t = jax.lax.while_loop(cond, body, (a0, target, gap, jnp.int32(0)))
    return Solution(a, lp_objective(a, y, p), gap, t, classify(gap <= tol, gap), {})
