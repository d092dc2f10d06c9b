"""Linear minimization oracles (LMOs): the compact convex sets of Frank–Wolfe solvers.

Each factory returns a final :class:`LinearMinimizationOracle` (an equinox Module): radii and
bounds are array fields (traceable, ``vmap``-able), shapes and counts are static. Vector sets
(:func:`l1_ball`, :func:`l2_ball`, :func:`simplex`, :func:`k_sparse`) take one norm over the
whole pytree; :func:`box` / :func:`linf_ball` act entrywise; the matrix sets
(:func:`nuclear_ball`, :func:`spectral_ball`) are products of balls over leaves and leading
batch axes. Every oracle also has an exact, differentiable Euclidean projection.

Example:
    >>> import jax.numpy as jnp
    >>> from jaxspec.frank_wolfe import lmo
    >>> oracle = lmo.l1_ball(1.0)
    >>> vertex, state = oracle.minimize(jnp.array([1.0, -2.0]), oracle.init(jnp.zeros(2)))
    >>> vertex
    Array([0., 1.], dtype=float32)

References:
    Jaggi, "Revisiting Frank-Wolfe: Projection-Free Sparse Convex Optimization", ICML 2013.
    Besançon, Carderera, Pokutta, "FrankWolfe.jl", arXiv:2104.06675.
"""

from jaxspec.frank_wolfe.lmo._base import LinearMinimizationOracle
from jaxspec.frank_wolfe.lmo._matrix import (
    NuclearBall,
    NuclearState,
    SpectralBall,
    nuclear_ball,
    spectral_ball,
)
from jaxspec.frank_wolfe.lmo._vector import (
    Box,
    KSparse,
    L1Ball,
    L2Ball,
    Simplex,
    box,
    k_sparse,
    l1_ball,
    l2_ball,
    linf_ball,
    simplex,
)

__all__ = [
    "Box",
    "KSparse",
    "L1Ball",
    "L2Ball",
    "LinearMinimizationOracle",
    "NuclearBall",
    "NuclearState",
    "Simplex",
    "SpectralBall",
    "box",
    "k_sparse",
    "l1_ball",
    "l2_ball",
    "linf_ball",
    "nuclear_ball",
    "simplex",
    "spectral_ball",
]
