"""The online_odl experiment end to end at tiny sizes, and its building blocks."""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxspec.experiments import run_experiment
from tests._experiments import EXPERIMENTS, load_experiment

pytestmark = pytest.mark.slow  # an experiment end to end: CI's slow step

exp = load_experiment("online_odl")


@pytest.mark.parametrize("method", list(exp.METHODS))
def test_run_each_method(method):
    cfg = exp.Config(
        data=exp.DataConfig(n=6, theta=0.3, samples=2000),
        method=exp.MethodConfig(name=method, batch_size=10, msp_steps=30),
        run=exp.RunConfig(record_every=10, dtype="float32"),
    )
    out = jax.jit(functools.partial(exp.run, cfg))(jax.random.key(0))
    final = float(out["final_error"])
    assert np.isfinite(final) and final < 0.2
    if "trace" in out:
        trace = np.asarray(out["trace"])
        assert trace.shape == (20,) and trace[-1] < trace[0]


def test_problem_is_planted_and_orthogonal():
    y, d0, a0 = exp.make_problem(exp.DataConfig(n=5, theta=0.5, samples=300), jax.random.key(1),
                                 np.float32)  # fmt: skip
    np.testing.assert_allclose(np.asarray(d0) @ np.asarray(d0).T, np.eye(5), atol=1e-5)
    np.testing.assert_allclose(np.asarray(a0) @ np.asarray(a0).T, np.eye(5), atol=1e-5)
    codes = np.asarray(d0).T @ np.asarray(y)
    assert 0.35 < np.mean(np.abs(codes) > 1e-6) < 0.65


def test_bad_method_is_rejected():
    cfg = exp.Config(method=exp.MethodConfig(name="nope"))
    with pytest.raises(ValueError, match="method.name"):
        exp.run(cfg, jax.random.key(0))


def test_whitening_gives_identity_covariance():
    white, dewhiten = exp.whiten(exp.image_patches(3000, 8))
    cov = white @ white.T / white.shape[1]
    np.testing.assert_allclose(cov, np.eye(cov.shape[0]), atol=1e-8)
    assert dewhiten.shape == (64, white.shape[0])


def test_end_to_end_report(tmp_path):
    overrides = [
        "sweep.zip.data.n=[6, 6]",
        "sweep.zip.data.theta=[0.3, 0.5]",
        "sweep.zip.data.samples=[1000, 1000]",
        "sweep.zip.method.batch_size=[1, 10]",
        "sweep.zip.method.polar=['svd', 'polar']",
        "sweep.product.seed=[0, 1]",
        "method.msp_steps=20",
        "patches.count=2000",
    ]
    result = run_experiment(
        "online_odl", overrides=overrides, results_dir=tmp_path, progress=False,
        experiments_dir=EXPERIMENTS,
    )  # fmt: skip
    report = Path(result.report_path).read_text()
    assert "l3 NoncvxSFW" in report and "Real data" in report
    assert (Path(result.run_dir) / "online_odl_convergence.png").exists()
    assert (Path(result.run_dir) / "online_odl_patch_atoms.png").exists()
