"""The linear minimization oracle (LMO) protocol every Frank–Wolfe solver in jaxspec uses."""

from __future__ import annotations

import abc
from typing import Any

import equinox as eqx
import jax

PyTree = Any


class LinearMinimizationOracle(eqx.Module):
    r"""A compact convex set ``C`` given by its linear minimization oracle.

    Subclasses implement :meth:`minimize`, returning a vertex ``s = argmin_{s in C} <g, s>``
    for a gradient pytree ``g`` (the same structure, shapes and dtypes as the iterate).
    Everything a user might sweep (radius, bounds) is an array field, so one compiled solve
    serves a whole ``vmap`` over it; shapes and counts (``k``) are static fields.

    Optional capabilities, used by the solvers when present:

    * :meth:`init` / the ``state`` argument: a pytree of arrays carried between calls (the
      nuclear-norm ball warm-starts its top singular pair there). Stateless sets return ``()``.
    * :meth:`project`: the Euclidean projection onto ``C``; it enables implicit
      differentiation of :func:`jaxspec.frank_wolfe.solve` (``has_projection`` says whether
      it exists).
    * :meth:`sparse_minimize`: for sets whose vertices have at most ``vertex_nnz`` non-zeros
      (the l1 ball, the simplex, k-sparse polytopes), the vertex as ``(indices, values)`` of a
      1-D iterate. Solvers of linear-composite objectives use it to update ``A x`` with
      ``vertex_nnz`` columns of ``A`` instead of a full matrix-vector product.

    Calling the oracle, ``lmo(g)``, returns just the vertex (from a fresh state).
    """

    def init(self, x: PyTree) -> PyTree:
        """Oracle state for iterate ``x`` (warm starts); ``()`` for stateless sets."""
        del x
        return ()

    @abc.abstractmethod
    def minimize(self, grad: PyTree, state: PyTree) -> tuple[PyTree, PyTree]:
        """Return ``(vertex, new_state)`` with ``vertex = argmin_{s in C} <grad, s>``."""

    def __call__(self, grad: PyTree) -> PyTree:
        vertex, _ = self.minimize(grad, self.init(grad))
        return vertex

    @property
    def has_projection(self) -> bool:
        """Whether :meth:`project` is implemented (enables implicit differentiation)."""
        return False

    def project(self, y: PyTree) -> PyTree:
        """Euclidean projection of ``y`` onto ``C`` (differentiable in ``y`` and the fields)."""
        raise NotImplementedError(f"{type(self).__name__} has no Euclidean projection.")

    @property
    def vertex_nnz(self) -> int | None:
        """Maximum non-zeros of a vertex of a 1-D set, or ``None`` when vertices are dense."""
        return None

    def sparse_minimize(
        self, grad: jax.Array, state: PyTree
    ) -> tuple[jax.Array, jax.Array, PyTree]:
        """Sparse vertex ``(indices int32 (k,), values (k,), new_state)`` of a 1-D ``grad``.

        The dense vertex is ``zeros_like(grad).at[indices].add(values)``. Only sets with
        ``vertex_nnz`` not ``None`` implement it.
        """
        raise NotImplementedError(f"{type(self).__name__} has dense vertices.")
