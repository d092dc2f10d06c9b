"""Iterate-by-iterate agreement with copt (an independent NumPy implementation)."""

import warnings

import jax.numpy as jnp
import numpy as np
import pytest

from jaxspec import frank_wolfe
from jaxspec.frank_wolfe import lmo

copt = pytest.importorskip("copt")


def _problem(seed=0, m=40, n=80):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, n))
    truth = np.zeros(n)
    truth[rng.choice(n, 6, replace=False)] = rng.standard_normal(6)
    b = a @ truth + 0.05 * rng.standard_normal(m)
    return a, b, 0.8 * np.abs(truth).sum()


@pytest.mark.parametrize(
    ("copt_step", "step", "given_lipschitz"),
    [
        ("DR", "short", True),
        ("sublinear", "open_loop", False),
        ("backtracking", "backtracking", True),
        ("backtracking", "backtracking", False),
    ],
)
@pytest.mark.parametrize("objective", ("composite", "gram", "generic"))
def test_vanilla_iterates_match_copt(copt_step, step, given_lipschitz, objective):
    a, b, radius = _problem()
    lip = np.linalg.norm(a, 2) ** 2

    def f_grad(x):
        r = a @ x - b
        return 0.5 * r @ r, a.T @ r

    steps = 60
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        ref = copt.minimize_frank_wolfe(
            f_grad, np.zeros(a.shape[1]), copt.constraint.L1Ball(radius).lmo, jac=True,
            step=copt_step, lipschitz=lip if given_lipschitz else None, max_iter=steps, tol=0.0,
        )  # fmt: skip
    fun = frank_wolfe.least_squares(a, b, gram_cache=4 if objective == "gram" else 0)
    if objective == "generic":
        fun = lambda x, fun=fun: fun(x)  # noqa: E731
    sol = frank_wolfe.solve(
        fun, jnp.zeros(a.shape[1]), lmo.l1_ball(radius), step=step,
        lipschitz=lip if given_lipschitz else None, max_steps=steps, tol=0.0,
    )  # fmt: skip
    assert int(sol.num_steps) == steps
    np.testing.assert_allclose(sol.x, ref.x, rtol=1e-8, atol=1e-10)
    assert float(sol.value) == pytest.approx(f_grad(ref.x)[0], rel=1e-10)
