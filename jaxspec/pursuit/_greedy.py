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

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxspec._checks import as_float_array, check_int, check_positive
from jaxspec._status import Status


class PursuitSolution(NamedTuple):
    """Result of a batched pursuit; every field has the leading batch axes of ``y``.

    Attributes:
        codes: coefficients, ``(..., K)``; zero off the support.
        support: selected atom indices in selection order, ``(..., k)``; ``-1`` in unused
            slots (MP may list an atom more than once).
        num_atoms: number of selections made, int32 ``(...)``.
        residual_sq: squared residual norm ``|y - D codes|^2`` tracked by the solver, ``(...)``.
        status: :class:`jaxspec.Status` per signal: ``CONVERGED`` when ``tol`` was met or the
            residual became orthogonal to every atom, ``MAX_STEPS`` when ``k`` selections were
            made first (the normal outcome without ``tol``), ``STAGNATED`` when OMP stopped
            because the next atom was linearly dependent on the selected ones.
    """

    codes: jax.Array
    support: jax.Array
    num_atoms: jax.Array
    residual_sq: jax.Array
    status: jax.Array


def _inputs(dictionary, y, k, tol):
    d = as_float_array(dictionary, "dictionary", min_ndim=2)
    if d.ndim != 2:
        raise ValueError(f"`dictionary` must have shape (d, K), got {tuple(d.shape)}.")
    y = as_float_array(y, "y", min_ndim=1)
    if y.shape[-1] != d.shape[0]:
        raise ValueError(
            f"`y` must have last axis d = {d.shape[0]} (the dictionary's rows), got shape "
            f"{tuple(y.shape)}."
        )
    k = check_int(k, "k")
    if k > d.shape[1]:
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


class _OMPState(NamedTuple):
    alpha: jax.Array  # (B, K) correlations D^T r
    proj: jax.Array  # (B, k, K) rows P_n = D^T q_n
    r_factor: jax.Array  # (B, k, k) upper Cholesky factor of the active Gram matrix
    coef: jax.Array  # (B, k) coordinates c_n = <q_n, y>
    support: jax.Array  # (B, k) int32
    residual_sq: jax.Array  # (B,)
    num_atoms: jax.Array  # (B,) int32
    running: jax.Array  # (B,) bool
    status: jax.Array  # (B,) int32


def _omp_core(gram, dty, y_norm_sq, k, tol):
    """OMP on ``gram`` (K, K), ``dty`` (B, K), ``y_norm_sq`` (B,), ``tol`` (B,)."""
    b, n_atoms = dty.shape
    dtype = dty.dtype
    eps = jnp.finfo(dtype).eps
    diag = jnp.real(jnp.diagonal(gram))
    rows = jnp.arange(b)
    state = _OMPState(
        alpha=dty,
        proj=jnp.zeros((b, k, n_atoms), dtype),
        r_factor=jnp.broadcast_to(jnp.eye(k, dtype=dtype), (b, k, k)),
        coef=jnp.zeros((b, k), dtype),
        support=jnp.full((b, k), -1, jnp.int32),
        residual_sq=y_norm_sq,
        num_atoms=jnp.zeros(b, jnp.int32),
        running=y_norm_sq > tol,
        status=jnp.where(y_norm_sq > tol, Status.MAX_STEPS, Status.CONVERGED).astype(jnp.int32),
    )
    floor = 1e3 * eps * jnp.sqrt(y_norm_sq * jnp.max(diag))  # (B,)

    def step(n, s: _OMPState) -> _OMPState:
        taken = (
            jnp.zeros((b, n_atoms), bool)
            .at[rows[:, None], jnp.maximum(s.support, 0)]
            .set(s.support >= 0)
        )
        score = jnp.where(taken, -1.0, jnp.abs(s.alpha) / jnp.sqrt(jnp.maximum(diag, eps)))
        lam = jnp.argmax(score, axis=1)
        best = jnp.take_along_axis(score, lam[:, None], 1)[:, 0]
        w = jnp.take_along_axis(s.proj, lam[:, None, None], 2)[:, :, 0]  # (B, k), 0 for rows >= n
        g_ll = diag[lam]
        delta_sq = g_ll - jnp.sum(w * w, axis=1)
        orthogonal = best <= floor  # correlations at the round-off of the first ones
        dependent = delta_sq <= 100 * eps * g_ll
        ok = s.running & ~orthogonal & ~dependent
        delta = jnp.sqrt(jnp.where(ok, delta_sq, 1.0))
        a_lam = jnp.take_along_axis(s.alpha, lam[:, None], 1)[:, 0]
        c_n = jnp.where(ok, a_lam / delta, 0.0)
        p_n = (gram[lam] - jnp.einsum("bi,bik->bk", w, s.proj)) / delta[:, None]
        p_n = jnp.where(ok[:, None], p_n, 0.0)
        col = jnp.where(jnp.arange(k) == n, delta[:, None], w)
        r_factor = s.r_factor.at[:, :, n].set(jnp.where(ok[:, None], col, s.r_factor[:, :, n]))
        residual_sq = jnp.where(ok, s.residual_sq - c_n * c_n, s.residual_sq)
        met = residual_sq <= tol
        status = jnp.where(s.running & orthogonal, Status.CONVERGED, s.status)
        status = jnp.where(s.running & ~orthogonal & dependent, Status.STAGNATED, status)
        status = jnp.where(ok & met, Status.CONVERGED, status)
        return _OMPState(
            alpha=s.alpha - c_n[:, None] * p_n,
            proj=s.proj.at[:, n].set(p_n),
            r_factor=r_factor,
            coef=s.coef.at[:, n].set(c_n),
            support=s.support.at[:, n].set(jnp.where(ok, lam, -1).astype(jnp.int32)),
            residual_sq=residual_sq,
            num_atoms=s.num_atoms + ok.astype(jnp.int32),
            running=ok & ~met,
            status=status.astype(jnp.int32),
        )

    s = lax.fori_loop(0, k, step, state)
    gamma = jax.scipy.linalg.solve_triangular(s.r_factor, s.coef[..., None], lower=False)[..., 0]
    codes = (
        jnp.zeros((b, n_atoms), dtype)
        .at[rows[:, None], jnp.maximum(s.support, 0)]
        .add(jnp.where(s.support >= 0, gamma, 0.0))
    )
    return PursuitSolution(codes, s.support, s.num_atoms, jnp.maximum(s.residual_sq, 0.0), s.status)


def _mp_core(gram, dty, y_norm_sq, k, tol):
    """MP on ``gram`` (K, K), ``dty`` (B, K), ``y_norm_sq`` (B,), ``tol`` (B,)."""
    b, n_atoms = dty.shape
    dtype = dty.dtype
    diag = jnp.real(jnp.diagonal(gram))
    safe = jnp.maximum(diag, jnp.finfo(dtype).tiny)
    rows = jnp.arange(b)

    def step(n, carry):
        alpha, codes, support, residual_sq, num, running, status = carry
        lam = jnp.argmax(jnp.abs(alpha) / jnp.sqrt(safe), axis=1)
        a_lam = alpha[rows, lam]
        coef = jnp.where(running, a_lam / safe[lam], 0.0)
        alpha = alpha - coef[:, None] * gram[lam]
        codes = codes.at[rows, lam].add(coef)
        support = support.at[:, n].set(jnp.where(running, lam, -1).astype(jnp.int32))
        residual_sq = residual_sq - coef * a_lam
        met = running & (residual_sq <= tol)
        status = jnp.where(met, Status.CONVERGED, status).astype(jnp.int32)
        return alpha, codes, support, residual_sq, num + running, running & ~met, status

    init = (
        dty,
        jnp.zeros((b, n_atoms), dtype),
        jnp.full((b, k), -1, jnp.int32),
        y_norm_sq,
        jnp.zeros(b, jnp.int32),
        y_norm_sq > tol,
        jnp.where(y_norm_sq > tol, Status.MAX_STEPS, Status.CONVERGED).astype(jnp.int32),
    )
    _, codes, support, residual_sq, num, _, status = lax.fori_loop(0, k, step, init)
    return PursuitSolution(codes, support, num, jnp.maximum(residual_sq, 0.0), status)


def _solve(core, dictionary, y, k, tol) -> PursuitSolution:
    d, y, k = _inputs(dictionary, y, k, tol)
    flat, batch = _flatten(y)
    gram = d.T @ d
    dty = flat @ d
    y_norm_sq = jnp.sum(flat * flat, axis=1)
    tol_b = _tol_array(tol, batch, y.dtype).reshape(-1)
    sol = core(gram, dty, y_norm_sq, k, tol_b)
    return jax.tree.map(lambda x: x.reshape(batch + x.shape[1:]), sol)


def omp_solve(dictionary, y, k: int, tol=None) -> PursuitSolution:
    """Orthogonal matching pursuit with the full solution (support, residual, status).

    Same arguments as :func:`omp`; returns a :class:`PursuitSolution`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxspec import pursuit
        >>> D = jax.random.normal(jax.random.key(0), (32, 64))
        >>> D = D / jnp.linalg.norm(D, axis=0)
        >>> x = jnp.zeros(64).at[jnp.array([3, 17, 40])].set(jnp.array([1.0, -2.0, 0.5]))
        >>> sol = pursuit.omp_solve(D, D @ x, 3)
        >>> sorted(sol.support.tolist()), bool(sol.residual_sq < 1e-8)
        ([3, 17, 40], True)

    References:
        Pati, Rezaiifar and Krishnaprasad, Asilomar 1993; Rubinstein, Zibulevsky and Elad,
        Technion CS-2008-08 (Batch-OMP).
    """
    return _solve(_omp_core, dictionary, y, k, tol)


def omp(dictionary, y, k: int, tol=None) -> jax.Array:
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
    return omp_solve(dictionary, y, k, tol).codes


def mp_solve(dictionary, y, k: int, tol=None) -> PursuitSolution:
    """Matching pursuit with the full solution (support, residual, status).

    Same arguments as :func:`mp`; returns a :class:`PursuitSolution`.

    References:
        Mallat and Zhang, IEEE TSP 41(12), 1993.
    """
    return _solve(_mp_core, dictionary, y, k, tol)


def mp(dictionary, y, k: int, tol=None) -> jax.Array:
    """Matching pursuit of one signal or a batch: ``k`` greedy steps (atoms may repeat).

    Each step picks the atom with the largest ``|d_j^T r| / |d_j|``, adds its projection
    coefficient ``d_j^T r / |d_j|^2`` to the code and removes that projection from the
    residual, so the squared residual never increases. A signal stops early once its squared
    residual is ``<= tol``.

    Args:
        dictionary: ``(d, K)`` real array, atoms as columns.
        y: ``(d,)`` or ``(..., d)`` signals.
        k: number of steps (static), ``1 <= k <= K``.
        tol: optional squared-residual target (scalar or per signal, traced).

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
    return mp_solve(dictionary, y, k, tol).codes
