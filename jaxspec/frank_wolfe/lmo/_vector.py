"""Oracles of vector sets: l1 / l2 / l-infinity balls, simplices, boxes, K-sparse polytopes.

The balls, simplices and K-sparse polytopes are taken over the *whole* pytree: the iterate's
leaves are concatenated into one vector (one global norm), as if the pytree were flattened.
Boxes act leaf by leaf (their bounds may differ per leaf).
"""

from __future__ import annotations

import abc
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from jaxspec._checks import as_float_array, check_int, is_concrete
from jaxspec.frank_wolfe.lmo._base import LinearMinimizationOracle
from jaxspec.frank_wolfe.lmo._common import (
    check_radius,
    float_leaves,
    project_k_sparse_flat,
    project_l1_flat,
    project_simplex_flat,
    ravel,
    safe_norm,
)

PyTree = Any


def _vector_grad(grad: Any) -> jax.Array:
    """The 1-D float array that :meth:`sparse_minimize` accepts."""
    if not isinstance(grad, jax.Array | np.ndarray):
        raise ValueError(
            f"`grad` must be a 1-D array for sparse_minimize, got {type(grad).__name__}."
        )
    grad = as_float_array(grad, "grad", min_ndim=1)
    if grad.ndim != 1:
        raise ValueError(f"`grad` must be a 1-D array, got shape {tuple(grad.shape)}.")
    return grad


class _SparseVertexSet(LinearMinimizationOracle):
    """Sets whose vertices have few non-zeros: one ``_sparse`` rule gives both oracle forms."""

    @abc.abstractmethod
    def _sparse(self, flat: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(indices, values)`` of the vertex minimizing ``<flat, s>``."""

    def minimize(self, grad: PyTree, state: PyTree) -> tuple[PyTree, PyTree]:
        flat, unravel = ravel(grad, "grad")
        idx, val = self._sparse(flat)
        return unravel(jnp.zeros_like(flat).at[idx].add(val)), state

    def sparse_minimize(self, grad, state):
        idx, val = self._sparse(_vector_grad(grad))
        return idx, val, state

    @property
    def has_projection(self) -> bool:
        return True


class L1Ball(_SparseVertexSet):
    r"""The l1 ball ``{x : ||x||_1 <= radius}`` over the whole pytree; see :func:`l1_ball`."""

    radius: jax.Array

    def __init__(self, radius: jax.typing.ArrayLike = 1.0):
        self.radius = check_radius(radius)

    def _sparse(self, flat: jax.Array) -> tuple[jax.Array, jax.Array]:
        i = jnp.argmax(jnp.abs(flat)).astype(jnp.int32)
        return i[None], (-self.radius.astype(flat.dtype) * jnp.sign(flat[i]))[None]

    @property
    def vertex_nnz(self) -> int:
        return 1

    def project(self, y: PyTree) -> PyTree:
        flat, unravel = ravel(y, "y")
        return unravel(project_l1_flat(flat, self.radius.astype(flat.dtype)))


def l1_ball(radius: jax.typing.ArrayLike = 1.0) -> L1Ball:
    r"""Oracle of the l1 ball ``{x : ||x||_1 <= radius}``, one norm over every leaf.

    The vertex minimizing ``<g, s>`` is ``-radius * sign(g_i) e_i`` at ``i = argmax |g_i|``
    over all leaves (the first such index on ties; the zero vector when ``g = 0``). The
    projection is the exact sort-based soft thresholding ``sign(y) max(|y| - tau, 0)``, whose
    threshold ``tau`` is computed in closed form from its active set, so it is differentiable
    in ``y`` and ``radius`` (``O(n log n)``).

    Args:
        radius: the radius ``> 0`` (an array field: it may be traced, e.g. swept by ``vmap``).

    Returns:
        An :class:`L1Ball`; ``vertex_nnz == 1`` and ``sparse_minimize`` returns
        ``(index (1,), value (1,), state)`` for a 1-D gradient.

    Raises:
        ValueError: naming ``radius`` when a concrete radius is not positive and finite.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxspec.frank_wolfe import lmo
        >>> oracle = lmo.l1_ball(2.0)
        >>> oracle({"a": jnp.array([0.5, -3.0]), "b": jnp.array([1.0])})["a"]
        Array([0., 2.], dtype=float32)
        >>> oracle.project(jnp.array([3.0, 1.0, 0.0]))
        Array([2., 0., 0.], dtype=float32)

    References:
        Jaggi, "Revisiting Frank-Wolfe: Projection-Free Sparse Convex Optimization", ICML 2013.
        Duchi, Shalev-Shwartz, Singer, Chandra, "Efficient Projections onto the l1-Ball for
        Learning in High Dimensions", ICML 2008.
        Condat, "Fast projection onto the simplex and the l1 ball", Math. Program. 158, 2016.
    """
    return L1Ball(radius)


class Simplex(_SparseVertexSet):
    r"""The scaled simplex ``{x >= 0, sum x = radius}`` (or ``<=``); see :func:`simplex`."""

    radius: jax.Array
    equality: bool = eqx.field(static=True)

    def __init__(self, radius: jax.typing.ArrayLike = 1.0, *, equality: bool = True):
        self.radius = check_radius(radius)
        if not isinstance(equality, bool | np.bool_):
            raise ValueError(f"`equality` must be a bool, got {equality!r}.")
        self.equality = bool(equality)

    def _sparse(self, flat: jax.Array) -> tuple[jax.Array, jax.Array]:
        i = jnp.argmin(flat).astype(jnp.int32)
        r = self.radius.astype(flat.dtype)
        value = r if self.equality else jnp.where(flat[i] < 0, r, jnp.zeros_like(r))
        return i[None], value[None]

    @property
    def vertex_nnz(self) -> int:
        return 1

    def project(self, y: PyTree) -> PyTree:
        flat, unravel = ravel(y, "y")
        r = self.radius.astype(flat.dtype)
        return unravel(project_simplex_flat(flat, r, self.equality))


def simplex(radius: jax.typing.ArrayLike = 1.0, *, equality: bool = True) -> Simplex:
    r"""Oracle of the simplex ``{x >= 0, sum x = radius}``, or ``sum x <= radius``.

    One simplex over every leaf of the pytree. The vertex is ``radius * e_i`` at
    ``i = argmin g`` (first index on ties). With ``equality=False`` the zero vector is also a
    vertex, returned when ``min g >= 0``. The projection is the exact sort-based
    ``max(y - tau, 0)`` (for ``<=``: ``tau`` clipped at 0), with ``tau`` in closed form from
    the active set: differentiable in ``y`` and ``radius``.

    Args:
        radius: total mass ``> 0`` (array field; may be traced).
        equality: ``True`` for ``sum x = radius`` (probability simplex when radius is 1),
            ``False`` for ``sum x <= radius`` (static).

    Returns:
        A :class:`Simplex`; ``vertex_nnz == 1`` (``sparse_minimize`` returns value 0 for the
        zero vertex).

    Raises:
        ValueError: naming ``radius`` (not positive) or ``equality`` (not a bool).

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxspec.frank_wolfe import lmo
        >>> lmo.simplex(3.0)(jnp.array([0.2, -1.0, 0.5]))
        Array([0., 3., 0.], dtype=float32)
        >>> lmo.simplex(1.0, equality=False)(jnp.array([0.2, 1.0]))
        Array([0., 0.], dtype=float32)
        >>> lmo.simplex().project(jnp.array([1.0, 0.5, -1.0]))
        Array([0.75, 0.25, 0.  ], dtype=float32)

    References:
        Jaggi, "Revisiting Frank-Wolfe: Projection-Free Sparse Convex Optimization", ICML 2013.
        Duchi, Shalev-Shwartz, Singer, Chandra, "Efficient Projections onto the l1-Ball for
        Learning in High Dimensions", ICML 2008.
        Condat, "Fast projection onto the simplex and the l1 ball", Math. Program. 158, 2016.
    """
    return Simplex(radius, equality=equality)


def _as_bound_tree(bound: Any, name: str) -> PyTree:
    leaves, treedef = jax.tree.flatten(bound)
    if not leaves:
        raise ValueError(f"`{name}` must be a number or a pytree of arrays.")
    out = []
    for leaf in leaves:
        try:
            arr = jnp.asarray(leaf)
        except TypeError:
            raise ValueError(f"`{name}` must be real numbers, got {leaf!r}.") from None
        if jnp.issubdtype(arr.dtype, jnp.integer):
            arr = arr.astype(jnp.result_type(float))
        elif not jnp.issubdtype(arr.dtype, jnp.floating):
            raise ValueError(f"`{name}` must be real numbers, got dtype {arr.dtype}.")
        out.append(arr)
    return jax.tree.unflatten(treedef, out)


def _bound_leaves(bound: PyTree, treedef: Any, leaves: list[jax.Array], name: str) -> list:
    """The bound for each leaf of a tree: one shared array, or the matching leaves."""
    if jax.tree_util.treedef_is_leaf(jax.tree.structure(bound)):
        per_leaf = [bound] * len(leaves)
    else:
        try:
            per_leaf = treedef.flatten_up_to(bound)
        except (ValueError, TypeError) as err:
            raise ValueError(
                f"`{name}` must be a scalar or a pytree with the iterate's structure: {err}"
            ) from None
    out = []
    for b, x in zip(per_leaf, leaves):
        b = jnp.asarray(b)
        try:
            ok = jnp.broadcast_shapes(b.shape, x.shape) == x.shape
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(
                f"`{name}` of shape {tuple(b.shape)} does not broadcast to a leaf of shape"
                f" {tuple(x.shape)}."
            )
        out.append(b.astype(x.dtype))
    return out


class Box(LinearMinimizationOracle):
    r"""The box ``{x : lower <= x <= upper}`` (leaf by leaf); see :func:`box`."""

    lower: PyTree
    upper: PyTree

    def __init__(self, lower: Any, upper: Any):
        self.lower = _as_bound_tree(lower, "lower")
        self.upper = _as_bound_tree(upper, "upper")
        _check_ordered(self.lower, self.upper)

    def _bounds(self, tree: PyTree, name: str):
        leaves, treedef = float_leaves(tree, name)
        lows = _bound_leaves(self.lower, treedef, leaves, "lower")
        highs = _bound_leaves(self.upper, treedef, leaves, "upper")
        return leaves, treedef, lows, highs

    def minimize(self, grad: PyTree, state: PyTree) -> tuple[PyTree, PyTree]:
        leaves, treedef, lows, highs = self._bounds(grad, "grad")
        out = [
            jnp.broadcast_to(jnp.where(g > 0, lo, hi), g.shape)
            for g, lo, hi in zip(leaves, lows, highs)
        ]
        return jax.tree.unflatten(treedef, out), state

    @property
    def has_projection(self) -> bool:
        return True

    def project(self, y: PyTree) -> PyTree:
        leaves, treedef, lows, highs = self._bounds(y, "y")
        out = [jnp.clip(v, lo, hi) for v, lo, hi in zip(leaves, lows, highs)]
        return jax.tree.unflatten(treedef, out)


def _check_ordered(lower: PyTree, upper: PyTree) -> None:
    """Raise when concrete bounds have ``lower >= upper`` somewhere."""
    lows, highs = jax.tree.leaves(lower), jax.tree.leaves(upper)
    if len(lows) == 1:
        pairs = [(lows[0], h) for h in highs]
    elif len(highs) == 1:
        pairs = [(lo, highs[0]) for lo in lows]
    elif jax.tree.structure(lower) == jax.tree.structure(upper):
        pairs = list(zip(lows, highs))
    else:
        raise ValueError("`lower` and `upper` must have the same pytree structure.")
    for lo, hi in pairs:
        try:
            jnp.broadcast_shapes(lo.shape, hi.shape)
        except ValueError:
            raise ValueError(
                f"`lower` of shape {lo.shape} and `upper` of shape {hi.shape} do not broadcast."
            ) from None
        if is_concrete(lo) and is_concrete(hi) and not np.all(np.asarray(lo) < np.asarray(hi)):
            raise ValueError("`lower` must be < `upper` everywhere.")


def box(lower: Any, upper: Any) -> Box:
    r"""Oracle of the box ``{x : lower <= x <= upper}``.

    ``lower`` and ``upper`` are numbers or arrays shared by every leaf (broadcast to the
    leaf's shape), or pytrees with the iterate's structure (one bound per leaf, broadcast).
    The vertex is ``where(g > 0, lower, upper)``; where ``g == 0`` the upper bound is
    returned (any point of the edge is a minimizer there). The projection is
    ``clip(y, lower, upper)``, differentiable in ``y`` and both bounds.

    Args:
        lower: lower bounds (array fields; may be traced).
        upper: upper bounds, ``> lower`` everywhere.

    Returns:
        A :class:`Box` (dense vertices, stateless).

    Raises:
        ValueError: naming ``lower``/``upper`` when concrete bounds have ``lower >= upper``
            somewhere, non-real dtypes, or shapes that do not broadcast.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxspec.frank_wolfe import lmo
        >>> lmo.box(0.0, jnp.array([1.0, 2.0]))(jnp.array([3.0, -1.0]))
        Array([0., 2.], dtype=float32)

    References:
        Jaggi, "Revisiting Frank-Wolfe: Projection-Free Sparse Convex Optimization", ICML 2013.
    """
    return Box(lower, upper)


def linf_ball(radius: jax.typing.ArrayLike = 1.0) -> Box:
    r"""Oracle of the l-infinity ball ``{x : ||x||_inf <= radius}``: ``box(-radius, radius)``.

    The vertex is ``-radius * sign(g)`` (``+radius`` where ``g == 0``, see :func:`box`), the
    projection ``clip(y, -radius, radius)``.

    Args:
        radius: the radius ``> 0`` (array field; may be traced).

    Returns:
        A :class:`Box` with bounds ``-radius`` and ``radius``.

    Raises:
        ValueError: naming ``radius`` when a concrete radius is not positive and finite.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxspec.frank_wolfe import lmo
        >>> lmo.linf_ball(0.5)(jnp.array([2.0, -1.0]))
        Array([-0.5,  0.5], dtype=float32)

    References:
        Jaggi, "Revisiting Frank-Wolfe: Projection-Free Sparse Convex Optimization", ICML 2013.
    """
    r = check_radius(radius)
    return Box(-r, r)


class L2Ball(LinearMinimizationOracle):
    r"""The Euclidean ball ``{x : ||x||_2 <= radius}`` over the whole pytree; see
    :func:`l2_ball`."""

    radius: jax.Array

    def __init__(self, radius: jax.typing.ArrayLike = 1.0):
        self.radius = check_radius(radius)

    def _scaled(self, tree: PyTree, name: str, scale_fn) -> PyTree:
        leaves, treedef = float_leaves(tree, name)
        acc = jnp.promote_types(jnp.result_type(*leaves), jnp.float32)
        sq = sum(jnp.sum(jnp.square(x.astype(acc))) for x in leaves)
        norm, positive = safe_norm(sq)
        scale = scale_fn(norm, positive, self.radius.astype(acc))
        return jax.tree.unflatten(treedef, [(x * scale).astype(x.dtype) for x in leaves])

    def minimize(self, grad: PyTree, state: PyTree) -> tuple[PyTree, PyTree]:
        def scale(norm, positive, r):
            return jnp.where(positive, -r / jnp.where(positive, norm, 1), 0)

        return self._scaled(grad, "grad", scale), state

    @property
    def has_projection(self) -> bool:
        return True

    def project(self, y: PyTree) -> PyTree:
        def scale(norm, positive, r):
            outside = norm > r
            return jnp.where(outside, r / jnp.where(outside, norm, 1), 1)

        return self._scaled(y, "y", scale)


def l2_ball(radius: jax.typing.ArrayLike = 1.0) -> L2Ball:
    r"""Oracle of the Euclidean ball ``{x : ||x||_2 <= radius}``, one norm over every leaf.

    The vertex is ``-radius * g / ||g||`` (zero when ``g == 0``, NaN-free); the projection
    ``y * min(1, radius / ||y||)``. Norms accumulate in float32 at least.

    Args:
        radius: the radius ``> 0`` (array field; may be traced).

    Returns:
        An :class:`L2Ball` (dense vertices, stateless).

    Raises:
        ValueError: naming ``radius`` when a concrete radius is not positive and finite.

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxspec.frank_wolfe import lmo
        >>> lmo.l2_ball(10.0)(jnp.array([3.0, -4.0]))
        Array([-6.,  8.], dtype=float32)

    References:
        Jaggi, "Revisiting Frank-Wolfe: Projection-Free Sparse Convex Optimization", ICML 2013.
    """
    return L2Ball(radius)


class KSparse(_SparseVertexSet):
    r"""The K-sparse polytope ``{||x||_inf <= radius, ||x||_1 <= k radius}``; see
    :func:`k_sparse`."""

    radius: jax.Array
    k: int = eqx.field(static=True)

    def __init__(self, k: int, radius: jax.typing.ArrayLike = 1.0):
        self.k = check_int(k, "k", minimum=1)
        self.radius = check_radius(radius)

    def _sparse(self, flat: jax.Array) -> tuple[jax.Array, jax.Array]:
        k = min(self.k, flat.shape[0])
        _, idx = jax.lax.top_k(jnp.abs(flat), k)
        val = -self.radius.astype(flat.dtype) * jnp.sign(flat[idx])
        if k < self.k:  # fewer entries than k: pad with zero values (``add`` leaves them out)
            idx = jnp.concatenate([idx, jnp.zeros((self.k - k,), idx.dtype)])
            val = jnp.concatenate([val, jnp.zeros((self.k - k,), val.dtype)])
        return idx.astype(jnp.int32), val

    @property
    def vertex_nnz(self) -> int:
        return self.k

    def project(self, y: PyTree) -> PyTree:
        flat, unravel = ravel(y, "y")
        return unravel(project_k_sparse_flat(flat, self.radius.astype(flat.dtype), self.k))


def k_sparse(k: int, radius: jax.typing.ArrayLike = 1.0) -> KSparse:
    r"""Oracle of the K-sparse polytope, one set over every leaf of the pytree.

    The set is the convex hull of the vectors with ``k`` non-zeros, each ``+-radius``, which
    equals ``{x : ||x||_inf <= radius, ||x||_1 <= k radius}`` (for ``k = 1`` the l1 ball,
    for ``k >= n`` the l-infinity ball). The vertex sets the ``k`` entries of largest ``|g|``
    to ``-radius * sign(g)`` (zero where ``g == 0``) and the rest to zero.

    The projection is ``sign(y) clip(|y| - tau, 0, radius)`` with ``tau >= 0`` the smallest
    threshold whose result has l1 norm ``<= k radius``. The segment of the piecewise-linear
    l1 norm containing ``tau`` is found exactly over the sorted breakpoints ``|y_i|`` and
    ``|y_i| - radius``, and ``tau`` is computed in closed form from the capped and partial
    entries of that segment, so the projection is differentiable in ``y`` and ``radius``.

    Args:
        k: number of non-zeros of a vertex (static int ``>= 1``).
        radius: the bound on each entry ``> 0`` (array field; may be traced).

    Returns:
        A :class:`KSparse`; ``vertex_nnz == k`` (``sparse_minimize`` pads with zero values
        when the vector has fewer than ``k`` entries).

    Raises:
        ValueError: naming ``k`` (not an int ``>= 1``) or ``radius`` (not positive).

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxspec.frank_wolfe import lmo
        >>> oracle = lmo.k_sparse(2, radius=1.0)
        >>> oracle(jnp.array([0.1, -3.0, 2.0, 0.5]))
        Array([ 0.,  1., -1.,  0.], dtype=float32)
        >>> oracle.project(jnp.array([3.0, 0.5, 0.5, 0.0]))
        Array([1. , 0.5, 0.5, 0. ], dtype=float32)

    References:
        Besançon, Carderera, Pokutta, "FrankWolfe.jl: a high-performance and flexible toolbox
        for Frank-Wolfe algorithms and Conditional Gradients", arXiv:2104.06675 (the
        ``KSparseLMO``).
        Jaggi, "Revisiting Frank-Wolfe: Projection-Free Sparse Convex Optimization", ICML 2013.
    """
    return KSparse(k, radius)
