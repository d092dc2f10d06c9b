"""Stochastic Frank–Wolfe with gradient averaging, as an optax transform and a streaming solver.

Each step averages the minibatch gradient into a running estimate
``d_t = (1 - rho_t) d_{t-1} + rho_t g_t``, calls the oracle on ``d_t`` and takes the step
``x_t = x_{t-1} + gamma_t (s_t - x_{t-1})``. The schedules ``(rho_t, gamma_t)`` are those of
Mokhtari, Hassani and Karbasi (``"mhk"``) and of Xue and Lau's online dictionary learning
(``"online_odl"``); both weights are clipped to at most 1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxspec._checks import check_choice, check_int
from jaxspec._status import Status
from jaxspec.frank_wolfe import _tree as tr
from jaxspec.frank_wolfe._solution import Solution
from jaxspec.frank_wolfe.lmo._base import LinearMinimizationOracle

PyTree = Any
SCHEDULES = ("mhk", "online_odl", "open_loop")
Schedule = Literal["mhk", "online_odl", "open_loop"] | Callable[[jax.Array], tuple]


def stochastic_schedule(
    name: str,
    t: jax.typing.ArrayLike,
    *,
    rho_scale: jax.typing.ArrayLike = 1.0,
    gamma_scale: jax.typing.ArrayLike = 1.0,
) -> tuple[jax.Array, jax.Array]:
    r"""Averaging weight ``rho_t`` and step ``gamma_t`` of a stochastic FW schedule.

    ``t = 0, 1, ...`` counts steps. Both values are clipped to ``[0, 1]``.

    * ``"mhk"``: ``rho = 4 / (t + 8)^(2/3)``, ``gamma = 2 / (t + 8)`` (Mokhtari et al.;
      copt's ``variant="MHK"`` and the convex-schedule baseline of Xue and Lau).
    * ``"online_odl"``: ``rho = 4 / (t + 1)^(1/2)``, ``gamma = 2 / (t + 2)^(3/4)`` (Xue and
      Lau's ``NoncvxSFW``). Their code applies ``rho`` unclipped, so for ``t < 15`` it mixes
      with negative weights (``1 - rho < 0``) and at ``t = 0`` takes ``gamma = 1.19``; here both
      are clipped to 1, which keeps every iterate a convex combination.
    * ``"open_loop"``: ``rho = 1`` (no averaging), ``gamma = 2 / (t + 2)``.

    Args:
        name: schedule name.
        t: step index (may be traced).
        rho_scale: multiplies the numerator of ``rho`` (may be traced; the 4 above).
        gamma_scale: multiplies the numerator of ``gamma`` (may be traced; the 2 above).

    Returns:
        ``(rho_t, gamma_t)``.

    References:
        Mokhtari, Hassani, Karbasi, "Stochastic Conditional Gradient Methods: From Convex
        Minimization to Submodular Maximization", arXiv:1804.09554.
        Xue and Lau, "Online Orthogonal Dictionary Learning Based on Frank-Wolfe Method",
        arXiv:2103.01484.
    """
    check_choice(name, "schedule", SCHEDULES)
    t = jnp.asarray(t)
    if not jnp.issubdtype(t.dtype, jnp.floating):  # a float t keeps its dtype (float32 stays)
        t = t.astype(jnp.result_type(float))
    if name == "mhk":
        rho, gamma = 4.0 / (t + 8.0) ** (2.0 / 3.0), 2.0 / (t + 8.0)
    elif name == "online_odl":
        rho, gamma = 4.0 / jnp.sqrt(t + 1.0), 2.0 / (t + 2.0) ** 0.75
    else:
        rho, gamma = jnp.ones_like(t), 2.0 / (t + 2.0)
    if name != "open_loop":
        rho = rho * rho_scale
    rho = jnp.clip(rho, 0.0, 1.0)
    return rho, jnp.clip(gamma * gamma_scale, 0.0, 1.0)


def _weights(schedule: Schedule, t, rho_scale, gamma_scale):
    if callable(schedule):
        rho, gamma = schedule(t)
        return jnp.clip(rho, 0.0, 1.0), jnp.clip(gamma, 0.0, 1.0)
    return stochastic_schedule(schedule, t, rho_scale=rho_scale, gamma_scale=gamma_scale)


def _check_schedule(schedule: Schedule) -> None:
    if not callable(schedule):
        check_choice(schedule, "schedule", SCHEDULES)


def _sfw_step(lmo, schedule, rho_scale, gamma_scale, maximize, t, x, d, grad, lmo_state):
    """One averaged step; returns ``(x, d, gap, lmo_state)`` with the gap measured by ``d``."""
    rho, gamma = _weights(schedule, t, rho_scale, gamma_scale)
    d = jax.tree.map(lambda a, g: (1 - rho.astype(a.dtype)) * a + rho.astype(a.dtype) * g, d, grad)
    direction = jax.tree.map(jnp.negative, d) if maximize else d
    s, lmo_state = lmo.minimize(direction, lmo_state)
    gap = tr.vdot(direction, tr.sub(x, s))
    x = tr.axpy(gamma, tr.sub(s, x), x)
    return x, d, gap, lmo_state


class StochasticFrankWolfeState(NamedTuple):
    """State of :func:`stochastic_frank_wolfe`: step count, averaged gradient, oracle state,
    and the Frank–Wolfe gap of the averaged gradient at the last step."""

    count: jax.Array
    averaged_grad: PyTree
    lmo_state: PyTree
    gap: jax.Array


def stochastic_frank_wolfe(
    lmo: LinearMinimizationOracle,
    schedule: Schedule = "mhk",
    *,
    rho_scale: jax.typing.ArrayLike = 1.0,
    gamma_scale: jax.typing.ArrayLike = 1.0,
    maximize: bool = False,
) -> optax.GradientTransformation:
    r"""Stochastic Frank–Wolfe with gradient averaging as an optax transform.

    ``update(grads, state, params)`` returns ``gamma_t (s_t - params)`` with
    ``s_t = lmo(d_t)``, ``d_t = (1 - rho_t) d_{t-1} + rho_t grads`` (``d_{-1} = 0``), so
    ``optax.apply_updates`` keeps ``params`` inside the set when it starts there. The state
    records the gap ``<d_t, params - s_t>`` (an estimate of the Frank–Wolfe gap). With
    ``maximize=True`` the oracle is called on ``-d_t`` (ascent on a convex objective, as in
    dictionary learning).

    Args:
        lmo: the feasible set.
        schedule: ``"mhk"``, ``"online_odl"``, ``"open_loop"`` (see
            :func:`stochastic_schedule`) or a callable ``t -> (rho_t, gamma_t)``.
        rho_scale: scale of ``rho`` for the named schedules (may be traced).
        gamma_scale: scale of ``gamma`` for the named schedules (may be traced).
        maximize: ascend instead of descend.

    Returns:
        An ``optax.GradientTransformation`` (needs ``params`` in ``update``).

    Example:
        >>> import jax.numpy as jnp, optax
        >>> from jaxspec import frank_wolfe
        >>> from jaxspec.frank_wolfe import lmo
        >>> opt = frank_wolfe.stochastic_frank_wolfe(lmo.simplex(1.0))
        >>> x = jnp.array([1.0, 0.0, 0.0])
        >>> state = opt.init(x)
        >>> updates, state = opt.update(jnp.array([1.0, -1.0, 0.0]), state, x)
        >>> [round(float(v), 3) for v in optax.apply_updates(x, updates)]  # gamma_0 = 2/8
        [0.75, 0.25, 0.0]

    References:
        Mokhtari, Hassani, Karbasi, arXiv:1804.09554.
        Xue and Lau, arXiv:2103.01484.
    """
    if not isinstance(lmo, LinearMinimizationOracle):
        raise ValueError(f"`lmo` must be a LinearMinimizationOracle, got {type(lmo).__name__}.")
    _check_schedule(schedule)

    def init(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        gap = jnp.asarray(jnp.inf, tr.real_dtype(params))
        return StochasticFrankWolfeState(jnp.int32(0), zeros, lmo.init(params), gap)

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("stochastic_frank_wolfe needs `params` in update().")
        x, d, gap, lmo_state = _sfw_step(
            lmo, schedule, rho_scale, gamma_scale, maximize, state.count, params,
            state.averaged_grad, updates, state.lmo_state,
        )  # fmt: skip
        new_updates = tr.sub(x, params)
        gap = gap.astype(state.gap.dtype)
        return new_updates, StochasticFrankWolfeState(state.count + 1, d, lmo_state, gap)

    return optax.GradientTransformation(init, update)


def stochastic_solve(
    fun: Callable[[PyTree, PyTree], jax.Array],
    x0: PyTree,
    lmo: LinearMinimizationOracle,
    batches: PyTree,
    *,
    schedule: Schedule = "mhk",
    rho_scale: jax.typing.ArrayLike = 1.0,
    gamma_scale: jax.typing.ArrayLike = 1.0,
    maximize: bool = False,
    reproject: Callable[[PyTree], PyTree] | None = None,
    metric: Callable[[PyTree], jax.Array] | None = None,
    record_every: int = 1,
    grad_fn: Callable[[PyTree, PyTree], PyTree] | None = None,
) -> Solution:
    r"""Stream minibatches through stochastic Frank–Wolfe (one step per minibatch).

    ``batches`` is a pytree whose leaves have a leading stream axis ``T``; step ``t`` uses
    ``batch_t = batches[t]``, the gradient of ``fun(x, batch_t)`` (or ``grad_fn(x, batch_t)``
    when given), the averaging and step of :func:`stochastic_frank_wolfe`, then the optional
    ``reproject`` map (Xue and Lau project the iterate back onto the orthogonal group). The
    loop is a ``lax.scan``: it jits, vmaps (trials, data, ``rho_scale``/``gamma_scale``) and
    no historical data is kept.

    Args:
        fun: minibatch objective ``fun(x, batch) -> scalar``.
        x0: feasible starting point (pytree).
        lmo: the feasible set.
        batches: pytree of arrays with a leading stream axis ``T``.
        schedule: see :func:`stochastic_schedule`.
        rho_scale: scale of ``rho`` (may be traced).
        gamma_scale: scale of ``gamma`` (may be traced).
        maximize: ascend (maximize ``fun``) instead of descend.
        reproject: optional map applied to the iterate after every step.
        metric: optional ``metric(x) -> scalar`` recorded every ``record_every`` steps into
            ``stats["trace"]`` (``stats["trace_steps"]`` holds the step counts).
        record_every: recording period (static; must divide ``T``).
        grad_fn: optional closed-form minibatch gradient ``grad_fn(x, batch)``.

    Returns:
        A :class:`Solution`: ``x`` after ``T`` steps, ``value`` = ``fun`` on the last batch,
        ``gap`` = the gap of the averaged gradient at the last step, ``num_steps = T``,
        ``status`` ``MAX_STEPS`` (the stream was consumed; there is no tolerance) or
        ``NONFINITE``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxspec import frank_wolfe
        >>> from jaxspec.frank_wolfe import lmo
        >>> target = jnp.array([0.2, 0.5, 0.3])
        >>> noise = 0.1 * jax.random.normal(jax.random.key(0), (2000, 3))
        >>> f = lambda x, y: 0.5 * jnp.sum((x - y) ** 2)
        >>> sol = frank_wolfe.stochastic_solve(f, jnp.eye(3)[0], lmo.simplex(1.0), target + noise)
        >>> bool(jnp.abs(sol.x - target).max() < 0.05)
        True

    References:
        Mokhtari, Hassani, Karbasi, arXiv:1804.09554.
        Xue and Lau, arXiv:2103.01484.
    """
    if not isinstance(lmo, LinearMinimizationOracle):
        raise ValueError(f"`lmo` must be a LinearMinimizationOracle, got {type(lmo).__name__}.")
    _check_schedule(schedule)
    record_every = check_int(record_every, "record_every")
    leaves = jax.tree.leaves(batches)
    if not leaves or any(jnp.ndim(leaf) < 1 for leaf in leaves):
        raise ValueError("`batches` must be a pytree of arrays with a leading stream axis.")
    steps = int(jnp.shape(leaves[0])[0])
    if any(jnp.shape(leaf)[0] != steps for leaf in leaves):
        raise ValueError("`batches` leaves must share the leading stream axis length.")
    if steps < 1 or steps % record_every:
        raise ValueError(
            f"`record_every` ({record_every}) must divide the stream length ({steps})."
        )
    x0 = jax.tree.map(jnp.asarray, x0)
    grad = grad_fn if grad_fn is not None else jax.grad(fun)
    project = reproject if reproject is not None else (lambda x: x)
    dtype = tr.real_dtype(x0)

    def step(carry, inputs):
        x, d, lmo_state, _ = carry
        t, batch = inputs
        g = grad(x, batch)
        x, d, gap, lmo_state = _sfw_step(
            lmo, schedule, rho_scale, gamma_scale, maximize, t, x, d, g, lmo_state
        )
        return (project(x), d, lmo_state, gap.astype(dtype)), None

    def chunk(carry, inputs):
        carry, _ = jax.lax.scan(step, carry, inputs)
        record = metric(carry[0]) if metric is not None else jnp.zeros((), dtype)
        return carry, record

    ts = jnp.arange(steps, dtype=jnp.int32)
    chunked = jax.tree.map(
        lambda a: a.reshape((steps // record_every, record_every) + a.shape[1:]), (ts, batches)
    )
    zeros = jax.tree.map(jnp.zeros_like, x0)
    init = (x0, zeros, lmo.init(x0), jnp.asarray(jnp.inf, dtype))
    (x, _, _, gap), trace = jax.lax.scan(chunk, init, chunked)
    last = jax.tree.map(lambda a: a[-1], batches)
    value = fun(x, last)
    finite = tr.all_finite(x) & jnp.isfinite(value) & jnp.isfinite(gap)
    status = jnp.where(finite, jnp.int32(Status.MAX_STEPS), jnp.int32(Status.NONFINITE))
    stats = {}
    if metric is not None:
        stats = {
            "trace": trace,
            "trace_steps": jnp.arange(1, steps // record_every + 1, dtype=jnp.int32) * record_every,
        }
    return Solution(x, value.astype(dtype), gap, jnp.int32(steps), status, stats)
