"""ISTA and FISTA: proximal gradient sparse coding with soft, hard, l_{1/2} or CEL0 thresholds.

The problem, for every signal of a batch,

    ``min_z 1/2 |y - D z|^2 + lam * sum_i penalty(z_i)``

(CEL0: ``+ sum_i phi(|d_i|, lam; z_i)``), is solved by the proximal gradient step
``z <- prox_{step lam penalty}(z - step D^T (D z - y))`` from :mod:`._thresholds`, driven by
one ``lax.while_loop`` over the whole batch with per-signal stopping by masks (a converged
signal is frozen while the others run).

References:
    Daubechies, Defrise and De Mol, "An iterative thresholding algorithm for linear inverse
    problems with a sparsity constraint", CPAM 57(11), 2004.
    Beck and Teboulle, "A fast iterative shrinkage-thresholding algorithm for linear inverse
    problems", SIAM J. Imaging Sci. 2(1), 2009.
    Attouch, Bolte and Svaiter, "Convergence of descent methods for semi-algebraic and tame
    problems", Math. Program. 137, 2013 (nonconvex proximal gradient).
    Soubies, Blanc-Feraud and Aubert, SIAM J. Imaging Sci. 8(3), 2015 (CEL0).
    Rentzeperis, Calatroni, Perrinet and Prandi, "Beyond l1 sparse coding in V1", PLOS
    Comput. Biol. 19(9), 2023.
"""

from __future__ import annotations

import functools
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxspec._checks import as_float_array, check_choice, check_int, check_positive
from jaxspec._status import Status
from jaxspec.pursuit._common import dictionary_and_signals
from jaxspec.pursuit._thresholds import THRESHOLDS, check_nonnegative, penalty, prox


class IstaSolution(NamedTuple):
    """Result of :func:`ista` / :func:`fista`; every field has the leading batch axes of ``y``.

    Attributes:
        codes: the last iterate ``z``, ``(..., K)``.
        objective: ``1/2 |y - D z|^2 + lam * sum_i penalty(z_i)`` at ``codes`` (CEL0:
            ``+ sum_i phi(|d_i|, lam; z_i)``), ``(...)``.
        residual_norm: the fixed-point residual of the last step,
            ``|z_{t+1} - x_t| / step`` (``x_t = z_t`` for ISTA, the extrapolated point for
            FISTA): the norm of the proximal gradient mapping, zero exactly at fixed points
            of the thresholded gradient step, ``(...)``.
        num_steps: steps taken per signal, int32 ``(...)``.
        status: :class:`jaxspec.Status` per signal: ``CONVERGED`` when
            ``residual_norm <= tol * |D^T y|``, ``MAX_STEPS`` when the budget ran out first,
            ``NONFINITE`` when a NaN/Inf appeared (in ``y``, the iterate or the objective;
            that signal stops).
    """

    codes: jax.Array
    objective: jax.Array
    residual_norm: jax.Array
    num_steps: jax.Array
    status: jax.Array


class _State(NamedTuple):
    z: jax.Array  # (B, K) current iterate
    point: jax.Array  # (B, K) where the next gradient step is taken (= z without momentum)
    momentum: jax.Array  # (B,) Beck-Teboulle t_k
    residual: jax.Array  # (B,)
    steps: jax.Array  # (B,) int32
    running: jax.Array  # (B,) bool
    finite: jax.Array  # (B,) bool
    it: jax.Array  # () int32


def lipschitz(dictionary: jax.Array) -> jax.Array:
    """``L = |D|_2^2``, the Lipschitz constant of ``z -> D^T (D z - y)`` (floored at ``tiny``)."""
    spectral = jnp.linalg.norm(dictionary, 2)
    return jnp.maximum(spectral * spectral, jnp.finfo(dictionary.dtype).tiny)


def _broadcast(value, name: str, shape: tuple[int, ...], what: str):
    arr = jnp.asarray(value)
    try:
        out = np.broadcast_shapes(arr.shape, shape)
    except ValueError:
        out = None
    if out != shape:
        raise ValueError(
            f"`{name}` of shape {tuple(arr.shape)} must broadcast to {what} {shape}."
        ) from None
    return arr


def _inputs(dictionary, y, lam, threshold, step, max_steps, tol, accelerate, init):
    d, y = dictionary_and_signals(dictionary, y)
    check_choice(threshold, "threshold", THRESHOLDS)
    max_steps = check_int(max_steps, "max_steps")
    if not isinstance(accelerate, bool | np.bool_):
        raise ValueError(f"`accelerate` must be a bool, got {accelerate!r}.")
    accelerate = bool(accelerate)
    dtype = jnp.result_type(d, y)
    batch = tuple(y.shape[:-1])
    codes_shape = batch + (d.shape[1],)
    check_nonnegative(lam, "lam")
    lam = _broadcast(lam, "lam", codes_shape, "the codes' shape")
    check_nonnegative(tol, "tol")
    tol = _broadcast(tol, "tol", batch, "the batch shape")
    if step is not None:
        check_positive(step, "step")
        step = _broadcast(step, "step", batch, "the batch shape").astype(dtype)
    if init is not None:
        init = as_float_array(init, "init")
        init = _broadcast(init, "init", codes_shape, "the codes' shape").astype(dtype)
    return d.astype(dtype), y.astype(dtype), lam.astype(dtype), tol.astype(dtype), step, init


def _run(d, y, lam, step, tol, z0, *, threshold, max_steps, accelerate):
    """The loop on flat arrays: ``y`` (B, d), ``lam`` and ``z0`` (B, K), ``step`` (B, 1),
    ``tol`` (B,)."""
    b, n_atoms = z0.shape
    dtype = y.dtype
    a_norm = jnp.linalg.norm(d, axis=0)
    target = tol * jnp.linalg.norm(y @ d, axis=1)

    def body(s: _State) -> _State:
        v = s.point - step * ((s.point @ d.T - y) @ d)
        z_new = prox(threshold, v, lam, step, a_norm)
        res = jnp.linalg.norm(z_new - s.point, axis=1) / step[:, 0]
        finite = jnp.all(jnp.isfinite(v), axis=1) & jnp.isfinite(res)
        if accelerate:
            t_new = (1 + jnp.sqrt(1 + 4 * s.momentum * s.momentum)) / 2
            beta = (s.momentum - 1) / t_new
            point_new = z_new + beta[:, None] * (z_new - s.z)
        else:
            t_new, point_new = s.momentum, z_new
        run = s.running[:, None]
        return _State(
            z=jnp.where(run, z_new, s.z),
            point=jnp.where(run, point_new, s.point),
            momentum=jnp.where(s.running, t_new, s.momentum),
            residual=jnp.where(s.running, res, s.residual),
            steps=s.steps + s.running.astype(jnp.int32),
            running=s.running & finite & ~(res <= target),
            finite=jnp.where(s.running, finite, s.finite),
            it=s.it + 1,
        )

    def cond(s: _State) -> jax.Array:
        return (s.it < max_steps) & jnp.any(s.running)

    # XLA may fold ``lam * 0`` away, so a NaN weight is caught here rather than by the
    # objective; such a signal does not run.
    lam_ok = jnp.all(jnp.isfinite(lam), axis=1)
    init = _State(
        z=z0,
        point=z0,
        momentum=jnp.ones(b, dtype),
        residual=jnp.full(b, jnp.inf, dtype),
        steps=jnp.zeros(b, jnp.int32),
        running=lam_ok,
        finite=lam_ok,
        it=jnp.zeros((), jnp.int32),
    )
    s = lax.while_loop(cond, body, init)
    resid = s.z @ d.T - y
    objective = 0.5 * jnp.sum(resid * resid, axis=1) + jnp.sum(
        penalty(threshold, s.z, lam, a_norm), axis=1
    )
    finite = s.finite & jnp.isfinite(objective) & jnp.all(jnp.isfinite(s.z), axis=1)
    status = jnp.where(
        ~finite,
        jnp.int32(Status.NONFINITE),
        jnp.where(s.residual <= target, jnp.int32(Status.CONVERGED), jnp.int32(Status.MAX_STEPS)),
    )
    return IstaSolution(s.z, objective, s.residual, s.steps, status.astype(jnp.int32))


def ista(
    dictionary: jax.typing.ArrayLike,
    y: jax.typing.ArrayLike,
    lam: jax.typing.ArrayLike,
    *,
    threshold: Literal["soft", "hard", "half", "cel0"] = "soft",
    step: jax.typing.ArrayLike | None = None,
    max_steps: int = 500,
    tol: jax.typing.ArrayLike = 1e-6,
    accelerate: bool = False,
    init: jax.typing.ArrayLike | None = None,
) -> IstaSolution:
    """Iterative shrinkage-thresholding: proximal gradient sparse coding of one signal or a
    batch.

    Minimises ``F(z) = 1/2 |y - D z|^2 + lam * sum_i penalty(z_i)`` by

        ``z_{t+1} = threshold(z_t - step D^T (D z_t - y), step lam)``

    with the penalty of ``threshold``: ``"soft"`` ``|x|`` (the lasso; convex), ``"hard"``
    ``[x != 0]`` (iterative hard thresholding for the l0-penalised problem), ``"half"``
    ``|x|^(1/2)``, or ``"cel0"`` (the CEL0 relaxation ``phi(|d_i|, lam; z_i)`` of
    ``lam [z_i != 0]``, whose global minimisers are those of the l0 problem; Soubies et al.
    2015). These are the four sparse coding rules compared by Rentzeperis et al. (2023).

    With ``step <= 1/L``, ``L = |D|_2^2`` (the default step is ``1/L``), every threshold is
    an exact minimiser of its proximal subproblem, so ISTA decreases ``F`` monotonically for
    all four penalties (Beck and Teboulle 2009, Lemma 2.3, whose proof needs no convexity of
    the penalty); for the nonconvex ones it converges to a fixed point (a critical point),
    not necessarily the global minimiser.

    ``accelerate=True`` (:func:`fista`) adds the Beck-Teboulle momentum (no restart):
    ``t_{k+1} = (1 + sqrt(1 + 4 t_k^2)) / 2`` and the next gradient step is taken at
    ``z_{k+1} + (t_k - 1)/t_{k+1} (z_{k+1} - z_k)``. It is the ``O(1/k^2)`` method for
    ``"soft"``; for the nonconvex thresholds it is allowed but has no descent or convergence
    guarantee (the objective may oscillate), so plain ISTA is recommended there.

    Stopping: a signal stops at the first step with ``|z_{t+1} - x_t| / step <= tol *
    |D^T y|`` (``x_t`` the point the step was taken from, ``z_t`` for ISTA): the norm of the
    proximal gradient mapping relative to that of ``z = 0`` for the lasso, so ``tol`` does
    not depend on the scale of ``y``. Each signal of a batch stops on its own (it is frozen
    while the others run); the loop ends when all have stopped or after ``max_steps``.

    Gradients: the ``while_loop`` supports forward-mode (``jax.jvp``) but not reverse-mode
    differentiation; for trained unrolled sparse coding see :class:`LISTA`.

    Args:
        dictionary: ``(d, K)`` real array, atoms as columns (unit norm not required; CEL0 uses
            the atom norms ``|d_i|``).
        y: ``(d,)`` or ``(..., d)`` signals (leading axes are a batch).
        lam: penalty weight ``>= 0``, traced, broadcast against the codes ``(..., K)``: a
            scalar, per-atom weights ``(K,)``, or per-signal values with a trailing axis,
            ``(..., 1)``.
        threshold: ``"soft"`` (default), ``"hard"``, ``"half"`` or ``"cel0"`` (static).
        step: step size ``> 0``, traced, scalar or per signal (the batch shape); default
            ``1/|D|_2^2``. Larger steps void the descent guarantee.
        max_steps: step budget (static), ``>= 1``.
        tol: relative tolerance ``>= 0`` on the fixed-point residual (traced; see
            Stopping). ``0`` runs ``max_steps`` unless an exact fixed point is reached.
        accelerate: FISTA momentum (static).
        init: starting codes, broadcastable to ``(..., K)``; default zeros.

    Returns:
        An :class:`IstaSolution` with codes of shape ``(..., K)``.

    Raises:
        ValueError: naming the argument, for a dictionary that is not 2-D, non-floating or
            mismatched ``y``, an unknown ``threshold``, a concrete negative ``lam`` or
            ``tol``, a concrete non-positive ``step``, ``max_steps < 1``, a non-bool
            ``accelerate``, or shapes of ``lam``, ``step``, ``tol`` or ``init`` that do not
            broadcast as described.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxspec import pursuit
        >>> D = jax.random.normal(jax.random.key(0), (32, 64))
        >>> D = D / jnp.linalg.norm(D, axis=0)
        >>> x = jnp.zeros(64).at[jnp.array([3, 17, 40])].set(jnp.array([1.0, -2.0, 1.5]))
        >>> sol = pursuit.ista(D, D @ x, 0.05, max_steps=2000)
        >>> [int(i) for i in jnp.flatnonzero(jnp.abs(sol.codes) > 0.1)], int(sol.status)
        ([3, 17, 40], 0)

    References:
        Daubechies, Defrise and De Mol, CPAM 57(11), 2004; Beck and Teboulle, SIAM J.
        Imaging Sci. 2(1), 2009; Xu et al., IEEE TNNLS 23(7), 2012 (``"half"``); Soubies,
        Blanc-Feraud and Aubert, SIAM J. Imaging Sci. 8(3), 2015 (``"cel0"``); Rentzeperis
        et al., PLOS Comput. Biol. 19(9), 2023.
    """
    d, y, lam, tol, step, init = _inputs(
        dictionary, y, lam, threshold, step, max_steps, tol, accelerate, init
    )
    return _solve(
        d, y, lam, step, tol, init, threshold=threshold, max_steps=max_steps, accelerate=accelerate
    )


@functools.partial(jax.jit, static_argnames=("threshold", "max_steps", "accelerate"))
def _solve(d, y, lam, step, tol, init, *, threshold, max_steps, accelerate):
    """Broadcast and flatten the batch, run, and restore the batch axes (one compiled
    program per shape and static option, so repeated eager calls are cheap)."""
    batch = tuple(y.shape[:-1])
    n_atoms = d.shape[1]
    flat_size = int(np.prod(batch, dtype=int))
    codes_shape = batch + (n_atoms,)
    if step is None:
        step = 1 / lipschitz(d)
    z0 = jnp.zeros(codes_shape, y.dtype) if init is None else init
    sol = _run(
        d,
        y.reshape(flat_size, d.shape[0]),
        jnp.broadcast_to(lam, codes_shape).reshape(flat_size, n_atoms),
        jnp.broadcast_to(step, batch).reshape(flat_size, 1),
        jnp.broadcast_to(tol, batch).reshape(flat_size),
        jnp.broadcast_to(z0, codes_shape).reshape(flat_size, n_atoms),
        threshold=threshold,
        max_steps=max_steps,
        accelerate=bool(accelerate),
    )
    return jax.tree.map(lambda x: x.reshape(batch + x.shape[1:]), sol)


def fista(
    dictionary: jax.typing.ArrayLike,
    y: jax.typing.ArrayLike,
    lam: jax.typing.ArrayLike,
    *,
    threshold: Literal["soft", "hard", "half", "cel0"] = "soft",
    step: jax.typing.ArrayLike | None = None,
    max_steps: int = 500,
    tol: jax.typing.ArrayLike = 1e-6,
    init: jax.typing.ArrayLike | None = None,
) -> IstaSolution:
    """FISTA: :func:`ista` with Beck-Teboulle momentum (``accelerate=True``).

    Same arguments and result as :func:`ista`. The worst-case objective gap of the lasso
    (``threshold="soft"``) falls as ``O(1/k^2)`` instead of ``O(1/k)``; the iterates are not
    monotone in the objective, and without restarts the momentum can make FISTA slower than
    ISTA to a tight tolerance on well-conditioned problems, where ISTA converges linearly
    once the support is found; it pays off on ill-conditioned (coherent) dictionaries. For
    the nonconvex thresholds (``"hard"``, ``"half"``, ``"cel0"``) the momentum has no
    convergence guarantee; prefer :func:`ista` there.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxspec import pursuit
        >>> D = jax.random.normal(jax.random.key(0), (32, 64))
        >>> D = D / jnp.linalg.norm(D, axis=0)
        >>> x = jnp.zeros(64).at[jnp.array([3, 17, 40])].set(jnp.array([1.0, -2.0, 1.5]))
        >>> sol = pursuit.fista(D, D @ x, 0.05, max_steps=2000)
        >>> [int(i) for i in jnp.flatnonzero(jnp.abs(sol.codes) > 0.1)], int(sol.status)
        ([3, 17, 40], 0)

    References:
        Beck and Teboulle, "A fast iterative shrinkage-thresholding algorithm for linear
        inverse problems", SIAM J. Imaging Sci. 2(1), 2009.
    """
    return ista(
        dictionary,
        y,
        lam,
        threshold=threshold,
        step=step,
        max_steps=max_steps,
        tol=tol,
        accelerate=True,
        init=init,
    )
