"""Frank–Wolfe (conditional gradient) solvers, linear minimization oracles, differentiable
solutions and online orthogonal dictionary learning.

References:
    Frank and Wolfe, "An algorithm for quadratic programming", Naval Res. Logist. Q., 1956.
    Jaggi, "Revisiting Frank-Wolfe: Projection-Free Sparse Convex Optimization", ICML 2013.
    Xue and Lau, "Online Orthogonal Dictionary Learning Based on Frank-Wolfe Method",
    arXiv:2103.01484.
"""

from jaxspec.frank_wolfe import lmo
from jaxspec.frank_wolfe._dictionary import (
    dictionary_recovery_error,
    lp_gradient,
    lp_objective,
    msp,
    online_orthogonal_dictionary,
)
from jaxspec.frank_wolfe._objective import LinearComposite, least_squares
from jaxspec.frank_wolfe._solution import Solution
from jaxspec.frank_wolfe._solve import solve
from jaxspec.frank_wolfe._stochastic import (
    StochasticFrankWolfeState,
    stochastic_frank_wolfe,
    stochastic_schedule,
    stochastic_solve,
)

# -- exports of the solver files (added as they land) --

__all__ = [
    "LinearComposite",
    "Solution",
    "dictionary_recovery_error",
    "lp_gradient",
    "lp_objective",
    "msp",
    "online_orthogonal_dictionary",
    "StochasticFrankWolfeState",
    "least_squares",
    "lmo",
    "solve",
    "stochastic_frank_wolfe",
    "stochastic_schedule",
    "stochastic_solve",
]
