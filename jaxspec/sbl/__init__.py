"""Sparse Bayesian learning: EM / MacKay / fast sequential SBL, multiple measurement vectors,
block SBL and Kronecker-structured SBL (KroSBL), jit-compiled and vmappable.

References:
    Tipping, "Sparse Bayesian learning and the relevance vector machine", JMLR 1, 2001.
    Wipf and Rao, "Sparse Bayesian learning for basis selection", IEEE TSP 52(8), 2004.
    Tipping and Faul, "Fast marginal likelihood maximisation for sparse Bayesian models",
    AISTATS 2003.
    Wipf and Rao, "An empirical Bayesian strategy for solving the simultaneous sparse
    approximation problem", IEEE TSP 55(7), 2007.
    Zhang and Rao, "Extension of SBL algorithms for the recovery of block sparse signals with
    intra-block correlation", IEEE TSP 61(8), 2013.
    He and Joseph, "Bayesian algorithms for Kronecker-structured sparse vector recovery with
    application to IRS-MIMO channel estimation", arXiv:2307.14719.
"""

from jaxspec.sbl._block import block_sbl
from jaxspec.sbl._classic import UPDATES, sbl
from jaxspec.sbl._fast import fast_sbl
from jaxspec.sbl._kronecker import kronecker_sbl
from jaxspec.sbl._posterior import FORMS
from jaxspec.sbl._solution import BlockSBLSolution, KroneckerSBLSolution, SBLSolution

__all__ = [
    "FORMS",
    "UPDATES",
    "BlockSBLSolution",
    "KroneckerSBLSolution",
    "SBLSolution",
    "block_sbl",
    "fast_sbl",
    "kronecker_sbl",
    "sbl",
]
