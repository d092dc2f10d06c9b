"""The orthomerge experiment end to end at tiny sizes, and its building blocks."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxspec import manifolds
from jaxspec.experiments import run_experiment
from tests._experiments import EXPERIMENTS, load_experiment

pytestmark = pytest.mark.slow  # an experiment end to end: CI's slow step

exp = load_experiment("orthomerge")

TINY = [
    "data.tasks=['rotate', 'flip']",
    "data.train=300",
    "data.val=100",
    "model.hidden=32",
    "pretrain.steps=60",
    "finetune.steps=40",
    "merge.scales=[0.25, 0.5, 1.0]",
    "sweep.product.seed=[0, 1]",
]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    # One task set (one compile), both learning-rate settings of the zip sweep, two seeds.
    return run_experiment(
        "orthomerge", overrides=TINY, results_dir=tmp_path_factory.mktemp("results"),
        progress=False, experiments_dir=EXPERIMENTS,
    )  # fmt: skip


def test_tasks_share_labels_and_transform_the_images():
    data = exp.load_tasks(("rotate", "flip", "dilate"), 300, 100, 0)
    assert data["x_train"].shape == (3, 300, 64) and data["x_val"].shape == (3, 100, 64)
    assert data["x_test"].shape == (3, 1797 - 400, 64) and data["pre_x"].shape == (300, 64)
    assert data["y_test"].shape == (1797 - 400,) and set(np.unique(data["y_train"])) == set(
        range(10)
    )
    clean = data["pre_x"].reshape(-1, 8, 8)
    np.testing.assert_array_equal(data["x_train"][1].reshape(-1, 8, 8), clean[:, :, ::-1])
    for t in range(3):
        assert np.abs(data["x_train"][t] - data["pre_x"]).mean() > 0.05
    assert data["pre_x"].min() >= 0 and data["pre_x"].max() <= 1
    with pytest.raises(ValueError, match="data.tasks"):
        exp.load_tasks(("rotate", "nope"), 300, 100, 0)


def test_oft_rotation_keeps_spectrum_and_hyperspherical_energy():
    key = jax.random.key(0)
    base = exp.init_mlp(key, 32)
    layout = exp.oft_layout(32, 16)
    gen = manifolds.skew(jax.random.normal(jax.random.key(1), (8, 16, 16)))
    rotated = exp.rotate_weights(base, exp.split_blocks(manifolds.cayley(gen), layout))
    same = exp.rotate_weights(base, exp.split_blocks(manifolds.cayley(0 * gen), layout))
    for name in exp.LAYERS:
        w0, w = np.asarray(base[name], np.float64), np.asarray(rotated[name], np.float64)
        assert not np.allclose(w, w0, atol=1e-3)
        np.testing.assert_allclose(np.asarray(same[name]), w0, atol=1e-6)
        s0, s = (np.linalg.svd(x, compute_uv=False) for x in (w0, w))
        np.testing.assert_allclose(s, s0, rtol=1e-4)
        he0 = float(exp.hyperspherical_energy(base[name]))
        assert float(exp.hyperspherical_energy(rotated[name])) == pytest.approx(he0, rel=1e-4)
    # The block-diagonal product is W_0 blockdiag(R_1, ..., R_k).
    r = np.asarray(manifolds.cayley(gen[:4]), np.float64)
    full = np.zeros((64, 64))
    for k in range(4):
        full[16 * k : 16 * (k + 1), 16 * k : 16 * (k + 1)] = r[k]
    np.testing.assert_allclose(rotated["w1"], np.asarray(base["w1"]) @ full, atol=1e-5)


@pytest.mark.parametrize("scale", [0.01, 1.0, 8.0])
def test_matmul_cayley_matches_the_solve(scale):
    gen = scale * jax.random.normal(jax.random.key(0), (12, 16, 16), jnp.float32) / 4
    np.testing.assert_allclose(exp.cayley_matmul(gen), manifolds.cayley(gen), atol=2e-6)

    def loss(fn, g):
        return jnp.sum(fn(g)[..., 0, :] ** 3)

    grad = jax.grad(functools.partial(loss, exp.cayley_matmul))(gen)
    ref = jax.grad(functools.partial(loss, manifolds.cayley))(gen)
    np.testing.assert_allclose(grad, ref, atol=1e-5 * max(1.0, float(jnp.abs(ref).max())))


def test_hyperspherical_energy_matches_numpy():
    w = np.random.default_rng(0).standard_normal((7, 5))
    u = w / np.linalg.norm(w, axis=1, keepdims=True)
    ref = sum(1 / np.linalg.norm(u[i] - u[j]) for i in range(7) for j in range(i + 1, 7))
    assert float(exp.hyperspherical_energy(jnp.asarray(w))) == pytest.approx(ref, rel=1e-10)


def test_bad_block_size_is_rejected():
    cfg = exp.Config(finetune=exp.FinetuneConfig(block_size=24))
    with pytest.raises(ValueError, match="finetune.block_size"):
        exp.run(cfg, jax.random.key(0))


def test_run_metrics(tiny_run):
    records = tiny_run.records
    assert len(records) == 4  # 2 learning-rate settings x 2 seeds
    scales = {0.25, 0.5, 1.0}
    for r in records:
        m = r.metrics
        for name in ("base", "oft_expert", "full_expert", *exp.OFT_MERGES, *exp.FULL_MERGES):
            acc = m[f"acc.{name}"]
            assert acc.shape == (2,) and np.all((acc >= 0) & (acc <= 1))
        for name in ("oft_ta", "oft_generator_ta", "full_ta", "full_orthomerge_tuned"):
            assert float(m[f"lambda.{name}"]) in scales
        # Rotations of the base weights keep its spectrum and hyperspherical energy.
        for name in ("oft_expert", "oft_generator_ta", "oft_orthomerge", "oft_orthomerge_exp",
                     "full_rotation"):  # fmt: skip
            np.testing.assert_allclose(m[f"preservation.{name}.he"], 1.0, atol=1e-4)
            np.testing.assert_allclose(m[f"preservation.{name}.sigma"], 1.0, atol=1e-4)
            assert np.all(m[f"preservation.{name}.spectrum"] < 1e-4)
        assert np.abs(m["preservation.full_ta.spectrum"]).max() > 1e-3
        assert bool(m["signatures_agree"]) and np.all(m["generator_norm"] > 0)
        # The experts improve on their own tasks over the base model.
        assert m["acc.oft_expert"].mean() > m["acc.base"].mean()
        assert m["acc.full_expert"].mean() > m["acc.base"].mean()


def test_report_and_figures(tiny_run):
    report = Path(tiny_run.report_path).read_text()
    for text in ("OrthoMerge (Cayley chart)", "task arithmetic", "Preservation", "Tally",
                 "2 tasks, lr 0.01/0.001", "2 tasks, lr 0.003/0.0003"):  # fmt: skip
        assert text in report
    assert (Path(tiny_run.run_dir) / "orthomerge_accuracy_0.png").exists()
    assert (Path(tiny_run.run_dir) / "orthomerge_accuracy_1.png").exists()


def test_task_count_figure(tiny_run, tmp_path):
    # The same records relabelled as a 3-task set exercise the figure over task counts.
    relabelled = []
    for r in tiny_run.records:
        config = {**r.config, "data": {**r.config["data"], "tasks": ["a", "b", "c"]}}
        relabelled.append(dataclasses.replace(r, config=config))
    groups = exp._groups(tiny_run.records + relabelled)
    assert len(groups) == 4
    ctx = exp.ReportContext(outdir=tmp_path, config={}, quick=False)
    assert exp._count_figure(groups, ctx) == "orthomerge_vs_task_count.png"
    assert (tmp_path / "orthomerge_vs_task_count.png").exists()
