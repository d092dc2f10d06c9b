"""The Stiefel manifold St(n, p)."""

from __future__ import annotations

from jaxspec._checks import check_choice, check_int
from jaxspec.manifolds._base import METRICS, RETRACTIONS, AbstractOrthonormalFrames


class Stiefel(AbstractOrthonormalFrames):
    r"""Stiefel manifold ``St(n, p) = {X in R^{n x p} : X^T X = I_p}``.

    A final, hashable module with static fields only: use it as a ``jit`` static argument or
    close over it. Points and tangent vectors are ``(..., n, p)`` arrays; every method takes
    leading batch axes. Tangent vectors at ``X`` satisfy ``X^T U + U^T X = 0``.

    Metrics: ``"euclidean"`` (embedded, ``tr(U^T V)``) and ``"canonical"``
    (``tr(U^T (I - X X^T / 2) V)``); they agree on O(n) up to a factor 1/2 and differ in the
    Riemannian gradient. Retractions (see the functions of the same name): ``"qr"`` (default,
    first order, cheapest), ``"polar"`` (exact SVD polar factor, second order),
    ``"polar_newton_schulz"`` (matmul-only polar via :mod:`jaxspec.spectral`), ``"cayley"``
    (Wen–Yin; Woodbury form when ``2p < n``), ``"exp"`` (embedded-metric geodesic),
    ``"iterative_cayley"`` (matmul-only, approximately feasible).

    Args:
        n: ambient rows.
        p: columns, ``1 <= p <= n``.
        metric: ``"euclidean"`` or ``"canonical"``.
        retraction: one of the names above.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxspec import manifolds
        >>> st = manifolds.Stiefel(5, 2, retraction="cayley")
        >>> x = st.random(jax.random.key(0))
        >>> g = st.egrad_to_rgrad(x, jnp.ones((5, 2)))
        >>> y = st.retract(x, -0.1 * g)
        >>> bool(manifolds.orthogonality_error(y) < 1e-5)
        True

    References:
        Absil, Mahony, Sepulchre, "Optimization Algorithms on Matrix Manifolds", 2008.
        Edelman, Arias, Smith, "The Geometry of Algorithms with Orthogonality Constraints",
        1998. Boumal, "An Introduction to Optimization on Smooth Manifolds", 2023, 7.3.
    """

    def __init__(self, n: int, p: int, *, metric: str = "euclidean", retraction: str = "qr"):
        self.n = check_int(n, "n")
        self.p = check_int(p, "p")
        if self.p > self.n:
            raise ValueError(f"`p` must be <= n = {self.n}, got {self.p}.")
        self.metric = check_choice(metric, "metric", METRICS)
        self.retraction = check_choice(retraction, "retraction", RETRACTIONS)
