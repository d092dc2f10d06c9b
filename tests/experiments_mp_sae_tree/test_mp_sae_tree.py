"""The mp_sae_tree experiment: the tree data's statistics and geometry, and the matching."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from tests._experiments import load_experiment

exp = load_experiment("mp_sae_tree")


def test_tree_statistics_match_the_specification():
    acts = np.asarray(exp.sample_activations(jax.random.key(0), 200_000))
    active = acts != 0
    assert abs(active.sum(1).mean() - exp.EXPECTED_L0) < 0.01
    freq = active.mean(0)
    np.testing.assert_allclose(freq[list(exp.PARENTS)], 0.2, atol=0.005)
    np.testing.assert_allclose(freq[[c for g in exp.CHILDREN for c in g]], 0.04, atol=0.003)
    np.testing.assert_allclose(freq[list(exp.SINGLES)], 0.05, atol=0.003)
    for parent, children in zip(exp.PARENTS, exp.CHILDREN):
        child_on = active[:, list(children)].any(1)
        assert np.all(active[child_on, parent])  # a child is only active under its parent
        assert active[:, list(children)].sum(1).max() == 1  # siblings are exclusive
    assert active[:, list(exp.PARENT_LEVEL)].sum(1).min() == 1  # exactly one root choice
    mags = acts[active]
    assert abs(mags.mean() - 1.5) < 0.01 and abs(mags.std() - 0.25) < 0.01


def test_features_are_conditionally_orthogonal():
    f = np.asarray(exp.true_features(jax.random.key(1)), np.float64)
    np.testing.assert_allclose(np.linalg.norm(f, axis=1), 1.0, atol=1e-6)
    gram = f @ f.T
    for parent, children in zip(exp.PARENTS, exp.CHILDREN):
        np.testing.assert_allclose(gram[parent, list(children)], 0.0, atol=1e-6)
        sib = gram[np.ix_(children, children)][~np.eye(3, dtype=bool)]
        np.testing.assert_allclose(sib, 0.1, atol=0.01)
    level = gram[np.ix_(exp.PARENT_LEVEL, exp.PARENT_LEVEL)][~np.eye(11, dtype=bool)]
    np.testing.assert_allclose(level, 0.1, atol=0.01)


def test_matching_recovers_a_permutation_and_scores_it():
    rng = np.random.default_rng(0)
    perm = rng.permutation(20)
    corr = np.eye(20)[perm] + 0.01 * rng.standard_normal((20, 20))  # latent perm[i] ~ feature i
    latent = exp.match(corr)
    np.testing.assert_array_equal(perm[latent], np.arange(20))
    cos = np.eye(20)[perm] * 0.9
    scores = exp.matched_scores({"activation_correlation": corr, "cosine": cos})
    assert scores["matched cos (all)"] == pytest.approx(0.9)
    assert scores["features with matched cos > 0.9"] == 0


@pytest.mark.slow
def test_a_short_run_of_each_model_learns_the_features_partly():
    for name in exp.METHODS:
        cfg = exp.Config(
            data=exp.DataConfig(train=8_000, test=2_000),
            method=exp.MethodConfig(name=name),
            run=exp.RunConfig(steps=300),
        )
        out = jax.jit(lambda k, c=cfg: exp.run(c, k))(jax.random.key(0))
        assert float(out["fvu"]) < 0.5, name
        assert exp.matched_scores(out)["matched cos (all)"] > 0.5, name
    with pytest.raises(ValueError, match="method.name"):
        exp.run(exp.Config(method=exp.MethodConfig(name="pca")), jax.random.key(0))
