"""The orthogonal group O(n) and the special orthogonal group SO(n)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from jaxspec._checks import check_choice, check_int
from jaxspec.manifolds._base import METRICS, RETRACTIONS, AbstractOrthonormalFrames
from jaxspec.manifolds._charts import log_orthogonal
from jaxspec.manifolds._linalg import mT


class Orthogonal(AbstractOrthonormalFrames):
    r"""Orthogonal group ``O(n)``, or ``SO(n)`` with ``special=True``.

    The square case of :class:`Stiefel` (tangent vectors ``U = X Omega`` with ``Omega`` skew),
    plus the group logarithm :meth:`log` and determinant-aware random points. Retractions keep
    the connected component of the start point, so an iterate started in SO(n) stays there.
    Default retraction ``"cayley"`` (one ``n x n`` solve; second-order agreement with the
    geodesic ``X expm(Omega)``).

    Args:
        n: size.
        special: restrict to SO(n) (random points with determinant +1).
        metric: ``"euclidean"`` or ``"canonical"`` (half the Euclidean one on O(n)).
        retraction: ``"cayley"`` (default), ``"qr"``, ``"polar"``, ``"polar_newton_schulz"``,
            ``"exp"`` or ``"iterative_cayley"``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxspec import manifolds
        >>> so3 = manifolds.Orthogonal(3, special=True)
        >>> x = so3.random(jax.random.key(1), (4,))
        >>> bool(jnp.allclose(jnp.linalg.det(x), 1.0, atol=1e-5))
        True

    References:
        Absil, Mahony, Sepulchre, "Optimization Algorithms on Matrix Manifolds", 2008.
    """

    special: bool = eqx.field(static=True)

    def __init__(
        self,
        n: int,
        *,
        special: bool = False,
        metric: str = "euclidean",
        retraction: str = "cayley",
    ):
        self.n = self.p = check_int(n, "n")
        if not isinstance(special, bool):
            raise ValueError(f"`special` must be a bool, got {special!r}.")
        self.special = special
        self.metric = check_choice(metric, "metric", METRICS)
        self.retraction = check_choice(retraction, "retraction", RETRACTIONS)

    def random(
        self,
        key: jax.Array,
        batch_shape: tuple[int, ...] = (),
        dtype: jax.typing.DTypeLike = jnp.float32,
    ) -> jax.Array:
        """Haar-distributed random point(s) ``(*batch_shape, n, n)`` (in SO(n) if special)."""
        x = super().random(key, batch_shape, dtype)
        if not self.special:
            return x
        flip = jnp.where(jnp.linalg.det(x) < 0, -1.0, 1.0).astype(x.dtype)
        return x.at[..., :, 0].multiply(flip[..., None])

    def log(self, x: jax.typing.ArrayLike, y: jax.typing.ArrayLike) -> jax.Array:
        """Group logarithm: the tangent ``u`` at ``x`` with ``exp(x, u) = y``, ``x logm(x^T y)``.

        Defined when ``x^T y`` is a rotation with angles below ``pi``
        (see :func:`log_orthogonal`).
        """
        x, y = self._pair(x, y, "y")
        return x @ log_orthogonal(mT(x) @ y)
