"""The irs_mimo experiment: its Kronecker dictionary against a direct NumPy simulation of the
IRS channel and against the reference code's construction, the clustered angles, the NMSE,
and (slow) the quick run end to end."""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxspec.experiments import run_experiment
from tests._experiments import EXPERIMENTS, load_experiment

exp = load_experiment("irs_mimo")
build_trial = jax.jit(exp.make_trial, static_argnums=1)  # one compile for every test

SMALL = exp.DataConfig(
    ms_antennas=3, bs_antennas=4, irs_elements=8, grid=6, pilots=2, patterns=3, spread=2
)


def ula(n, u):
    """MATLAB's generate_steering: ``sqrt(1/n) exp(1j 2 pi 0.5 (i-1) u)``, ``i = 1..n``."""
    i = np.arange(1, n + 1)[:, None]
    return np.sqrt(1 / n) * np.exp(1j * 2 * np.pi * 0.5 * (i - 1) * np.atleast_1d(u)[None, :])


def matlab_vec(m):
    return m.reshape(-1, order="F")


def test_dictionary_reproduces_a_direct_simulation_of_the_irs_channel():
    """Build H1, H2 from angles and gains in NumPy, send the pilots through
    ``H2 diag(theta_p) H1 X`` and stack ``vec(Y_p)``: equal to ``kron(A_1, A_2, A_3) x`` with the
    experiment's factors and the docstring's ``x``."""
    rng = np.random.default_rng(0)
    d = SMALL
    r, s = d.grid, d.spread
    grid = 2 * np.arange(r) / r - 1
    for _ in range(5):
        ms_aod, irs_aod = rng.integers(0, r, 2)
        q, b = rng.integers(0, r - s + 1, 2)
        alpha = rng.standard_normal(s) + 1j * rng.standard_normal(s)
        beta = rng.standard_normal(s) + 1j * rng.standard_normal(s)
        c1 = np.sqrt(d.ms_antennas * d.irs_elements / s)
        c2 = np.sqrt(d.bs_antennas * d.irs_elements / s)
        h1 = c1 * ula(d.irs_elements, grid[q : q + s]) @ alpha[:, None]
        h1 = h1 @ ula(d.ms_antennas, grid[ms_aod]).conj().T
        h2 = c2 * ula(d.bs_antennas, grid[b : b + s]) @ beta[:, None]
        h2 = h2 @ ula(d.irs_elements, grid[irs_aod]).conj().T
        theta = rng.choice([-1.0, 1.0], (d.patterns, d.irs_elements)) / np.sqrt(d.irs_elements)
        pilots = (rng.choice([-1, 1], (d.ms_antennas, d.pilots)) + 1j * rng.choice(
            [-1, 1], (d.ms_antennas, d.pilots))) / np.sqrt(2 * d.ms_antennas)  # fmt: skip
        y = np.concatenate([matlab_vec(h2 @ np.diag(t) @ h1 @ pilots) for t in theta])

        x = np.zeros((r, r, r), complex)
        for k in range(s):
            for m in range(s):
                x[(q + k - irs_aod) % r, ms_aod, b + m] = c1 * c2 * alpha[k] * beta[m]
        factors = [np.asarray(a) for a in exp.dictionary_factors(theta, pilots, d.bs_antennas, r)]
        assert [a.shape for a in factors] == [(3, 6), (2, 6), (4, 6)]
        full = functools.reduce(np.kron, factors)
        np.testing.assert_allclose(full @ x.ravel(), y, rtol=0, atol=1e-10 * np.abs(y).max())
        # and the experiment's own simulation and effective-channel map agree with NumPy
        np.testing.assert_allclose(exp.received(h1, h2, theta, pilots), y, atol=1e-10)
        eff = np.stack([h2 @ np.diag(t) @ h1 for t in theta])
        np.testing.assert_allclose(exp.effective_channels(h1, h2, theta), eff, atol=1e-10)
        h_x = exp.channel_from_x(x, factors[0], d.ms_antennas, d.bs_antennas)
        np.testing.assert_allclose(h_x, eff, atol=1e-10 * np.abs(eff).max())


def test_irs_factor_matches_the_reference_code_up_to_column_order():
    """The reference's ``H_p1 = IRS.' * kr(A_a.', A_d').'`` (first R columns) with
    ``generate_dict``: our column ``j`` is its column ``(-j) mod R``."""
    rng = np.random.default_rng(1)
    big_l, r, k2 = 16, 18, 6
    a = np.stack([np.exp(1j * np.pi * (2 * i / r - 1) * np.arange(big_l)) for i in range(r)], 1)
    a = a / np.sqrt(big_l)  # generate_dict(L, R)
    theta = rng.choice([-1.0, 1.0], (big_l, k2)) / np.sqrt(big_l)  # the reference's IRS
    kr = np.stack([np.kron(a.T[:, n], a.conj().T[:, n]) for n in range(big_l)], 1)
    h_p1 = (theta.T @ kr.T)[:, :r]
    ours = np.asarray(exp.irs_factor(theta.T, r))
    np.testing.assert_allclose(ours, h_p1[:, (-np.arange(r)) % r], atol=1e-14)


def test_clustered_angles_have_the_right_sizes_and_spread():
    r, s = 18, 3
    u = jax.random.uniform(jax.random.key(0), (2000, 4))
    edges = jnp.array([[0.0] * 4, [1 - 1e-12] * 4])
    ang = jax.vmap(lambda v: exp.clustered_angles(v, r, s))(jnp.concatenate([u, edges]))
    for cluster in (ang.irs_aoa, ang.bs_aoa):
        assert cluster.shape == (2002, s)
        np.testing.assert_array_equal(np.diff(cluster, axis=1), 1)  # consecutive, no wrap
        assert cluster.min() == 0 and cluster.max() == r - 1  # every start 0..r-s is reached
        assert set(np.asarray(cluster[:, 0]).tolist()) == set(range(r - s + 1))
    for single in (ang.ms_aod, ang.irs_aod):
        assert single.shape == (2002,)
        assert set(np.asarray(single).tolist()) == set(range(r))
    diff = np.asarray(jax.vmap(lambda a: a.irs_difference(r))(ang))
    np.testing.assert_array_equal(np.mod(np.diff(diff, axis=1), r), 1)  # cyclically consecutive


def test_true_x_is_kronecker_supported_with_clusters_in_modes_one_and_three():
    for k in jax.random.split(jax.random.key(2), 4):
        tr = build_trial(k, exp.DataConfig())
        x = np.asarray(tr.x)
        assert x.shape == (18, 18, 18) and np.count_nonzero(x) == 9
        irs, ms, bs = (np.flatnonzero(np.abs(x).sum(axis=ax)) for ax in ((1, 2), (0, 2), (0, 1)))
        assert len(ms) == 1 and len(irs) == 3 and len(bs) == 3
        np.testing.assert_array_equal(np.diff(bs), 1)
        assert sorted(np.mod(irs - irs[0], 18).tolist()) in ([0, 1, 2], [0, 1, 17], [0, 16, 17])
        # the experiment's received pilots are the dictionary applied to x
        full = functools.reduce(np.kron, [np.asarray(a) for a in tr.factors])
        np.testing.assert_allclose(full @ x.ravel(), tr.y_clean, atol=1e-9)
        assert full.shape == (288, 5832)


def test_channel_nmse_by_hand():
    h = np.ones((2, 3, 2), complex)
    h[1] *= 2j
    h_hat = h.copy()
    h_hat[0] *= 1.5  # error 0.25 of the energy
    h_hat[1] = 0  # error 1
    assert float(exp.channel_nmse(jnp.asarray(h_hat), jnp.asarray(h))) == pytest.approx(0.625)
    assert float(exp.channel_nmse(jnp.asarray(h), jnp.asarray(h))) == 0.0


def test_noise_variance_follows_the_snr():
    tr = build_trial(jax.random.key(0), exp.DataConfig())
    power = np.mean(np.abs(np.asarray(tr.y_clean)) ** 2)
    for snr in (4.0, 20.0):
        y, noise_var = exp.noisy(tr, snr)
        assert float(noise_var) == pytest.approx(power / 10 ** (snr / 10), rel=1e-12)
        noise = np.asarray(y - tr.y_clean) / np.sqrt(float(noise_var))
        np.testing.assert_allclose(noise, tr.noise, atol=1e-9)  # one noise direction per trial


def test_svd_krosbl_recovers_an_easy_channel():
    """At 40 dB SVD-KroSBL estimates the effective channels of a trial within 1%."""
    tr = build_trial(jax.random.key(0), exp.DataConfig())
    y, noise_var = exp.noisy(tr, 40.0)
    est = jax.jit(lambda f, y, v: exp.solve(exp.MethodConfig(), f, y, v))(tr.factors, y, noise_var)
    h_hat = exp.channel_from_x(est.x, tr.factors[0], 6, 16)
    assert float(exp.channel_nmse(h_hat, exp.effective_channels(tr.h1, tr.h2, tr.theta))) < 1e-2


@pytest.mark.slow
@pytest.mark.quick_e2e
def test_quick_run_end_to_end(tmp_path):
    result = run_experiment(
        "irs_mimo", overrides=["run.timing_trials=1"], quick=True, results_dir=tmp_path,
        progress=False, experiments_dir=EXPERIMENTS,
    )  # fmt: skip
    nmse = {
        (r.config["method"]["name"], r.config["method"]["beta"], r.config["data"]["snr_db"]):
            float(np.mean(r.metrics["nmse"]))
        for r in result.records
    }  # fmt: skip
    assert all(np.isfinite(v) for v in nmse.values())
    # The reference's headline: pattern-coupled KroSBL beats classical SBL at 20 dB.
    assert nmse["pc", 0.8, 20.0] < 0.1
    assert nmse["pc", 0.8, 20.0] < nmse["sbl", 0.0, 20.0]
    report = Path(result.report_path).read_text()
    assert "0.0029" in report and "Seconds per trial" in report  # reference and timing shown
    assert (Path(result.run_dir) / "irs_mimo.png").exists()
