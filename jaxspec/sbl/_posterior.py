"""The SBL E-step: posterior mean, diag of the posterior covariance and the type-II cost.

Model ``Y = A X + E`` with ``A (M, N)``, ``Y (M, L)`` (one or several measurement vectors
sharing a support), columns of ``E`` white with variance ``noise_var`` and rows of ``X``
independent with variances ``gamma`` (Tipping 2001; Wipf and Rao 2004, 2007). With
``Gamma = diag(gamma)``:

    Sigma_y = noise_var I + A Gamma A^H                       (M x M)
    Sigma   = Gamma - Gamma A^H Sigma_y^{-1} A Gamma            (N x N, only the diagonal kept)
    mu      = Gamma A^H Sigma_y^{-1} Y
    cost    = L log|Sigma_y| + tr(Y^H Sigma_y^{-1} Y)

Two algebraically equal forms, both Cholesky based (no explicit inverse is formed):

* ``"woodbury"``: a Cholesky factor of the ``M x M`` ``Sigma_y``; ``O(M^2 N)``.
* ``"primal"``: a Cholesky factor of ``P = I + Gamma^{1/2} A^H A Gamma^{1/2} / noise_var``
  (``N x N``), with ``Sigma = Gamma^{1/2} P^{-1} Gamma^{1/2} `` ; ``O(N^3)``, better
  conditioned when ``M >= N``. Scaling by ``Gamma^{1/2}`` keeps pruned atoms (``gamma = 0``)
  exact: their rows and columns are zero.

Both give ``diag(Sigma)`` without forming ``Sigma``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular

from jaxspec.sbl._common import abs2, herm

FORMS: tuple[str, ...] = ("auto", "woodbury", "primal")


class Posterior(NamedTuple):
    mean: jax.Array  # (N, L)
    covariance_diag: jax.Array  # (N,), real
    cost: jax.Array  # real scalar
    residual_sq: jax.Array  # ||Y - A mean||_F^2, real scalar


def resolve_form(form: str, m: int, n: int) -> str:
    """``"auto"`` picks the Woodbury form when ``M < N`` (as scikit-learn does)."""
    if form == "auto":
        return "woodbury" if m < n else "primal"
    return form


def _logdet_from_cholesky(chol: jax.Array) -> jax.Array:
    return 2 * jnp.sum(jnp.log(jnp.abs(jnp.real(jnp.diagonal(chol)))))


def woodbury(a: jax.Array, y: jax.Array, gamma: jax.Array, noise_var: jax.Array) -> Posterior:
    """E-step in the ``M x M`` form (see the module docstring)."""
    m, _ = a.shape
    ag = a * gamma.astype(a.dtype)[None, :]
    sigma_y = noise_var.astype(a.dtype) * jnp.eye(m, dtype=a.dtype) + ag @ herm(a)
    chol = jnp.linalg.cholesky(sigma_y)
    w = solve_triangular(chol, a, lower=True)  # L^{-1} A
    v = solve_triangular(chol, y, lower=True)  # L^{-1} Y
    mean = gamma.astype(a.dtype)[:, None] * (herm(w) @ v)
    cov_diag = gamma - gamma**2 * jnp.sum(abs2(w), axis=0)
    cost = y.shape[1] * _logdet_from_cholesky(chol) + jnp.sum(abs2(v))
    # Y - A mu = noise_var Sigma_y^{-1} Y = noise_var L^{-H} (L^{-1} Y)
    r = noise_var * solve_triangular(herm(chol), v, lower=False)
    return Posterior(mean, jnp.maximum(cov_diag, 0), cost, jnp.sum(abs2(r)))


def primal(
    a: jax.Array,
    y: jax.Array,
    gamma: jax.Array,
    noise_var: jax.Array,
    gram: jax.Array | None = None,
    aty: jax.Array | None = None,
) -> Posterior:
    """E-step in the ``N x N`` form; ``gram = A^H A`` and ``aty = A^H Y`` may be precomputed."""
    m, n = a.shape
    gram = herm(a) @ a if gram is None else gram
    aty = herm(a) @ y if aty is None else aty
    # sqrt'(0) is infinite: a pruned atom's zero tangent would make NaN in forward mode (the
    # implicit gradient's Hessian), so the square root is taken on the live atoms only
    live = gamma > 0
    s = jnp.where(live, jnp.sqrt(jnp.where(live, gamma, 1.0)), 0.0).astype(a.dtype)
    p = jnp.eye(n, dtype=a.dtype) + (s[:, None] * gram * s[None, :]) / noise_var
    chol = jnp.linalg.cholesky(p)
    z = solve_triangular(chol, s[:, None] * aty, lower=True)
    u = solve_triangular(herm(chol), z, lower=False)  # P^{-1} Gamma^{1/2} A^H Y
    mean = s[:, None] * u / noise_var
    chol_inv = solve_triangular(chol, jnp.eye(n, dtype=a.dtype), lower=True)
    cov_diag = gamma * jnp.sum(abs2(chol_inv), axis=0)
    residual = y - a @ mean
    residual_sq = jnp.sum(abs2(residual))
    # y^H Sigma_y^{-1} y = ||y - A mu||^2 / noise_var + mu^H Gamma^{-1} mu, and
    # mu^H Gamma^{-1} mu = ||u||^2 / noise_var^2; log|Sigma_y| = M log noise_var + log|P|.
    cost = y.shape[1] * (m * jnp.log(noise_var) + _logdet_from_cholesky(chol))
    cost = cost + residual_sq / noise_var + jnp.sum(abs2(u)) / noise_var**2
    return Posterior(mean, jnp.maximum(cov_diag, 0), cost, residual_sq)


def posterior(
    a: jax.Array,
    y: jax.Array,
    gamma: jax.Array,
    noise_var: jax.Array,
    form: str,
    gram: jax.Array | None = None,
    aty: jax.Array | None = None,
) -> Posterior:
    """E-step in the requested form (``"woodbury"`` or ``"primal"``; resolve ``"auto"``
    first with :func:`resolve_form`)."""
    if form == "woodbury":
        return woodbury(a, y, gamma, noise_var)
    return primal(a, y, gamma, noise_var, gram, aty)
