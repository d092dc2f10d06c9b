"""Optimization on the orthogonal group and the Stiefel manifold: geometry (points, tangent
projections, Riemannian gradients, retractions, transports, charts), Riemannian optax
optimizers, full-batch solvers, Procrustes and orthogonal model merging.

Everything is jit-compiled and vmappable, with leading batch axes on points.

Differentiability (``jax.grad`` through the maps, checked against finite differences):

* every retraction: ``qr`` (JAX's QR rule, tall or square), ``polar`` by SVD (through
  :func:`polar_factor`'s own JVP, which stays finite at repeated singular values, where JAX's
  SVD rule is NaN, jax#2311), ``polar_newton_schulz``, ``cayley`` (both forms), ``exp``,
  ``iterative_cayley``; :func:`cayley`, :func:`inverse_cayley` (the signature ``d`` is
  piecewise constant and carries no gradient), :func:`householder_product` (not at a zero
  reflector vector), :func:`procrustes` (wherever ``a^T b`` has full rank);
* not differentiable: :func:`log_orthogonal` and ``Orthogonal.log`` at repeated rotation
  angles (they use ``eigh``; fine elsewhere), ``procrustes(..., special=True)`` where the
  flipped singular value ties another (the minimizer is not unique there), and
  :func:`minimize` (a ``lax.while_loop``: no reverse-mode gradients).

References:
    Absil, Mahony, Sepulchre, "Optimization Algorithms on Matrix Manifolds", 2008.
    Edelman, Arias, Smith, "The Geometry of Algorithms with Orthogonality Constraints", 1998.
    Yang, Shi, Liu, "Orthogonal Model Merging", arXiv:2602.05943, 2026.
"""

from jaxspec.manifolds._base import METRICS, RETRACTIONS, AbstractOrthonormalFrames
from jaxspec.manifolds._charts import cayley, householder_product, inverse_cayley, log_orthogonal
from jaxspec.manifolds._linalg import orthogonality_error, polar_factor, skew, sym
from jaxspec.manifolds._orthogonal import Orthogonal
from jaxspec.manifolds._procrustes import procrustes
from jaxspec.manifolds._retractions import (
    cayley_retraction,
    exp_retraction,
    iterative_cayley_retraction,
    polar_retraction,
    qr_retraction,
)
from jaxspec.manifolds._stiefel import Stiefel

__all__ = [
    "METRICS",
    "RETRACTIONS",
    "AbstractOrthonormalFrames",
    "Orthogonal",
    "Stiefel",
    "cayley",
    "cayley_retraction",
    "exp_retraction",
    "householder_product",
    "inverse_cayley",
    "iterative_cayley_retraction",
    "log_orthogonal",
    "orthogonality_error",
    "polar_factor",
    "polar_retraction",
    "procrustes",
    "qr_retraction",
    "skew",
    "sym",
]

# -- exports of the optimizer / solver / merging files (added as they land) --
from jaxspec.manifolds._minimize import BETA_RULES, METHODS, minimize  # noqa: E402
from jaxspec.manifolds._solution import ManifoldSolution  # noqa: E402

__all__ += ["BETA_RULES", "METHODS", "ManifoldSolution", "minimize"]
from jaxspec.manifolds._optimizers import (  # noqa: E402
    LandingState,
    RiemannianAdamState,
    RiemannianSGDState,
    landing,
    landing_field,
    landing_safe_step,
    riemannian_adam,
    riemannian_sgd,
)

__all__ += [
    "LandingState",
    "RiemannianAdamState",
    "RiemannianSGDState",
    "landing",
    "landing_field",
    "landing_safe_step",
    "riemannian_adam",
    "riemannian_sgd",
]
from jaxspec.manifolds._orthomerge import (  # noqa: E402
    OrthoMergeSolution,
    merge_generators,
    orthomerge,
    orthomerge_weights,
    task_arithmetic,
)

__all__ += [
    "OrthoMergeSolution",
    "merge_generators",
    "orthomerge",
    "orthomerge_weights",
    "task_arithmetic",
]
