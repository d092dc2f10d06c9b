"""The procrustes_landing experiment at tiny sizes, and its closed-form optimum."""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest
import scipy.linalg as sla

from tests._experiments import load_experiment

pytestmark = pytest.mark.slow  # an experiment end to end: CI's slow step

exp = load_experiment("procrustes_landing")


def test_problems_and_closed_form_optimum_match_scipy():
    a, b, x0, x_star = exp.make_problems(exp.DataConfig(n=6, problems=3), jax.random.key(0),
                                         np.float64)  # fmt: skip
    for k in range(3):
        # ||X A - B|| = ||A^T X^T - B^T||: scipy's convention on the transposes
        ref = sla.orthogonal_procrustes(np.asarray(a[k]).T, np.asarray(b[k]).T)[0].T
        np.testing.assert_allclose(x_star[k], ref, atol=1e-10)
        np.testing.assert_allclose(np.asarray(x0[k]).T @ np.asarray(x0[k]), np.eye(6), atol=1e-12)


@pytest.mark.parametrize("method", exp.METHODS)
def test_every_method_decreases_the_gap_and_stays_near_the_manifold(method):
    cfg = exp.Config(
        data=exp.DataConfig(n=8, problems=4),
        method=exp.MethodConfig(name=method, learning_rate=0.3),
        run=exp.RunConfig(steps=200, record_every=10, dtype="float32"),
    )
    out = jax.jit(functools.partial(exp.run, cfg))(jax.random.key(1))
    gap = np.asarray(out["gap"])
    assert gap.shape == (21,) and gap[-1] < 1e-2 * gap[0]
    assert gap.min() > -1e-3 * abs(float(out["f_star"]))  # never below the optimum
    orth = np.asarray(out["orthogonality"])
    assert orth.max() < (0.5 if method == "landing" else 1e-4)  # landing: within its safe step
    assert orth[-1] < 1e-3


def test_bad_method_is_rejected():
    with pytest.raises(ValueError, match="method.name"):
        exp.run(exp.Config(method=exp.MethodConfig(name="sgd")), jax.random.key(0))
