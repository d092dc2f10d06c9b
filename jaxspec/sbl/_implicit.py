"""Implicit differentiation of the SBL hyperparameters at a stationary point of the cost.

EM and MacKay iterations converge to a stationary point of the type-II cost
``C(gamma, noise_var; A, Y) = L log|Sigma_y| + tr(Y^H Sigma_y^{-1} Y)`` over the active atoms
(pruned atoms stay at ``gamma = 0``). In log coordinates ``l = log gamma`` (and
``log noise_var`` when the noise is learned) the stationarity condition ``F(l, theta) =
grad_l C = 0`` defines ``l*(theta)``, ``theta = (A, Y, noise_var)``, and the implicit function
theorem gives ``dl* = -H^{-1} d_theta F dtheta`` with ``H = d_l F`` the Hessian of ``C``.
A cotangent ``v`` of ``l*`` therefore pulls back to ``theta`` as ``-(d_theta F)^T w`` with
``H w = v`` (``H`` is symmetric). Pruned coordinates are held fixed (identity rows of ``H``):
the pruning decision is piecewise constant in ``theta``.

The Hessian is formed densely by forward-mode differentiation (``N + 1`` Hessian-vector
products of the E-step), which suits the problem sizes SBL is used at (``N`` up to a few
thousand); only the backward pass pays for it.

References:
    Blondel et al., "Efficient and Modular Implicit Differentiation", NeurIPS 2022,
    arXiv:2105.15183.
    Tipping, "Sparse Bayesian learning and the relevance vector machine", JMLR 1, 2001.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxspec.sbl._classic import run_fixed_point
from jaxspec.sbl._posterior import posterior


def _log_cost(a, y, noise_var, mask, form, learn_noise):
    def cost(ell):
        gamma = jnp.where(mask, jnp.exp(ell[:-1]), 0.0)
        noise = jnp.exp(ell[-1]) if learn_noise else noise_var
        return posterior(a, y, gamma, noise, form).cost

    return cost


def solve_hyperparameters(a, y, noise_var, hyper, options):
    """``(gamma, noise_var, steps, status)`` of the EM/MacKay iteration, with a custom VJP for
    ``gamma`` and ``noise_var`` by the implicit function theorem (see the module docstring)."""
    form, learn_noise = options["form"], options["learn_noise"]

    @jax.custom_vjp
    def solve(a, y, noise_var, hyper):
        return run_fixed_point(a, y, noise_var, hyper, options)

    def fwd(a, y, noise_var, hyper):
        out = run_fixed_point(a, y, noise_var, hyper, options)
        return out, (out[0], out[1], a, y, noise_var, hyper)

    def bwd(res, ct):
        gamma, noise, a, y, noise_var, hyper = res
        gamma_bar, noise_bar = ct[0], ct[1]
        mask = gamma > 0
        safe = jnp.where(mask, gamma, 1.0)
        ell = jnp.concatenate([jnp.log(safe), jnp.log(noise)[None]])

        def stationarity(ell, a, y, noise_var):
            return jax.grad(_log_cost(a, y, noise_var, mask, form, learn_noise))(ell)

        hess = jax.jacfwd(stationarity)(ell, a, y, noise_var)
        keep = jnp.concatenate([mask, jnp.array([learn_noise])])
        both = keep[:, None] & keep[None, :]
        hess = jnp.where(both, hess, 0.0) + jnp.diag(jnp.where(keep, 0.0, 1.0))
        v = jnp.concatenate([gamma_bar * gamma, (noise_bar * noise)[None]])
        v = jnp.where(keep, v, 0.0)
        w = jnp.linalg.solve(hess, v)
        _, pull = jax.vjp(lambda a, y, s: stationarity(ell, a, y, s), a, y, noise_var)
        a_bar, y_bar, s_bar = pull(-w)
        hyper_bar = jax.tree.map(jnp.zeros_like, hyper)
        return a_bar, y_bar, s_bar, hyper_bar

    solve.defvjp(fwd, bwd)
    return solve(a, y, noise_var, hyper)
