"""The sae_natural experiment: offline data, a small run, and the adaptive-sparsity readout."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from tests._experiments import load_experiment

exp = load_experiment("sae_natural")


@pytest.mark.parametrize("source,dim", [("patches8", 64), ("patches12", 144), ("digits", 64)])
def test_sources_are_offline_scaled_and_split(source, dim):
    train, test = exp.split(exp.DataConfig(source=source, train=600, test=100))
    assert train.shape[1] == test.shape[1] == dim
    assert len(test) == 100 and 0 < len(train) <= 600
    both = np.concatenate([train, test])
    np.testing.assert_allclose(np.mean(np.sum(both**2, axis=1)), 1.0, rtol=0.05)


def test_mp_sae_lower_thresholds_give_denser_better_codes():
    cfg = exp.Config(
        data=exp.DataConfig(train=1_500, test=300),
        method=exp.MethodConfig(name="mp", expansion=2, mp_max_steps=12),
        run=exp.RunConfig(steps=150, batch=128),
    )
    out = jax.jit(lambda k: exp.run(cfg, k))(jax.random.key(0))
    l0, r2 = np.asarray(out["adaptive_l0"]), np.asarray(out["adaptive_r2"])
    # eval_thresholds decrease: the code gets denser and the reconstruction better
    assert np.all(np.diff(l0) >= -1e-6) and np.all(np.diff(r2) >= -1e-6)
    assert r2[-1] > 0.5
    with pytest.raises(ValueError, match="data.source"):
        exp.split(exp.DataConfig(source="cifar"))


def test_r2_interpolation_in_log_l0():
    l0, r2 = np.array([2.0, 8.0]), np.array([0.5, 0.9])
    assert exp._auc_like(l0, r2, 4.0) == pytest.approx(0.7)
    assert np.isnan(exp._auc_like(l0, r2, 16.0))
