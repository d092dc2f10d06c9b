"""Unrolled, reverse-differentiable matching pursuit: the MP-SAE encoder.

The pursuit runs a fixed number of steps in a ``lax.scan`` over a batch axis (not ``vmap``);
each sample stops on its own through a ``done`` mask, so the batch stays rectangular and the
loop can be differentiated in reverse mode. Three gradient modes are offered:

* ``"full"``: plain autodiff through every step, as the MP-SAE original. Each step stores
  ``(batch, K)`` tensors (the correlations, the one-hot update) for the backward pass, so the
  memory grows as ``max_steps * batch * K``.
* ``"lean"``: the same gradient with ``O(batch * d)`` memory per step. The argmax and the
  correlation matrix are computed under ``stop_gradient``; the selected value is recomputed as
  ``<r, d_j>`` from the gathered atom, the residual is updated with that atom, and the per-step
  ``(value, index)`` pairs are scattered into the ``(batch, K)`` codes once, after the loop
  (the SAELens memory fix).
* ``"decoder"``: the pursuit is a constant; gradients reach the dictionary only through what
  decodes the codes afterwards (and through the returned residual, as a decoding).

References:
    Mallat and Zhang, "Matching pursuits with time-frequency dictionaries", IEEE TSP 41(12),
    1993.
    Costa, Fel, Lubana, Tolooshams and Ba, "From flat to hierarchical: extracting sparse
    representations with matching pursuit", arXiv:2506.03093, NeurIPS 2025.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxspec._checks import check_choice, check_int, check_positive
from jaxspec.pursuit._common import dictionary_and_signals

_SELECTIONS = ("relu", "abs", "signed")
_STOPS = ("support", "residual", "both", "none")
_GRADIENTS = ("full", "lean", "decoder")


class UnrolledMPResult(NamedTuple):
    """Result of :func:`unrolled_mp`; every field has the leading batch axes of ``x``.

    Attributes:
        codes: ``(..., K)`` coefficients, the sum of the values added to each atom.
        residual: ``(..., d)`` residual ``x - D @ codes`` carried by the pursuit.
        num_steps: int32 ``(...)``: the pursuit steps applied to the sample, i.e. the steps
            it took part in before it was marked done (including a final step that
            re-selected an atom or added zero and so stopped it).
        stopped: bool ``(...)``: True when the stopping rule fired (before or after the last
            step); False when ``max_steps`` steps ran out without it firing (always False
            for ``stop="none"``).
    """

    codes: jax.Array
    residual: jax.Array
    num_steps: jax.Array
    stopped: jax.Array


def _check_bool(value, name: str) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"`{name}` must be a Python bool, got {value!r}.")
    return bool(value)


def _score(c: jax.Array, selection: str) -> jax.Array:
    if selection == "relu":
        return jax.nn.relu(c)
    if selection == "abs":
        return jnp.abs(c)
    return c


class _State(NamedTuple):
    residual: jax.Array  # (B, d)
    done: jax.Array  # (B,) bool
    picked: jax.Array | None  # (B, K) bool: atoms selected so far (only when needed)
    num_steps: jax.Array  # (B,) int32
    codes: jax.Array | None  # (B, K): "full" mode and the while-loop path only


def _pursue(dictionary, x, threshold, *, steps, selection, reselect, stop, lean, detach, loop):
    """Pursuit of ``x`` (B, d) on ``dictionary`` (d, K); ``threshold`` (B,) or None."""
    batch, _ = x.shape
    n_atoms = dictionary.shape[1]
    dtype = x.dtype
    rows = jnp.arange(batch)
    atoms = dictionary.T  # (K, d): one atom per row, gathered by index
    use_support = stop in ("support", "both")
    use_residual = stop in ("residual", "both")
    need_picked = use_support or not reselect
    carry_codes = loop or not lean

    def small(r):
        # The norm, not its square, as MP-SAE; only compared, never differentiated.
        r = lax.stop_gradient(r)
        return jnp.sqrt(jnp.sum(r * r, axis=-1)) < threshold

    def step(s: _State):
        active = ~s.done
        r_in = lax.stop_gradient(s.residual) if detach else s.residual
        if lean:
            c = lax.stop_gradient(r_in) @ lax.stop_gradient(dictionary)
        else:
            c = r_in @ dictionary  # (B, K), differentiated as in the original
        score = _score(c, selection)
        if not reselect:
            score = jnp.where(s.picked, -jnp.inf, score)
        j = jnp.argmax(lax.stop_gradient(score), axis=-1)
        if lean:
            atom = atoms[j]  # (B, d)
            value = jnp.sum(r_in * atom, axis=-1)
            if selection == "relu":
                value = jax.nn.relu(value)
        else:
            picked_values = jax.nn.relu(c) if selection == "relu" else c
            value = jnp.take_along_axis(picked_values, j[:, None], axis=1)[:, 0]
        value = jnp.where(active, value, 0.0)
        codes = s.codes
        if lean:
            update = value[:, None] * atom
            if codes is not None:
                codes = codes.at[rows, j].add(value)
        else:
            z_step = jax.nn.one_hot(j, n_atoms, dtype=dtype) * value[:, None]
            update = z_step @ atoms
            codes = codes + z_step
        residual = jnp.where(active[:, None], r_in - update, s.residual)
        done = s.done
        picked = s.picked
        if need_picked:
            was_picked = picked[rows, j]
            if use_support:
                # The support (atoms with a nonzero code) is unchanged after a re-selection
                # or a zero step: the step is applied, then the sample stops.
                unchanged = was_picked | (lax.stop_gradient(value) == 0)
                done = done | (active & unchanged)
            picked = picked.at[rows, j].set(was_picked | active)
        if use_residual:
            done = done | (active & small(residual))
        num_steps = s.num_steps + active.astype(jnp.int32)
        return _State(residual, done, picked, num_steps, codes), (value, j)

    done0 = small(x) if use_residual else jnp.zeros(batch, bool)
    state = _State(
        residual=x,
        done=done0,
        picked=jnp.zeros((batch, n_atoms), bool) if need_picked else None,
        num_steps=jnp.zeros(batch, jnp.int32),
        codes=jnp.zeros((batch, n_atoms), dtype) if carry_codes else None,
    )
    if loop:
        # Forward only: stop as soon as every sample is done.
        def cond(carry):
            t, s = carry
            return (t < steps) & ~jnp.all(s.done)

        def body(carry):
            t, s = carry
            return t + 1, step(s)[0]

        _, state = lax.while_loop(cond, body, (jnp.int32(0), state))
        codes = state.codes
    else:
        state, (values, indices) = lax.scan(lambda s, _: step(s), state, None, length=steps)
        if carry_codes:
            codes = state.codes
        else:
            # One scatter after the loop: backward keeps (B, steps) values, not (B, K) per step.
            codes = jnp.zeros((batch, n_atoms), dtype).at[rows[:, None], indices.T].add(values.T)
    return codes, state.residual, state.num_steps, state.done


@functools.partial(
    jax.jit,
    static_argnames=(
        "steps",
        "selection",
        "reselect",
        "stop",
        "gradient",
        "detach",
        "loop",
    ),
)
def _unrolled_mp(
    dictionary, x, threshold, *, steps, selection, reselect, stop, gradient, detach, loop
):
    config = dict(steps=steps, selection=selection, reselect=reselect, stop=stop, loop=loop)
    if gradient != "decoder":
        return _pursue(dictionary, x, threshold, lean=gradient == "lean", detach=detach, **config)
    d_const, x_const = lax.stop_gradient(dictionary), lax.stop_gradient(x)
    codes, residual, num_steps, done = _pursue(
        d_const, x_const, threshold, lean=True, detach=False, **config
    )
    codes = lax.stop_gradient(codes)
    # The pursuit's residual as the value, the decoding x - D codes (codes fixed) as gradient.
    decoded = x - codes @ dictionary.T
    residual = lax.stop_gradient(residual) + (decoded - lax.stop_gradient(decoded))
    return codes, residual, num_steps, done


def unrolled_mp(
    dictionary,
    x,
    max_steps: int,
    *,
    selection: str = "relu",
    reselect: bool = True,
    stop: str = "both",
    threshold=None,
    gradient: str = "full",
    detach_residual: bool = False,
    early_exit: bool = False,
) -> UnrolledMPResult:
    """Matching pursuit unrolled over ``max_steps`` steps, differentiable end to end.

    Each step computes the correlations ``c = D^T r`` of the residual ``r`` (``r = x`` at the
    start) with every atom, selects one atom ``j``, adds the value ``v`` to code ``j`` and
    subtracts ``v d_j`` from the residual. The value is the raw correlation, so the atoms are
    assumed unit-norm (as in MP-SAE): then ``v = <r, d_j>`` is the projection coefficient and
    ``|r|^2`` decreases by exactly ``v^2`` per step (it never increases).

    Selection rules (``selection``):

    * ``"relu"``: ``j = argmax relu(c)``, ``v = relu(c_j)``: nonnegative MP (the MP-SAE and
      SAELens rule). When every correlation is ``<= 0`` the step adds 0 and the support does
      not change.
    * ``"abs"``: ``j = argmax |c|``, ``v = c_j`` (classical MP).
    * ``"signed"``: ``j = argmax c``, ``v = c_j`` (the ``overcomplete`` library's rule).

    Ties go to the lowest index. With ``reselect=False`` atoms selected earlier are masked out
    of the argmax (each atom is picked at most once, as sparsify's MP).

    Stopping rules (``stop``), per sample, with a ``done`` mask (finished samples are carried
    unchanged while the others go on):

    * ``"support"``: the sample stops when a step left its support (the atoms with a nonzero
      code) unchanged: the step that re-selects an atom, or adds zero, is applied and then the
      sample stops (MP-SAE's semantics).
    * ``"residual"``: the sample stops once ``|r|_2 < threshold`` (the norm, not its square),
      checked before the first step and after every step.
    * ``"both"``: either rule (MP-SAE's). With ``max_steps = K + 1`` and
      ``selection="relu"``, this is the original's loop run until every sample stops.
    * ``"none"``: exactly ``max_steps`` steps (the fixed-``k`` variant of MOSS and
      ``overcomplete``).

    Args:
        dictionary: ``(d, K)`` real array, atoms as columns (assumed unit-norm).
        x: ``(d,)`` or ``(..., d)`` signals; leading axes are batch axes.
        max_steps: number of pursuit steps (static, ``>= 1``). It may exceed ``K`` when
            ``reselect=True``; with ``reselect=False`` it is clipped to ``K``.
        selection: ``"relu"``, ``"abs"`` or ``"signed"`` (static), see above.
        reselect: allow re-selecting an atom already picked (static; classical MP).
        stop: ``"support"``, ``"residual"``, ``"both"`` or ``"none"`` (static), see above.
        threshold: residual-norm threshold for ``stop="residual"``/``"both"``: a scalar or an
            array broadcastable to the batch axes of ``x`` (traced, so it can be swept under
            ``vmap``). Ignored by the other rules.
        gradient: how the pursuit is differentiated (static). ``"full"``: plain autodiff
            through the unrolled loop, as the MP-SAE original (stores ``(batch, K)`` tensors
            per step). ``"lean"``: the same gradient, with the argmax and the correlations
            under ``stop_gradient`` and the selected value recomputed from the gathered atom
            (``O(batch * d)`` memory per step). ``"decoder"``: the pursuit is a constant: the
            codes carry no gradient, and gradients reach ``dictionary`` (and ``x``) only
            through whatever decodes the codes afterwards; the returned residual has the
            pursuit's value and the gradient of ``x - D @ codes`` with the codes held fixed.
            The argmax is never differentiated.
        detach_residual: apply ``stop_gradient`` to the residual at the start of every step
            (sparsify's ``mp_detach``): each value then depends on the dictionary only through
            its own atom, and the codes carry no gradient to ``x``.
        early_exit: run a ``lax.while_loop`` that stops as soon as every sample is done
            (inference). It gives the same result but is not reverse-differentiable, except
            with ``gradient="decoder"``, where the pursuit is a constant anyway.

    Returns:
        An :class:`UnrolledMPResult` ``(codes, residual, num_steps, stopped)`` in the dtype of
        ``dictionary`` and ``x`` (promoted together).

    Raises:
        ValueError: naming the argument, for a dictionary that is not 2-D, ``x`` whose last
            axis is not ``d``, non-floating inputs, ``max_steps < 1``, an unknown
            ``selection``/``stop``/``gradient``, a missing ``threshold`` for
            ``stop="residual"``/``"both"``, a concrete ``threshold <= 0``, or a ``threshold``
            that does not broadcast to the batch axes of ``x``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxspec import pursuit
        >>> D = jnp.eye(4)
        >>> res = pursuit.unrolled_mp(D, jnp.array([0.0, 3.0, 0.0, -1.0]), 3, threshold=0.1)
        >>> res.codes.tolist(), int(res.num_steps), bool(res.stopped)
        ([0.0, 3.0, 0.0, 0.0], 2, True)

        The second step finds no positive correlation, adds zero and stops the sample; with
        ``selection="abs"`` the negative part is captured too:

        >>> pursuit.unrolled_mp(D, jnp.array([0.0, 3.0, 0.0, -1.0]), 3, selection="abs",
        ...                     threshold=0.1).codes.tolist()
        [0.0, 3.0, 0.0, -1.0]

    References:
        Mallat and Zhang, "Matching pursuits with time-frequency dictionaries", IEEE TSP
        41(12), 1993.
        Costa, Fel, Lubana, Tolooshams and Ba, "From flat to hierarchical: extracting sparse
        representations with matching pursuit", arXiv:2506.03093, NeurIPS 2025.
    """
    d, x = dictionary_and_signals(dictionary, x, "x")
    steps = check_int(max_steps, "max_steps")
    selection = check_choice(selection, "selection", _SELECTIONS)
    stop = check_choice(stop, "stop", _STOPS)
    gradient = check_choice(gradient, "gradient", _GRADIENTS)
    reselect = _check_bool(reselect, "reselect")
    detach = _check_bool(detach_residual, "detach_residual")
    loop = _check_bool(early_exit, "early_exit")
    if not reselect:
        steps = min(steps, d.shape[1])
    dtype = jnp.result_type(d, x)
    d, x = d.astype(dtype), x.astype(dtype)
    batch = x.shape[:-1]
    flat = x.reshape((-1, x.shape[-1]))
    thr = None
    if stop in ("residual", "both"):
        if threshold is None:
            raise ValueError(f"`threshold` is required for stop={stop!r}.")
        check_positive(threshold, "threshold")
        thr = jnp.asarray(threshold)
        if np.dtype(thr.dtype).kind not in "fiu" and thr.dtype != jnp.bfloat16:
            raise ValueError(f"`threshold` must be a real number or array, got dtype {thr.dtype}.")
        try:
            shape = np.broadcast_shapes(thr.shape, batch)
        except ValueError:
            shape = None
        if shape != batch:
            raise ValueError(
                f"`threshold` must broadcast to the batch axes {batch} of `x`, got shape "
                f"{tuple(thr.shape)}."
            )
        thr = jnp.broadcast_to(thr.astype(dtype), batch).reshape(-1)
    codes, residual, num_steps, stopped = _unrolled_mp(
        d,
        flat,
        thr,
        steps=steps,
        selection=selection,
        reselect=reselect,
        stop=stop,
        gradient=gradient,
        detach=detach,
        loop=loop,
    )
    return UnrolledMPResult(
        codes=codes.reshape(batch + codes.shape[-1:]),
        residual=residual.reshape(x.shape),
        num_steps=num_steps.reshape(batch),
        stopped=stopped.reshape(batch),
    )
