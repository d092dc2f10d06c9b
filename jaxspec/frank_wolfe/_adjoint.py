"""Implicit differentiation of a Frank–Wolfe solution through a projected-gradient fixed point.

At a solution ``x*`` of ``min_{x in C} f(x; theta)`` the projected-gradient map
``T(x, theta) = P_C(x - eta grad_x f(x; theta))`` has ``x* = T(x*, theta)``. Differentiating
that identity gives ``(I - d_x T) dx* = d_theta T dtheta``, so a cotangent ``v`` of ``x*``
pulls back to ``theta`` as ``(d_theta T)^T u`` with ``(I - d_x T)^T u = v`` (solved by GMRES).
This needs only the Euclidean projection onto ``C`` (``lmo.project``), never the forward
solver's iterations.

References:
    Blondel et al., "Efficient and Modular Implicit Differentiation", NeurIPS 2022,
    arXiv:2105.15183.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from jaxspec.frank_wolfe import _tree as tr
from jaxspec.frank_wolfe._solution import Solution

PyTree = Any


def _fixed_point_map(build, lmo_static, eta):
    def fixed_point(x, params):
        fun_params, lmo_params = params
        fun = build(fun_params)
        lmo = eqx.combine(lmo_params, lmo_static)
        g = jax.grad(fun)(x)
        return lmo.project(tr.axpy(-eta, g, x))

    return fixed_point


def implicit_solution(
    run: Callable[[PyTree, dict, PyTree], Solution],
    build: Callable[[PyTree], Callable],
    lmo_static: PyTree,
    params: PyTree,
    hyper: dict,
    eta: jax.Array,
    x0: PyTree,
) -> Solution:
    """Run the solve with a custom VJP for ``x`` by the implicit function theorem."""

    @jax.custom_vjp
    def solve_x(params, hyper, eta, x0):
        return run(params, hyper, x0)

    def fwd(params, hyper, eta, x0):
        sol = run(params, hyper, x0)
        return sol, (sol.x, params, hyper, eta, x0)

    def bwd(res, ct):
        x, params, hyper, eta, x0 = res
        lmo = eqx.combine(params[1], lmo_static)
        if not lmo.has_projection:
            raise ValueError(
                f"adjoint='implicit' needs a Euclidean projection onto the set, and "
                f"{type(lmo).__name__} has none: use adjoint='unroll'."
            )
        fixed_point = _fixed_point_map(build, lmo_static, eta)
        _, vjp_x = jax.vjp(lambda y: fixed_point(y, params), x)
        flat_v, unravel = ravel_pytree(ct.x)
        eps = jnp.finfo(flat_v.dtype).eps

        def matvec(u):
            (ju,) = vjp_x(unravel(u))
            return u - ravel_pytree(ju)[0]

        n = flat_v.shape[0]
        u, _ = jax.scipy.sparse.linalg.gmres(
            matvec, flat_v, tol=float(100 * eps), restart=min(n, 50), maxiter=max(4, n // 10)
        )
        _, vjp_p = jax.vjp(lambda p: fixed_point(x, p), params)
        (ct_params,) = vjp_p(unravel(u))
        zeros = lambda t: jax.tree.map(jnp.zeros_like, t)  # noqa: E731
        return ct_params, zeros(hyper), jnp.zeros_like(eta), zeros(x0)

    solve_x.defvjp(fwd, bwd)
    sol = solve_x(params, hyper, eta, x0)
    # The objective at x* with its total derivative: through x* (custom VJP above) and
    # directly through the parameters.
    value = build(params[0])(sol.x)
    return sol._replace(value=value.astype(sol.value.dtype), gap=jax.lax.stop_gradient(sol.gap))
