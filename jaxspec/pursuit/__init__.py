"""Pursuit: batched greedy pursuit, iterative thresholding, and sparse autoencoders.

* Greedy pursuit: :func:`omp` / :func:`omp_solve` (Batch-OMP, exact least squares on the
  support) and :func:`mp` / :func:`mp_solve`, batched and jit-compiled.
* Iterative thresholding: :func:`ista` / :func:`fista` with soft (l1), hard (l0), half
  (l1/2) and CEL0 thresholds, and learned unrolling (:class:`LISTA`, :func:`fit_lista`).

References:
    Mallat and Zhang, "Matching pursuits with time-frequency dictionaries", IEEE TSP 41(12),
    1993.
    Pati, Rezaiifar and Krishnaprasad, "Orthogonal matching pursuit: recursive function
    approximation with applications to wavelet decomposition", Asilomar 1993.
    Rubinstein, Zibulevsky and Elad, "Efficient implementation of the K-SVD algorithm using
    batch orthogonal matching pursuit", Technion CS-2008-08, 2008.
    Gregor and LeCun, "Learning fast approximations of sparse coding", ICML 2010.
    Rentzeperis, Calatroni, Perrinet and Prandi, "Beyond l1 sparse coding in V1", PLOS
    Comput. Biol. 19(9), 2023.
"""

from jaxspec.pursuit._greedy import PursuitSolution, mp, mp_solve, omp, omp_solve
from jaxspec.pursuit._ista import IstaSolution, fista, ista
from jaxspec.pursuit._lista import LISTA, fit_lista
from jaxspec.pursuit._thresholds import (
    cel0_threshold,
    get_threshold,
    half_threshold,
    hard_threshold,
    soft_threshold,
)

__all__ = [
    "LISTA",
    "IstaSolution",
    "PursuitSolution",
    "cel0_threshold",
    "fista",
    "fit_lista",
    "get_threshold",
    "half_threshold",
    "hard_threshold",
    "ista",
    "mp",
    "mp_solve",
    "omp",
    "omp_solve",
    "soft_threshold",
]
