"""Thresholding functions: elementwise proximal maps of sparsity penalties.

Each function is the proximal map of a separable penalty with unit step,

    ``threshold(v, lam) = argmin_x 1/2 (x - v)^2 + lam * penalty(x)``,

so an ISTA step with step size ``gamma`` applies ``threshold(v, gamma * lam)`` (CEL0, whose
penalty also depends on the atom norm, takes ``step`` itself). The penalties:

* ``"soft"``: ``|x|`` (the l1 norm; the only convex one);
* ``"hard"``: ``[x != 0]`` (the l0 pseudo-norm);
* ``"half"``: ``|x|^(1/2)`` (the l_{1/2} quasi-norm, Xu et al. 2012);
* ``"cel0"``: the continuous exact relaxation of ``lam * [x != 0]`` for an atom of norm ``a``,
  ``phi(a, lam; x) = lam - 1/2 max(sqrt(2 lam) - a |x|, 0)^2`` (Soubies et al. 2015).

All are elementwise, work under ``jit``/``vmap``, keep the dtype of ``v`` (float32, float64,
bfloat16), map NaN to NaN, and return exactly 0 below their threshold. ``lam`` may be traced
and broadcasts against ``v``. Derivatives exist away from the thresholds (the hard, half and
CEL0 maps jump or kink there).

References:
    Donoho, "De-noising by soft-thresholding", IEEE TIT 41(3), 1995.
    Blumensath and Davies, "Iterative thresholding for sparse approximations", J. Fourier
    Anal. Appl. 14, 2008.
    Xu, Chang, Xu and Zhang, "L1/2 regularization: a thresholding representation theory and
    a fast solver", IEEE TNNLS 23(7), 2012.
    Soubies, Blanc-Feraud and Aubert, "A continuous exact l0 penalty (CEL0) for least
    squares regularized problem", SIAM J. Imaging Sci. 8(3), 2015.
    Rentzeperis, Calatroni, Perrinet and Prandi, "Beyond l1 sparse coding in V1", PLOS
    Comput. Biol. 19(9), 2023.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxspec._checks import as_float_array, check_choice, check_positive, is_concrete

THRESHOLDS: tuple[str, ...] = ("soft", "hard", "half", "cel0")


def check_nonnegative(value: Any, name: str) -> None:
    """Raise ``ValueError`` if a concrete ``value`` is not real, finite and ``>= 0``."""
    if is_concrete(value):
        arr = np.asarray(value)
        if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
            raise ValueError(f"`{name}` must be a non-negative real number, got {value!r}.")
        if not np.all(arr >= 0) or not np.all(np.isfinite(arr)):
            raise ValueError(f"`{name}` must be non-negative and finite, got {value!r}.")


def _parameter(value: Any, name: str, dtype, shape: tuple[int, ...], positive: bool = False):
    """Validate a concrete scalar/array parameter and cast it to ``dtype``."""
    (check_positive if positive else check_nonnegative)(value, name)
    arr = jnp.asarray(value)
    if not jnp.issubdtype(arr.dtype, jnp.floating) and not jnp.issubdtype(arr.dtype, jnp.integer):
        raise ValueError(f"`{name}` must be a real number or array, got dtype {arr.dtype}.")
    try:
        np.broadcast_shapes(shape, arr.shape)
    except ValueError:
        raise ValueError(
            f"`{name}` of shape {tuple(arr.shape)} does not broadcast against `v` of shape {shape}."
        ) from None
    return arr.astype(dtype)


def _work_dtype(dtype):
    """Transcendentals run in at least float32 (bfloat16 inputs are cast back after)."""
    return jnp.promote_types(dtype, jnp.float32)


def _keep_nan(v, out):
    return jnp.where(jnp.isnan(v), v, out)


# Unchecked kernels: used inside solvers' loops, where the arguments were checked already.


def soft_kernel(v, lam):
    return jnp.sign(v) * jnp.maximum(jnp.abs(v) - lam, 0)


def hard_kernel(v, lam):
    return _keep_nan(v, jnp.where(v * v > 2 * lam, v, jnp.zeros_like(v)))


def half_kernel(v, lam):
    dtype = v.dtype
    w = v.astype(_work_dtype(dtype))
    lam = jnp.asarray(lam, w.dtype)
    mag = jnp.abs(w)
    thr = 1.5 * jnp.cbrt(lam * lam)
    keep = mag > thr
    safe = jnp.where(keep, mag, 1)
    # arccos argument (lam / 4) (|v| / 3)^(-3/2), written as a ratio <= 1 so it cannot overflow;
    # the masked branch gets a harmless 1/2 so gradients stay finite.
    arg = jnp.where(keep, jnp.sqrt(0.5) * (thr / safe) ** 1.5, 0.5)
    phi = jnp.arccos(arg)
    x = (2.0 / 3.0) * w * (1 + jnp.cos(2 * jnp.pi / 3 - (2.0 / 3.0) * phi))
    out = jnp.where(keep, x, jnp.zeros_like(x)).astype(dtype)
    return _keep_nan(v, out)


def cel0_kernel(v, lam, a_norm, step):
    dtype = v.dtype
    w = v.astype(_work_dtype(dtype))
    lam, a_norm, step = (jnp.asarray(x, w.dtype) for x in (lam, a_norm, step))
    mag = jnp.abs(w)
    root = jnp.sqrt(2 * lam)
    curvature = step * a_norm * a_norm  # gamma a^2
    convex = curvature < 1
    low = root * a_norm * step  # zero at or below
    kept = mag * a_norm >= root  # |v| >= sqrt(2 lam) / a: the penalty is flat (= lam) there
    slope = 1 / jnp.where(convex, 1 - curvature, 1)
    shrunk = jnp.sign(w) * jnp.maximum(mag - low, 0) * slope
    out_convex = jnp.where(kept, w, shrunk)
    # gamma a^2 >= 1: the prox subproblem is concave between 0 and sqrt(2 lam)/a, and the
    # global minimiser is hard thresholding at sqrt(2 gamma lam).
    out_hard = jnp.where(w * w > 2 * step * lam, w, jnp.zeros_like(w))
    out = jnp.where(convex, out_convex, out_hard).astype(dtype)
    return _keep_nan(v, out)


def soft_penalty(z, lam):
    return lam * jnp.abs(z)


def hard_penalty(z, lam):
    return lam * (z != 0).astype(z.dtype)


def half_penalty(z, lam):
    return lam * jnp.sqrt(jnp.abs(z))


def cel0_penalty(z, lam, a_norm):
    """``phi(a, lam; z) = lam - 1/2 max(sqrt(2 lam) - a |z|, 0)^2`` elementwise."""
    gap = jnp.maximum(jnp.sqrt(2 * lam) - a_norm * jnp.abs(z), 0)
    return lam - 0.5 * gap * gap


def prox(name: str, v, lam, step, a_norm):
    """``prox_{step * lam * penalty}(v)`` for any registered threshold (unchecked)."""
    if name == "cel0":
        return cel0_kernel(v, lam, a_norm, step)
    return _KERNELS[name](v, step * lam)


def penalty(name: str, z, lam, a_norm):
    """The elementwise penalty ``lam * penalty(z)`` (CEL0: ``phi(a_norm, lam; z)``)."""
    if name == "cel0":
        return cel0_penalty(z, lam, a_norm)
    return _PENALTIES[name](z, lam)


# compiled once per shape and dtype for eager calls (inside a solver they are traced inline)
_soft_jit, _hard_jit, _half_jit, _cel0_jit = (
    jax.jit(f) for f in (soft_kernel, hard_kernel, half_kernel, cel0_kernel)
)
_KERNELS = {"soft": soft_kernel, "hard": hard_kernel, "half": half_kernel}
_PENALTIES = {"soft": soft_penalty, "hard": hard_penalty, "half": half_penalty}


def _inputs(v, lam):
    v = as_float_array(v, "v")
    return v, _parameter(lam, "lam", v.dtype, tuple(v.shape))


def soft_threshold(v: jax.typing.ArrayLike, lam: jax.typing.ArrayLike) -> jax.Array:
    """Soft thresholding, the proximal map of ``lam * |x|``.

    ``soft_threshold(v, lam) = argmin_x 1/2 (x - v)^2 + lam |x| = sign(v) max(|v| - lam, 0)``:
    zero for ``|v| <= lam``, shrunk by ``lam`` above. It is nonexpansive (1-Lipschitz) and
    the step of ISTA for the lasso.

    Args:
        v: real floating array.
        lam: threshold ``>= 0``, scalar or broadcastable against ``v`` (traced is fine).

    Returns:
        Array of the broadcast shape, in ``v``'s dtype.

    Raises:
        ValueError: for a non-floating ``v``, a concrete ``lam`` that is negative or not
            finite, or shapes that do not broadcast.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxspec import pursuit
        >>> pursuit.soft_threshold(jnp.array([-2.0, 0.5, 3.0]), 1.0).tolist()
        [-1.0, 0.0, 2.0]

    References:
        Donoho, "De-noising by soft-thresholding", IEEE TIT 41(3), 1995.
    """
    return _soft_jit(*_inputs(v, lam))


def hard_threshold(v: jax.typing.ArrayLike, lam: jax.typing.ArrayLike) -> jax.Array:
    """Hard thresholding, the proximal map of ``lam * [x != 0]`` (the l0 penalty).

    ``argmin_x 1/2 (x - v)^2 + lam [x != 0]`` keeps ``v`` where ``v^2 > 2 lam`` (that is
    ``|v| > sqrt(2 lam)``) and is 0 elsewhere; at the tie ``|v| = sqrt(2 lam)`` both ``0``
    and ``v`` are minimisers and 0 is returned. Note the threshold is ``sqrt(2 lam)``, not
    ``lam``: ``lam`` weighs the penalty, as for the other thresholds.

    Args:
        v: real floating array.
        lam: penalty weight ``>= 0``, scalar or broadcastable (traced is fine).

    Returns:
        Array of the broadcast shape, in ``v``'s dtype.

    Raises:
        ValueError: as :func:`soft_threshold`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxspec import pursuit
        >>> pursuit.hard_threshold(jnp.array([-2.0, 0.5, 1.5]), 1.0).tolist()
        [-2.0, 0.0, 1.5]

    References:
        Blumensath and Davies, "Iterative thresholding for sparse approximations", J. Fourier
        Anal. Appl. 14, 2008.
    """
    return _hard_jit(*_inputs(v, lam))


def half_threshold(v: jax.typing.ArrayLike, lam: jax.typing.ArrayLike) -> jax.Array:
    """Half thresholding, the proximal map of ``lam * |x|^(1/2)`` (the l_{1/2} penalty).

    ``argmin_x 1/2 (x - v)^2 + lam |x|^(1/2)`` in closed form (Xu et al. 2012, Theorem 1,
    restated for the factor ``1/2`` on the quadratic, i.e. their ``lambda = 2 lam``):

        ``x = 2/3 v (1 + cos(2 pi / 3 - 2/3 phi(v)))`` for ``|v| > 3/2 lam^(2/3)``, else 0,

    with ``phi(v) = arccos(lam / 4 (|v| / 3)^(-3/2))``. The map jumps from 0 to ``2/3 v`` at
    the threshold ``3/2 lam^(2/3)`` (``54^(1/3) / 4 (2 lam)^(2/3)`` in Xu's scaling), where
    both are minimisers (0 is returned).

    Args:
        v: real floating array.
        lam: penalty weight ``>= 0``, scalar or broadcastable (traced is fine).

    Returns:
        Array of the broadcast shape, in ``v``'s dtype (computed in at least float32).

    Raises:
        ValueError: as :func:`soft_threshold`.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxspec import pursuit
        >>> x = pursuit.half_threshold(jnp.array([1.4, 1.6, 4.0]), 1.0)
        >>> [round(float(t), 4) for t in x]
        [0.0, 1.1295, 3.7415]

    References:
        Xu, Chang, Xu and Zhang, "L1/2 regularization: a thresholding representation theory
        and a fast solver", IEEE TNNLS 23(7), 2012.
    """
    return _half_jit(*_inputs(v, lam))


def cel0_threshold(
    v: jax.typing.ArrayLike,
    lam: jax.typing.ArrayLike,
    a_norm: jax.typing.ArrayLike,
    step: jax.typing.ArrayLike = 1.0,
) -> jax.Array:
    """CEL0 thresholding, the proximal map of ``step * phi(a_norm, lam; .)``.

    The CEL0 penalty of a coefficient whose atom has norm ``a`` is

        ``phi(a, lam; x) = lam - a^2 / 2 (|x| - sqrt(2 lam) / a)^2`` for
        ``|x| <= sqrt(2 lam) / a``, and ``lam`` above,

    i.e. ``lam - 1/2 max(sqrt(2 lam) - a |x|, 0)^2``: the continuous exact relaxation of
    ``lam [x != 0]`` (Soubies et al. 2015), under which ``1/2 |y - D z|^2 + sum_i
    phi(|d_i|, lam; z_i)`` has the same global minimisers as the l0-penalised problem.

    With ``gamma = step`` and ``gamma a^2 < 1`` the prox subproblem
    ``argmin_x 1/2 (x - v)^2 + gamma phi(a, lam; x)`` is strongly convex and

        * ``0`` for ``|v| <= sqrt(2 lam) a gamma``,
        * ``sign(v) (|v| - sqrt(2 lam) a gamma) / (1 - a^2 gamma)`` in between,
        * ``v`` for ``|v| >= sqrt(2 lam) / a``

    (a continuous "firm" threshold; Soubies et al. 2015; Rentzeperis et al. 2023). When
    ``gamma a^2 >= 1`` the subproblem is nonconvex and its global minimiser is hard
    thresholding at ``sqrt(2 gamma lam)`` (0 at the tie), which is also the limit of the
    formula as ``gamma a^2 -> 1``; that case is returned then. ISTA with step ``1/L``,
    ``L = |D|_2^2 >= max_i |d_i|^2``, always has ``gamma a_i^2 <= 1``. A zero-norm atom has
    a zero penalty and the map is the identity.

    Args:
        v: real floating array.
        lam: penalty weight ``>= 0``, scalar or broadcastable (traced is fine).
        a_norm: atom norm(s) ``a >= 0``, scalar or broadcastable (e.g. ``(K,)`` against
            codes ``(..., K)``).
        step: the step ``gamma > 0`` (default 1), scalar or broadcastable.

    Returns:
        Array of the broadcast shape, in ``v``'s dtype (computed in at least float32).

    Raises:
        ValueError: as :func:`soft_threshold`, and for a concrete negative ``a_norm`` or
            non-positive ``step``.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxspec import pursuit
        >>> x = pursuit.cel0_threshold(jnp.array([0.4, 0.75, 2.0]), 0.5, 1.0, step=0.5)
        >>> x.tolist()
        [0.0, 0.5, 2.0]

    References:
        Soubies, Blanc-Feraud and Aubert, "A continuous exact l0 penalty (CEL0) for least
        squares regularized problem", SIAM J. Imaging Sci. 8(3), 2015.
        Rentzeperis, Calatroni, Perrinet and Prandi, "Beyond l1 sparse coding in V1", PLOS
        Comput. Biol. 19(9), 2023.
    """
    v, lam = _inputs(v, lam)
    a_norm = _parameter(a_norm, "a_norm", v.dtype, tuple(v.shape))
    step = _parameter(step, "step", v.dtype, tuple(v.shape), positive=True)
    return _cel0_jit(v, lam, a_norm, step)


_PUBLIC: dict[str, Callable[..., jax.Array]] = {
    "soft": soft_threshold,
    "hard": hard_threshold,
    "half": half_threshold,
    "cel0": cel0_threshold,
}


def get_threshold(name: str) -> Callable[..., jax.Array]:
    """The thresholding function registered under ``name``.

    Args:
        name: one of ``"soft"``, ``"hard"``, ``"half"``, ``"cel0"`` (see
            :data:`THRESHOLDS`).

    Returns:
        :func:`soft_threshold`, :func:`hard_threshold`, :func:`half_threshold` or
        :func:`cel0_threshold` (the last takes ``(v, lam, a_norm, step=1.0)``, the others
        ``(v, lam)``).

    Raises:
        ValueError: for an unknown name.

    Example:
        >>> from jaxspec import pursuit
        >>> pursuit.get_threshold("soft") is pursuit.soft_threshold
        True
    """
    check_choice(name, "name", THRESHOLDS)
    return _PUBLIC[name]
