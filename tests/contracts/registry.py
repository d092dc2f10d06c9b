"""The registry of every public jaxspec function, solver and transform under contract test.

Each module adds its public callables here (one :class:`Contract` per entry). The suite in
``test_contracts.py`` runs the same JAX contract over all of them:

* ``jit``: the jitted call equals the eager call;
* ``vmap``: ``vmap`` over a leading axis of the array arguments equals a Python loop;
* dtypes: every dtype in ``dtypes`` runs, keeps the input dtype, and gives finite output;
* batch axes (``batch=True``): a stacked input equals stacking the per-item outputs;
* gradients (``grad=True``): reverse-mode gradients match central finite differences (float64).

A transform is registered through a function of arrays (``update(grads, params)``), so the
same checks apply. Keep the example sizes tiny: the suite runs on 2 CPU cores.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxspec import spectral

FLOATS = (jnp.float32, jnp.float64)
WITH_BF16 = (jnp.float32, jnp.float64, jnp.bfloat16)


@dataclasses.dataclass(frozen=True)
class Contract:
    """One public callable and how to exercise it.

    Attributes:
        name: id shown by pytest.
        fn: callable of the array arguments returned by ``make_args`` (returns a pytree).
        make_args: ``(rng, dtype) -> tuple`` of example arguments (numpy/jax arrays).
        dtypes: dtypes the callable supports.
        batch: whether leading batch axes on the first argument are supported (transforms
            register ``False``: a stack of vectors is a matrix leaf to them; their stacked-matrix
            behaviour is tested in tests/spectral/test_transforms.py).
        grad: whether ``fn`` is differentiable w.r.t. the first argument.
        vmap_argnums: arguments that ``vmap`` maps over in the vmap == loop check.
        rtol: relative tolerance of the jit/vmap/batch comparisons per dtype name.
    """

    name: str
    fn: Callable[..., Any]
    make_args: Callable[[np.random.Generator, Any], tuple]
    dtypes: tuple = FLOATS
    batch: bool = True
    grad: bool = True
    vmap_argnums: tuple[int, ...] = (0,)
    rtol: dict = dataclasses.field(
        default_factory=lambda: {"float32": 2e-4, "float64": 1e-9, "bfloat16": 5e-2}
    )


def _matrix(shape=(6, 9)):
    def make(rng, dtype):
        return (jnp.asarray(rng.standard_normal(shape), dtype),)

    return make


def _matrix_and_threshold(shape=(6, 9), c=1.5):
    def make(rng, dtype):
        return jnp.asarray(rng.standard_normal(shape), dtype), jnp.asarray(c, dtype)

    return make


def _transform_update(make_tx: Callable[[], optax.GradientTransformation]):
    """Registered function of a transform: one update on a small param tree."""

    def fn(g, p):
        tx = make_tx()
        tree_g = {"w": g, "b": g[..., 0, :] if jnp.ndim(g) >= 2 else g}  # (bad-input cases)
        tree_p = {"w": p, "b": p[..., 0, :]}
        updates, _ = tx.update(tree_g, tx.init(tree_p), tree_p)
        return updates

    return fn


def _grad_and_params(shape=(6, 9)):
    def make(rng, dtype):
        return (
            jnp.asarray(3 * rng.standard_normal(shape), dtype),
            jnp.asarray(rng.standard_normal(shape), dtype),
        )

    return make


REGISTRY: list[Contract] = [
    *[
        Contract(
            f"orthogonalize[{s}]",
            lambda x, s=s: spectral.orthogonalize(x, s),
            _matrix(),
            dtypes=WITH_BF16,
        )
        for s in spectral.SCHEDULES
    ],
    Contract("orthogonalize[tall]", lambda x: spectral.orthogonalize(x, steps=6), _matrix((9, 6))),
    Contract(
        "polar",
        lambda x: spectral.polar(x, tol=1e-3 if x.dtype == jnp.float32 else 1e-8).factor,
        _matrix(),
        grad=False,  # lax.while_loop: forward mode only (documented)
    ),
    Contract("polar[svd]", lambda x: spectral.polar(x, method="svd").factor, _matrix(), grad=False),
    Contract("spectral_norm", lambda x: spectral.spectral_norm(x, iters=8), _matrix()),
    Contract(
        "soft_clip",
        spectral.soft_clip,
        _matrix_and_threshold(),
        dtypes=WITH_BF16,
        vmap_argnums=(0, 1),
    ),
    Contract(
        "soft_clip[coupled]",
        lambda x, c: spectral.soft_clip(x, c, method="coupled"),
        _matrix_and_threshold(c=4.0),
    ),
    Contract(
        "hard_clip",
        spectral.hard_clip,
        _matrix_and_threshold(c=0.9),
        dtypes=WITH_BF16,
        vmap_argnums=(0, 1),
    ),
    Contract(
        "clip_updates",
        _transform_update(lambda: spectral.clip_updates(1.0)),
        _grad_and_params(),
        batch=False,
    ),
    Contract(
        "clip_gradients",
        _transform_update(lambda: spectral.clip_gradients(0.5, soft=False)),
        _grad_and_params(),
        batch=False,
    ),
    Contract(
        "spectra_adamw",
        _transform_update(lambda: spectral.spectra_adamw(1e-2, c=1.0, weight_decay=0.1)),
        _grad_and_params(),
        dtypes=WITH_BF16,
        batch=False,
    ),
    Contract(
        "spectra_signum",
        _transform_update(lambda: spectral.spectra_signum(1e-2, c=1.0)),
        _grad_and_params(),
        grad=False,
        batch=False,
    ),  # sign(): zero gradient almost everywhere
]


# -- frank_wolfe.lmo: vertices are piecewise constant in the gradient (registered without
# gradients); projections are differentiable. The vector sets take one norm over the whole
# input, so a stacked input is not a batch for them (batch=False); the matrix sets are products
# of balls over leading axes.


def _vector_and_radius(n=7, r=1.3, scale=1.0):
    def make(rng, dtype):
        return jnp.asarray(scale * rng.standard_normal(n), dtype), jnp.asarray(r, dtype)

    return make


def _spiked_matrix_and_radius(shape=(5, 6), r=0.8, scale=1.0):
    """A clear top singular value, so float32 power iteration matches float64."""

    def make(rng, dtype):
        spike = 3.0 * np.outer(rng.standard_normal(shape[-2]), rng.standard_normal(shape[-1]))
        g = scale * (spike / np.sqrt(np.prod(shape)) + 0.3 * rng.standard_normal(shape))
        return jnp.asarray(g, dtype), jnp.asarray(r, dtype)

    return make


def _vector_and_box(n=7):
    def make(rng, dtype):
        return (
            jnp.asarray(2 * rng.standard_normal(n), dtype),
            jnp.asarray(-rng.uniform(0.2, 1.0, n), dtype),
            jnp.asarray(rng.uniform(0.2, 1.0, n), dtype),
        )

    return make


def _lmo_contracts() -> list[Contract]:
    from jaxspec.frank_wolfe import lmo

    vector_sets = {
        "l1_ball": lmo.l1_ball,
        "simplex": lmo.simplex,
        "simplex[<=]": lambda r: lmo.simplex(r, equality=False),
        "l2_ball": lmo.l2_ball,
        "linf_ball": lmo.linf_ball,
        "k_sparse": lambda r: lmo.k_sparse(3, r),
    }
    matrix_sets = {
        "nuclear_ball[power]": lmo.nuclear_ball,
        "nuclear_ball[lanczos]": lambda r: lmo.nuclear_ball(r, method="lanczos"),
        "nuclear_ball[svd]": lambda r: lmo.nuclear_ball(r, method="svd"),
        "spectral_ball[svd]": lmo.spectral_ball,
        "spectral_ball[polar]": lambda r: lmo.spectral_ball(r, method="polar"),
        "spectral_ball[newton_schulz]": lambda r: lmo.spectral_ball(r, method="newton_schulz"),
    }
    out = []
    for name, factory in vector_sets.items():
        out.append(
            Contract(
                f"lmo.{name}",
                lambda g, r, f=factory: f(r)(g),
                _vector_and_radius(),
                batch=name == "linf_ball",
                grad=False,
                vmap_argnums=(0, 1),
            )
        )
        out.append(
            Contract(
                f"lmo.{name}.project",
                lambda y, r, f=factory: f(r).project(y),
                _vector_and_radius(scale=3.0),
                batch=name == "linf_ball",
                vmap_argnums=(0, 1),
            )
        )
    for name, factory in matrix_sets.items():
        out.append(
            Contract(
                f"lmo.{name}",
                lambda g, r, f=factory: f(r)(g),
                _spiked_matrix_and_radius(),
                grad=False,
                vmap_argnums=(0, 1),
            )
        )
    for name in ["nuclear_ball", "spectral_ball"]:
        factory = getattr(lmo, name)
        out.append(
            Contract(
                f"lmo.{name}.project",
                lambda y, r, f=factory: f(r).project(y),
                _spiked_matrix_and_radius(scale=3.0),
                vmap_argnums=(0, 1),
            )
        )
    out.append(
        Contract(
            "lmo.box",
            lambda g, lo, hi: lmo.box(lo, hi)(g),
            _vector_and_box(),
            grad=False,
            vmap_argnums=(0, 1, 2),
        )
    )
    out.append(
        Contract(
            "lmo.box.project",
            lambda y, lo, hi: lmo.box(lo, hi).project(y),
            _vector_and_box(),
            vmap_argnums=(0, 1, 2),
        )
    )
    return out


REGISTRY += _lmo_contracts()


def _solver_contracts() -> list[Contract]:
    """frank_wolfe.solve as a function of the problem data (theta) and the radius."""
    from jaxspec import frank_wolfe
    from jaxspec.frank_wolfe import lmo

    def make(rng, dtype):
        return (jnp.asarray(0.4 * rng.standard_normal(5), dtype), jnp.asarray(1.2, dtype))

    def solver(variant, step, adjoint="implicit"):
        def fn(theta, radius):
            tol = 1e-6 if theta.dtype == jnp.float32 else 1e-12
            sol = frank_wolfe.solve(
                lambda x: 0.5 * jnp.sum((x - theta) ** 2),
                radius * jnp.eye(5, dtype=theta.dtype)[0],
                lmo.simplex(radius),
                variant=variant,
                step=step,
                lipschitz=1.0,
                tol=tol,
                max_steps=500 if adjoint == "implicit" else 60,
                adjoint=adjoint,
            )
            return sol.x, sol.value

        return fn

    rtol = {"float32": 1e-4, "float64": 1e-9}
    return [
        Contract(
            f"frank_wolfe.solve[{variant},{step}]",
            solver(variant, step),
            make,
            batch=False,
            vmap_argnums=(0, 1),
            rtol=rtol,
        )
        for variant, step in [("away", "exact"), ("pairwise", "short"), ("away", "backtracking")]
    ] + [
        Contract(
            "frank_wolfe.solve[unroll]",
            solver("away", "exact", adjoint="unroll"),
            make,
            batch=False,
            vmap_argnums=(0, 1),
            rtol=rtol,
        )
    ]


REGISTRY += _solver_contracts()


def _stochastic_contracts() -> list[Contract]:
    """Stochastic FW (transform and streaming solver) and the dictionary-learning solvers."""
    from jaxspec import frank_wolfe
    from jaxspec.frank_wolfe import lmo

    def stream(rng, dtype):
        return (jnp.asarray(0.2 + 0.1 * rng.standard_normal((60, 4)), dtype),)

    def dictionary(rng, dtype):
        d0 = np.linalg.qr(rng.standard_normal((4, 4)))[0]
        codes = rng.standard_normal((4, 200)) * (rng.random((4, 200)) < 0.4)
        return (jnp.asarray(d0 @ codes, dtype),)

    a0 = np.linalg.qr(np.random.default_rng(0).random((4, 4)))[0]

    def transform(g, p):
        opt = frank_wolfe.stochastic_frank_wolfe(lmo.l1_ball(1.0), "online_odl")
        updates, state = opt.update(g, opt.init(p), p)
        return updates, state.averaged_grad

    def solve(ys):
        sol = frank_wolfe.stochastic_solve(
            lambda x, y: 0.5 * jnp.sum((x - y) ** 2),
            jnp.eye(4, dtype=ys.dtype)[0],
            lmo.simplex(1.0),
            ys,
        )
        return sol.x, sol.value

    rtol = {"float32": 1e-4, "float64": 1e-9}
    return [
        Contract(
            "frank_wolfe.stochastic_frank_wolfe",
            transform,
            lambda rng, dtype: (
                jnp.asarray(rng.standard_normal(5), dtype),
                jnp.asarray(np.eye(5)[0] * 0.5, dtype),
            ),
            batch=False,
            grad=False,  # piecewise-constant oracle: zero gradient almost everywhere
        ),
        Contract("frank_wolfe.stochastic_solve", solve, stream, batch=False, grad=False, rtol=rtol),
        Contract(
            "frank_wolfe.online_orthogonal_dictionary",
            lambda y: (
                frank_wolfe.online_orthogonal_dictionary(
                    y, jnp.asarray(a0, y.dtype), batch_size=10
                ).x
            ),
            dictionary,
            batch=False,
            grad=False,
            rtol=rtol,
        ),
        Contract(
            "frank_wolfe.msp",
            lambda y: frank_wolfe.msp(y, jnp.asarray(a0, y.dtype), max_steps=20, tol=1e-30).x,
            dictionary,
            batch=False,
            grad=False,
            rtol={"float32": 1e-3, "float64": 1e-8},
        ),
    ]


REGISTRY += _stochastic_contracts()


# -- manifolds: geometry (points on St(n, p), tangent steps), charts and Procrustes.


def _point_and_step(n=6, p=3, scale=0.4):
    def make(rng, dtype):
        x = np.linalg.qr(rng.standard_normal((n, p)))[0]
        g = rng.standard_normal((n, p))
        u = g - x @ (x.T @ g + g.T @ x) / 2
        return jnp.asarray(x, dtype), jnp.asarray(scale * u, dtype)

    return make


def _rotation(n=5, scale=0.5):
    def make(rng, dtype):
        a = scale * rng.standard_normal((n, n))
        r = np.linalg.solve(np.eye(n) - (a - a.T) / 2, np.eye(n) + (a - a.T) / 2)
        return (jnp.asarray(r, dtype),)

    return make


def _manifold_contracts() -> list[Contract]:
    from jaxspec import manifolds

    geometry = {
        "qr_retraction": manifolds.qr_retraction,
        "polar_retraction[svd]": manifolds.polar_retraction,
        "polar_retraction[newton_schulz]": lambda x, u: manifolds.polar_retraction(
            x, u, method="newton_schulz"
        ),
        "cayley_retraction[solve]": lambda x, u: manifolds.cayley_retraction(x, u, method="solve"),
        "cayley_retraction[woodbury]": lambda x, u: manifolds.cayley_retraction(
            x, u, method="woodbury"
        ),
        "exp_retraction": manifolds.exp_retraction,
        "iterative_cayley_retraction": manifolds.iterative_cayley_retraction,
        "Stiefel.egrad_to_rgrad[canonical]": manifolds.Stiefel(
            6, 3, metric="canonical"
        ).egrad_to_rgrad,
        "Stiefel.project": manifolds.Stiefel(6, 3).project,
    }
    out = [
        Contract(f"manifolds.{name}", fn, _point_and_step(), vmap_argnums=(0, 1))
        for name, fn in geometry.items()
    ]
    out += [
        Contract("manifolds.exp_retraction[square]", manifolds.exp_retraction,
                 _point_and_step(4, 4), vmap_argnums=(0, 1)),
        Contract("manifolds.orthogonality_error", manifolds.orthogonality_error, _matrix((7, 3))),
        Contract("manifolds.polar_factor", manifolds.polar_factor, _matrix((7, 3))),
        Contract("manifolds.polar_factor[special]", lambda m: manifolds.polar_factor(m, True),
                 _matrix((4, 4))),
        Contract("manifolds.procrustes", manifolds.procrustes, _grad_and_params((8, 3)),
                 vmap_argnums=(0, 1)),
        Contract("manifolds.cayley", manifolds.cayley, _matrix((5, 5))),
        Contract("manifolds.inverse_cayley", lambda r: manifolds.inverse_cayley(r)[0], _rotation()),
        Contract("manifolds.log_orthogonal", manifolds.log_orthogonal, _rotation(), grad=False),
        Contract("manifolds.householder_product", lambda v: manifolds.householder_product(v, 3),
                 _matrix((6, 4))),
    ]  # fmt: skip
    return out


REGISTRY += _manifold_contracts()


def _manifold_transform_update(make_tx):
    """Registered function of a Riemannian transform: one update of a point on St(6, 3)."""

    def fn(g, x):
        tx = make_tx()
        updates, _ = tx.update({"w": g}, tx.init({"w": x}), {"w": x})
        return updates["w"]

    return fn


def _grad_and_point(n=6, p=3):
    def make(rng, dtype):
        x = np.linalg.qr(rng.standard_normal((n, p)))[0]
        return jnp.asarray(rng.standard_normal((n, p)), dtype), jnp.asarray(x, dtype)

    return make


def _manifold_optimizer_contracts() -> list[Contract]:
    from jaxspec import manifolds

    transforms = {
        "riemannian_sgd[qr]": lambda: manifolds.riemannian_sgd(0.1, momentum=0.5),
        "riemannian_sgd[cayley]": lambda: manifolds.riemannian_sgd(0.1, retraction="cayley"),
        "riemannian_adam": lambda: manifolds.riemannian_adam(0.1),
        "landing": lambda: manifolds.landing(0.1),
    }
    return [
        Contract(f"manifolds.{name}", _manifold_transform_update(make), _grad_and_point(),
                 batch=False, vmap_argnums=(0, 1))
        for name, make in transforms.items()
    ]  # fmt: skip


REGISTRY += _manifold_optimizer_contracts()


def _rotations(tasks=3, n=4, scale=0.4):
    def make(rng, dtype):
        a = scale * rng.standard_normal((tasks, n, n))
        a = (a - np.swapaxes(a, 1, 2)) / 2
        r = np.linalg.solve(np.eye(n) - a, np.eye(n) + a)
        return (jnp.asarray(r, dtype),)

    return make


def _base_and_finetuned(tasks=3, shape=(6, 4)):
    def make(rng, dtype):
        base = rng.standard_normal(shape)
        return (
            jnp.asarray(base, dtype),
            jnp.asarray(base + 0.3 * rng.standard_normal((tasks, *shape)), dtype),
        )

    return make


def _brockett_data(n=6):
    def make(rng, dtype):
        g = rng.standard_normal((n, n))
        return (jnp.asarray((g + g.T) / 2, dtype),)

    return make


def _manifold_solver_contracts() -> list[Contract]:
    from jaxspec import manifolds

    st = manifolds.Stiefel(6, 2)
    mu = np.array([2.0, 1.0])
    x0 = np.linalg.qr(np.random.default_rng(9).standard_normal((6, 2)))[0]

    def minimize(method, linesearch=None):
        def fn(a):
            tol = 1e-3 if a.dtype == jnp.float32 else 1e-9
            sol = manifolds.minimize(
                lambda x, a: jnp.sum(x * (a @ x) * jnp.asarray(mu, a.dtype)),
                jnp.asarray(x0, a.dtype), st, args=a, method=method, tol=tol, max_steps=500,
                linesearch=linesearch,
            )  # fmt: skip
            return sol.value

        return fn

    loose = {"float32": 1e-3, "float64": 1e-8}
    return [
        Contract("manifolds.minimize[cg]", minimize("cg"), _brockett_data(), batch=False,
                 grad=False, rtol=loose),  # a while_loop: not reverse-differentiable
        Contract("manifolds.minimize[gd]", minimize("gd"), _brockett_data(), batch=False,
                 grad=False, rtol=loose),
        Contract("manifolds.minimize[gd, bb]", minimize("gd", "bb"), _brockett_data(),
                 batch=False, grad=False, rtol=loose),
        Contract("manifolds.orthomerge", lambda r: manifolds.orthomerge(r).rotation,
                 _rotations(), batch=False),  # axis 0 is the task axis
        Contract("manifolds.orthomerge[exp]",
                 lambda r: manifolds.orthomerge(r, chart="exp").rotation, _rotations(),
                 batch=False, grad=False),  # log through eigh: no gradient at repeated angles
        Contract("manifolds.orthomerge_weights",
                 lambda w0, w: manifolds.orthomerge_weights({"w": w0}, {"w": w})["w"],
                 _base_and_finetuned(), batch=False, vmap_argnums=(0, 1)),
    ]  # fmt: skip


REGISTRY += _manifold_solver_contracts()


def _sbl_contracts() -> list[Contract]:
    from jaxspec import sbl

    rng = np.random.default_rng(11)
    a = rng.standard_normal((10, 16))
    a /= np.linalg.norm(a, axis=0)
    x = np.zeros(16)
    x[[1, 6, 11]] = [1.0, -0.8, 0.6]
    blocks = rng.standard_normal((12, 16))
    factors = [rng.standard_normal((3, 4)), rng.standard_normal((4, 5))]
    xk = np.kron(np.eye(4)[1], np.eye(5)[3])
    big = np.kron(factors[0], factors[1])

    def data(clean, scale=0.01):
        def make(r, dtype):
            return (jnp.asarray(clean + scale * r.standard_normal(clean.shape), dtype),)

        return make

    def tol(y):
        return 1e-4 if y.dtype == jnp.float32 else 1e-12

    def classic(update):
        def fn(y):
            return sbl.sbl(
                jnp.asarray(a, y.dtype), y, noise_var=1e-4, update=update, tol=tol(y),
                max_steps=5000, prune=1e-6,
            ).mean  # fmt: skip

        return fn

    def fast(y):
        return sbl.fast_sbl(jnp.asarray(a, y.dtype), y, noise_var=1e-4, capacity=8).mean

    def block(y):
        return sbl.block_sbl(jnp.asarray(blocks, y.dtype), y, 4, noise_var=1e-4).mean

    def kronecker(y):
        fs = [jnp.asarray(f, y.dtype) for f in factors]
        return sbl.kronecker_sbl(fs, y, noise_var=1e-4).mean

    loose = {"float32": 1e-3, "float64": 1e-8}
    blocky = np.zeros(16)
    blocky[4:8] = [1.0, 0.9, 0.8, 0.7]
    return [
        # implicit gradients at the stationary point of the type-II cost (MacKay converges
        # tightly; EM sheds atoms like 1/t, so its fixed point is only approached)
        Contract("sbl.sbl[mackay]", classic("mackay"), data(a @ x), batch=False, rtol=loose),
        Contract("sbl.sbl[em]", classic("em"), data(a @ x), batch=False, grad=False,
                 rtol=loose),
        Contract("sbl.fast_sbl", fast, data(a @ x), batch=False, grad=False, rtol=loose),
        Contract("sbl.block_sbl", block, data(blocks @ blocky), batch=False, grad=False,
                 rtol=loose),
        Contract("sbl.kronecker_sbl", kronecker, data(big @ xk), batch=False, grad=False,
                 rtol=loose),
    ]  # fmt: skip


REGISTRY += _sbl_contracts()


def _pursuit_contracts() -> list[Contract]:
    """Sparse coding of signals (the first argument) on a fixed unit-norm dictionary.

    Greedy pursuit: codes are linear in ``y`` once the selections are fixed, so gradients are
    checked too (the example is far from any selection tie). Thresholds: elementwise, with
    examples away from their kinks. ISTA/FISTA: ``while_loop``, no reverse mode. LISTA: a
    ``scan`` of thresholded layers, differentiable in ``y``.
    """
    from jaxspec import pursuit

    rng = np.random.default_rng(21)
    dic = rng.standard_normal((8, 14))
    dic /= np.linalg.norm(dic, axis=0)
    x = np.zeros(14)
    x[[2, 9]] = [1.5, -1.0]
    y0 = dic @ x + 0.05 * rng.standard_normal(8)

    def signals(rng, dtype):
        return (jnp.asarray(y0 + 0.01 * rng.standard_normal((3, 8)), dtype),)

    def omp(y):
        return pursuit.omp(jnp.asarray(dic, y.dtype), y, 3)

    def mp(y):
        return pursuit.mp(jnp.asarray(dic, y.dtype), y, 4)

    # -- thresholds: elementwise, (v, lam[, a_norm, step]); the examples sit away from every
    # threshold and kink (|v| drawn from bands between them), so the FD gradients are those of
    # a smooth piece and bfloat16 rounding cannot cross a threshold.
    def _banded(bands, shape=(4, 6)):
        def draw(rng):
            lo, hi = np.asarray(bands, float)[rng.integers(len(bands), size=shape)].T
            mag = rng.uniform(lo.T, hi.T)
            return np.where(rng.random(shape) < 0.5, -mag, mag)

        return draw

    def _thresholded(bands, lam):
        draw = _banded(bands)

        def make(rng, dtype):
            return jnp.asarray(draw(rng), dtype), jnp.asarray(lam, dtype)

        return make

    # cel0 with step 0.5, lam 0.5 and atom norms a in [0.9, 1.1] (per column): 0 below
    # 0.5 a <= 0.55, shrunk up to 1 / a >= 0.91, kept above 1 / a <= 1.12.
    cel0_draw = _banded([(0.05, 0.35), (0.65, 0.82), (1.4, 3.0)])

    def cel0_args(rng, dtype):
        return (
            jnp.asarray(cel0_draw(rng), dtype),
            jnp.asarray(0.5, dtype),
            jnp.asarray(np.linspace(0.9, 1.1, 6), dtype),
            jnp.asarray(0.5, dtype),
        )

    thresholds = [
        # soft: 0 below lam = 1, shifted above
        Contract(
            "pursuit.soft_threshold",
            pursuit.soft_threshold,
            _thresholded([(0.05, 0.7), (1.3, 3.0)], 1.0),
            dtypes=WITH_BF16,
        ),
        # hard: threshold sqrt(2 lam) = 1
        Contract(
            "pursuit.hard_threshold",
            pursuit.hard_threshold,
            _thresholded([(0.05, 0.7), (1.3, 3.0)], 0.5),
            dtypes=WITH_BF16,
        ),
        # half: threshold 3/2 lam^(2/3) = 0.945 for lam = 0.5
        Contract(
            "pursuit.half_threshold",
            pursuit.half_threshold,
            _thresholded([(0.05, 0.6), (1.5, 3.0)], 0.5),
            dtypes=WITH_BF16,
        ),
        Contract("pursuit.cel0_threshold", pursuit.cel0_threshold, cel0_args, dtypes=WITH_BF16),
    ]

    # -- ISTA / FISTA: codes (and objective) of the signals; tol = 0 runs the full budget, so
    # float32 and float64 take the same steps. while_loop: no reverse mode (grad=False).
    lam = 0.1

    def ista(y):
        sol = pursuit.ista(jnp.asarray(dic, y.dtype), y, lam, max_steps=40, tol=0.0)
        return sol.codes, sol.objective

    def fista(y):
        sol = pursuit.fista(jnp.asarray(dic, y.dtype), y, lam, max_steps=40, tol=0.0)
        return sol.codes, sol.objective

    def ista_tol(y):  # per-signal stopping: vmap == loop must hold with frozen signals too
        sol = pursuit.ista(jnp.asarray(dic, y.dtype), y, lam, max_steps=400, tol=1e-3)
        return sol.codes, sol.objective

    # -- LISTA from the dictionary (3 ISTA layers), a function of the signals; soft
    # thresholds, so the codes are piecewise linear in y (no pre-activation near a kink here).
    def lista(y):
        net = pursuit.LISTA.from_dictionary(jnp.asarray(dic, y.dtype), lam, num_layers=3)
        return net(y)

    def lista_half(y):
        net = pursuit.LISTA.from_dictionary(
            jnp.asarray(dic, y.dtype), 0.05, num_layers=2, threshold="half"
        )
        return net(y)

    iterative = [
        Contract("pursuit.ista", ista, signals, grad=False),
        Contract("pursuit.fista", fista, signals, grad=False),
        Contract("pursuit.ista[tol]", ista_tol, signals, dtypes=(jnp.float64,), grad=False),
        Contract("pursuit.LISTA", lista, signals),
        Contract("pursuit.LISTA[half]", lista_half, signals),
    ]

    def unrolled(gradient):
        def fn(y):
            out = pursuit.unrolled_mp(
                jnp.asarray(dic, y.dtype), y, 4, threshold=0.05, gradient=gradient
            )
            return out.codes, out.residual

        return fn

    unrolled_contracts = [
        Contract(f"pursuit.unrolled_mp[{g}]", unrolled(g), signals) for g in ("full", "lean")
    ]

    def correlations(rng, dtype):  # D^T y of the signals above
        return (signals(rng, dtype)[0] @ jnp.asarray(dic, dtype),)

    def omp_gram(c):  # the correlations are the argument; |y|^2 a fixed scalar
        g = jnp.asarray(dic.T @ dic, c.dtype)
        return pursuit.omp_gram(g, c, jnp.asarray(1.0, c.dtype), 3)

    return [
        Contract("pursuit.omp", omp, signals),
        Contract("pursuit.omp_gram", lambda c: omp_gram(c).codes, correlations),
        Contract("pursuit.mp", mp, signals),
        *thresholds,
        *iterative,
        *unrolled_contracts,
    ]


REGISTRY += _pursuit_contracts()


# -- The rest of the public array functions: transforms, objectives, metrics, SAE forward
# passes and small geometry helpers.


def _cast_model(model, dtype):
    """``model`` (an equinox module built in float64) with its float arrays in ``dtype``."""
    return jax.tree.map(lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a, model)


def _remaining_contracts() -> list[Contract]:
    from jaxspec import frank_wolfe, manifolds, pursuit

    rng = np.random.default_rng(12)
    dic = rng.standard_normal((8, 16))
    dic /= np.linalg.norm(dic, axis=0)

    def signals(r, dtype):
        return (jnp.asarray(r.standard_normal(8), dtype),)

    def sparse_signal(r, dtype):  # a 3-sparse combination: OMP/MP pick well-separated atoms
        z = np.zeros(16)
        z[r.choice(16, 3, replace=False)] = r.uniform(1.0, 2.0, 3) * r.choice([-1, 1], 3)
        return (jnp.asarray(dic @ z, dtype),)

    def solved(solver):
        def fn(y):
            sol = solver(jnp.asarray(dic, y.dtype), y, 3)
            return sol.codes, sol.residual_sq

        return fn

    key = jax.random.key(0)
    saes = {
        "MPSAE": pursuit.MPSAE.init(key, 8, 16, threshold=0.05, max_steps=3, dtype=jnp.float64),
        "ReLUSAE": pursuit.ReLUSAE.init(key, 8, 16, dtype=jnp.float64),
        "TopKSAE": pursuit.TopKSAE.init(key, 8, 16, k=3, dtype=jnp.float64),
        "BatchTopKSAE": pursuit.BatchTopKSAE.init(key, 8, 16, k=3, dtype=jnp.float64),
        "JumpReLUSAE": pursuit.JumpReLUSAE.init(key, 8, 16, dtype=jnp.float64),
    }

    def forward(model):
        def fn(x):
            return _cast_model(model, x.dtype)(x)

        return fn

    def metrics(x):
        m = pursuit.sae_metrics(_cast_model(saes["ReLUSAE"], x.dtype), x)
        return {k: v for k, v in m.items() if jnp.issubdtype(v.dtype, jnp.floating)}

    def batch_of_signals(r, dtype):
        return (jnp.asarray(r.standard_normal((5, 8)), dtype),)

    def recon(x, x_hat, codes):
        m = pursuit.reconstruction_metrics(x, x_hat, codes)
        return {k: v for k, v in m.items() if jnp.issubdtype(v.dtype, jnp.floating)}

    def recon_args(r, dtype):
        x = r.standard_normal((5, 8))
        codes = np.maximum(r.standard_normal((5, 16)), 0.0)
        return tuple(jnp.asarray(a, dtype) for a in (x, x + 0.1 * r.standard_normal((5, 8)), codes))

    # Frank-Wolfe objectives: A on the orthogonal group, Y data (n, m).
    def ortho_and_data(r, dtype):
        a = np.linalg.qr(r.standard_normal((5, 5)))[0]
        return jnp.asarray(a, dtype), jnp.asarray(r.standard_normal((5, 7)), dtype)

    def two_orthogonal(r, dtype):
        return tuple(jnp.asarray(np.linalg.qr(r.standard_normal((5, 5)))[0], dtype)
                     for _ in range(2))  # fmt: skip

    def least_squares(x, matrix, target):
        fun = frank_wolfe.least_squares(matrix, target)
        return fun.value_and_grad_from_image(fun.image(x))

    def ls_args(r, dtype):
        return tuple(
            jnp.asarray(a, dtype)
            for a in (r.standard_normal(6), r.standard_normal((4, 6)), r.standard_normal(4))
        )

    def schedule(name):
        def fn(t):
            return frank_wolfe.stochastic_schedule(name, t)

        return fn

    def steps(r, dtype):
        return (jnp.asarray(r.uniform(1.0, 50.0), dtype),)

    def landing_step_args(r, dtype):
        return tuple(jnp.asarray(r.uniform(lo, hi), dtype) for lo, hi in
                     ((0.0, 0.4), (0.5, 3.0), (0.5, 1.5), (0.3, 0.6)))  # fmt: skip

    def generators(r, dtype):
        a = 0.4 * r.standard_normal((3, 4, 4))
        return (jnp.asarray((a - np.swapaxes(a, 1, 2)) / 2, dtype),)

    orthogonal = manifolds.Orthogonal(5)

    def rotation_and_step(r, dtype):
        x = np.linalg.qr(r.standard_normal((5, 5)))[0]
        return jnp.asarray(x, dtype), jnp.asarray(0.4 * r.standard_normal((5, 5)), dtype)

    return [
        Contract("spectra", _transform_update(lambda: spectral.spectra(optax.sgd(1.0), 1e-2,
                 c=1.0)), _grad_and_params(), batch=False),
        Contract("scale_by_signum", _transform_update(lambda: spectral.scale_by_signum(0.9)),
                 _grad_and_params(), batch=False, grad=False),  # sign(): zero a.e.
        Contract("pursuit.omp_solve", solved(pursuit.omp_solve), sparse_signal),
        Contract("pursuit.mp_solve", solved(pursuit.mp_solve), sparse_signal),
        *[Contract(f"pursuit.{name}", forward(model), signals) for name, model in saes.items()
          if name not in ("BatchTopKSAE",)],
        # BatchTopK's inference encoder thresholds each sample; its batch-level top-k is
        # encode_batch (one selection over the batch: no per-sample vmap contract).
        Contract("pursuit.BatchTopKSAE", forward(saes["BatchTopKSAE"]), signals),
        Contract("pursuit.sae_metrics", metrics, batch_of_signals, batch=False),
        Contract("pursuit.reconstruction_metrics", recon, recon_args, batch=False,
                 vmap_argnums=(0, 1, 2)),
        Contract("frank_wolfe.lp_objective", frank_wolfe.lp_objective, ortho_and_data,
                 batch=False, vmap_argnums=(0, 1)),
        Contract("frank_wolfe.lp_gradient", frank_wolfe.lp_gradient, ortho_and_data,
                 batch=False, vmap_argnums=(0, 1)),
        Contract("frank_wolfe.dictionary_recovery_error", frank_wolfe.dictionary_recovery_error,
                 two_orthogonal, vmap_argnums=(0, 1)),
        Contract("frank_wolfe.least_squares", least_squares, ls_args, batch=False,
                 vmap_argnums=(0, 1, 2)),
        *[Contract(f"frank_wolfe.stochastic_schedule[{name}]", schedule(name), steps, grad=False)
          for name in ("mhk", "online_odl", "open_loop")],
        Contract("manifolds.skew", manifolds.skew, _matrix((5, 5))),
        Contract("manifolds.sym", manifolds.sym, _matrix((5, 5))),
        Contract("manifolds.landing_field", manifolds.landing_field, _point_and_step(),
                 vmap_argnums=(0, 1)),
        Contract("manifolds.landing_safe_step", manifolds.landing_safe_step, landing_step_args,
                 vmap_argnums=(0, 1, 2, 3)),
        Contract("manifolds.merge_generators", lambda g: manifolds.merge_generators({"w": g})["w"],
                 generators, batch=False),  # axis 0 is the task axis
        Contract("manifolds.task_arithmetic",
                 lambda w0, w: manifolds.task_arithmetic({"w": w0}, {"w": w}, 0.5)["w"],
                 _base_and_finetuned(), batch=False, vmap_argnums=(0, 1)),
        Contract("manifolds.Orthogonal.project", orthogonal.project, rotation_and_step,
                 vmap_argnums=(0, 1)),
        Contract("manifolds.Orthogonal.retract", orthogonal.retract, rotation_and_step,
                 vmap_argnums=(0, 1)),
    ]  # fmt: skip


REGISTRY += _remaining_contracts()


# -- Coverage: every public name of every module is under contract or exempt, with the reason.

# Public names under contract that a registry id does not spell out.
ALIASES = {
    "lmo.l1_ball": ("frank_wolfe.lmo.L1Ball",),
    "lmo.simplex": ("frank_wolfe.lmo.Simplex",),
    "lmo.l2_ball": ("frank_wolfe.lmo.L2Ball",),
    "lmo.linf_ball": ("frank_wolfe.lmo.Box",),
    "lmo.box": ("frank_wolfe.lmo.Box",),
    "lmo.k_sparse": ("frank_wolfe.lmo.KSparse",),
    "lmo.nuclear_ball": ("frank_wolfe.lmo.NuclearBall",),
    "lmo.spectral_ball": ("frank_wolfe.lmo.SpectralBall",),
    "frank_wolfe.least_squares": ("frank_wolfe.LinearComposite",),
    "manifolds.Stiefel": ("manifolds.AbstractOrthonormalFrames",),
    "pursuit.unrolled_mp": ("pursuit.UnrolledMPResult",),
}

_CONTAINER = "result/state container (NamedTuple or module of arrays), no computation"
EXEMPT = {
    "spectral.SCHEDULES": "a tuple of names",
    "spectral.PolarSolution": _CONTAINER,
    "spectral.SpectraState": _CONTAINER,
    "spectral.apply_schedule_scalar": "host NumPy (float64) design helper for schedules; "
    "tested against closed forms in tests/spectral/test_schedules.py",
    "spectral.singular_value_bounds": "host NumPy design helper; tests/spectral/test_schedules.py",
    "spectral.polar_express_schedule": "host NumPy minimax design (static coefficients); "
    "tests/spectral/test_schedules.py",
    "spectral.schedule_coefficients": "returns a static NumPy table; "
    "tests/spectral/test_schedules.py",
    "frank_wolfe.Solution": _CONTAINER,
    "frank_wolfe.StochasticFrankWolfeState": _CONTAINER,
    "frank_wolfe.lmo": "a namespace (its oracles are under contract)",
    "frank_wolfe.lmo.LinearMinimizationOracle": "abstract base class",
    "frank_wolfe.lmo.NuclearState": _CONTAINER,
    "sbl.FORMS": "a tuple of names",
    "sbl.UPDATES": "a tuple of names",
    "sbl.SBLSolution": _CONTAINER,
    "sbl.BlockSBLSolution": _CONTAINER,
    "sbl.KroneckerSBLSolution": _CONTAINER,
    "pursuit.AbstractSAE": "abstract base class (its five subclasses are under contract)",
    "pursuit.IstaSolution": _CONTAINER,
    "pursuit.PursuitSolution": _CONTAINER,
    "pursuit.get_threshold": "a lookup by name of the four thresholds under contract",
    "pursuit.train_sae": "a training loop (Python loop over jitted optax steps); "
    "tests/pursuit/test_sae_train.py",
    "pursuit.fit_lista": "a training loop; tests/pursuit/test_lista.py",
    "manifolds.METRICS": "a tuple of names",
    "manifolds.RETRACTIONS": "a tuple of names",
    "manifolds.BETA_RULES": "a tuple of names",
    "manifolds.METHODS": "a tuple of names",
    "manifolds.ManifoldSolution": _CONTAINER,
    "manifolds.LandingState": _CONTAINER,
    "manifolds.RiemannianAdamState": _CONTAINER,
    "manifolds.RiemannianSGDState": _CONTAINER,
    "manifolds.OrthoMergeSolution": _CONTAINER,
}

_SPECTRAL = {
    "orthogonalize", "polar", "spectral_norm", "soft_clip", "hard_clip", "clip_updates",
    "clip_gradients", "spectra_adamw", "spectra_signum", "spectra", "scale_by_signum",
}  # fmt: skip


def covered_names() -> set[str]:
    """Public names (``module.name``) that some registry entry exercises."""
    out = set()
    for contract in REGISTRY:
        base = contract.name.split("[")[0]
        parts = base.split(".")
        if parts[0] in _SPECTRAL:
            out.add(f"spectral.{parts[0]}")
        elif parts[0] == "lmo":
            out.add(f"frank_wolfe.lmo.{parts[1]}")
            out.update(ALIASES.get(f"lmo.{parts[1]}", ()))
        else:
            out.add(".".join(parts[:2]))
            out.update(ALIASES.get(".".join(parts[:2]), ()))
    return out
