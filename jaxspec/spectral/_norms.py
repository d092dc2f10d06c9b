"""Spectral norm by batched power iteration."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxspec._checks import check_int, check_matrix
from jaxspec.spectral._newton_schulz import mT, safe_sqrt_norm2, wide


def _normalize(v: jax.Array) -> jax.Array:
    norm, positive = safe_sqrt_norm2(jnp.sum(jnp.abs(v) ** 2, axis=-1, keepdims=True))
    return jnp.where(positive, v / jnp.where(positive, norm, 1.0), 0.0)


def spectral_norm(
    x: jax.typing.ArrayLike,
    iters: int = 20,
    *,
    v0: jax.typing.ArrayLike | None = None,
    return_vector: bool = False,
) -> jax.Array | tuple[jax.Array, jax.Array]:
    r"""Largest singular value ``sigma_max(x)`` by power iteration, batched.

    Iterates ``u <- normalize(X X^H u)`` on the smaller side ``k = min(m, n)`` and returns
    ``||X^H u||``, a lower bound on ``sigma_max`` that converges at the rate
    ``(sigma_2 / sigma_1)^(2 iters)``. Pass the returned vector back as ``v0`` to warm-start
    the next call (optimizers tracking a slowly-changing weight need 1-2 iterations then).
    Differentiable (a fixed number of matmul steps under ``lax.scan``).

    Args:
        x: float or complex array ``(..., m, n)``.
        iters: number of power iterations (static, >= 1).
        v0: optional start vectors ``(..., k)`` (or ``(k,)``, broadcast over the batch);
            defaults to a fixed pseudo-random vector (deterministic).
        return_vector: also return the final vectors ``(..., k)`` for warm starts.

    Returns:
        ``sigma`` of shape ``(...)``, or ``(sigma, u)`` with ``return_vector=True``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxspec import spectral
        >>> x = jnp.diag(jnp.array([3.0, 1.0, 0.5]))
        >>> round(float(spectral.spectral_norm(x)), 4)
        3.0

    References:
        Golub and Van Loan, "Matrix Computations", 4th ed., Sec. 8.2 (power method).
    """
    x = check_matrix(x, "x", allow_complex=True)
    iters = check_int(iters, "iters")
    out_dtype, out_real = x.dtype, jnp.finfo(x.dtype).dtype
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))  # float16 sums of squares overflow
    xw, _ = wide(x)
    k = xw.shape[-2]
    batch = xw.shape[:-2]
    if v0 is None:
        # Drawn in float32 whatever the input dtype, so every dtype starts from the same vector.
        u = jax.random.normal(jax.random.key(0), (k,), dtype=jnp.float32).astype(x.dtype)
    else:
        u = jnp.asarray(v0, dtype=x.dtype)
        if u.shape[-1] != k:
            raise ValueError(
                f"`v0` must have last dimension min(m, n) = {k}, got shape {tuple(u.shape)}."
            )
    u = _normalize(jnp.broadcast_to(u, batch + (k,)))

    def body(u, _):
        w = jnp.einsum("...ij,...j->...i", mT(xw), u)
        return _normalize(jnp.einsum("...ij,...j->...i", xw, w)), None

    u, _ = jax.lax.scan(body, u, None, length=iters)
    w = jnp.einsum("...ij,...j->...i", mT(xw), u)
    sigma, _ = safe_sqrt_norm2(jnp.sum(jnp.abs(w) ** 2, axis=-1))
    sigma = sigma.astype(out_real)
    return (sigma, u.astype(out_dtype)) if return_vector else sigma
