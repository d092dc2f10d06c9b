"""Pursuit: batched matching pursuit and orthogonal matching pursuit, jit-compiled.

References:
    Mallat and Zhang, "Matching pursuits with time-frequency dictionaries", IEEE TSP 41(12),
    1993.
    Pati, Rezaiifar and Krishnaprasad, "Orthogonal matching pursuit: recursive function
    approximation with applications to wavelet decomposition", Asilomar 1993.
    Rubinstein, Zibulevsky and Elad, "Efficient implementation of the K-SVD algorithm using
    batch orthogonal matching pursuit", Technion CS-2008-08, 2008.
"""

from jaxspec.pursuit._greedy import PursuitSolution, mp, mp_solve, omp, omp_solve

__all__ = ["PursuitSolution", "mp", "mp_solve", "omp", "omp_solve"]
