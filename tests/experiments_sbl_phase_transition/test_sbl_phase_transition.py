"""The sbl_phase_transition experiment: its OMP call against scikit-learn, its basis pursuit
against the LP optimality it promises, and a small run against the reference success rates."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.linear_model import orthogonal_mp

from jaxspec import pursuit
from tests._experiments import load_experiment

pytestmark = pytest.mark.slow  # an experiment end to end: CI's slow step

exp = load_experiment("sbl_phase_transition")


def problems(count, m=20, n=40, d=5):
    keys = jax.random.split(jax.random.key(3), count)
    return [exp.make_problem(k, m, n, d) for k in keys]


def test_omp_as_called_by_the_experiment_matches_scikit_learn():
    for a, y, _, _ in problems(5, d=6):
        ours = np.asarray(pursuit.omp(a, y, 20, max_atoms=6))
        ref = orthogonal_mp(np.asarray(a), np.asarray(y), n_nonzero_coefs=6)
        np.testing.assert_allclose(ours, ref, atol=1e-10)


def test_basis_pursuit_is_feasible_and_no_larger_in_l1_than_the_truth():
    for a, y, x, support in problems(5, d=4):
        xb = np.asarray(exp.basis_pursuit(a, y))
        np.testing.assert_allclose(np.asarray(a) @ xb, np.asarray(y), atol=1e-9)
        assert np.abs(xb).sum() <= np.abs(np.asarray(x)).sum() + 1e-9
        assert bool(exp.recovered(jnp.asarray(xb), support, 4))  # easy: D = 4 of 20 rows


def test_success_rates_at_an_easy_and_a_hard_sparsity():
    cfg = exp.Config()
    out = {}
    for name in exp.METHODS:
        for d in (5, 11):
            c = exp.Config(
                data=exp.DataConfig(20, 40, d),
                method=exp.MethodConfig(name=name),
                run=exp.RunConfig(trials=80),
            )
            out[name, d] = float(
                jax.jit(lambda k, c=c: exp.run(c, k))(jax.random.key(0))["success_rate"]
            )
    assert cfg.run.trials == 500
    assert out["sbl", 5] >= 0.95 and out["bp", 5] >= 0.9
    # near the transition SBL leads BP and OMP, as in the reference (0.672 / 0.126 / 0.066)
    assert out["sbl", 11] > out["bp", 11] + 0.2 and out["sbl", 11] > out["omp", 11] + 0.2
