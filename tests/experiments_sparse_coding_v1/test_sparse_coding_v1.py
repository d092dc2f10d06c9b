"""The sparse_coding_v1 experiment: data, dictionary learning and the matched-error readout."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from tests._experiments import load_experiment

exp = load_experiment("sparse_coding_v1")


def test_patches_are_mean_free_with_unit_mean_energy():
    x = exp.patches(8, 300, 0)
    assert x.shape == (300, 64)
    np.testing.assert_allclose(x.mean(axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.mean(np.sum(x**2, axis=1)), 1.0, rtol=1e-12)


def test_density_at_error_interpolates_log_linearly_and_refuses_to_extrapolate():
    # (lam, density, error, converged) rows; error = 0.1 / density on this curve
    curve = np.array([[0, 0.05, 2.0, 1], [0, 0.1, 1.0, 1], [0, 0.4, 0.25, 1]])
    assert exp.density_at_error(curve, 0.5) == pytest.approx(0.2, rel=1e-12)
    assert np.isnan(exp.density_at_error(curve, 0.1))


@pytest.mark.slow
def test_learning_lowers_the_training_error_and_lam_trades_density_for_error():
    cfg = exp.Config(
        data=exp.DataConfig(train=1000, test=200),
        method=exp.MethodConfig(threshold="hard", atoms=32),
        run=exp.RunConfig(learn_steps=60, batch=64, ista_steps=20, eval_steps=60),
    )
    out = {}
    for lam in (0.003, 0.03):
        c = exp.Config(cfg.data, exp.MethodConfig("hard", lam, 32), cfg.run)
        out[lam] = jax.jit(lambda k, c=c: exp.run(c, k))(jax.random.key(0))
    trace = np.asarray(out[0.003]["train_error_trace"])
    assert trace[-1] < 0.7 * trace[0]
    assert float(out[0.03]["density"]) < float(out[0.003]["density"])
    assert float(out[0.03]["relative_error"]) > float(out[0.003]["relative_error"])
    with pytest.raises(ValueError, match="method.threshold"):
        exp.run(exp.Config(method=exp.MethodConfig(threshold="l2")), jax.random.key(0))
