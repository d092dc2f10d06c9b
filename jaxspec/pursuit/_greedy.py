"""Batched matching pursuit (MP) and orthogonal matching pursuit (OMP).

Both run on the Gram matrix ``G = D^T D`` and the correlations ``D^T y`` of every signal at
once (a batch axis, not ``vmap``), with per-signal stopping by masks so the batch stays
rectangular.

OMP is Batch-OMP (Rubinstein, Zibulevsky and Elad) in its Gram-Schmidt form: the selected
atoms are orthonormalized implicitly, and for each new direction ``q_n`` the solver keeps
``P_n = D^T q_n`` (a row of ``K`` numbers), so

* the new column of the Cholesky factor of the active Gram matrix is a gather,
  ``w = P[:n, lam]``, ``delta = sqrt(G[lam, lam] - |w|^2)`` (no triangular solve per step);
* the correlations are updated as ``alpha -= c_n P_n`` with ``c_n = alpha[lam] / delta``;
* the squared residual is ``|y|^2 - sum c_n^2``, without forming the residual.

After the last step one triangular solve ``R gamma = c`` per signal gives the coefficients.
A step costs ``O(k K)`` per signal; the state holds ``P`` of shape ``(batch, k, K)``.

References:
    Mallat and Zhang, "Matching pursuits with time-frequency dictionaries", IEEE TSP 41(12),
    1993.
    Pati, Rezaiifar and Krishnaprasad, "Orthogonal matching pursuit: recursive function
    approximation with applications to wavelet decomposition", Asilomar 1993.
    Rubinstein, Zibulevsky and Elad, "Efficient implementation of the K-SVD algorithm using
    batch orthogonal matching pursuit", Technion CS-2008-08, 2008.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxspec._checks import as_float_array, check_int, check_positive, is_concrete
from jaxspec._status import Status
from jaxspec.pursuit._common import dictionary_and_signals


class PursuitSolution(NamedTuple):
    """Result of a batched pursuit; every field has the leading batch axes of ``y``.

    Attributes:
        codes: coefficients, ``(..., K)``; zero off the support.
        support: selected atom indices in selection order, ``(..., k)``; ``-1`` in unused
            slots (MP may list an atom more than once).
        num_atoms: number of selections made, int32 ``(...)``.
        residual_sq: squared residual norm ``|y - D codes|^2`` tracked by the solver, ``(...)``
            (as ``|y|^2`` minus the fitted energy: accurate to about ``eps |y|^2``).
        status: :class:`jaxspec.Status` per signal: ``CONVERGED`` when ``tol`` was met or
            (OMP) the residual became orthogonal to every atom (its correlations within
            ``30 eps |y| max|d_j|`` of zero), ``MAX_STEPS`` when ``k`` selections were
            made first (the normal outcome without ``tol``), ``STAGNATED`` when OMP stopped
            because the next atom was linearly dependent on the selected ones, ``NONFINITE``
            when the codes or the residual are not finite (a NaN or Inf in the input).
    """

    codes: jax.Array
    support: jax.Array
    num_atoms: jax.Array
    residual_sq: jax.Array
    status: jax.Array


def _inputs(dictionary, y, k, tol, *, k_le_atoms: bool):
    d, y = dictionary_and_signals(dictionary, y)
    k = check_int(k, "k")
    if k_le_atoms and k > d.shape[1]:
        raise ValueError(f"`k` must be <= the number of atoms K = {d.shape[1]}, got {k}.")
    if tol is not None:
        check_positive(tol, "tol")
    dtype = jnp.result_type(d, y)
    return d.astype(dtype), y.astype(dtype), k


def _flatten(y):
    batch = y.shape[:-1]
    return y.reshape((-1, y.shape[-1])), batch


def _tol_array(tol, batch, dtype):
    if tol is None:
        return jnp.full(batch, -1.0, dtype)  # never met: stop by k
    return jnp.broadcast_to(jnp.asarray(tol, dtype), batch)


def _argmax_nonneg(score: jax.Array) -> jax.Array:
    """Row-wise argmax of a nonnegative, NaN-free ``(B, K)`` score, first index on ties.

    ``jnp.argmax`` lowers to a two-output reduction that XLA:CPU runs about 3x slower than a
    plain ``max``; this packs the score and the reversed column index into one integer key
    (nonnegative IEEE floats order like their bit patterns) and takes one integer ``max``.
    For float64 the lowest ``ceil(log2 K)`` mantissa bits make room for the index, so scores
    within a relative ``2^(ceil(log2 K) - 52)`` of each other count as tied (lowest index
    wins); float32 scores are packed exactly when 64-bit integers are enabled, and otherwise
    use an exact two-pass ``max`` then ``min`` over the tied indices.
    """
    n = score.shape[-1]
    bits = max(1, (n - 1).bit_length())
    if score.dtype == jnp.float64:
        rev = (n - 1 - lax.broadcasted_iota(jnp.int64, score.shape, 1)).astype(jnp.int64)
        key = (lax.bitcast_convert_type(score, jnp.int64) & ~((1 << bits) - 1)) | rev
        return (n - 1 - (jnp.max(key, axis=-1) & ((1 << bits) - 1))).astype(jnp.int32)
    score = score.astype(jnp.float32)
    if jax.config.jax_enable_x64:
        rev = (n - 1 - lax.broadcasted_iota(jnp.int64, score.shape, 1)).astype(jnp.int64)
        key = (lax.bitcast_convert_type(score, jnp.int32).astype(jnp.int64) << 32) | rev
        return (n - 1 - (jnp.max(key, axis=-1) & ((1 << bits) - 1))).astype(jnp.int32)
    best = jnp.max(score, axis=-1, keepdims=True)
    idx = lax.broadcasted_iota(jnp.int32, score.shape, 1)
    return jnp.min(jnp.where(score >= best, idx, n), axis=-1)


def _chunk_size(batch: int, k: int, n_atoms: int, itemsize: int) -> int:
    """Signals per chunk: the per-step working set ``chunk * k * K`` stays near 2 MiB (L2)."""
    target = (2 << 20) // max(1, k * n_atoms * itemsize)
    chunk = 1 << max(3, min(9, target.bit_length() - 1)) if target > 0 else 8
    return max(1, min(chunk, batch))


# OMP's residual counts as orthogonal to every atom when its largest normalized correlation
# is below this many eps times |y| max|d_j| (round-off of the first correlations). It was
# 1e3: in float32 that dropped real atoms (1.2e-4 |y|): 5 % of 16-sparse codes with a 10:1
# coefficient range on a 64 x 128 dictionary stopped short, code error 4e-3 (30: 2e-5).
_ORTHOGONAL_FLOOR = 30.0

# Active-set widths up to this use the fused sum of gathered Gram rows; wider ones a batched
# matrix-vector product.
_FUSED_MAX_WIDTH = 64


def _phase_step(step, width, n, state):
    return step(n, state, width)


class _OMPState(NamedTuple):
    alpha: jax.Array  # (b, K) correlations D^T r
    inv_factor: jax.Array  # (b, k, k) F = R^{-1}, R the upper Cholesky factor of D_I^T D_I
    coef: jax.Array  # (b, k) coordinates c_n = <q_n, y> of y in the orthonormalized atoms
    support: jax.Array  # (b, k) int32, 0 in unused slots (their F rows are zero)
    used: jax.Array  # (b, k) bool: slot n holds a selected atom
    residual_sq: jax.Array  # (b,)
    running: jax.Array  # (b,) bool
    status: jax.Array  # (b,) int32


def _omp_chunk(gram, dty, y_norm_sq, tol, cap, k):
    """OMP of one chunk: ``dty`` (b, K), ``y_norm_sq``/``tol``/``cap`` (b,).

    With ``I`` the selected atoms, ``R`` the upper Cholesky factor of ``G_II`` and
    ``F = R^{-1}``, the orthonormalized atoms are ``q_n = sum_j F[j, n] d_{I_j}``. For a new
    atom ``lam``: ``w = F^T G[I, lam]`` (its coordinates along the ``q``),
    ``delta = sqrt(G[lam, lam] - |w|^2)``, ``c_n = alpha[lam] / delta``,
    ``D^T q_n = (G[lam] - sum_j (F w)_j G[I_j]) / delta``, and the new column of ``F`` is
    ``(-F w, 1) / delta``. The correlations drop by ``c_n D^T q_n``, the squared residual by
    ``c_n^2``, and at the end ``gamma = F c``. Only rows of ``G`` are read (cache-resident),
    so a step costs ``O(n K)`` per signal with no per-signal ``(k, K)`` state.
    """
    b, n_atoms = dty.shape
    dtype = dty.dtype
    eps = jnp.finfo(dtype).eps
    diag = jnp.real(jnp.diagonal(gram))
    inv_norm = 1.0 / jnp.sqrt(jnp.maximum(diag, eps))
    floor = _ORTHOGONAL_FLOOR * eps * jnp.sqrt(y_norm_sq * jnp.max(diag))
    start = (y_norm_sq > tol) & (cap > 0)
    state = _OMPState(
        alpha=dty,
        inv_factor=jnp.zeros((b, k, k), dtype),
        coef=jnp.zeros((b, k), dtype),
        support=jnp.zeros((b, k), jnp.int32),
        used=jnp.zeros((b, k), bool),
        residual_sq=y_norm_sq,
        running=start,
        status=jnp.where(y_norm_sq > tol, Status.MAX_STEPS, Status.CONVERGED).astype(jnp.int32),
    )
    slots = jnp.arange(k)

    def step(n, s: _OMPState, width: int) -> _OMPState:
        score = jnp.abs(s.alpha) * inv_norm
        lam = _argmax_nonneg(score)
        best = jnp.take_along_axis(score, lam[:, None], 1)[:, 0]
        g_row = gram[lam]  # (b, K)
        g_ll = diag[lam]
        sup = s.support[:, :width]
        f = s.inv_factor[:, :width, :width]
        g_sel = jnp.take_along_axis(g_row, sup, 1)  # G[lam, I], (b, width)
        w = jnp.einsum("bji,bj->bi", f, g_sel)
        v = jnp.einsum("bij,bj->bi", f, w)
        delta_sq = g_ll - jnp.sum(w * w, axis=1)
        # p_n = delta * D^T q_n. Up to _FUSED_MAX_WIDTH, a sum of gathered rows that XLA
        # fuses into one elementwise pass (no (b, width, K) copy of the rows).
        if width <= _FUSED_MAX_WIDTH:
            p_n = g_row - sum(v[:, j, None] * gram[sup[:, j]] for j in range(width))
        else:
            p_n = g_row - jnp.einsum("bj,bjk->bk", v, gram[sup])
        orthogonal = best <= floor  # correlations at the round-off of the first ones
        dependent = delta_sq <= 100 * eps * g_ll
        ok = s.running & ~orthogonal & ~dependent
        delta = jnp.sqrt(jnp.where(ok, delta_sq, 1.0))
        a_lam = jnp.take_along_axis(s.alpha, lam[:, None], 1)[:, 0]
        c_n = jnp.where(ok, a_lam / delta, 0.0)
        col = jnp.where(slots[:width] == n, 0.0, -v) / delta[:, None]
        col = jnp.concatenate([col, jnp.zeros((b, k - width), dtype)], 1) if width < k else col
        col = jnp.where(slots == n, 1.0 / delta[:, None], col)
        residual_sq = jnp.where(ok, s.residual_sq - c_n * c_n, s.residual_sq)
        met = residual_sq <= tol
        status = jnp.where(s.running & orthogonal, Status.CONVERGED, s.status)
        status = jnp.where(s.running & ~orthogonal & dependent, Status.STAGNATED, status)
        status = jnp.where(ok & met, Status.CONVERGED, status)
        return _OMPState(
            alpha=s.alpha - (c_n / delta)[:, None] * p_n,
            inv_factor=s.inv_factor.at[:, :, n].set(jnp.where(ok[:, None], col, 0.0)),
            coef=s.coef.at[:, n].set(c_n),
            support=s.support.at[:, n].set(jnp.where(ok, lam, 0).astype(jnp.int32)),
            used=s.used.at[:, n].set(ok),
            residual_sq=residual_sq,
            running=ok & ~met & (n + 1 < cap),
            status=status.astype(jnp.int32),
        )

    # Steps [0, 4), [4, 8), [8, 16), ... run as loops whose active-set width is the phase's
    # end: a few compiled bodies (not k unrolled steps) and about 3/4 of the work of exact
    # widths (full width every step would double it).
    start, end = 0, min(4, k)
    while start < k:
        state = lax.fori_loop(start, end, functools.partial(_phase_step, step, end), state)
        start, end = end, min(2 * end, k)
    gamma = jnp.einsum("bij,bj->bi", state.inv_factor, state.coef)
    rows = jnp.arange(b)[:, None]
    codes = (
        jnp.zeros((b, n_atoms), dtype)
        .at[rows, state.support]
        .add(jnp.where(state.used, gamma, 0.0))
    )
    support = jnp.where(state.used, state.support, -1)
    num_atoms = jnp.sum(state.used, axis=1, dtype=jnp.int32)
    return codes, support, num_atoms, state.residual_sq, state.status


def _omp_core(gram, dty, y_norm_sq, k, tol, cap):
    """OMP on ``gram`` (K, K), ``dty`` (B, K), ``y_norm_sq``/``tol``/``cap`` (B,).

    The batch runs in chunks of a few dozen signals (``lax.map``), sized so each step's
    working set stays in cache: the solver is bound by memory traffic, not flops.
    """
    b, n_atoms = dty.shape
    chunk = _chunk_size(b, k, n_atoms, dty.dtype.itemsize)
    pad = (-b) % chunk

    def padded(x, value):
        return jnp.concatenate([x, jnp.full((pad,) + x.shape[1:], value, x.dtype)]) if pad else x

    args = (padded(dty, 0), padded(y_norm_sq, 0), padded(tol, 1), padded(cap, 0))
    args = jax.tree.map(lambda x: x.reshape((-1, chunk) + x.shape[1:]), args)
    out = lax.map(lambda a: _omp_chunk(gram, *a, k), args)
    codes, support, num_atoms, residual_sq, status = (
        x.reshape((-1,) + x.shape[2:])[:b] for x in out
    )
    finite = jnp.all(jnp.isfinite(codes), axis=1) & jnp.isfinite(residual_sq)
    status = jnp.where(finite, status, Status.NONFINITE).astype(jnp.int32)
    return PursuitSolution(codes, support, num_atoms, jnp.maximum(residual_sq, 0.0), status)


def _mp_core(gram, dty, y_norm_sq, k, tol, cap):
    """MP on ``gram`` (K, K), ``dty`` (B, K), ``y_norm_sq``/``tol``/``cap`` (B,)."""
    b, n_atoms = dty.shape
    dtype = dty.dtype
    diag = jnp.real(jnp.diagonal(gram))
    safe = jnp.maximum(diag, jnp.finfo(dtype).tiny)
    inv_norm = 1.0 / jnp.sqrt(safe)
    rows = jnp.arange(b)

    def step(n, carry):
        alpha, codes, support, residual_sq, num, running, status = carry
        lam = _argmax_nonneg(jnp.abs(alpha) * inv_norm)
        a_lam = alpha[rows, lam]
        coef = jnp.where(running, a_lam / safe[lam], 0.0)
        alpha = alpha - coef[:, None] * gram[lam]
        codes = codes.at[rows, lam].add(coef)
        support = support.at[:, n].set(jnp.where(running, lam, -1).astype(jnp.int32))
        residual_sq = residual_sq - coef * a_lam
        met = running & (residual_sq <= tol)
        status = jnp.where(met, Status.CONVERGED, status).astype(jnp.int32)
        num = num + running
        return alpha, codes, support, residual_sq, num, running & ~met & (num < cap), status

    init = (
        dty,
        jnp.zeros((b, n_atoms), dtype),
        jnp.full((b, k), -1, jnp.int32),
        y_norm_sq,
        jnp.zeros(b, jnp.int32),
        (y_norm_sq > tol) & (cap > 0),
        jnp.where(y_norm_sq > tol, Status.MAX_STEPS, Status.CONVERGED).astype(jnp.int32),
    )
    _, codes, support, residual_sq, num, _, status = lax.fori_loop(0, k, step, init)
    finite = jnp.all(jnp.isfinite(codes), axis=1) & jnp.isfinite(residual_sq)
    status = jnp.where(finite, status, Status.NONFINITE).astype(jnp.int32)
    return PursuitSolution(codes, support, num, jnp.maximum(residual_sq, 0.0), status)


@functools.partial(jax.jit, static_argnames=("core", "k"))
def _run_core(core, d, flat, k, tol_b, cap) -> PursuitSolution:
    # jitted as a whole, so an eager call compiles once per shape instead of per call
    gram = d.T @ d
    dty = flat @ d
    y_norm_sq = jnp.sum(flat * flat, axis=1)
    return core(gram, dty, y_norm_sq, k, tol_b, cap)


def _caps(max_atoms, k, batch) -> jax.Array:
    if max_atoms is None:
        return jnp.full(batch, k, jnp.int32).reshape(-1)
    if is_concrete(max_atoms) and np.any(np.asarray(max_atoms) < 0):
        raise ValueError(f"`max_atoms` must be >= 0, got {max_atoms!r}.")
    return jnp.broadcast_to(jnp.asarray(max_atoms, jnp.int32), batch).reshape(-1)


def _solve(core, dictionary, y, k, tol, max_atoms, *, k_le_atoms) -> PursuitSolution:
    d, y, k = _inputs(dictionary, y, k, tol, k_le_atoms=k_le_atoms)
    flat, batch = _flatten(y)
    tol_b = _tol_array(tol, batch, y.dtype).reshape(-1)
    sol = _run_core(core, d, flat, k, tol_b, _caps(max_atoms, k, batch))
    return jax.tree.map(lambda x: x.reshape(batch + x.shape[1:]), sol)


@functools.partial(jax.jit, static_argnames=("k",))
def _run_gram(gram, dty, y_norm_sq, k, tol_b, cap) -> PursuitSolution:
    return _omp_core(gram, dty, y_norm_sq, k, tol_b, cap)


def omp_gram(gram, dty, norms_squared, k: int, tol=None, *, max_atoms=None) -> PursuitSolution:
    """OMP from a precomputed Gram matrix and correlations (no dictionary, no signals).

    The Gram/precomputed mode of :func:`omp_solve` (scikit-learn's ``orthogonal_mp_gram``):
    useful when ``G = D^T D`` is reused across many calls or ``D^T y`` comes from elsewhere
    (a sparse or structured operator). Same selection rule, stopping and statuses.

    Args:
        gram: ``(K, K)`` symmetric Gram matrix ``D^T D`` of the atoms.
        dty: ``(K,)`` or ``(..., K)`` correlations ``D^T y``.
        norms_squared: ``|y|^2`` per signal, scalar or the batch shape (traced): the
            residual is tracked from it, and it scales the round-off floor below which a
            correlation counts as zero.
        k: maximum number of atoms (static), ``1 <= k <= K``.
        tol: optional squared-residual target (traced).
        max_atoms: optional per-signal cap ``<= k`` (traced).

    Returns:
        A :class:`PursuitSolution` (codes of shape ``(..., K)``).

    Raises:
        ValueError: naming the argument, for a ``gram`` that is not square, ``dty`` whose last
            axis is not ``K``, ``k`` outside ``[1, K]``, or a concrete ``tol`` that is not
            positive.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxspec import pursuit
        >>> D = jax.random.normal(jax.random.key(0), (32, 64))
        >>> D = D / jnp.linalg.norm(D, axis=0)
        >>> x = jnp.zeros(64).at[jnp.array([3, 17, 40])].set(jnp.array([1.0, -2.0, 0.5]))
        >>> y = D @ x
        >>> sol = pursuit.omp_gram(D.T @ D, D.T @ y, y @ y, 3)
        >>> bool(jnp.allclose(sol.codes, x, atol=1e-5))
        True

    References:
        Rubinstein, Zibulevsky and Elad, Technion CS-2008-08, 2008 (Batch-OMP).
    """
    g = as_float_array(gram, "gram", min_ndim=2)
    if g.ndim != 2 or g.shape[0] != g.shape[1]:
        raise ValueError(f"`gram` must be a square (K, K) matrix, got shape {tuple(g.shape)}.")
    c = as_float_array(dty, "dty", min_ndim=1)
    if c.shape[-1] != g.shape[0]:
        raise ValueError(
            f"`dty` must have last axis K = {g.shape[0]} (the Gram matrix's size), got shape "
            f"{tuple(c.shape)}."
        )
    k = check_int(k, "k")
    if k > g.shape[0]:
        raise ValueError(f"`k` must be <= the number of atoms K = {g.shape[0]}, got {k}.")
    if tol is not None:
        check_positive(tol, "tol")
    ns = as_float_array(norms_squared, "norms_squared")
    dtype = jnp.result_type(g, c)
    flat, batch = _flatten(c.astype(dtype))
    try:
        y_norm_sq = jnp.broadcast_to(ns.astype(dtype), batch).reshape(-1)
    except ValueError:
        raise ValueError(
            f"`norms_squared` must be a scalar or have the batch shape {batch}, got shape "
            f"{tuple(ns.shape)}."
        ) from None
    tol_b = _tol_array(tol, batch, dtype).reshape(-1)
    sol = _run_gram(g.astype(dtype), flat, y_norm_sq, k, tol_b, _caps(max_atoms, k, batch))
    return jax.tree.map(lambda x: x.reshape(batch + x.shape[1:]), sol)


def omp_solve(dictionary, y, k: int, tol=None, *, max_atoms=None) -> PursuitSolution:
    """Orthogonal matching pursuit with the full solution (support, residual, status).

    Same arguments as :func:`omp`; returns a :class:`PursuitSolution`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxspec import pursuit
        >>> D = jax.random.normal(jax.random.key(0), (32, 64))
        >>> D = D / jnp.linalg.norm(D, axis=0)
        >>> x = jnp.zeros(64).at[jnp.array([3, 17, 40])].set(jnp.array([1.0, -2.0, 0.5]))
        >>> sol = pursuit.omp_solve(D, D @ x, 3)
        >>> sorted(sol.support.tolist()), bool(sol.residual_sq < 1e-5)  # float32 round-off
        ([3, 17, 40], True)

    References:
        Pati, Rezaiifar and Krishnaprasad, Asilomar 1993; Rubinstein, Zibulevsky and Elad,
        Technion CS-2008-08 (Batch-OMP).
    """
    return _solve(_omp_core, dictionary, y, k, tol, max_atoms, k_le_atoms=True)


def omp(dictionary, y, k: int, tol=None, *, max_atoms=None) -> jax.Array:
    """Orthogonal matching pursuit of one signal or a batch, selecting up to ``k`` atoms.

    At each step the atom with the largest normalized correlation ``|d_j^T r| / |d_j|`` with
    the residual joins the support, and the coefficients are the least-squares fit of ``y``
    on the support. A signal stops early when its squared residual is ``<= tol``, when the
    residual is orthogonal to every atom, or when the next atom is linearly dependent on the
    selected ones (status ``STAGNATED`` in :func:`omp_solve`; scikit-learn warns and stops
    there too). The supports equal ``sklearn.linear_model.orthogonal_mp_gram``'s on
    well-posed problems.

    Args:
        dictionary: ``(d, K)`` real array, atoms as columns (unit norm not required).
        y: ``(d,)`` or ``(..., d)`` signals.
        k: maximum number of atoms per signal (static), ``1 <= k <= K``.
        tol: optional squared-residual target (scalar or per signal, traced): a signal stops
            once ``|y - D codes|^2 <= tol``. Unlike scikit-learn, ``k`` still caps the support.
        max_atoms: optional per-signal cap ``<= k`` on the support size (int, scalar or per
            signal, traced: a swept sparsity level without a recompile per value).

    Returns:
        Codes of shape ``(K,)`` or ``(..., K)``.

    Raises:
        ValueError: for a dictionary that is not 2-D, mismatched ``y``, ``k`` outside
            ``[1, K]``, or a concrete ``tol`` that is not positive.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxspec import pursuit
        >>> D = jax.random.normal(jax.random.key(0), (32, 64))
        >>> D = D / jnp.linalg.norm(D, axis=0)
        >>> x = jnp.zeros(64).at[jnp.array([3, 17, 40])].set(jnp.array([1.0, -2.0, 0.5]))
        >>> codes = pursuit.omp(D, D @ x, 3)
        >>> bool(jnp.allclose(codes, x, atol=1e-5))
        True

    References:
        Pati, Rezaiifar and Krishnaprasad, "Orthogonal matching pursuit", Asilomar 1993;
        Rubinstein, Zibulevsky and Elad, Technion CS-2008-08, 2008 (Batch-OMP).
    """
    return omp_solve(dictionary, y, k, tol, max_atoms=max_atoms).codes


def mp_solve(dictionary, y, k: int, tol=None, *, max_atoms=None) -> PursuitSolution:
    """Matching pursuit with the full solution (support, residual, status).

    Same arguments as :func:`mp`; returns a :class:`PursuitSolution`.

    References:
        Mallat and Zhang, IEEE TSP 41(12), 1993.
    """
    return _solve(_mp_core, dictionary, y, k, tol, max_atoms, k_le_atoms=False)


def mp(dictionary, y, k: int, tol=None, *, max_atoms=None) -> jax.Array:
    """Matching pursuit of one signal or a batch: ``k`` greedy steps (atoms may repeat).

    Each step picks the atom with the largest ``|d_j^T r| / |d_j|``, adds its projection
    coefficient ``d_j^T r / |d_j|^2`` to the code and removes that projection from the
    residual, so the squared residual never increases. A signal stops early once its squared
    residual is ``<= tol``.

    Args:
        dictionary: ``(d, K)`` real array, atoms as columns.
        y: ``(d,)`` or ``(..., d)`` signals.
        k: number of steps (static), ``k >= 1`` (may exceed ``K``: atoms are re-selected).
        tol: optional squared-residual target (scalar or per signal, traced).
        max_atoms: optional per-signal cap ``<= k`` on the number of steps (traced).

    Returns:
        Codes of shape ``(K,)`` or ``(..., K)``.

    Raises:
        ValueError: as :func:`omp`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxspec import pursuit
        >>> D = jnp.eye(4)
        >>> pursuit.mp(D, jnp.array([0.0, 3.0, 0.0, -1.0]), 2).tolist()
        [0.0, 3.0, 0.0, -1.0]

    References:
        Mallat and Zhang, "Matching pursuits with time-frequency dictionaries", IEEE TSP
        41(12), 1993.
    """
    return mp_solve(dictionary, y, k, tol, max_atoms=max_atoms).codes
