"""Result types returned by the sparse Bayesian learning solvers."""

from __future__ import annotations

from typing import NamedTuple

import jax

from jaxspec._status import Status


class SBLSolution(NamedTuple):
    """Result of a sparse Bayesian learning solve; under ``vmap`` every field gains the batch
    axes.

    Attributes:
        mean: posterior mean of the coefficients, ``(N,)`` (``(N, L)`` for multiple
            measurement vectors); zero on pruned atoms.
        gamma: prior variances ``(N,)`` (``1 / alpha`` in Tipping's notation); exactly zero on
            pruned atoms.
        noise_var: noise variance ``sigma^2`` (learned or the given one), a scalar.
        cost: type-II cost ``log|Sigma_y| + y^H Sigma_y^{-1} y`` (summed over measurement
            vectors) at ``gamma`` and ``noise_var``, ``Sigma_y = noise_var I + A diag(gamma)
            A^H``; smaller is better (negative log evidence up to constants).
        covariance_diag: posterior variances ``diag(Sigma)``, ``(N,)``, zero on pruned atoms.
        num_steps: iterations taken, int32.
        status: :class:`jaxspec.Status` code, int32.
    """

    mean: jax.Array
    gamma: jax.Array
    noise_var: jax.Array
    cost: jax.Array
    covariance_diag: jax.Array
    num_steps: jax.Array
    status: jax.Array

    @property
    def converged(self) -> jax.Array:
        """Boolean array: whether the relative change of ``gamma`` met ``tol``."""
        return self.status == Status.CONVERGED


class KroneckerSBLSolution(NamedTuple):
    """Result of :func:`jaxspec.sbl.kronecker_sbl` for ``y = (A_1 kron ... kron A_I) x + n``.

    Attributes:
        mean: posterior mean ``(N_1 N_2 ... N_I,)`` in the Kronecker (row-major) order of the
            factors; zero on pruned atoms.
        gamma: the full prior variances ``gamma_1 kron ... kron gamma_I``, ``(N,)``.
        factors: tuple of the per-mode prior variances ``gamma_i``, shapes ``(N_i,)``, with
            the scale normalization applied (all scale in the last factor); pruned entries are
            exactly zero.
        noise_var: noise variance, a scalar.
        cost: type-II cost ``log|Sigma_y| + y^H Sigma_y^{-1} y`` at the final hyperparameters.
        covariance_diag: ``diag(Sigma)``, ``(N,)``.
        num_steps: EM iterations taken, int32.
        status: :class:`jaxspec.Status` code, int32.
    """

    mean: jax.Array
    gamma: jax.Array
    factors: tuple[jax.Array, ...]
    noise_var: jax.Array
    cost: jax.Array
    covariance_diag: jax.Array
    num_steps: jax.Array
    status: jax.Array


class BlockSBLSolution(NamedTuple):
    """Result of :func:`jaxspec.sbl.block_sbl` (block SBL with AR(1) intra-block correlation).

    Attributes:
        mean: posterior mean ``(N,)``; zero on pruned blocks.
        gamma: per-block prior variances ``(N // block_size,)``; zero on pruned blocks.
        correlation: the learned AR(1) intra-block correlation ``r`` (``|r| <= 0.99``).
        noise_var: noise variance, a scalar.
        cost: type-II cost ``log|Sigma_y| + y^H Sigma_y^{-1} y`` at the final hyperparameters.
        covariance_diag: ``diag(Sigma)``, ``(N,)``.
        num_steps: iterations taken, int32.
        status: :class:`jaxspec.Status` code, int32.
    """

    mean: jax.Array
    gamma: jax.Array
    correlation: jax.Array
    noise_var: jax.Array
    cost: jax.Array
    covariance_diag: jax.Array
    num_steps: jax.Array
    status: jax.Array
