"""Accurate polar factor: Polar Express rows, then the classic quintic until a tolerance."""

from __future__ import annotations

from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxspec._checks import check_choice, check_int, check_matrix, check_positive
from jaxspec._status import Status, classify
from jaxspec._svd import svd
from jaxspec.spectral._newton_schulz import mT, safe_sqrt_norm2, wide
from jaxspec.spectral._schedules import POLAR_EXPRESS, QUINTIC, apply_safety

# Polar Express rows (safety factor on all of them), then the unscaled classic quintic whose
# fixed point is exactly 1 and which converges with third order.
_POLAR_ROWS = np.concatenate([apply_safety(np.array(POLAR_EXPRESS), last=True), [QUINTIC]])
_PE_PHASE = len(POLAR_EXPRESS)


class PolarSolution(NamedTuple):
    """Result of :func:`polar`; every field carries the input's leading batch axes.

    Attributes:
        factor: the polar factor ``(..., m, n)``.
        error: ``||Q Q^H - I||_F`` over the smaller dimension (an upper bound on
            ``max_i |1 - sigma_i(Q)^2|``), shape ``(...)``.
        num_steps: Newton–Schulz steps taken (0 for ``method="svd"``), int32 ``(...)``.
        status: :class:`jaxspec.Status` code, int32 ``(...)``.
    """

    factor: jax.Array
    error: jax.Array
    num_steps: jax.Array
    status: jax.Array

    @property
    def converged(self) -> jax.Array:
        """Boolean array: whether ``error <= tol`` was reached."""
        return self.status == Status.CONVERGED


def _orthonormality_error(gram: jax.Array) -> jax.Array:
    eye = jnp.eye(gram.shape[-1], dtype=gram.dtype)
    return jnp.sqrt(jnp.sum(jnp.abs(gram - eye) ** 2, axis=(-2, -1))).astype(
        jnp.finfo(gram.dtype).dtype
    )


def _polar_single(x: jax.Array, tol: jax.Array, max_steps: int):
    """Newton–Schulz polar factor of one wide matrix ``(m, n)``, m <= n."""
    real = jnp.finfo(x.dtype).dtype
    rows = jnp.asarray(_POLAR_ROWS, dtype=real)
    gram = x @ mT(x)
    # Schatten-4 normalization reuses the first Gram matrix: ||X X^H||_F^(1/2) >= sigma_max.
    fro, _ = safe_sqrt_norm2(jnp.sum(jnp.abs(gram) ** 2))
    scale, positive = safe_sqrt_norm2(fro)
    inv = jnp.where(positive, 1.0 / jnp.where(positive, scale, 1.0), 0.0).astype(real)
    x = x * inv
    gram = gram * (inv * inv)
    err = _orthonormality_error(gram)

    def cond(state):
        _, _, err, t, stalled = state
        return (t < max_steps) & (err > tol) & ~stalled & jnp.isfinite(err)

    def body(state):
        x, gram, err, t, _ = state
        a, b, c = rows[jnp.minimum(t, _PE_PHASE)]
        x = a * x + (b * gram + c * (gram @ gram)) @ x
        gram = x @ mT(x)
        new_err = _orthonormality_error(gram)
        # Past the Polar Express phase the error decreases monotonically until round-off.
        stalled = (t >= _PE_PHASE) & (new_err >= err)
        return x, gram, new_err, t + 1, stalled

    init = (x, gram, err, jnp.int32(0), jnp.bool_(False))
    x, gram, err, t, stalled = jax.lax.while_loop(cond, body, init)
    return x, err, t, classify(err <= tol, err, stalled)


def polar(
    x: jax.typing.ArrayLike,
    tol: jax.typing.ArrayLike = 1e-6,
    max_steps: int = 100,
    *,
    method: Literal["newton_schulz", "svd"] = "newton_schulz",
) -> PolarSolution:
    r"""Polar factor ``Q = U V^H`` of ``x = U S V^H``, iterated to a tolerance.

    ``method="newton_schulz"`` scales ``X`` by ``||X X^H||_F^{1/2}`` (an upper bound on
    ``sigma_max`` that costs nothing: the first Gram matrix is needed anyway), runs the eight
    Polar Express rows and then the classic quintic ``(15 s - 10 s^3 + 3 s^5)/8`` until
    ``||Q Q^H - I||_F <= tol`` (measured on the smaller side, from the Gram matrix each step
    computes anyway), the step budget runs out, or the error stops decreasing (the round-off
    floor: status ``STAGNATED``). Matmuls only, so it runs at matmul speed on accelerators.
    ``method="svd"`` is the exact reference path (``U V^H`` from ``jnp.linalg.svd``).

    The attainable ``tol`` is set by the dtype: about ``sqrt(m) * 10 eps`` (so ``1e-6`` is
    reachable in float64; in float32 use ``tol >= 1e-4`` for matrices up to ~1000 rows).
    Rank-deficient inputs never converge (zero singular values stay zero) and end
    ``STAGNATED``. The loop is a ``lax.while_loop``: it supports ``jit``/``vmap`` and forward
    mode, not reverse-mode gradients; differentiate :func:`orthogonalize` or the SVD path.

    Args:
        x: float or complex array ``(..., m, n)``; leading axes are batch axes.
        tol: tolerance on ``||Q Q^H - I||_F`` (may be traced).
        max_steps: step budget (static).
        method: ``"newton_schulz"`` or ``"svd"``.

    Returns:
        A :class:`PolarSolution` ``(factor, error, num_steps, status)``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxspec import spectral
        >>> x = jax.random.normal(jax.random.key(0), (32, 48))
        >>> sol = spectral.polar(x, tol=1e-4)
        >>> bool(sol.converged), int(sol.num_steps) < 15
        (True, True)

    References:
        Amsel, Persson, Musco, Gower, "The Polar Express", arXiv:2505.16932, 2025.
        Higham, "Functions of Matrices: Theory and Computation", SIAM 2008, Ch. 8.
    """
    x = check_matrix(x, "x", allow_complex=True)
    check_choice(method, "method", ("newton_schulz", "svd"))
    check_positive(tol, "tol")
    max_steps = check_int(max_steps, "max_steps", minimum=0)
    out_dtype, out_real = x.dtype, jnp.finfo(x.dtype).dtype
    # float16/bfloat16 are computed in float32: their Gram sums overflowed (float16: a zero
    # factor) and LAPACK has no SVD for them
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    real = jnp.finfo(x.dtype).dtype
    batch = x.shape[:-2]
    if method == "svd":
        u, _, vh = svd(x)  # NaN (status NONFINITE) for a matrix with a non-finite entry
        q = u @ vh
        small, _ = wide(q)
        err = _orthonormality_error(small @ mT(small))
        steps = jnp.zeros(batch, jnp.int32)
        status = classify(err <= tol, err)
        return PolarSolution(q.astype(out_dtype), err.astype(out_real), steps, status)
    xw, transposed = wide(x)
    flat = xw.reshape((-1,) + xw.shape[-2:])
    tol = jnp.asarray(tol, real)
    q, err, steps, status = jax.vmap(_polar_single, in_axes=(0, None, None))(flat, tol, max_steps)
    q = q.reshape(xw.shape).astype(out_dtype)
    if transposed:
        q = mT(q)
    err = err.reshape(batch).astype(out_real)
    return PolarSolution(q, err, steps.reshape(batch), status.reshape(batch))
