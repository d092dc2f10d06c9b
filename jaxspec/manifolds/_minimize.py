"""Full-batch Riemannian solvers: steepest descent and nonlinear conjugate gradient."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from jaxspec._checks import check_choice, check_int, check_positive, is_concrete
from jaxspec._status import Status
from jaxspec.manifolds._base import AbstractOrthonormalFrames
from jaxspec.manifolds._linesearch import (
    LINESEARCHES,
    armijo_backtracking,
    barzilai_borwein,
    initial_alpha,
    next_alpha,
)
from jaxspec.manifolds._solution import ManifoldSolution

PyTree = Any
METHODS: tuple[str, ...] = ("cg", "gd")
BETA_RULES: tuple[str, ...] = (
    "hestenes_stiefel",
    "polak_ribiere",
    "fletcher_reeves",
    "hager_zhang",
)
# Per line-search rule: (sufficient decrease c, contraction budget); Manopt/pymanopt defaults.
_LINESEARCH_DEFAULTS = {"backtracking": (1e-4, 25), "adaptive": (0.5, 10), "bb": (1e-4, 25)}
_DEFAULT_LINESEARCH = {"gd": "backtracking", "cg": "adaptive"}
_HAGER_ZHANG_ETA = 0.01  # eta in the lower bound eta_k of Hager and Zhang (2005)


class _State(NamedTuple):
    x: jax.Array
    value: jax.Array
    aux: PyTree
    grad: jax.Array  # Riemannian gradient at x
    grad_norm: jax.Array
    direction: jax.Array  # the next search direction (cg), a tangent vector at x
    fresh: jax.Array  # direction is -grad (first step, restart, or beta = 0)
    prev_value: jax.Array  # f at the previous iterate; NaN without history
    prev_alpha: jax.Array  # "adaptive" line search's next guess; NaN without history
    step: jax.Array
    stalled: jax.Array  # the line search failed along -grad
    reference: jax.Array  # Armijo reference C_k (f(x) unless the "bb" rule is non-monotone)
    weight: jax.Array  # Zhang-Hager Q_k


def _beta(rule: str, inner, g_new, g_old_t, d_t, g_old_norm, d_old_norm) -> jax.Array:
    """Conjugacy coefficient from transported quantities at the new point.

    ``g_old_t``/``d_t`` are the previous gradient and direction transported to ``x_{k+1}``;
    ``y = g_{k+1} - T(g_k)``. Negative values are clipped to 0 (HS, PR: the "+" variants),
    Hager–Zhang is bounded below by its ``eta_k``. An undefined ratio gives 0, a restart.
    """
    y = g_new - g_old_t
    if rule == "fletcher_reeves":
        num, den = inner(g_new, g_new), g_old_norm**2
    elif rule == "polak_ribiere":
        num, den = inner(g_new, y), g_old_norm**2
    else:
        num, den = inner(g_new, y), inner(d_t, y)
    safe = jnp.where(den != 0, den, 1.0)
    beta = num / safe
    if rule == "hager_zhang":
        # beta_N = (y - 2 d ||y||^2 / d^T y)^T g / d^T y, bounded below by
        # eta_k = -1 / (||d_k|| min(eta, ||g_k||)).
        beta = beta - 2 * inner(y, y) * inner(d_t, g_new) / safe**2
        eta_k = -1 / (d_old_norm * jnp.minimum(_HAGER_ZHANG_ETA, g_old_norm))
        beta = jnp.maximum(beta, eta_k)
    elif rule != "fletcher_reeves":
        beta = jnp.maximum(beta, 0)
    return jnp.where((den != 0) & jnp.isfinite(beta), beta, 0).astype(g_new.dtype)


def _check_open_unit(value, name: str) -> None:
    check_positive(value, name)
    if is_concrete(value) and not np.all(np.asarray(value) < 1):
        raise ValueError(f"`{name}` must lie in (0, 1), got {value!r}.")


def _check_nonnegative(value, name: str) -> None:
    if is_concrete(value):
        arr = np.asarray(value)
        if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
            raise ValueError(f"`{name}` must be a non-negative real number, got {value!r}.")
        if np.any(arr < 0) or not np.all(np.isfinite(arr)):
            raise ValueError(f"`{name}` must be non-negative and finite, got {value!r}.")


def minimize(
    f: Callable[..., Any],
    x0: jax.typing.ArrayLike,
    manifold: AbstractOrthonormalFrames,
    *,
    args: PyTree = None,
    method: Literal["cg", "gd"] = "cg",
    beta: Literal[
        "hestenes_stiefel", "polak_ribiere", "fletcher_reeves", "hager_zhang"
    ] = "hestenes_stiefel",
    tol: jax.typing.ArrayLike = 1e-6,
    rtol: jax.typing.ArrayLike = 0.0,
    max_steps: int = 1000,
    linesearch: Literal["backtracking", "adaptive", "bb"] | None = None,
    initial_step: jax.typing.ArrayLike = 1.0,
    contraction: jax.typing.ArrayLike = 0.5,
    sufficient_decrease: jax.typing.ArrayLike | None = None,
    optimism: jax.typing.ArrayLike = 2.0,
    nonmonotone: jax.typing.ArrayLike = 0.85,
    max_linesearch_steps: int | None = None,
    has_aux: bool = False,
    throw: bool = False,
) -> ManifoldSolution:
    r"""Minimize a smooth ``f`` over a Stiefel manifold or (special) orthogonal group.

    Riemannian steepest descent (``method="gd"``) or nonlinear conjugate gradient
    (``method="cg"``) with an Armijo backtracking line search along the manifold's retraction
    (Absil, Mahony, Sepulchre 2008, Sec. 4.2 and Ch. 8; Boumal 2023, Secs. 4.3 and 4.5). The
    Euclidean gradient comes from ``jax.grad`` and is turned into the Riemannian one by
    ``manifold.egrad_to_rgrad``; all inner products and norms are the manifold's metric. The
    whole solve is one ``lax.while_loop`` (each line search a nested ``while_loop``), so it
    compiles under ``jit`` and batches under ``vmap`` (over ``x0``, ``args`` and every
    traceable hyperparameter).

    Conjugate gradient: ``d_{k+1} = -g_{k+1} + beta_k T(d_k)`` with ``T`` the manifold's vector
    transport (``manifold.transport``, the projection onto the new tangent space) and
    ``y_k = g_{k+1} - T(g_k)``. ``beta``: ``"hestenes_stiefel"`` (default, as pymanopt)
    ``max(0, <g_{k+1}, y_k> / <T d_k, y_k>)``; ``"polak_ribiere"``
    ``max(0, <g_{k+1}, y_k> / ||g_k||^2)``; ``"fletcher_reeves"``
    ``||g_{k+1}||^2 / ||g_k||^2``; ``"hager_zhang"`` (Hager and Zhang 2005)
    ``<y - 2 T d ||y||^2 / <T d, y>, g_{k+1}> / <T d, y>``, bounded below by
    ``-1 / (||d_k|| min(0.01, ||g_k||))``. The method restarts from ``-g`` when the direction
    is not a descent direction (``<g, d> >= 0``) and when the line search fails along a
    conjugate direction.

    Line search (see :mod:`jaxspec.manifolds._linesearch`): trials
    ``alpha, contraction alpha, ...`` until
    ``f(R_x(alpha d)) <= f(x) + sufficient_decrease alpha <g, d>``, at most
    ``max_linesearch_steps`` contractions; if the budget runs out the last trial is taken when
    it still decreases ``f``, else the step is rejected. The first trial of the first search
    is a step of length ``initial_step`` (``alpha = initial_step / ||d||``); later searches
    start from the previous step: ``linesearch="backtracking"`` (default for ``"gd"``) the
    quadratic-interpolation guess ``optimism * 2 (f_k - f_{k-1}) / <g_k, d_k>``,
    ``linesearch="adaptive"`` (default for ``"cg"``) the previous ``alpha``, doubled unless
    exactly one contraction was needed; ``linesearch="bb"`` (steepest descent only; not
    pymanopt's, so its iterates differ) the Barzilai–Borwein step, alternating
    ``<s, s> / |<s, y>|`` and ``|<s, y>| / <y, y>`` with ``s``, ``y`` the last changes of the
    point and of the Riemannian gradient in the embedding, and the non-monotone Armijo
    condition of Zhang and Hager: ``f`` is compared with the running weighted average
    ``C_k = (nonmonotone Q_{k-1} C_{k-1} + f_k) / Q_k``, ``Q_k = nonmonotone Q_{k-1} + 1``,
    as in the feasible method of Wen and Yin (2013). Defaults are those of Manopt/pymanopt 2.2.1:
    ``contraction=0.5``, ``initial_step=1``, ``optimism=2``, and per rule
    ``sufficient_decrease`` 1e-4 / 0.5 and ``max_linesearch_steps`` 25 / 10
    (backtracking / adaptive). With those defaults and the same retraction, the iterates match
    pymanopt's ``SteepestDescent`` / ``ConjugateGradient`` (``HestenesStiefel``) up to
    round-off; pymanopt's iteration count is ``num_steps + 1`` (it counts the iteration that
    checks the gradient norm), and its steepest descent returns the point one step further.

    Stopping: when the Riemannian gradient norm is ``<= max(tol, rtol * grad_norm(x0))``
    (``CONVERGED``), after ``max_steps`` iterations (``MAX_STEPS``), on a non-finite value,
    gradient or iterate (``NONFINITE``; an objective that is NaN at ``x0`` stops there), or
    when the line search fails along ``-g`` (``STAGNATED``: no decrease is representable,
    typically the floor of the dtype: a decrease of ``|g|^2 t`` below ``eps |f|`` is not
    representable, so float32 stops near gradient norms of ``3e-5`` to ``2e-4 |f|``, measured
    on the Brockett cost on St(6, 2); a ``tol`` below that ends ``STAGNATED`` or, where
    round-off still passes the Armijo test, ``MAX_STEPS``).

    The solve is not reverse-differentiable (a ``while_loop``): treat the solution as data
    (``jax.lax.stop_gradient``) or differentiate the optimality condition yourself.

    Points carry leading batch axes as a product manifold: ``x0`` of shape ``(..., n, p)`` is
    one point of ``M^k``; ``f`` maps it to one scalar, inner products are summed over the
    batch axes, and one line search is shared. To solve independent problems, ``jax.vmap``
    the call instead (each problem then has its own step sizes and stopping time). A vmapped
    solve runs in lockstep: every iteration and every line search waits for the slowest
    problem, which suits accelerators; on CPU, ``jax.lax.map`` over the problems (one after
    another in one compiled call) is faster (2.6x for 64 Procrustes problems on O(20) in
    ``benchmarks/manifolds.py``).

    Args:
        f: objective ``f(x)``, or ``f(x, args)`` when ``args`` is given, returning a real
            scalar (``(scalar, aux)`` with ``has_aux=True``). It is called on points of
            ``x0``'s shape and must be differentiable by ``jax.grad``.
        x0: starting point ``(..., n, p)`` on the manifold (float32 or float64; the solve runs
            in its dtype).
        manifold: a :class:`Stiefel` or :class:`Orthogonal` (its metric, retraction and
            transport are used).
        args: optional pytree passed to ``f`` as the second argument: data to ``vmap`` over
            (``vmap(lambda x0, a: minimize(f, x0, M, args=a))``) without retracing ``f``.
        method: ``"cg"`` or ``"gd"`` (static).
        beta: conjugate-gradient rule (static; ignored by ``"gd"``).
        tol: absolute gradient-norm tolerance, ``> 0`` (traceable).
        rtol: tolerance relative to the initial gradient norm, ``>= 0`` (traceable).
        max_steps: iteration budget, ``>= 0`` (static).
        linesearch: initial-step rule, ``"backtracking"``, ``"adaptive"`` or ``"bb"``
            (static; ``"bb"`` only with ``"gd"``); ``None`` picks ``"backtracking"`` for
            ``"gd"`` and ``"adaptive"`` for ``"cg"``.
        initial_step: length of the first trial step, ``> 0`` (traceable).
        contraction: step factor after a failed trial, in ``(0, 1)`` (traceable).
        sufficient_decrease: Armijo constant in ``(0, 1)`` (traceable); ``None`` is the
            rule's default.
        optimism: factor on the ``"backtracking"`` guess, ``> 0`` (traceable).
        nonmonotone: Zhang–Hager weight ``eta`` in ``[0, 1)`` of the ``"bb"`` rule's
            reference value (0 is the monotone Armijo condition; traceable).
        max_linesearch_steps: contractions per search, ``>= 0`` (static); ``None`` is the
            rule's default.
        has_aux: ``f`` returns ``(value, aux)``; the solution carries ``aux`` at ``x``.
        throw: raise a runtime error (``eqx.error_if``, works under ``jit``) unless the
            status is ``CONVERGED``.

    Returns:
        A :class:`ManifoldSolution` ``(x, value, grad_norm, num_steps, status, aux)``; ``x`` has
        ``x0``'s shape and dtype, the others are scalars (int32 for ``num_steps`` and
        ``status``).

    Raises:
        ValueError: naming the argument, for an unknown ``method``/``beta``/``linesearch``,
            ``tol <= 0``, a negative ``rtol`` or ``max_steps``, line-search constants out of
            range, an ``x0`` whose last two axes are not ``(manifold.n, manifold.p)``, or an
            ``f`` that does not return a real scalar.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxspec import manifolds, status_message
        >>> st = manifolds.Stiefel(6, 2)
        >>> a = jnp.diag(jnp.arange(1.0, 7.0))
        >>> f = lambda x: -jnp.trace(x.T @ a @ x)  # dominant invariant subspace
        >>> sol = manifolds.minimize(f, st.random(jax.random.key(0)), st, tol=1e-2)
        >>> round(float(sol.value), 3), status_message(sol.status)
        (-11.0, 'converged')

    References:
        Absil, Mahony, Sepulchre, "Optimization Algorithms on Matrix Manifolds", Princeton
        University Press, 2008 (Sec. 4.2, Armijo point; Ch. 8, vector transport and
        conjugate gradients).
        Boumal, "An Introduction to Optimization on Smooth Manifolds", Cambridge University
        Press, 2023 (Secs. 4.3 and 4.5, gradient descent and backtracking; Sec. 10.5,
        transporters).
        Barzilai and Borwein, "Two-point step size gradient methods", IMA J. Numer. Anal.
        8(1), 1988.
        Zhang and Hager, "A nonmonotone line search technique and its application to
        unconstrained optimization", SIAM J. Optim. 14(4), 2004.
        Wen and Yin, "A feasible method for optimization with orthogonality constraints",
        Math. Program. 142, 2013.
        Hager and Zhang, "A new conjugate gradient method with guaranteed descent and an
        efficient line search", SIAM J. Optim. 16(1), 2005.
        Nocedal and Wright, "Numerical Optimization", 2nd ed., 2006 (Sec. 3.5, initial step).
        Boumal, Mishra, Absil, Sepulchre, "Manopt, a Matlab toolbox for optimization on
        manifolds", JMLR 15, 2014; Townsend, Koep, Weichwald, "Pymanopt", JMLR 17, 2016
        (the line-search defaults).
    """
    if not callable(f):
        raise ValueError(f"`f` must be callable, got {type(f).__name__}.")
    if not isinstance(manifold, AbstractOrthonormalFrames):
        raise ValueError(
            "`manifold` must be a jaxspec.manifolds.Stiefel or Orthogonal, "
            f"got {type(manifold).__name__}."
        )
    check_choice(method, "method", METHODS)
    check_choice(beta, "beta", BETA_RULES)
    if linesearch is None:
        linesearch = _DEFAULT_LINESEARCH[method]
    check_choice(linesearch, "linesearch", LINESEARCHES)
    if linesearch == "bb" and method != "gd":
        raise ValueError('`linesearch` "bb" needs method="gd" (Barzilai–Borwein steps), got "cg".')
    default_c, default_budget = _LINESEARCH_DEFAULTS[linesearch]
    if sufficient_decrease is None:
        sufficient_decrease = default_c
    if max_linesearch_steps is None:
        max_linesearch_steps = default_budget
    max_steps = check_int(max_steps, "max_steps", minimum=0)
    max_linesearch_steps = check_int(max_linesearch_steps, "max_linesearch_steps", minimum=0)
    check_positive(tol, "tol")
    _check_nonnegative(rtol, "rtol")
    check_positive(initial_step, "initial_step")
    check_positive(optimism, "optimism")
    _check_open_unit(contraction, "contraction")
    _check_open_unit(sufficient_decrease, "sufficient_decrease")
    _check_nonnegative(nonmonotone, "nonmonotone")
    if is_concrete(nonmonotone) and not np.all(np.asarray(nonmonotone) < 1):
        raise ValueError(f"`nonmonotone` must lie in [0, 1), got {nonmonotone!r}.")
    if not isinstance(has_aux, bool):
        raise ValueError(f"`has_aux` must be a bool, got {has_aux!r}.")
    if getattr(manifold, "retraction", None) == "iterative_cayley":
        # approximately feasible only: a line search drifts off the manifold (St(6, 2), float32:
        # orthogonality error 0.18 and f = -9.99 against f* = -11 after 1000 steps)
        raise ValueError(
            '`manifold` with retraction="iterative_cayley" cannot be used by minimize (its '
            'iterates leave the manifold); use "qr", "polar", "cayley" or "exp".'
        )
    x0 = manifold.check_point(x0, "x0")
    if x0.dtype not in (jnp.float32, jnp.float64):
        raise ValueError(f"`x0` must be float32 or float64, got dtype {x0.dtype}.")
    dtype = x0.dtype

    call = (lambda x: f(x)) if args is None else (lambda x: f(x, args))
    out = jax.eval_shape(call, x0)
    value_out = out[0] if has_aux and isinstance(out, tuple) and len(out) == 2 else out
    if has_aux and value_out is out:
        raise ValueError(f"`f` must return a pair (value, aux) with has_aux=True, got {out}.")
    if not (
        isinstance(value_out, jax.ShapeDtypeStruct)
        and value_out.shape == ()
        and jnp.issubdtype(value_out.dtype, jnp.floating)
    ):
        raise ValueError(f"`f` must return a real scalar, got {value_out}.")

    def value_fn(x):
        v = call(x)
        return (v[0] if has_aux else v).astype(dtype)

    def value_and_grad(x):
        if has_aux:
            (v, aux), eg = jax.value_and_grad(call, has_aux=True)(x)
        else:
            (v, eg), aux = jax.value_and_grad(call)(x), None
        rg = manifold.egrad_to_rgrad(x, eg.astype(dtype))
        return v.astype(dtype), aux, rg

    def inner(x, u, v):
        return jnp.sum(manifold.inner(x, u, v))

    def norm(x, u):
        return jnp.sqrt(jnp.maximum(inner(x, u, u), 0))

    hyper = {
        name: jnp.asarray(value, dtype)
        for name, value in (
            ("tol", tol),
            ("rtol", rtol),
            ("initial_step", initial_step),
            ("contraction", contraction),
            ("sufficient_decrease", sufficient_decrease),
            ("optimism", optimism),
            ("nonmonotone", nonmonotone if linesearch == "bb" else 0.0),
        )
    }
    nan = jnp.asarray(jnp.nan, dtype)

    v0, aux0, g0 = value_and_grad(x0)
    gn0 = norm(x0, g0)
    threshold = jnp.maximum(hyper["tol"], hyper["rtol"] * gn0)
    one = jnp.asarray(1, dtype)
    init = _State(
        x0,
        v0,
        aux0,
        g0,
        gn0,
        -g0,
        jnp.bool_(True),
        nan,
        nan,
        jnp.int32(0),
        jnp.bool_(False),
        v0,
        one,
    )

    def running(st: _State) -> jax.Array:
        finite = jnp.isfinite(st.value) & jnp.isfinite(st.grad_norm)
        return (st.step < max_steps) & (st.grad_norm > threshold) & finite & ~st.stalled

    def body(st: _State) -> _State:
        x, g, gn = st.x, st.grad, st.grad_norm
        if method == "gd":
            d, df0, along_grad = -g, -(gn**2), jnp.bool_(True)
        else:
            df0 = inner(x, g, st.direction)
            descent = df0 < 0
            d = jnp.where(descent, st.direction, -g)
            df0 = jnp.where(descent, df0, -(gn**2))
            along_grad = st.fresh | ~descent
        d_norm = norm(x, d)
        alpha0 = initial_alpha(
            linesearch,
            f0=st.value,
            prev_value=st.prev_value,
            df0=df0,
            prev_alpha=st.prev_alpha,
            direction_norm=d_norm,
            initial_step=hyper["initial_step"],
            optimism=hyper["optimism"],
        )
        search = armijo_backtracking(
            value_fn,
            manifold.retract,
            x,
            d,
            st.value,
            df0,
            alpha0,
            contraction=hyper["contraction"],
            sufficient_decrease=hyper["sufficient_decrease"],
            max_contractions=max_linesearch_steps,
            reference=st.reference if linesearch == "bb" else None,
        )
        ok = search.accepted
        x_new = jnp.where(ok, search.x, x)
        v_new, aux_new, g_new = value_and_grad(x_new)
        gn_new = norm(x_new, g_new)
        if method == "gd":
            d_new, fresh = -g_new, jnp.bool_(True)
        else:
            d_t = manifold.transport(x, x_new, d)
            g_old_t = manifold.transport(x, x_new, g)
            b = _beta(beta, lambda u, v: inner(x_new, u, v), g_new, g_old_t, d_t, gn, d_norm)
            b = jnp.where(ok, b, 0)  # a rejected conjugate step restarts from -g
            d_new, fresh = -g_new + b * d_t, b == 0
        if linesearch == "bb":
            guess = barzilai_borwein(x_new - x, g_new - g, st.step, ok)
        else:
            guess = next_alpha(linesearch, search)
        weight = hyper["nonmonotone"] * st.weight + 1
        reference = (hyper["nonmonotone"] * st.weight * st.reference + v_new) / weight
        return _State(
            x_new,
            v_new,
            aux_new,
            g_new,
            gn_new,
            d_new,
            fresh,
            jnp.where(ok, st.value, nan),
            guess,
            st.step + 1,
            ~ok & along_grad,
            reference,
            weight,
        )

    st = jax.lax.while_loop(running, body, init)
    finite = jnp.isfinite(st.value) & jnp.isfinite(st.grad_norm) & jnp.all(jnp.isfinite(st.x))
    status = jnp.where(
        ~finite,
        jnp.int32(Status.NONFINITE),
        jnp.where(
            st.grad_norm <= threshold,
            jnp.int32(Status.CONVERGED),
            jnp.where(st.stalled, jnp.int32(Status.STAGNATED), jnp.int32(Status.MAX_STEPS)),
        ),
    )
    sol = ManifoldSolution(st.x, st.value, st.grad_norm, st.step, status, st.aux)
    if throw:
        x = eqx.error_if(
            sol.x,
            sol.status != Status.CONVERGED,
            "manifolds.minimize did not converge (status != CONVERGED).",
        )
        sol = sol._replace(x=x)
    return sol
