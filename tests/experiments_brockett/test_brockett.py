"""The brockett experiment at tiny sizes: closed-form optimum and every method."""

from __future__ import annotations

import functools
import itertools

import jax
import numpy as np
import pytest

from tests._experiments import load_experiment

pytestmark = pytest.mark.slow  # an experiment end to end: CI's slow step

exp = load_experiment("brockett")


def test_closed_form_optimum_and_nearest_saddle_by_enumeration():
    """f* and the nearest saddle against all assignments of eigenvectors to the columns."""
    a, mu, x0, f_star, saddle = exp.make_problem(
        exp.DataConfig(n=6, p=3), jax.random.key(0), np.float64
    )
    lam, vecs = np.linalg.eigh(np.asarray(a))
    values = sorted(
        float(exp.brockett(vecs[:, list(cols)], a, mu))
        for cols in itertools.permutations(range(6), 3)
    )
    assert float(f_star) == pytest.approx(values[0], rel=1e-12)
    assert float(saddle) == pytest.approx(values[1] - values[0], rel=1e-9)
    np.testing.assert_allclose(np.asarray(x0).T @ np.asarray(x0), np.eye(3), atol=1e-12)


@pytest.mark.parametrize("method", exp.METHODS)
def test_every_method_approaches_the_optimum(method):
    lr = {"rsgd_momentum": 0.01, "radam": 0.01, "landing": 0.04}.get(method, 0.02)
    cfg = exp.Config(
        data=exp.DataConfig(n=12, p=3),
        method=exp.MethodConfig(name=method, learning_rate=lr),
        run=exp.RunConfig(steps=800, record_every=20, dtype="float32", tol=1e-4),
    )
    out = jax.jit(functools.partial(exp.run, cfg))(jax.random.key(2))
    final = float(out["final_gap"])
    assert -1e-4 < final < (0.05 if method == "radam" else 1e-2)
    assert float(out["final_orthogonality"]) < (1e-2 if method == "landing" else 1e-4)


def test_bad_method_is_rejected():
    with pytest.raises(ValueError, match="method.name"):
        exp.run(exp.Config(method=exp.MethodConfig(name="bfgs")), jax.random.key(0))
