"""Full-gradient Frank–Wolfe: vanilla, away-step and pairwise, with four step rules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from jaxspec._checks import check_choice, check_int, is_concrete
from jaxspec._status import Status
from jaxspec.frank_wolfe import _active_set as aset
from jaxspec.frank_wolfe import _steps
from jaxspec.frank_wolfe import _tree as tr
from jaxspec.frank_wolfe._adjoint import implicit_solution
from jaxspec.frank_wolfe._objective import LinearComposite
from jaxspec.frank_wolfe._solution import Solution
from jaxspec.frank_wolfe.lmo._base import LinearMinimizationOracle

PyTree = Any
VARIANTS = ("vanilla", "away", "pairwise")
ADJOINTS = ("implicit", "unroll")


class _Ops(NamedTuple):
    """The objective and oracle as the loop sees them (``z`` is ``A x`` or ``()``)."""

    image: Callable
    value_and_grad: Callable
    value: Callable
    curvature: Callable
    vertex: Callable
    apply: Callable
    init_state: Callable | None = None  # oracle state; None: ``lmo.init``


class _State(NamedTuple):
    x: PyTree
    z: PyTree
    value: jax.Array
    grad: PyTree
    vertex: PyTree
    vertex_image: PyTree
    lmo_state: PyTree
    gap: jax.Array
    t: jax.Array
    lipschitz: jax.Array
    prev_value: jax.Array
    active: Any
    full: jax.Array


def _generic_ops(fun: Callable, lmo: LinearMinimizationOracle) -> _Ops:
    def vertex(g, st):
        s, st = lmo.minimize(g, st)
        return s, (), st

    def curvature(x, z, d, dz):
        _, hd = jax.jvp(jax.grad(fun), (x,), (d,))
        return tr.vdot(d, hd)

    return _Ops(
        image=lambda x: (),
        value_and_grad=lambda x, z: jax.value_and_grad(fun)(x),
        value=lambda x, z: fun(x),
        curvature=curvature,
        vertex=vertex,
        apply=lambda v: (),
    )


def _composite_ops(fun: LinearComposite, lmo: LinearMinimizationOracle) -> _Ops:
    matrix = fun.matrix

    if lmo.vertex_nnz is not None:

        def vertex(g, st):
            idx, vals, st = lmo.sparse_minimize(g, st)
            s = jnp.zeros_like(g).at[idx].add(vals.astype(g.dtype))
            return s, matrix[:, idx] @ vals.astype(matrix.dtype), st
    else:

        def vertex(g, st):
            s, st = lmo.minimize(g, st)
            return s, matrix @ s, st

    return _Ops(
        image=fun.image,
        value_and_grad=lambda x, z: fun.value_and_grad_from_image(z),
        value=lambda x, z: fun.value_from_image(z),
        curvature=lambda x, z, d, dz: fun.curvature_from_image(z, dz),
        vertex=vertex,
        apply=lambda v: matrix @ v,
    )


class _GramCache(NamedTuple):
    keys: jax.Array  # (K,) cached column indices, -1 when empty
    rows: jax.Array  # (K, n) rows A^T a_j of the Gram matrix
    next_slot: jax.Array


def _gram_ops(fun: LinearComposite, lmo: LinearMinimizationOracle) -> _Ops:
    """Least squares in the gradient space: ``z = A^T A x``, Gram rows cached per column.

    ``grad f(x) = z - A^T b`` and ``f(x) = <x, z>/2 - <A^T b, x> + ||b||^2/2``, and every
    update of ``x`` along ``d`` moves ``z`` along ``A^T A d``. For a sparse vertex
    ``s = sum_k v_k e_{j_k}``, ``A^T A s = sum_k v_k A^T a_{j_k}``: rows of the Gram matrix,
    which Frank–Wolfe keeps reusing, so they live in a small round-robin cache kept in the
    oracle state and a product ``a_j^T A`` is paid only on a miss. Line searches are exact
    and cost ``O(n)``: ``<d, H d> = <d, dz>``.
    """
    matrix, b = fun.matrix, fun.args
    atb = b @ matrix
    half_bb = 0.5 * jnp.vdot(b, b)
    capacity = fun.gram_cache

    def gram(x):
        return (matrix @ x) @ matrix

    def value(x, z):
        return 0.5 * jnp.vdot(x, z) - jnp.vdot(atb, x) + half_bb

    def row(cache, j):
        hit = cache.keys == j
        found = jnp.any(hit)
        # Only the product is conditional; the (K, n) cache is updated in place outside it.
        r = jax.lax.cond(found, lambda: cache.rows[jnp.argmax(hit)], lambda: matrix[:, j] @ matrix)
        slot = jnp.where(found, jnp.argmax(hit), cache.next_slot)
        cache = _GramCache(
            cache.keys.at[slot].set(j),
            cache.rows.at[slot].set(r),
            jnp.where(found, cache.next_slot, (cache.next_slot + 1) % capacity),
        )
        return r, cache

    def vertex(g, state):
        inner, cache = state
        idx, vals, inner = lmo.sparse_minimize(g, inner)
        vals = vals.astype(g.dtype)
        s = jnp.zeros_like(g).at[idx].add(vals)
        gs = jnp.zeros_like(g)
        for k in range(idx.shape[0]):
            r, cache = row(cache, idx[k])
            gs = gs + vals[k] * r
        return s, gs, (inner, cache)

    def init_state(x0):
        n = matrix.shape[1]
        cache = _GramCache(
            jnp.full((capacity,), -1, jnp.int32),
            jnp.zeros((capacity, n), matrix.dtype),
            jnp.int32(0),
        )
        return lmo.init(x0), cache

    return _Ops(
        image=gram,
        value_and_grad=lambda x, z: (value(x, z), z - atb),
        value=value,
        curvature=lambda x, z, d, dz: jnp.vdot(d, dz),
        vertex=vertex,
        apply=gram,
        init_state=init_state,
    )


class _Options(NamedTuple):
    variant: str
    step: str
    max_steps: int
    capacity: int
    unroll: bool


def _initial_lipschitz(ops, hyper, x, z, g, s, s_img, dtype):
    """Copt's estimate when none is given: ``||g(x + eps d) - g(x)|| / (eps ||d||)``."""
    lip = hyper["lipschitz"]
    if lip is not None:
        return jnp.asarray(lip, dtype)
    eps = jnp.asarray(1e-3, dtype)
    d = tr.sub(s, x)
    dz = tr.sub(s_img, z)
    _, g_eps = ops.value_and_grad(tr.axpy(eps, d, x), tr.axpy(eps, dz, z))
    diff = tr.sub(g_eps, g)
    num = jnp.sqrt(tr.vdot(diff, diff))
    den = eps * jnp.sqrt(tr.vdot(d, d))
    est = num / jnp.where(den > 0, den, 1.0)
    return jnp.where((den > 0) & jnp.isfinite(est) & (est > 0), est, 1.0).astype(dtype)


def _init(ops: _Ops, lmo, hyper, x0, opts: _Options) -> _State:
    dtype = tr.real_dtype(x0)
    z0 = ops.image(x0)
    f0, g0 = ops.value_and_grad(x0, z0)
    lmo_state = lmo.init(x0) if ops.init_state is None else ops.init_state(x0)
    s0, s0_img, lmo_state = ops.vertex(g0, lmo_state)
    gap0 = tr.vdot(g0, tr.sub(x0, s0))
    if opts.step == "backtracking":
        lip = _initial_lipschitz(ops, hyper, x0, z0, g0, s0, s0_img, dtype)
    elif hyper["lipschitz"] is not None:
        lip = jnp.asarray(hyper["lipschitz"], dtype)
    else:
        lip = jnp.asarray(jnp.nan, dtype)
    active = aset.init(x0, opts.capacity, dtype) if opts.variant != "vanilla" else ()
    return _State(
        x0, z0, f0.astype(dtype), g0, s0, s0_img, lmo_state, gap0.astype(dtype), jnp.int32(0),
        lip, jnp.asarray(jnp.inf, dtype), active, jnp.bool_(False),
    )  # fmt: skip


def _direction(ops: _Ops, st: _State, variant: str):
    """Direction ``d``, its image, ``gamma_max``, its directional gap, and the away slot."""
    one = jnp.ones((), st.gap.dtype)
    d_fw = tr.sub(st.vertex, st.x)
    dz_fw = tr.sub(st.vertex_image, st.z)
    if variant == "vanilla":
        return d_fw, dz_fw, one, st.gap, None, None
    scores = aset.scores(st.active, st.grad)
    weights = st.active.weights
    away = jnp.argmax(jnp.where(weights > 0, scores, -jnp.inf))
    v = aset.atom(st.active, away)
    v_img = ops.apply(v)
    away_gap = (scores[away] - tr.vdot(st.grad, st.x)).astype(st.gap.dtype)
    w_away = weights[away]
    if variant == "pairwise":
        d = tr.sub(st.vertex, v)
        dz = tr.sub(st.vertex_image, v_img)
        return d, dz, w_away, st.gap + away_gap, away, jnp.bool_(False)
    use_fw = st.gap >= away_gap
    safe = jnp.where(w_away < 1, 1 - w_away, 1.0)
    gamma_max = jnp.where(use_fw | (w_away >= 1), one, w_away / safe)
    d = tr.where(use_fw, d_fw, tr.sub(st.x, v))
    dz = tr.where(use_fw, dz_fw, tr.sub(st.z, v_img))
    return d, dz, gamma_max, jnp.where(use_fw, st.gap, away_gap), away, ~use_fw


def _step_size(ops, search_ops, hyper, st, d, dz, gamma_max, dir_gap, step: str):
    norm2 = tr.vdot(d, d).astype(st.gap.dtype)
    lip = st.lipschitz
    if step == "open_loop":
        return _steps.open_loop(st.t, jnp.asarray(hyper["ell"]), gamma_max), lip
    if step == "short":
        return _steps.short_step(dir_gap, norm2, lip, gamma_max), lip
    if step == "exact":
        curv = ops.curvature(st.x, st.z, d, dz).astype(st.gap.dtype)
        return _steps.exact_step(dir_gap, curv, gamma_max), lip
    # Backtracking: the search runs on constants (it is a while_loop); the step is then the
    # short step for the accepted L, which is differentiable when the loop is unrolled.
    sg = jax.lax.stop_gradient
    x, z, dd, ddz, f0 = sg(st.x), sg(st.z), sg(d), sg(dz), sg(st.value)
    lip = _steps.warm_start_lipschitz(sg(lip), sg(dir_gap), sg(norm2), sg(st.prev_value), f0)
    _, lip, _ = _steps.backtracking(
        lambda gam: search_ops.value(tr.axpy(gam, dd, x), tr.axpy(gam, ddz, z)),
        f0, sg(dir_gap), sg(norm2), lip, sg(gamma_max),
    )  # fmt: skip
    return _steps.short_step(dir_gap, norm2, lip, gamma_max), lip


def _update_active(st: _State, gamma, gamma_max, away, is_away, variant):
    """New weights after the step, and whether a new atom did not fit."""
    active = st.active
    w = active.weights
    slot, fits = aset.locate(active, st.vertex)
    drop = gamma >= gamma_max
    if variant == "pairwise":
        w = w.at[away].add(-gamma)
        w = w.at[slot].add(gamma)
        w = w.at[away].set(jnp.where(drop, 0.0, w[away]))
        adds = gamma > 0
    else:
        fw = ~is_away
        w_fw = ((1 - gamma) * w).at[slot].add(gamma)
        w_aw = ((1 + gamma) * w).at[away].add(-gamma)
        w_aw = w_aw.at[away].set(jnp.where(drop, 0.0, w_aw[away]))
        w = jnp.where(fw, w_fw, w_aw)
        adds = fw & (gamma > 0)
    w = jnp.where(w < 0, 0.0, w)  # round-off below zero
    # An away step with no free slot leaves the atoms as they are (the vertex is not added)
    active = aset.store(aset.ActiveSet(active.atoms, w), slot, st.vertex, where=fits)
    return active, adds & ~fits


def _body(ops, search_ops, lmo, hyper, opts: _Options, st: _State) -> _State:
    d, dz, gamma_max, dir_gap, away, is_away = _direction(ops, st, opts.variant)
    gamma, lip = _step_size(ops, search_ops, hyper, st, d, dz, gamma_max, dir_gap, opts.step)
    x = tr.axpy(gamma, d, st.x)
    z = tr.axpy(gamma, dz, st.z)
    value, grad = ops.value_and_grad(x, z)
    active, full = st.active, jnp.bool_(False)
    if opts.variant != "vanilla":
        active, full = _update_active(st, gamma, gamma_max, away, is_away, opts.variant)
    s, s_img, lmo_state = ops.vertex(grad, st.lmo_state)
    gap = tr.vdot(grad, tr.sub(x, s)).astype(st.gap.dtype)
    new = _State(
        x, z, value.astype(st.value.dtype), grad, s, s_img, lmo_state, gap, st.t + 1, lip,
        st.value, active, full,
    )  # fmt: skip
    # A step that needed a slot the active set did not have is not taken.
    return jax.tree.map(lambda a, b: jnp.where(full, a, b), st._replace(full=full), new)


def _running(st: _State, tol, max_steps) -> jax.Array:
    finite = jnp.isfinite(st.gap) & jnp.isfinite(st.value)
    return (st.t < max_steps) & (st.gap > tol) & finite & ~st.full


def _status(st: _State, tol) -> jax.Array:
    finite = jnp.isfinite(st.gap) & jnp.isfinite(st.value) & tr.all_finite(st.x)
    return jnp.where(
        ~finite,
        jnp.int32(Status.NONFINITE),
        jnp.where(
            st.gap <= tol,
            jnp.int32(Status.CONVERGED),
            jnp.where(st.full, jnp.int32(Status.ACTIVE_SET_FULL), jnp.int32(Status.MAX_STEPS)),
        ),
    )


def run(build, lmo_static, opts: _Options, params, hyper, x0) -> Solution:
    """The solve on explicit parameters (what the adjoints differentiate)."""
    fun_params, lmo_params = params
    fun = build(fun_params)
    lmo = eqx.combine(lmo_params, lmo_static)
    search = build(jax.lax.stop_gradient(fun_params))
    if not isinstance(fun, LinearComposite):
        make = _generic_ops
    elif fun.gram_cache > 0 and lmo.vertex_nnz is not None and opts.variant == "vanilla":
        make = _gram_ops  # as least_squares documents (pairwise stalled on it: see the tests)
    else:
        make = _composite_ops
    ops, search_ops = make(fun, lmo), make(search, lmo)
    tol = jnp.asarray(hyper["tol"])
    st = _init(ops, lmo, hyper, x0, opts)
    body = lambda s: _body(ops, search_ops, lmo, hyper, opts, s)  # noqa: E731
    if opts.unroll:

        def scan_body(s, _):
            keep = ~_running(s, tol, opts.max_steps)
            new = body(s)
            return jax.tree.map(lambda a, b: jnp.where(keep, a, b), s, new), None

        st, _ = jax.lax.scan(scan_body, st, None, length=opts.max_steps)
    else:
        st = jax.lax.while_loop(lambda s: _running(s, tol, opts.max_steps), body, st)
    if make is _gram_ops:  # value, gradient and gap at the final iterate without round-off drift
        exact = _composite_ops(fun, lmo)
        value, grad = exact.value_and_grad(st.x, exact.image(st.x))
        s, _, _ = exact.vertex(grad, st.lmo_state[0])
        gap = tr.vdot(grad, tr.sub(st.x, s)).astype(st.gap.dtype)
        st = st._replace(value=value.astype(st.value.dtype), grad=grad, gap=gap)
    stats = {"lipschitz": st.lipschitz}
    if opts.variant != "vanilla":
        stats["active_set_size"] = aset.size(st.active)
        stats["weights"] = st.active.weights
    return Solution(st.x, st.value, st.gap, st.t, _status(st, tol), stats)


def _check_x0(x0: PyTree) -> PyTree:
    x0 = jax.tree.map(jnp.asarray, x0)
    leaves = jax.tree.leaves(x0)
    if not leaves:
        raise ValueError("`x0` must be a non-empty pytree of float arrays.")
    for leaf in leaves:
        if not jnp.issubdtype(leaf.dtype, jnp.inexact):
            raise ValueError(f"`x0` leaves must be floating-point arrays, got dtype {leaf.dtype}.")
    return x0


def _check_hyper(name: str, value, *, allow_zero: bool = False) -> None:
    if value is None or not is_concrete(value):
        return
    arr = np.asarray(value)
    bad = np.any(arr < 0) if allow_zero else np.any(arr <= 0)
    if bad or not np.all(np.isfinite(arr)):
        expected = "non-negative" if allow_zero else "positive"
        raise ValueError(f"`{name}` must be {expected} and finite, got {value!r}.")


def solve(
    fun: Callable[..., jax.Array],
    x0: PyTree,
    lmo: LinearMinimizationOracle,
    *,
    args: PyTree = None,
    variant: Literal["vanilla", "away", "pairwise"] = "vanilla",
    step: Literal["open_loop", "short", "exact", "backtracking"] = "backtracking",
    lipschitz: jax.typing.ArrayLike | None = None,
    ell: jax.typing.ArrayLike = 2.0,
    max_steps: int = 1000,
    tol: jax.typing.ArrayLike = 1e-6,
    active_set_size: int | None = None,
    adjoint: Literal["implicit", "unroll"] = "implicit",
    implicit_step: jax.typing.ArrayLike | None = None,
    throw: bool = False,
) -> Solution:
    r"""Minimize a smooth ``fun`` over the convex set of ``lmo`` by Frank–Wolfe.

    Each iteration calls the oracle on the gradient, ``s = argmin_{s in C} <grad f(x), s>``,
    and moves toward it: ``x <- x + gamma d``. The Frank–Wolfe gap
    ``g(x) = <grad f(x), x - s>`` (an upper bound on ``f(x) - f*`` for convex ``f``) is the
    certificate: the ``lax.while_loop`` stops when ``g(x) <= tol`` or after ``max_steps``.

    Variants: ``"vanilla"`` (``d = s - x``); ``"away"`` (away steps ``d = x - v`` from the
    worst atom ``v`` of the active set when that gap is larger; linear convergence on
    polytopes for strongly convex ``f``) and ``"pairwise"`` (``d = s - v``). Active sets
    have a fixed capacity ``active_set_size`` (default ``min(max_steps + 1, 512)``) so they
    jit and vmap; ``x0`` is their first atom. A step that needs a slot when all are taken ends
    the solve with status ``ACTIVE_SET_FULL``.

    Step rules: ``"open_loop"`` ``ell/(t + ell)``; ``"short"`` (Demyanov–Rubinov)
    ``min(gap_d / (L ||d||^2), gamma_max)`` with the given ``lipschitz`` ``L``; ``"exact"``
    line search for quadratics ``gap_d / <d, H d>`` (a Hessian-vector product; a Newton step
    on the line for other objectives); ``"backtracking"`` (Pedregosa et al. 2020, copt's
    constants: ``L`` shrinks by 0.9 and doubles until sufficient decrease; the initial ``L``
    is ``lipschitz`` or a finite-difference estimate).

    Objectives: any ``fun(x)`` (or ``fun(x, args)`` when ``args`` is given) of a pytree ``x``
    returning a real scalar. A :class:`LinearComposite` (such as :func:`least_squares`) is
    recognised and its image ``A x`` tracked: one ``A^T r`` product per iteration with a
    sparse-vertex oracle (l1 ball, simplex, k-sparse).

    Differentiation (``jax.grad``/``jax.jacrev`` of the solution with respect to ``args``,
    arrays closed over by ``fun``, and the oracle's fields such as the radius):
    ``adjoint="implicit"`` differentiates the projected-gradient fixed point
    ``x = P_C(x - eta grad f(x))`` (``eta = implicit_step``, default ``1/lipschitz`` or 1),
    solving the adjoint system by GMRES; it needs ``lmo.project`` and a converged solve.
    ``adjoint="unroll"`` differentiates through ``max_steps`` iterations (a ``lax.scan`` that
    freezes after convergence; it needs a reverse-differentiable oracle). On a curved set (an
    l2 ball, say) with ``step="short"`` or ``"backtracking"`` the unrolled derivative of
    ``gamma = <g, x - s> / (L ||s - x||^2)`` is a 0/0 as the iterates converge and can blow up
    (measured: -111 and -2124 against a finite difference of 0.40); use the implicit adjoint
    or ``step="exact"`` there. ``gap`` carries no gradient.

    Args:
        fun: objective ``fun(x)`` or ``fun(x, args)``, smooth, real scalar output.
        x0: feasible starting point (pytree of float arrays; a vertex is a good choice). The
            iterate keeps its dtype; with a :class:`LinearComposite` it takes the dtype of
            ``x0`` and the matrix promoted together.
        lmo: the feasible set, a :class:`jaxspec.frank_wolfe.lmo.LinearMinimizationOracle`.
        args: optional pytree passed to ``fun`` (differentiable).
        variant: ``"vanilla"``, ``"away"`` or ``"pairwise"`` (static).
        step: ``"open_loop"``, ``"short"``, ``"exact"`` or ``"backtracking"`` (static).
        lipschitz: smoothness constant ``L`` of ``fun`` (required by ``"short"``; may be
            traced).
        ell: open-loop constant ``ell`` in ``ell/(t + ell)`` (may be traced).
        max_steps: iteration budget (static).
        tol: stop when the Frank–Wolfe gap is ``<= tol`` (may be traced; 0 runs
            ``max_steps`` iterations).
        active_set_size: active-set capacity for ``"away"``/``"pairwise"`` (static).
        adjoint: ``"implicit"`` or ``"unroll"`` (static).
        implicit_step: ``eta`` of the implicit fixed point (default ``1/lipschitz`` or 1).
        throw: raise a runtime error (``eqx.error_if``) unless the status is ``CONVERGED``.

    Returns:
        A :class:`Solution` with ``x``, ``value``, ``gap``, ``num_steps``, ``status`` and
        ``stats`` (``lipschitz``: the last ``L``; ``active_set_size``/``weights`` for active
        set variants).

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxspec import frank_wolfe
        >>> from jaxspec.frank_wolfe import lmo
        >>> theta = jnp.array([0.6, 0.3, -0.2])
        >>> f = lambda x: 0.5 * jnp.sum((x - theta) ** 2)
        >>> sol = frank_wolfe.solve(f, jnp.array([1.0, 0.0, 0.0]), lmo.simplex(1.0),
        ...                         step="short", lipschitz=1.0, tol=1e-8)
        >>> [round(float(v), 4) for v in sol.x], int(sol.status)
        ([0.65, 0.35, 0.0], 0)

    References:
        Frank and Wolfe, "An algorithm for quadratic programming", 1956.
        Jaggi, "Revisiting Frank-Wolfe: Projection-Free Sparse Convex Optimization", ICML 2013.
        Lacoste-Julien and Jaggi, "On the Global Linear Convergence of Frank-Wolfe
        Optimization Variants", NeurIPS 2015.
        Pedregosa, Negiar, Askari, Jaggi, "Linearly Convergent Frank-Wolfe with Backtracking
        Line-Search", AISTATS 2020, arXiv:1806.05123.
        Blondel et al., "Efficient and Modular Implicit Differentiation", NeurIPS 2022,
        arXiv:2105.15183.
    """
    if not callable(fun):
        raise ValueError(f"`fun` must be callable, got {type(fun).__name__}.")
    if not isinstance(lmo, LinearMinimizationOracle):
        raise ValueError(
            "`lmo` must be a jaxspec.frank_wolfe.lmo.LinearMinimizationOracle, "
            f"got {type(lmo).__name__}."
        )
    check_choice(variant, "variant", VARIANTS)
    check_choice(step, "step", _steps.STEP_RULES)
    check_choice(adjoint, "adjoint", ADJOINTS)
    max_steps = check_int(max_steps, "max_steps", minimum=0)
    if step == "short" and lipschitz is None:
        raise ValueError('`lipschitz` is required by step="short" (the smoothness constant L).')
    _check_hyper("lipschitz", lipschitz)
    _check_hyper("ell", ell)
    _check_hyper("tol", tol, allow_zero=True)
    _check_hyper("implicit_step", implicit_step)
    if active_set_size is None:
        capacity = min(max_steps + 1, 512)
    else:
        capacity = check_int(active_set_size, "active_set_size", minimum=1)
    x0 = _check_x0(x0)

    if isinstance(fun, LinearComposite):
        if args is not None:
            raise ValueError("`args` must be None for a LinearComposite `fun` (it holds its own).")
        leaves = jax.tree.leaves(x0)
        if len(leaves) != 1 or leaves[0].shape != (fun.matrix.shape[1],):
            raise ValueError(
                f"`x0` must be one array of shape ({fun.matrix.shape[1]},) for a "
                f"LinearComposite with matrix {tuple(fun.matrix.shape)}."
            )
        # the iterate takes the promoted dtype of x0 and the matrix (its gradient A^T r does)
        x0 = jax.tree.map(lambda leaf: leaf.astype(jnp.result_type(leaf, fun.matrix)), x0)
        fun_params, fun_static = eqx.partition(fun, eqx.is_array)

        def build(p):
            return eqx.combine(p, fun_static)
    else:
        call = (lambda x, a: fun(x)) if args is None else fun
        out = jax.eval_shape(call, x0, args)
        if not (
            isinstance(out, jax.ShapeDtypeStruct)
            and out.shape == ()
            and jnp.issubdtype(out.dtype, jnp.floating)
        ):
            raise ValueError(f"`fun` must return a real scalar, got {out}.")
        converted, consts = jax.closure_convert(call, x0, args)
        fun_params = (args, consts)

        def build(p):
            a, c = p
            return lambda x: converted(x, a, *c)

    lmo_params, lmo_static = eqx.partition(lmo, eqx.is_array)
    params = (fun_params, lmo_params)
    dtype = tr.real_dtype(x0)
    if implicit_step is None:
        eta = jnp.asarray(1.0, dtype) if lipschitz is None else 1.0 / jnp.asarray(lipschitz, dtype)
    else:
        eta = jnp.asarray(implicit_step, dtype)
    hyper = {
        "lipschitz": None if lipschitz is None else jnp.asarray(lipschitz, dtype),
        "ell": jnp.asarray(ell, dtype),
        "tol": jnp.asarray(tol, dtype),
    }
    opts = _Options(variant, step, max_steps, capacity, adjoint == "unroll")
    if adjoint == "unroll":
        sol = run(build, lmo_static, opts, params, hyper, x0)
    else:
        sol = implicit_solution(
            lambda p, h, x: run(build, lmo_static, opts, p, h, x),
            build,
            lmo_static,
            params,
            hyper,
            eta,
            x0,
        )
    if throw:
        x = eqx.error_if(
            sol.x,
            sol.status != Status.CONVERGED,
            "frank_wolfe.solve did not converge (status != CONVERGED).",
        )
        sol = sol._replace(x=x)
    return sol
