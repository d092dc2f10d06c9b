"""Stochastic Frank–Wolfe: schedules, the optax transform, and the streaming solver."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxspec import Status, frank_wolfe
from jaxspec.frank_wolfe import lmo


def test_schedules_match_their_formulas_and_are_clipped():
    t = np.arange(0, 50)
    rho, gamma = frank_wolfe.stochastic_schedule("mhk", t)
    np.testing.assert_allclose(rho, np.minimum(1, 4 / (t + 8) ** (2 / 3)), rtol=1e-12)
    np.testing.assert_allclose(gamma, 2 / (t + 8), rtol=1e-12)
    rho, gamma = frank_wolfe.stochastic_schedule("online_odl", t)
    np.testing.assert_allclose(rho, np.minimum(1, 4 / np.sqrt(t + 1)), rtol=1e-12)
    np.testing.assert_allclose(gamma, np.minimum(1, 2 / (t + 2) ** 0.75), rtol=1e-12)
    assert float(rho[14]) == 1.0 and float(rho[15]) == 1.0 and float(rho[16]) < 1.0
    rho, gamma = frank_wolfe.stochastic_schedule("open_loop", t)
    np.testing.assert_allclose(gamma, 2 / (t + 2))
    rho, gamma = frank_wolfe.stochastic_schedule("mhk", 100, rho_scale=2.0, gamma_scale=0.5)
    assert float(rho) == pytest.approx(8 / 108 ** (2 / 3)) and float(gamma) == pytest.approx(
        1 / 108
    )


def _numpy_sfw(grads, x0, radius, schedule):
    """NumPy reference over the simplex: d <- (1-rho) d + rho g; x <- x + gamma (s - x)."""
    x, d = x0.copy(), np.zeros_like(x0)
    for t, g in enumerate(grads):
        if schedule == "mhk":
            rho, gamma = min(1, 4 / (t + 8) ** (2 / 3)), 2 / (t + 8)
        else:
            rho, gamma = min(1, 4 / np.sqrt(t + 1)), min(1, 2 / (t + 2) ** 0.75)
        d = (1 - rho) * d + rho * g
        s = np.zeros_like(x)
        s[np.argmin(d)] = radius
        x = x + gamma * (s - x)
    return x


@pytest.mark.parametrize("schedule", ("mhk", "online_odl"))
def test_transform_equals_numpy_recursion(schedule):
    rng = np.random.default_rng(0)
    grads = rng.standard_normal((40, 6))
    x0 = np.eye(6)[0] * 2.0
    opt = frank_wolfe.stochastic_frank_wolfe(lmo.simplex(2.0), schedule)
    x = jnp.asarray(x0)
    state = opt.init(x)
    step = jax.jit(opt.update)
    for g in grads:
        updates, state = step(jnp.asarray(g), state, x)
        x = optax.apply_updates(x, updates)
    np.testing.assert_allclose(x, _numpy_sfw(grads, x0, 2.0, schedule), rtol=1e-10)
    assert int(state.count) == 40 and np.isfinite(float(state.gap))


def test_transform_chains_and_needs_params():
    opt = optax.chain(frank_wolfe.stochastic_frank_wolfe(lmo.l1_ball(1.0)), optax.scale(1.0))
    x = jnp.zeros(3)
    updates, _ = opt.update(jnp.array([0.0, 2.0, -1.0]), opt.init(x), x)
    np.testing.assert_allclose(updates, [0.0, -0.25, 0.0])
    with pytest.raises(ValueError, match="params"):
        opt.update(jnp.ones(3), opt.init(x))


def test_stochastic_solve_reaches_the_simplex_projection_at_the_mhk_rate():
    # E 1/2||x - y||^2 with y = theta + noise: the minimizer over the simplex is P(theta).
    theta = np.array([0.5, 0.4, -0.3, 0.2])
    expected = np.array([0.45, 0.35, 0.0, 0.2])  # simplex projection of theta
    noise = 0.3 * np.random.default_rng(1).standard_normal((20000, 4))
    f = lambda x, y: 0.5 * jnp.sum((x - y) ** 2)  # noqa: E731
    errors = []
    for steps in (2000, 20000):
        sol = frank_wolfe.stochastic_solve(
            f, jnp.eye(4)[0], lmo.simplex(1.0), jnp.asarray(theta + noise[:steps])
        )
        assert int(sol.status) == Status.MAX_STEPS and int(sol.num_steps) == steps
        errors.append(float(0.5 * np.sum((np.asarray(sol.x) - expected) ** 2)))
    # O(t^(-1/3))-type decay of the squared error (noisy: one stream each).
    assert errors[0] < 1e-2 and errors[1] < 2e-3


def test_stochastic_solve_records_metric_vmaps_and_detects_nonfinite():
    noise = 0.1 * np.random.default_rng(2).standard_normal((3, 600, 3))
    target = jnp.array([0.2, 0.5, 0.3])
    f = lambda x, y: 0.5 * jnp.sum((x - y) ** 2)  # noqa: E731

    def run(batches, gamma_scale):
        return frank_wolfe.stochastic_solve(
            f, jnp.eye(3)[0], lmo.simplex(1.0), batches, gamma_scale=gamma_scale,
            metric=lambda x: jnp.sum((x - target) ** 2), record_every=100,
        )  # fmt: skip

    batches = target + jnp.asarray(noise)
    scales = jnp.array([0.5, 1.0, 2.0])
    out = jax.jit(jax.vmap(run))(batches, scales)
    assert out.stats["trace"].shape == (3, 6)
    np.testing.assert_array_equal(out.stats["trace_steps"][0], [100, 200, 300, 400, 500, 600])
    for k in range(3):
        one = run(batches[k], scales[k])
        np.testing.assert_allclose(out.x[k], one.x, rtol=1e-12)
        np.testing.assert_allclose(out.stats["trace"][k], one.stats["trace"], rtol=1e-12)
    bad = frank_wolfe.stochastic_solve(
        lambda x, y: jnp.sum(jnp.log(x - y)), jnp.eye(3)[0], lmo.simplex(1.0), batches[0]
    )
    assert int(bad.status) == Status.NONFINITE


def test_stochastic_bad_arguments():
    f = lambda x, y: jnp.sum((x - y) ** 2)  # noqa: E731
    with pytest.raises(ValueError, match="schedule"):
        frank_wolfe.stochastic_frank_wolfe(lmo.simplex(1.0), "nope")
    with pytest.raises(ValueError, match="lmo"):
        frank_wolfe.stochastic_frank_wolfe(lambda g: g)
    with pytest.raises(ValueError, match="record_every"):
        frank_wolfe.stochastic_solve(
            f, jnp.eye(3)[0], lmo.simplex(1.0), jnp.ones((10, 3)), record_every=3
        )
    with pytest.raises(ValueError, match="batches"):
        frank_wolfe.stochastic_solve(f, jnp.eye(3)[0], lmo.simplex(1.0), jnp.ones(()))
