"""Unrolled matching pursuit (the MP-SAE encoder) against NumPy re-statements of the loop."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxspec.pursuit._unrolled import UnrolledMPResult, unrolled_mp

SELECTIONS = ("relu", "abs", "signed")
STOPS = ("support", "residual", "both", "none")
THRESHOLD = 0.9


def problem(seed=0, d=8, n_atoms=12, batch=6, tiny=True):
    """Unit-norm dictionary and signals; the last signal is below the residual threshold."""
    rng = np.random.default_rng(seed)
    dic = rng.standard_normal((d, n_atoms))
    dic /= np.linalg.norm(dic, axis=0)
    x = rng.standard_normal((batch, d))
    if tiny:
        x[-1] *= 0.5 * THRESHOLD / np.linalg.norm(x[-1])
    return dic, x


def reference(dic, x, steps, selection, reselect, stop, threshold):
    """One signal, one step at a time; the support is the set of nonzero codes."""
    n_atoms = dic.shape[1]
    steps = steps if reselect else min(steps, n_atoms)
    z, r, picked = np.zeros(n_atoms), x.copy(), np.zeros(n_atoms, bool)
    use_residual = stop in ("residual", "both")
    history = []  # (residual before the step, atom, value)
    if use_residual and np.linalg.norm(r) < threshold:
        return z, r, 0, True, history
    for t in range(steps):
        c = dic.T @ r
        score = {"relu": np.maximum(c, 0), "abs": np.abs(c), "signed": c}[selection]
        if not reselect:
            score = np.where(picked, -np.inf, score)
        j = int(np.argmax(score))
        v = max(c[j], 0.0) if selection == "relu" else c[j]
        before = z != 0
        history.append((r.copy(), j, v))
        z[j] += v
        r = r - v * dic[:, j]
        picked[j] = True
        fired = stop in ("support", "both") and np.array_equal(z != 0, before)
        fired |= use_residual and np.linalg.norm(r) < threshold
        if fired:
            return z, r, t + 1, True, history
    return z, r, steps, False, history


def reference_batch(dic, x, steps, selection, reselect, stop, threshold=THRESHOLD):
    out = [reference(dic, xi, steps, selection, reselect, stop, threshold) for xi in x]
    return tuple(np.array([o[i] for o in out]) for i in range(4))


def assert_result_equal(got: UnrolledMPResult, ref, atol=1e-12):
    codes, residual, num_steps, stopped = ref
    np.testing.assert_allclose(np.asarray(got.codes), codes, rtol=0, atol=atol)
    np.testing.assert_allclose(np.asarray(got.residual), residual, rtol=0, atol=atol)
    np.testing.assert_array_equal(np.asarray(got.num_steps), num_steps)
    np.testing.assert_array_equal(np.asarray(got.stopped), stopped)


COMBOS = list(itertools.product(SELECTIONS, (True, False), STOPS))


@pytest.fixture(scope="module")
def every_combination():
    """All 24 rules on one problem, compiled as one program (one compile, not 24)."""
    dic, x = problem()

    @jax.jit
    def run(dic, x):
        return {
            (sel, rs, st): unrolled_mp(
                dic, x, 10, selection=sel, reselect=rs, stop=st, threshold=THRESHOLD
            )
            for sel, rs, st in COMBOS
        }

    return dic, x, run(dic, x)


@pytest.mark.parametrize("selection,reselect,stop", COMBOS)
def test_matches_a_numpy_reference_loop(every_combination, selection, reselect, stop):
    dic, x, results = every_combination
    got = results[selection, reselect, stop]
    assert_result_equal(got, reference_batch(dic, x, 10, selection, reselect, stop))
    assert got.codes.dtype == jnp.float64 and got.num_steps.dtype == jnp.int32


def test_the_reference_problem_exercises_every_stopping_path():
    """The problem above is not degenerate: each rule fires for some signals, not all."""
    dic, x = problem()

    def run(selection, reselect, stop, i):
        return reference(dic, x[i], 10, selection, reselect, stop, THRESHOLD)

    # The residual rule fires before the first step for the tiny signal only, and after some
    # steps for a few others.
    assert run("relu", True, "residual", 5)[2] == 0
    stopped = [run("relu", True, "residual", i)[3] for i in range(5)]
    assert any(stopped) and not all(stopped)
    # Support rule: classical MP stops on a re-selection (the step is applied), nonnegative
    # MP without re-selection on a step that adds zero.
    for i in range(5):
        _, _, n, stopped, history = run("abs", True, "support", i)
        picks = [j for _, j, _ in history]
        assert stopped and n < 10 and picks[-1] in picks[:-1] and history[-1][2] != 0
        _, _, n, stopped, history = run("relu", False, "support", i)
        assert stopped and n < 10 and history[-1][2] == 0.0


MODE_COMBOS = [
    ("relu", True, "both"),
    ("relu", False, "support"),
    ("abs", False, "both"),
    ("signed", True, "residual"),
]
MODES = [("lean", False), ("decoder", False), ("full", True), ("lean", True)]


def test_gradient_modes_and_early_exit_run_the_same_pursuit():
    dic, x = problem(seed=1)

    @jax.jit
    def run(dic, x):
        return {
            (sel, rs, st, g, e): unrolled_mp(
                dic, x, 14, selection=sel, reselect=rs, stop=st, threshold=THRESHOLD,
                gradient=g, early_exit=e,
            )
            for (sel, rs, st), (g, e) in itertools.product(MODE_COMBOS, MODES)
        }  # fmt: skip

    results = run(dic, x)
    for (sel, rs, st, _, _), got in results.items():
        assert_result_equal(got, reference_batch(dic, x, 14, sel, rs, st))


def mp_sae_original(w, x, threshold):
    """The MP-SAE encoder loop re-stated in NumPy: ``W`` holds the atoms as rows."""
    z = np.zeros((x.shape[0], w.shape[0]))
    residual = x.copy()
    prev_support = np.zeros_like(z, bool)
    done = np.zeros(x.shape[0], bool)
    while not done.all():
        c = np.maximum(residual @ w.T, 0)
        j = np.argmax(c, axis=1)
        z_step = np.zeros_like(z)
        z_step[np.arange(len(j)), j] = c[np.arange(len(j)), j]
        z = np.where(done[:, None], z, z + z_step)
        residual = np.where(done[:, None], residual, residual - z_step @ w)
        support = z != 0
        done |= (support == prev_support).all(-1) | (np.linalg.norm(residual, axis=-1) < threshold)
        prev_support = support
    return z, residual


def test_relu_reselect_both_is_the_mp_sae_encoder():
    dic, x = problem(seed=2, batch=16, tiny=False)
    threshold = 0.3
    assert np.all(np.linalg.norm(x, axis=1) >= threshold)  # the original checks after a step
    z, residual = mp_sae_original(dic.T, x, threshold)
    n_atoms = dic.shape[1]
    got = unrolled_mp(dic, x, n_atoms + 1, threshold=threshold)  # the defaults are MP-SAE's
    np.testing.assert_allclose(np.asarray(got.codes), z, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(got.residual), residual, rtol=0, atol=1e-12)
    assert np.all(np.asarray(got.stopped))  # K + 1 steps always suffice
    assert np.all(np.asarray(got.codes) >= 0)


def test_residual_energy_drops_by_the_squared_value_of_each_step():
    """Single steps composed equal the unrolled loop, and each lowers |r|^2 by value^2."""
    dic, x = problem(seed=3, tiny=False)
    steps = 8

    @jax.jit
    def run(x, r):
        return {
            sel: (
                unrolled_mp(dic, r, 1, selection=sel, stop="none"),
                unrolled_mp(dic, x, steps, selection=sel, stop="none"),
            )
            for sel in SELECTIONS
        }

    for sel in SELECTIONS:
        r, codes = x, np.zeros((x.shape[0], dic.shape[1]))
        for _ in range(steps):
            one, unrolled = run(x, r)[sel]
            value = np.asarray(one.codes)
            assert np.all((value != 0).sum(1) <= 1)
            energy = np.sum(np.asarray(r) ** 2, 1)
            new_energy = np.sum(np.asarray(one.residual) ** 2, 1)
            assert np.all(new_energy <= energy * (1 + 1e-13))
            np.testing.assert_allclose(
                energy - new_energy, np.sum(value**2, 1), rtol=1e-10, atol=1e-12
            )
            r, codes = one.residual, codes + value
        np.testing.assert_allclose(np.asarray(unrolled.codes), codes, atol=1e-12)
        np.testing.assert_allclose(np.asarray(unrolled.residual), np.asarray(r), atol=1e-12)
        drop = np.sum(x**2, 1) - np.sum(np.asarray(r) ** 2, 1)
        assert np.all(drop > 0.1)  # every signal made progress


def test_abs_without_reselection_residual_energy_is_signal_minus_code_energy():
    dic, x = problem(seed=4, tiny=False)
    got = unrolled_mp(dic, x, 7, selection="abs", reselect=False, stop="none")
    codes = np.asarray(got.codes)
    assert np.all((codes != 0).sum(1) == 7)
    np.testing.assert_allclose(
        np.sum(np.asarray(got.residual) ** 2, 1), np.sum(x**2, 1) - np.sum(codes**2, 1), rtol=1e-11
    )
    np.testing.assert_allclose(np.asarray(got.residual), x - codes @ dic.T, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# Gradients


# name: (selection, reselect, stop, detach_residual). The first three are piecewise smooth
# with the support rule (no threshold crossing), so finite differences apply to them.
GRAD_CONFIGS = {
    "relu": ("relu", True, "support", False),
    "abs-once": ("abs", False, "support", False),
    "signed": ("signed", True, "support", False),
    "relu-both-detach": ("relu", True, "both", True),
    "abs-once-residual": ("abs", False, "residual", False),
    "signed-none": ("signed", True, "none", False),
}
FD_NAMES = ("relu", "abs-once", "signed")
FD_STEP = 1e-6


def make_loss(gradient, selection, reselect, stop, detach):
    def loss(dic, x):
        res = unrolled_mp(
            dic,
            x,
            8,
            selection=selection,
            reselect=reselect,
            stop=stop,
            threshold=THRESHOLD,
            gradient=gradient,
            detach_residual=detach,
        )
        decoded = res.codes @ dic.T
        return (
            jnp.sum((decoded - x) ** 2)
            + jnp.sum(jnp.sin(3.0 * res.codes))
            + jnp.sum(jnp.cos(2.0 * res.residual))
        )

    return loss


@pytest.fixture(scope="module")
def gradients():
    """Full and lean gradients of every config, and central differences along 3 directions."""
    dic, x = problem(seed=5, tiny=False)
    rng = np.random.default_rng(6)
    u, v = rng.standard_normal((3,) + dic.shape), rng.standard_normal((3,) + x.shape)

    @jax.jit
    def run(dic, x, u, v):
        grads = {
            (name, g): jax.grad(make_loss(g, *cfg), argnums=(0, 1))(dic, x)
            for name, cfg in GRAD_CONFIGS.items()
            for g in ("full", "lean")
        }
        fd = {}
        for name in FD_NAMES:
            sel, rs, st, _ = GRAD_CONFIGS[name]
            loss = make_loss("lean", *GRAD_CONFIGS[name])

            def at(a, b, sign, loss=loss, sel=sel, rs=rs, st=st):
                moved_dic, moved_x = dic + sign * FD_STEP * a, x + sign * FD_STEP * b
                res = unrolled_mp(moved_dic, moved_x, 8, selection=sel, reselect=rs, stop=st)
                return loss(moved_dic, moved_x), res.codes != 0, res.num_steps

            fd[name] = [jax.vmap(lambda a, b, s=sign: at(a, b, s))(u, v) for sign in (1, -1)]
        return grads, fd

    grads, fd = run(dic, x, u, v)
    return dic, x, u, v, grads, fd


@pytest.mark.parametrize("name", FD_NAMES)
def test_gradients_match_central_finite_differences(gradients, name):
    dic, x, u, v, grads, fd = gradients
    (plus, support_plus, steps_plus), (minus, support_minus, steps_minus) = fd[name]
    # No argmax or stopping decision changed within the step.
    np.testing.assert_array_equal(support_plus, support_minus)
    np.testing.assert_array_equal(steps_plus, steps_minus)
    assert np.all(np.asarray(steps_plus) > 2)
    g_dic, g_x = (np.asarray(g) for g in grads[name, "lean"])
    for i in range(3):
        exact = np.sum(g_dic * u[i]) + np.sum(g_x * v[i])
        finite = (float(plus[i]) - float(minus[i])) / (2 * FD_STEP)
        np.testing.assert_allclose(finite, exact, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", list(GRAD_CONFIGS))
def test_full_and_lean_gradients_are_equal(gradients, name):
    grads = gradients[4]
    for full, lean in zip(grads[name, "full"], grads[name, "lean"]):
        assert np.any(np.asarray(full) != 0)
        np.testing.assert_allclose(np.asarray(lean), np.asarray(full), rtol=1e-10, atol=1e-13)


def test_detached_residual_gradient_is_the_residual_before_each_step():
    """With ``detach_residual`` a value ``<sg(r), d_j>`` depends on ``D`` only through ``d_j``."""
    dic, x = problem(seed=8)
    steps = 5

    @jax.jit
    def run(dic, x):
        def total(dic, x, detach):
            res = unrolled_mp(dic, x, steps, selection="abs", stop="none", detach_residual=detach)
            return jnp.sum(res.codes)

        def tiny_residual(x):  # the tiny signal is done before the first step
            res = unrolled_mp(dic, x, steps, threshold=THRESHOLD, detach_residual=True)
            return jnp.sum(res.residual[-1])

        grads = [jax.grad(total, argnums=(0, 1))(dic, x, detach) for detach in (True, False)]
        return grads, jax.grad(tiny_residual)(x)

    ((g_dic, g_x), (g_dic_attached, g_x_attached)), g_tiny = run(dic, x)
    np.testing.assert_array_equal(g_tiny[-1], 1.0)  # carried unchanged, never detached
    expected = np.zeros_like(dic)
    for xi in x:
        for r, j, _ in reference(dic, xi, steps, "abs", True, "none", THRESHOLD)[4]:
            expected[:, j] += r
    np.testing.assert_allclose(np.asarray(g_dic), expected, atol=1e-12)
    assert np.all(np.asarray(g_x) == 0)
    assert np.max(np.abs(np.asarray(g_dic_attached) - expected)) > 1e-3
    assert np.any(np.asarray(g_x_attached) != 0)


def test_decoder_mode_differentiates_only_the_decoding():
    dic, x = problem(seed=9)
    weights = jnp.arange(1.0, 9.0)

    def loss(codes, residual, dic, x):
        return jnp.sum((codes @ dic.T - x) ** 2 * weights) + jnp.sum(jnp.cos(residual))

    @jax.jit
    def run(dic, x):
        out = {}
        for early_exit in (False, True):
            kwargs = dict(max_steps=8, stop="both", threshold=THRESHOLD, early_exit=early_exit)

            def code_sum(dic, x, kwargs=kwargs):
                return jnp.sum(unrolled_mp(dic, x, gradient="decoder", **kwargs).codes)

            def decoded(dic, x, kwargs=kwargs):
                res = unrolled_mp(dic, x, gradient="decoder", **kwargs)
                return loss(res.codes, res.residual, dic, x)

            def with_fixed_codes(dic, x, kwargs=kwargs):
                fixed = jax.lax.stop_gradient(unrolled_mp(dic, x, **kwargs).codes)
                return loss(fixed, x - fixed @ dic.T, dic, x)

            out[early_exit] = [
                jax.grad(f, argnums=(0, 1))(dic, x) for f in (code_sum, decoded, with_fixed_codes)
            ]
        return out

    for zero, got, want in run(dic, x).values():
        for g in zero:
            assert np.all(np.asarray(g) == 0)
        for a, b in zip(got, want):
            assert np.any(np.asarray(b) != 0)
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-12)


def test_lean_gradient_keeps_no_per_step_batch_by_atoms_tensor():
    batch, d, n_atoms, steps = 256, 16, 1024, 32
    spec_dic = jax.ShapeDtypeStruct((d, n_atoms), jnp.float32)
    spec_x = jax.ShapeDtypeStruct((batch, d), jnp.float32)
    temp = {}
    for gradient in ("full", "lean"):

        def loss(dic, x, gradient=gradient):
            res = unrolled_mp(dic, x, steps, stop="both", threshold=0.05, gradient=gradient)
            return jnp.sum((res.codes @ dic.T - x) ** 2) + jnp.sum(res.codes)

        compiled = jax.jit(jax.grad(loss)).lower(spec_dic, spec_x).compile()
        try:
            analysis = compiled.memory_analysis()
        except (NotImplementedError, jax.errors.JaxRuntimeError) as err:  # pragma: no cover
            pytest.skip(f"memory_analysis is unavailable on this backend: {err}")
        if analysis is None:  # pragma: no cover
            pytest.skip("memory_analysis is unavailable on this backend")
        temp[gradient] = analysis.temp_size_in_bytes
    per_step = batch * n_atoms * 4  # one (batch, K) float32 tensor: 1 MiB
    # Measured on XLA:CPU: full about 77 MiB (2.4 such tensors per step), lean about 3.6 MiB.
    assert temp["full"] > steps * per_step, temp
    assert temp["lean"] < temp["full"] / 8, temp
    assert temp["lean"] < 8 * per_step, temp


# ----------------------------------------------------------------------------------------------
# Transformations, dtypes and argument checks


def test_jit_equals_eager_and_vmap_equals_a_loop():
    dic, x = problem(seed=10)
    kwargs = dict(selection="abs", stop="both", threshold=THRESHOLD)
    eager = unrolled_mp(dic, x, 9, **kwargs)
    jitted = jax.jit(lambda d_, x_: unrolled_mp(d_, x_, 9, **kwargs))(dic, x)
    for a, b in zip(eager, jitted):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    mapped = jax.vmap(lambda xi: unrolled_mp(dic, xi, 9, **kwargs))(x)
    for i, xi in enumerate(x):
        single = unrolled_mp(dic, xi, 9, **kwargs)
        assert single.codes.shape == (12,) and single.num_steps.shape == ()
        for a, b in zip(mapped, single):
            np.testing.assert_allclose(np.asarray(a[i]), np.asarray(b), rtol=0, atol=1e-14)
    # A swept threshold under vmap equals one call per threshold.
    thresholds = jnp.array([0.4, 0.8, 1.6])
    swept = jax.vmap(lambda t: unrolled_mp(dic, x, 9, stop="residual", threshold=t))(thresholds)
    for i, t in enumerate(thresholds):
        one = unrolled_mp(dic, x, 9, stop="residual", threshold=float(t))
        np.testing.assert_allclose(np.asarray(swept.codes[i]), np.asarray(one.codes), atol=1e-14)
        np.testing.assert_array_equal(np.asarray(swept.num_steps[i]), np.asarray(one.num_steps))
    assert np.all(np.diff(np.asarray(swept.num_steps), axis=0) <= 0)  # looser stops earlier
    assert np.any(np.diff(np.asarray(swept.num_steps), axis=0) < 0)


def test_leading_batch_axes_and_per_sample_thresholds():
    dic, x = problem(seed=11, tiny=False)
    x6 = x.reshape(2, 3, 8)
    thr = np.array([[0.2, 0.5, 1.0], [1.5, 2.0, 3.0]])
    got = unrolled_mp(dic, x6, 10, selection="signed", stop="residual", threshold=thr)
    assert got.codes.shape == (2, 3, 12) and got.residual.shape == (2, 3, 8)
    assert got.num_steps.shape == (2, 3) and got.stopped.shape == (2, 3)
    flat = [
        reference(dic, xi, 10, "signed", True, "residual", t) for xi, t in zip(x, thr.reshape(-1))
    ]
    np.testing.assert_allclose(
        np.asarray(got.codes).reshape(6, 12), np.array([f[0] for f in flat]), atol=1e-12
    )
    np.testing.assert_array_equal(np.asarray(got.num_steps).reshape(-1), [f[2] for f in flat])
    assert len(set(np.asarray(got.num_steps).reshape(-1).tolist())) > 2


def test_float32_runs_and_keeps_its_dtype():
    dic, x = problem(seed=12)
    dic32, x32 = dic.astype(np.float32), x.astype(np.float32)
    got = unrolled_mp(dic32, x32, 8, threshold=0.3)
    assert got.codes.dtype == jnp.float32 and got.residual.dtype == jnp.float32
    ref = reference_batch(dic, x, 8, "relu", True, "both", 0.3)
    np.testing.assert_allclose(np.asarray(got.codes), ref[0], atol=1e-5)
    np.testing.assert_array_equal(np.asarray(got.num_steps), ref[2])

    def code_sum(d_):
        return jnp.sum(unrolled_mp(d_, x32, 8, stop="none", gradient="lean").codes)

    g = jax.grad(code_sum)(dic32)
    assert g.dtype == jnp.float32 and np.all(np.isfinite(np.asarray(g)))


def test_reselect_false_clips_max_steps_to_the_number_of_atoms():
    dic, x = problem(seed=13)
    long = unrolled_mp(dic, x, 40, selection="abs", reselect=False, stop="none")
    exact = unrolled_mp(dic, x, 12, selection="abs", reselect=False, stop="none")
    np.testing.assert_array_equal(np.asarray(long.num_steps), 12)
    np.testing.assert_array_equal(np.asarray(long.codes), np.asarray(exact.codes))
    assert np.all(np.asarray(long.codes != 0).sum(1) == 12)  # every atom used once
    np.testing.assert_allclose(
        np.asarray(long.residual), x - np.asarray(long.codes) @ dic.T, atol=1e-12
    )


@pytest.mark.parametrize(
    "call,name",
    [
        (lambda d, x: unrolled_mp(d[0], x, 3, stop="none"), "dictionary"),
        (lambda d, x: unrolled_mp(d[None], x, 3, stop="none"), "dictionary"),
        (lambda d, x: unrolled_mp(d, x[:, :5], 3, stop="none"), "x"),
        (lambda d, x: unrolled_mp(d.astype(int), x, 3, stop="none"), "dictionary"),
        (lambda d, x: unrolled_mp(d, x.astype(np.int32), 3, stop="none"), "x"),
        (lambda d, x: unrolled_mp(d, x, 3), "threshold"),
        (lambda d, x: unrolled_mp(d, x, 3, stop="residual"), "threshold"),
        (lambda d, x: unrolled_mp(d, x, 3, threshold=0.0), "threshold"),
        (lambda d, x: unrolled_mp(d, x, 3, threshold=np.array([0.1, -1.0] * 3)), "threshold"),
        (lambda d, x: unrolled_mp(d, x, 3, threshold=np.ones(4)), "threshold"),
        (lambda d, x: unrolled_mp(d, x, 3, selection="max", threshold=0.1), "selection"),
        (lambda d, x: unrolled_mp(d, x, 3, stop="never"), "stop"),
        (lambda d, x: unrolled_mp(d, x, 3, gradient="ste", threshold=0.1), "gradient"),
        (lambda d, x: unrolled_mp(d, x, 0, threshold=0.1), "max_steps"),
        (lambda d, x: unrolled_mp(d, x, 2.0, threshold=0.1), "max_steps"),
        (lambda d, x: unrolled_mp(d, x, 3, reselect=None, threshold=0.1), "reselect"),
    ],
)
def test_bad_arguments_raise_value_errors_naming_them(call, name):
    dic, x = problem()
    with pytest.raises(ValueError, match=f"`{name}`"):
        call(dic, x)


def test_traced_threshold_is_accepted_under_jit():
    dic, x = problem(seed=14)
    f = jax.jit(lambda t: unrolled_mp(dic, x, 6, threshold=t).num_steps)
    np.testing.assert_array_equal(
        np.asarray(f(THRESHOLD)), reference_batch(dic, x, 6, "relu", True, "both")[2]
    )
