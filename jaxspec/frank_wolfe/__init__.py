"""Frank–Wolfe (conditional gradient) solvers, linear minimization oracles, differentiable
solutions and online orthogonal dictionary learning.

References:
    Frank and Wolfe, "An algorithm for quadratic programming", Naval Res. Logist. Q., 1956.
    Jaggi, "Revisiting Frank-Wolfe: Projection-Free Sparse Convex Optimization", ICML 2013.
    Xue and Lau, "Online Orthogonal Dictionary Learning Based on Frank-Wolfe Method",
    arXiv:2103.01484.
"""

from jaxspec.frank_wolfe import lmo
from jaxspec.frank_wolfe._objective import LinearComposite, least_squares
from jaxspec.frank_wolfe._solution import Solution
from jaxspec.frank_wolfe._solve import solve

# -- exports of the solver files (added as they land) --

__all__ = [
    "LinearComposite",
    "Solution",
    "least_squares",
    "lmo",
    "solve",
]
