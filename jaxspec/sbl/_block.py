"""Block sparse Bayesian learning with AR(1) intra-block correlation (BSBL-EM and BSBL-BO).

Model ``y = A x + n`` with ``A (M, N)``, ``n ~ N(0, noise_var I)`` and ``x`` cut into
``g = N / d`` contiguous blocks ``x_i ~ N(0, gamma_i B)``, ``B = toeplitz(r^0, ..., r^(d-1))``
shared by all blocks (Zhang and Rao 2013, with their AR(1) projection of ``B``). With
``Sigma_0 = blkdiag(gamma_i B)`` the E-step is, in the ``M x M`` form,

    Sigma_y   = noise_var I + A Sigma_0 A^H = L L^H       (one Cholesky factor per iteration)
    h         = A^H Sigma_y^{-1} y,      G_i = A_i^H Sigma_y^{-1} A_i    (d x d, per block)
    mu_i      = gamma_i B h_i,           Sigma_x^i = gamma_i B - gamma_i^2 B G_i B
    cost      = log|Sigma_y| + y^H Sigma_y^{-1} y

with ``W = L^{-1} A``: ``h = W^H L^{-1} y`` and ``G_i = W_i^H W_i``. Only the ``d x d``
diagonal blocks of the posterior covariance are formed, batched over the blocks. The
hyperparameter updates only need the two block scalars ``q_i = h_i^H B h_i`` and
``s_i = tr(G_i B)``, so neither ``B^{-1}`` nor ``B^{1/2}`` is ever computed (``B`` is close to
singular when ``|r| -> 0.99``):

* EM: ``tr(B^{-1}(Sigma_x^i + mu_i mu_i^H)) / d = gamma_i + gamma_i^2 (q_i - s_i) / d``;
* BO: ``gamma_i ||B^{1/2} h_i|| / sqrt(tr(G_i B)) = gamma_i sqrt(q_i / s_i)``;
* r: ``sum_i (Sigma_x^i + mu_i mu_i^H) / gamma_i``
  ``= n_active B + B [sum_i gamma_i (h_i h_i^H - G_i)] B`` over the active blocks.

All shapes are static: a pruned block keeps its slot with ``gamma_i = 0`` (it then adds nothing
to ``Sigma_y`` and both updates keep it at 0), so the solve compiles once and batches under
``vmap``; pruning saves no FLOPs.
"""

from __future__ import annotations

import functools
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular

from jaxspec._checks import as_float_array, check_choice, check_int, check_positive, is_concrete
from jaxspec._status import Status
from jaxspec.sbl._common import NOISE_FLOOR, abs2, herm
from jaxspec.sbl._solution import BlockSBLSolution

METHODS: tuple[str, ...] = ("bo", "em")
_MAX_CORRELATION = 0.99  # |r| clip of the learned AR(1) coefficient (BSBL codes)
_DEFAULT_PRUNE = 1e-3  # gamma_i < prune * max(gamma) is pruned
_NOISE_INIT = 1e-2  # learned noise_var starts at 1e-2 ||y||^2 / M
_DTYPES = (jnp.float32, jnp.float64, jnp.complex64, jnp.complex128)


def _ar1(r: jax.Array, d: int, dtype) -> jax.Array:
    """``B = toeplitz(r^0, r^1, ..., r^(d-1))`` (``r^0 = 1`` also for ``r = 0``)."""
    lag = np.abs(np.arange(d)[:, None] - np.arange(d)[None, :])
    r = jnp.asarray(r, dtype)
    # Powers by repeated products: exact signs for r < 0 and no 0 ** 0.
    powers = jnp.cumprod(jnp.concatenate([jnp.ones((1,), dtype), jnp.full((d - 1,), r, dtype)]))
    return powers[lag]


class _Posterior(NamedTuple):
    mean: jax.Array  # mu, (N,)
    hy: jax.Array  # blocks of A^H Sigma_y^{-1} y, (g, d)
    hah: jax.Array  # diagonal blocks G_i of A^H Sigma_y^{-1} A, (g, d, d)
    cost: jax.Array  # log|Sigma_y| + y^H Sigma_y^{-1} y, real scalar


def _posterior(
    blocks: jax.Array, y: jax.Array, gamma: jax.Array, corr_matrix: jax.Array, noise_var: jax.Array
) -> _Posterior:
    """E-step in the ``M x M`` form for ``A`` given as its column blocks ``(M, g, d)``."""
    m, g, d = blocks.shape
    dtype = blocks.dtype
    a = blocks.reshape(m, g * d)
    b = corr_matrix.astype(dtype)
    a_sigma0 = jnp.einsum("mgj,jk->mgk", blocks, b) * gamma.astype(dtype)[None, :, None]
    sigma_y = a_sigma0.reshape(m, g * d) @ herm(a)
    sigma_y = sigma_y + jnp.asarray(noise_var, dtype) * jnp.eye(m, dtype=dtype)
    chol = jnp.linalg.cholesky(sigma_y)
    # One triangular solve for L^{-1} [A, y]: two independent batched LAPACK calls (under vmap)
    # can deadlock jaxlib's CPU thread pool (see jaxspec/_ordering.py).
    wz = solve_triangular(chol, jnp.concatenate([a, y[:, None]], axis=1), lower=True)
    w, z = wz[:, :-1], wz[:, -1]
    hy = (herm(w) @ z).reshape(g, d)
    wb = w.reshape(m, g, d)
    hah = jnp.einsum("mgj,mgk->gjk", jnp.conj(wb), wb)
    mean = (gamma.astype(dtype)[:, None] * (hy @ b)).reshape(g * d)  # B symmetric: B h_i
    logdet = 2 * jnp.sum(jnp.log(jnp.real(jnp.diagonal(chol))))
    return _Posterior(mean, hy, hah, logdet + jnp.sum(abs2(z)))


def _covariance(gamma: jax.Array, corr_matrix: jax.Array, hah: jax.Array) -> jax.Array:
    """Diagonal blocks ``Sigma_x^i = gamma_i B - gamma_i^2 B G_i B``, ``(g, d, d)``."""
    dtype = hah.dtype
    b = corr_matrix.astype(dtype)
    gc = gamma.astype(dtype)[:, None, None]
    return gc * b - gc**2 * (b @ hah @ b)


def _quadratics(post: _Posterior, corr_matrix: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``q_i = h_i^H B h_i`` and ``s_i = tr(G_i B)`` (both real, ``(g,)``)."""
    b = corr_matrix.astype(post.hy.dtype)
    q = jnp.real(jnp.einsum("gj,jk,gk->g", jnp.conj(post.hy), b, post.hy))
    s = jnp.real(jnp.einsum("gjk,kj->g", post.hah, b))
    return q, s


class _Data(NamedTuple):
    blocks: jax.Array  # A as its column blocks, (M, g, d)
    y: jax.Array  # (M,)
    gram: jax.Array  # A_i^H A_i, (g, d, d), for the noise update
    prune: jax.Array  # relative pruning threshold
    noise_floor: jax.Array  # lower bound of a learned noise variance


class _State(NamedTuple):
    gamma: jax.Array  # (g,), real; exactly 0 on pruned blocks
    corr: jax.Array  # AR(1) coefficient r
    noise_var: jax.Array
    post: _Posterior  # the E-step at (gamma, corr, noise_var)
    err: jax.Array  # max |mu - mu_old| of the last step (inf before the first)
    step: jax.Array


def _prepare(
    a: jax.Array,
    y: jax.Array,
    block_size: int,
    noise_var: Any,
    correlation: Any,
    prune: Any,
) -> tuple[_Data, _State]:
    """Data and the initial state (checked ``a``, ``y`` of one dtype)."""
    m, n = a.shape
    d = block_size
    g = n // d
    dtype = a.dtype
    rdtype = jnp.finfo(dtype).dtype
    blocks = a.reshape(m, g, d)
    y_energy = jnp.sum(abs2(y))
    scale = jnp.where(y_energy > 0, y_energy / m, 1)  # E|y_j|^2, the data's variance scale
    a_energy = jnp.sum(abs2(a))
    # gamma_0: the common block variance that makes E||A x||^2 equal ||y||^2 (B = I).
    gamma0 = jnp.full((g,), scale * m / jnp.where(a_energy > 0, a_energy, 1), rdtype)
    if noise_var is None:
        noise0 = jnp.asarray(_NOISE_INIT * scale, rdtype)
    else:
        noise0 = jnp.asarray(noise_var, rdtype)
    if isinstance(correlation, str):
        corr0 = jnp.zeros((), rdtype)
    else:
        corr0 = jnp.asarray(correlation, rdtype)
    gram = jnp.einsum("mgj,mgk->gjk", jnp.conj(blocks), blocks)
    floor = jnp.asarray(NOISE_FLOOR * jnp.finfo(rdtype).eps * scale, rdtype)
    data = _Data(blocks, y, gram, jnp.asarray(prune, rdtype), floor)
    post = _posterior(blocks, y, gamma0, _ar1(corr0, d, rdtype), noise0)
    state = _State(gamma0, corr0, noise0, post, jnp.asarray(jnp.inf, rdtype), jnp.int32(0))
    return data, state


def _learned_correlation(st: _State, corr_matrix: jax.Array) -> jax.Array:
    """AR(1) projection ``r = mean(subdiag B~) / mean(diag B~)`` of
    ``B~ = sum_active (Sigma_x^i + mu_i mu_i^H) / gamma_i``, clipped to ``|r| <= 0.99``."""
    post = st.post
    dtype = post.hy.dtype
    b = corr_matrix.astype(dtype)
    gc = st.gamma.astype(dtype)
    inner = jnp.einsum("g,gj,gk->jk", gc, post.hy, jnp.conj(post.hy))
    inner = inner - jnp.einsum("g,gjk->jk", gc, post.hah)
    count = jnp.sum(st.gamma > 0).astype(dtype)
    b_tilde = count * b + b @ inner @ b
    diag = jnp.mean(jnp.real(jnp.diagonal(b_tilde)))
    sub = jnp.mean(jnp.real(jnp.diagonal(b_tilde, offset=-1)))
    r = jnp.clip(sub / jnp.where(diag > 0, diag, 1), -_MAX_CORRELATION, _MAX_CORRELATION)
    return jnp.where(diag > 0, r, st.corr).astype(st.corr.dtype)


def _learned_noise(st: _State, data: _Data, corr_matrix: jax.Array) -> jax.Array:
    """Low-SNR rule ``(||y - A mu||^2 + sum_i tr(A_i Sigma_x^i A_i^H)) / M``, floored."""
    m = data.y.shape[0]
    resid = data.y - data.blocks.reshape(m, -1) @ st.post.mean
    cov = _covariance(st.gamma, corr_matrix, st.post.hah)
    spread = jnp.real(jnp.einsum("gjk,gkj->", cov, data.gram))
    lam = (jnp.sum(abs2(resid)) + spread) / m
    return jnp.maximum(lam, data.noise_floor).astype(st.noise_var.dtype)


def _step(st: _State, data: _Data, *, method: str, learn_corr: bool, learn_noise: bool) -> _State:
    """One BSBL iteration: gamma, r and noise_var from the stored E-step, then the E-step."""
    g, d = st.post.hy.shape
    rdtype = st.gamma.dtype
    b = _ar1(st.corr, d, rdtype)
    q, s = _quadratics(st.post, b)
    gamma = st.gamma
    alive = gamma > 0
    if method == "em":
        new = jnp.maximum(gamma + gamma**2 * (q - s) / d, 0)
    else:
        ratio = jnp.where(s > 0, q / jnp.where(s > 0, s, 1), 0)
        new = gamma * jnp.sqrt(ratio)
    new = jnp.where(alive, new, 0)
    new = jnp.where(new >= data.prune * jnp.max(new), new, 0)
    corr = _learned_correlation(st, b) if learn_corr and d > 1 else st.corr
    noise = _learned_noise(st, data, b) if learn_noise else st.noise_var
    post = _posterior(data.blocks, data.y, new, _ar1(corr, d, rdtype), noise)
    err = jnp.max(jnp.abs(post.mean - st.post.mean))
    return _State(new, corr, noise, post, err, st.step + 1)


def _finite(st: _State) -> jax.Array:
    return (
        jnp.isfinite(st.post.cost)
        & jnp.all(jnp.isfinite(st.post.mean))
        & jnp.all(jnp.isfinite(st.gamma))
        & jnp.isfinite(st.noise_var)
        & jnp.isfinite(st.corr)
    )


def _check_real_scalar(value: Any, name: str) -> np.ndarray | None:
    """The concrete value as a NumPy array, or ``None`` for a tracer; rejects non-real types."""
    if not is_concrete(value):
        return None
    arr = np.asarray(value)
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"`{name}` must be a real number, got {value!r}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"`{name}` must be finite, got {value!r}.")
    return arr


def block_sbl(
    A: jax.typing.ArrayLike,
    y: jax.typing.ArrayLike,
    block_size: int,
    *,
    method: Literal["bo", "em"] = "bo",
    noise_var: jax.typing.ArrayLike | None = None,
    correlation: Literal["learn"] | jax.typing.ArrayLike = "learn",
    max_steps: int = 600,
    tol: jax.typing.ArrayLike = 1e-8,
    prune: jax.typing.ArrayLike | None = None,
) -> BlockSBLSolution:
    r"""Block sparse Bayesian learning with AR(1) intra-block correlation (BSBL-BO / BSBL-EM).

    Recovers a block-sparse ``x`` from ``y = A x + n``, ``n ~ N(0, noise_var I)``. ``x`` is cut
    into ``g = N / block_size`` equal contiguous blocks with the prior
    ``x_i ~ N(0, gamma_i B)``, where ``B`` is the ``d x d`` Toeplitz matrix ``r^|j-k|`` of an
    AR(1) process, shared by all blocks (Zhang and Rao 2013). The type-II cost
    ``log|Sigma_y| + y^H Sigma_y^{-1} y``, ``Sigma_y = noise_var I + A blkdiag(gamma_i B) A^H``,
    is minimized over ``gamma`` (and ``r``, ``noise_var`` when learned); most ``gamma_i`` go to
    zero, which prunes their blocks. ``block_size=1`` with ``correlation=0.0`` is classical
    per-coefficient SBL (Tipping 2001; Wipf and Rao 2004).

    Each iteration computes the posterior ``mu``, ``Sigma_x`` from one Cholesky factor of the
    ``M x M`` matrix ``Sigma_y`` (only the ``d x d`` diagonal blocks of the covariance, never
    an ``N x N`` matrix; cost ``O(M^2 N + M^3 + N d^2)``), then updates, from that posterior:

    * ``gamma`` (``method="bo"``, default, Zhang and Rao's bound optimization, usually much
      faster): ``gamma_i <- gamma_i ||B^{1/2} h_i|| / sqrt(tr(G_i B))`` with
      ``h = A^H Sigma_y^{-1} y`` and ``G_i = A_i^H Sigma_y^{-1} A_i``; ``method="em"``:
      ``gamma_i <- tr(B^{-1}(Sigma_x^i + mu_i mu_i^H)) / d``, an EM step, so with ``r`` and
      ``noise_var`` fixed the cost never increases. Both are evaluated through
      ``h_i^H B h_i`` and ``tr(G_i B)``, without ``B^{-1}`` or ``B^{1/2}``.
    * ``r`` (``correlation="learn"``): ``B~ = sum_i (Sigma_x^i + mu_i mu_i^H) / gamma_i`` over
      the active blocks, ``r = mean(subdiag B~) / mean(diag B~)`` (real parts, for complex
      data) clipped to ``|r| <= 0.99``; it starts at 0 (``B = I``). A number fixes ``r``
      (``0.0``: block SBL without intra-block correlation). With ``block_size=1`` ``r`` plays
      no role and stays at its start.
    * ``noise_var`` (when ``None``): the BSBL codes' low-SNR rule
      ``(||y - A mu||^2 + sum_i tr(A_i Sigma_x^i A_i^H)) / M``, started at
      ``1e-2 ||y||^2 / M``. That start is the codes' ``1e-2 std(y)`` for data normalized to
      unit variance, but scales as a variance, so rescaling ``y`` rescales ``noise_var`` and
      ``gamma`` alike (up to the absolute ``tol`` below). It is bounded below by
      ``100 eps ||y||^2 / M`` (``eps`` of the dtype) so the Cholesky factor stays finite on
      noiseless data. The high-SNR rule of the codes is not implemented. The rule tends to
      overestimate the noise (about 2x on 64 x 128 problems at 20 dB, which also pushes the
      learned ``r`` up), so give ``noise_var`` when it is known, and for noiseless data (e.g.
      ``1e-10`` times the data's variance in float64), as the codes do; a given
      ``noise_var`` is kept fixed.

    ``gamma`` starts at ``||y||^2 / ||A||_F^2`` for every block (the common value matching
    ``E||A x||^2`` to ``||y||^2``; the codes start at 1 on normalized data).

    Pruning: after each update, blocks with ``gamma_i < prune * max(gamma)`` are set to exactly
    0 and stay 0. The threshold is relative so that rescaling ``y`` does not change which
    blocks survive. The default ``1e-3`` matches the codes' absolute ``PRUNE_GAMMA = 1e-3``
    (noiseless) on their normalized data, where active ``gamma_i`` are of order one. It is
    kept for noisy data too, instead of the codes' ``1e-2``, because a pruned block never
    comes back, while a spurious weak block costs little accuracy. ``prune=0`` disables
    pruning. A pruned block keeps its slot (masking, static shapes), so pruning saves no
    FLOPs.

    Stopping: ``max |mu - mu_old| < tol`` (``CONVERGED``; the codes' ``EPSILON`` rule, an
    absolute tolerance, so use data of order one, and about ``1e-5`` in float32, whose
    round-off alone moves ``mu`` by ``~1e-7 |mu|``), ``max_steps`` iterations
    (``MAX_STEPS``), or a non-finite cost, mean, ``gamma``, ``r`` or noise variance
    (``NONFINITE``, e.g. from non-finite data; the loop stops there).

    The solve is one ``lax.while_loop``: it compiles under ``jit`` (``block_size``,
    ``method``, ``max_steps`` and a string ``correlation`` static) and batches under ``vmap``
    over ``A``, ``y``, a given ``noise_var``, a numeric ``correlation``, ``tol`` and
    ``prune``. It is not reverse-differentiable.

    Args:
        A: dictionary ``(M, N)``, float32/float64 or complex64/complex128 (promoted with
            ``y``); ``N`` must be a multiple of ``block_size``.
        y: measurements ``(M,)``.
        block_size: block length ``d >= 1`` (static), dividing ``N``.
        method: ``"bo"`` (bound optimization, default) or ``"em"`` (static).
        noise_var: fixed noise variance ``> 0`` (traceable), or ``None`` to learn it.
        correlation: ``"learn"`` (default) or a fixed AR(1) coefficient in ``(-1, 1)``
            (traceable).
        max_steps: iteration budget ``>= 0`` (static; the codes' ``MAX_ITERS``).
        tol: tolerance ``> 0`` on ``max |mu - mu_old|`` (traceable).
        prune: relative pruning threshold in ``[0, 1)`` (traceable); ``None`` is ``1e-3``.

    Returns:
        A :class:`BlockSBLSolution` with ``mean`` ``(N,)`` (zero on pruned blocks), ``gamma``
        ``(N // block_size,)`` (exactly zero on pruned blocks), ``correlation`` and
        ``noise_var`` (real scalars), ``cost`` (real scalar), ``covariance_diag`` ``(N,)``, and
        ``num_steps``, ``status`` (int32). ``mean`` has the working dtype, the others its real
        dtype. ``mean``, ``covariance_diag`` and ``cost`` are the E-step at the returned
        hyperparameters.

    Raises:
        ValueError: naming the argument, for an ``A`` that is not a non-empty matrix, a ``y``
            that is not a vector of length ``M``, integer (or half-precision) dtypes, a
            ``block_size`` below 1 or not dividing ``N``, an unknown ``method``, a concrete
            ``noise_var <= 0``, a ``correlation`` that is neither ``"learn"`` nor in
            ``(-1, 1)``, ``tol <= 0``, ``prune`` outside ``[0, 1)`` or ``max_steps < 0``.

    Example:
        >>> import numpy as np
        >>> from jaxspec import sbl, status_message
        >>> rng = np.random.default_rng(0)
        >>> A = rng.standard_normal((20, 40)).astype(np.float32)
        >>> A /= np.linalg.norm(A, axis=0)
        >>> x = np.zeros(40, np.float32)
        >>> x[8:12] = [1.0, 0.9, 0.8, 0.7]  # block 2 of 10
        >>> sol = sbl.block_sbl(A, A @ x, 4, noise_var=1e-6, tol=1e-5)
        >>> np.flatnonzero(sol.gamma), status_message(sol.status)
        (array([2]), 'converged')
        >>> bool(np.allclose(sol.mean, x, atol=1e-2))
        True

    References:
        Zhang and Rao, "Extension of SBL algorithms for the recovery of block sparse signals
        with intra-block correlation", IEEE Trans. Signal Process. 61(8), 2013.
        Tipping, "Sparse Bayesian learning and the relevance vector machine", JMLR 1, 2001.
        Wipf and Rao, "Sparse Bayesian learning for basis selection", IEEE Trans. Signal
        Process. 52(8), 2004.
    """
    a = as_float_array(A, "A", allow_complex=True)
    if a.ndim != 2 or 0 in a.shape:
        raise ValueError(f"`A` must be a non-empty matrix (M, N), got shape {tuple(a.shape)}.")
    y = as_float_array(y, "y", allow_complex=True)
    m, n = a.shape
    if y.shape != (m,):
        raise ValueError(
            f"`y` must be a vector of length {m} to match `A` of shape {(m, n)}, "
            f"got shape {tuple(y.shape)}."
        )
    dtype = jnp.result_type(a.dtype, y.dtype)
    if dtype not in _DTYPES:
        raise ValueError(f"`A` and `y` must be float32/float64 or complex, got dtype {dtype}.")
    block_size = check_int(block_size, "block_size", minimum=1)
    if n % block_size:
        raise ValueError(f"`block_size` ({block_size}) must divide the N = {n} columns of `A`.")
    check_choice(method, "method", METHODS)
    max_steps = check_int(max_steps, "max_steps", minimum=0)
    if noise_var is not None:
        check_positive(noise_var, "noise_var")
    learn_corr = isinstance(correlation, str)
    if learn_corr and correlation != "learn":
        raise ValueError(
            f'`correlation` must be "learn" or a number in (-1, 1), got {correlation!r}.'
        )
    if not learn_corr:
        arr = _check_real_scalar(correlation, "correlation")
        if arr is not None and not np.all(np.abs(arr) < 1):
            raise ValueError(f"`correlation` must lie in (-1, 1), got {correlation!r}.")
    check_positive(tol, "tol")
    if prune is None:
        prune = _DEFAULT_PRUNE
    arr = _check_real_scalar(prune, "prune")
    if arr is not None and not np.all((arr >= 0) & (arr < 1)):
        raise ValueError(f"`prune` must lie in [0, 1), got {prune!r}.")

    a, y = a.astype(dtype), y.astype(dtype)
    rdtype = jnp.finfo(dtype).dtype
    data, state = _prepare(a, y, block_size, noise_var, correlation, prune)
    tol = jnp.asarray(tol, rdtype)
    step = functools.partial(
        _step,
        data=data,
        method=method,
        learn_corr=learn_corr,
        learn_noise=noise_var is None,
    )

    def running(st: _State) -> jax.Array:
        return (st.step < max_steps) & (st.err >= tol) & _finite(st)

    st = jax.lax.while_loop(running, step, state)
    status = jnp.where(
        ~_finite(st),
        jnp.int32(Status.NONFINITE),
        jnp.where(st.err < tol, jnp.int32(Status.CONVERGED), jnp.int32(Status.MAX_STEPS)),
    )
    cov = _covariance(st.gamma, _ar1(st.corr, block_size, rdtype), st.post.hah)
    cov_diag = jnp.real(jnp.diagonal(cov, axis1=-2, axis2=-1)).reshape(n)
    return BlockSBLSolution(
        mean=st.post.mean,
        gamma=st.gamma,
        correlation=st.corr,
        noise_var=st.noise_var,
        cost=st.post.cost,
        covariance_diag=cov_diag,
        num_steps=st.step,
        status=status,
    )
