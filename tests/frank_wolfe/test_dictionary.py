"""Orthogonal dictionary learning: MSP/GPM fixed points, online FW recovery, the metric."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxspec import Status, frank_wolfe


def planted(n, samples, theta=0.3, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    d0 = np.linalg.qr(rng.standard_normal((n, n)))[0]
    codes = rng.standard_normal((n, samples)) * (rng.random((n, samples)) < theta)
    a0 = np.linalg.qr(rng.random((n, n)))[0]
    return (d0 @ codes).astype(dtype), d0.astype(dtype), a0.astype(dtype)


def test_recovery_error_is_zero_on_signed_permutations_and_invariant():
    rng = np.random.default_rng(0)
    d0 = np.linalg.qr(rng.standard_normal((6, 6)))[0]
    perm = np.eye(6)[rng.permutation(6)] * rng.choice([-1.0, 1.0], 6)[:, None]
    assert float(frank_wolfe.dictionary_recovery_error(perm @ d0.T, d0)) < 1e-12
    q = np.linalg.qr(rng.standard_normal((6, 6)))[0]
    e = float(frank_wolfe.dictionary_recovery_error(q, d0))
    assert e > 0.05
    assert float(frank_wolfe.dictionary_recovery_error(perm @ q, d0)) == pytest.approx(e)
    batched = frank_wolfe.dictionary_recovery_error(np.stack([q, perm @ d0.T]), np.stack([d0, d0]))
    np.testing.assert_allclose(batched, [e, 0.0], atol=1e-12)


def test_lp_gradient_matches_autodiff():
    y, _, a0 = planted(5, 50)
    for p in (3, 4):
        auto = jax.grad(lambda a, p=p: frank_wolfe.lp_objective(a, y, p))(jnp.asarray(a0))
        np.testing.assert_allclose(frank_wolfe.lp_gradient(a0, y, p), auto, rtol=1e-10)


@pytest.mark.parametrize("p", (3, 4))
def test_msp_recovers_planted_dictionary_at_a_polar_fixed_point(p):
    y, d0, a0 = planted(8, 4000)
    sol = frank_wolfe.msp(y, a0, p=p, max_steps=300, tol=1e-12)
    assert int(sol.status) == Status.CONVERGED
    a = np.asarray(sol.x)
    np.testing.assert_allclose(a @ a.T, np.eye(8), atol=1e-10)
    # The fixed point of MSP/GPM: A = polar(grad f(A)) (independent SVD in NumPy).
    u, _, vt = np.linalg.svd(np.asarray(frank_wolfe.lp_gradient(a, y, p)))
    # The relative gap (1e-12) is quadratic in the distance to polar(G): ~1e-6.
    np.testing.assert_allclose(a, u @ vt, atol=1e-5)
    # Finite samples: A D0 is a signed permutation up to a small perturbation.
    assert float(frank_wolfe.dictionary_recovery_error(a, d0)) < 5e-3


def test_online_method_reaches_paper_level_errors_and_beats_convex_schedule():
    y, d0, a0 = planted(8, 10000)
    results = {}
    for schedule in ("online_odl", "mhk"):
        sol = frank_wolfe.online_orthogonal_dictionary(
            y, a0, batch_size=10, schedule=schedule, d0=d0, record_every=50
        )
        results[schedule] = np.asarray(sol.stats["trace"])
        a = np.asarray(sol.x)
        np.testing.assert_allclose(a @ a.T, np.eye(8), atol=1e-10)  # re-projected
    # Paper: NoncvxSFW at ~2e-3..2e-2 after 300-500 iterations; MHK far slower early on.
    assert results["online_odl"][7] < 2e-2  # 400 iterations
    assert results["online_odl"][7] < results["mhk"][7]
    assert results["online_odl"][-1] < 5e-3


@pytest.mark.slow
def test_online_method_vmaps_over_trials_and_runs_in_float32():
    y, d0, a0 = planted(6, 600)

    def run(y, a0):
        return frank_wolfe.online_orthogonal_dictionary(
            y, a0, batch_size=5, d0=d0, record_every=40
        ).stats["trace"]

    ys = jnp.stack([y, -y])
    a0s = jnp.stack([a0, a0[::-1]])
    out = jax.jit(jax.vmap(run))(ys, a0s)
    for k in range(2):
        np.testing.assert_allclose(out[k], run(ys[k], a0s[k]), rtol=1e-9, atol=1e-12)
    y32, d32, a32 = planted(6, 600, dtype=np.float32)
    sol = frank_wolfe.online_orthogonal_dictionary(y32, a32, batch_size=5, d0=d32)
    assert sol.x.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(sol.x)))
    # Newton–Schulz polar factors (matmuls only) learn the dictionary as well as exact SVDs.
    y, d0, a0 = planted(6, 4000, seed=3)
    errors = {
        method: float(
            frank_wolfe.online_orthogonal_dictionary(
                y, a0, batch_size=10, polar_method=method, d0=d0
            ).stats["trace"][-1]
        )
        for method in ("svd", "polar")
    }
    assert errors["polar"] < 2e-2 and errors["svd"] < 2e-2
    assert errors["polar"] == pytest.approx(errors["svd"], rel=0.5)


def test_dictionary_bad_arguments():
    y, d0, a0 = planted(4, 100)
    with pytest.raises(ValueError, match="`p`"):
        frank_wolfe.online_orthogonal_dictionary(y, a0, p=5)
    with pytest.raises(ValueError, match="batch_size"):
        frank_wolfe.online_orthogonal_dictionary(y, a0, batch_size=0)
    with pytest.raises(ValueError, match="batch_size"):
        frank_wolfe.online_orthogonal_dictionary(y, a0, batch_size=7)
    with pytest.raises(ValueError, match="a0"):
        frank_wolfe.online_orthogonal_dictionary(y, a0[:3, :3])
    with pytest.raises(ValueError, match="polar_method"):
        frank_wolfe.online_orthogonal_dictionary(y, a0, polar_method="qr")
    with pytest.raises(ValueError, match="`p`"):
        frank_wolfe.msp(y, a0, p=2)
    with pytest.raises(ValueError, match="a0"):
        frank_wolfe.msp(y, a0[:3])
    with pytest.raises(ValueError, match="d0"):
        frank_wolfe.dictionary_recovery_error(a0, d0[:3, :3])
