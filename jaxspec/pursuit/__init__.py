"""Pursuit: batched greedy pursuit, iterative thresholding, and sparse autoencoders.

* Greedy pursuit: :func:`omp` / :func:`omp_solve` (Batch-OMP, exact least squares on the
  support), :func:`omp_gram` (from a precomputed Gram matrix) and :func:`mp` /
  :func:`mp_solve`, batched and jit-compiled.
* Iterative thresholding: :func:`ista` / :func:`fista` with soft (l1), hard (l0), half
  (l1/2) and CEL0 thresholds, and learned unrolling (:class:`LISTA`, :func:`fit_lista`).
* Differentiable matching pursuit: :func:`unrolled_mp` (full, memory-lean and decoder-only
  gradients).
* Sparse autoencoders (equinox modules): :class:`MPSAE`, :class:`ReLUSAE`, :class:`TopKSAE`,
  :class:`BatchTopKSAE`, :class:`JumpReLUSAE`; :func:`train_sae` (optax) and
  :func:`sae_metrics`.

References:
    Mallat and Zhang, "Matching pursuits with time-frequency dictionaries", IEEE TSP 41(12),
    1993.
    Pati, Rezaiifar and Krishnaprasad, "Orthogonal matching pursuit: recursive function
    approximation with applications to wavelet decomposition", Asilomar 1993.
    Rubinstein, Zibulevsky and Elad, "Efficient implementation of the K-SVD algorithm using
    batch orthogonal matching pursuit", Technion CS-2008-08, 2008.
    Gregor and LeCun, "Learning fast approximations of sparse coding", ICML 2010.
    Costa, Fel, Lubana, Tolooshams and Ba, "From Flat to Hierarchical: Extracting Sparse
    Representations with Matching Pursuit", arXiv:2506.03093 (NeurIPS 2025).
    Rentzeperis, Calatroni, Perrinet and Prandi, "Beyond l1 sparse coding in V1", PLOS
    Comput. Biol. 19(9), 2023.
"""

from jaxspec.pursuit._greedy import PursuitSolution, mp, mp_solve, omp, omp_gram, omp_solve
from jaxspec.pursuit._ista import IstaSolution, fista, ista
from jaxspec.pursuit._lista import LISTA, fit_lista
from jaxspec.pursuit._sae import (
    MPSAE,
    AbstractSAE,
    BatchTopKSAE,
    JumpReLUSAE,
    ReLUSAE,
    TopKSAE,
)
from jaxspec.pursuit._sae_metrics import reconstruction_metrics, sae_metrics
from jaxspec.pursuit._sae_train import train_sae
from jaxspec.pursuit._thresholds import (
    cel0_threshold,
    get_threshold,
    half_threshold,
    hard_threshold,
    soft_threshold,
)
from jaxspec.pursuit._unrolled import UnrolledMPResult, unrolled_mp

__all__ = [
    "LISTA",
    "MPSAE",
    "AbstractSAE",
    "BatchTopKSAE",
    "IstaSolution",
    "JumpReLUSAE",
    "PursuitSolution",
    "ReLUSAE",
    "TopKSAE",
    "UnrolledMPResult",
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
    "omp_gram",
    "omp_solve",
    "reconstruction_metrics",
    "sae_metrics",
    "soft_threshold",
    "train_sae",
    "unrolled_mp",
]
