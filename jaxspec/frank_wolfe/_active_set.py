"""Fixed-capacity active sets for away-step and pairwise Frank–Wolfe.

The iterate is kept as a convex combination ``x = sum_i w_i a_i`` of at most ``K`` atoms.
Atoms live in a pytree with a leading axis of length ``K`` and weights in a ``(K,)`` array;
a slot is free when its weight is zero, so the whole structure jits and vmaps.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

PyTree = Any


class ActiveSet(NamedTuple):
    """Atoms ``(K, ...)`` per leaf and their weights ``(K,)``; free slots have weight 0."""

    atoms: PyTree
    weights: jax.Array


def init(x0: PyTree, capacity: int, dtype) -> ActiveSet:
    atoms = jax.tree.map(
        lambda leaf: jnp.zeros((capacity,) + leaf.shape, leaf.dtype).at[0].set(leaf), x0
    )
    weights = jnp.zeros((capacity,), dtype).at[0].set(1.0)
    return ActiveSet(atoms, weights)


def scores(active: ActiveSet, grad: PyTree) -> jax.Array:
    """``<grad, a_i>`` for every slot, shape ``(K,)``."""
    per_leaf = jax.tree.map(lambda a, g: jnp.tensordot(a, g, axes=g.ndim).real, active.atoms, grad)
    leaves = jax.tree.leaves(per_leaf)
    return sum(leaves[1:], leaves[0])


def atom(active: ActiveSet, index: jax.Array) -> PyTree:
    return jax.tree.map(lambda a: a[index], active.atoms)


def locate(active: ActiveSet, vertex: PyTree) -> tuple[jax.Array, jax.Array]:
    """Slot for ``vertex``: its own slot if present, else the first free one.

    Returns:
        ``(index, ok)``; ``ok`` is False when the vertex is new and no slot is free.
    """
    same = jax.tree.map(
        lambda a, v: jnp.all((a == v).reshape(a.shape[0], -1), axis=1), active.atoms, vertex
    )
    match = jnp.stack(jax.tree.leaves(same)).all(axis=0) & (active.weights > 0)
    free = active.weights <= 0
    present = jnp.any(match)
    index = jnp.where(present, jnp.argmax(match), jnp.argmax(free))
    return index, present | jnp.any(free)


def store(active: ActiveSet, index: jax.Array, vertex: PyTree, where: jax.Array) -> ActiveSet:
    """Writes ``vertex`` into slot ``index`` where ``where`` holds (``locate``'s ``ok``: with
    no slot free, ``index`` points at a live atom, which must keep its vertex)."""
    atoms = jax.tree.map(
        lambda a, v: a.at[index].set(jnp.where(where, v, a[index])), active.atoms, vertex
    )
    return ActiveSet(atoms, active.weights)


def size(active: ActiveSet) -> jax.Array:
    return jnp.sum(active.weights > 0).astype(jnp.int32)
