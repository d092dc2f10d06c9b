"""One JAX contract suite over every registered public callable (see registry.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.contracts.registry import REGISTRY, Contract

IDS = [c.name for c in REGISTRY]


def _close(a, b, rtol):
    a = np.asarray(jnp.asarray(a, jnp.float64) if a.dtype == jnp.bfloat16 else a, np.float64)
    b = np.asarray(jnp.asarray(b, jnp.float64) if b.dtype == jnp.bfloat16 else b, np.float64)
    scale = max(1.0, float(np.abs(b).max(initial=0.0)))
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * scale)


def _tree_close(x, y, rtol):
    jax.tree.map(lambda a, b: _close(a, b, rtol), x, y)


@pytest.mark.parametrize("contract", REGISTRY, ids=IDS)
def test_jit_matches_eager(contract: Contract):
    args = contract.make_args(np.random.default_rng(0), jnp.float64)
    _tree_close(jax.jit(contract.fn)(*args), contract.fn(*args), contract.rtol["float64"])


@pytest.mark.slow  # over the unit budget; CI runs it in the slow step
@pytest.mark.parametrize("contract", REGISTRY, ids=IDS)
def test_vmap_equals_loop(contract: Contract):
    rng = np.random.default_rng(1)
    items = [contract.make_args(rng, jnp.float64) for _ in range(3)]
    stacked = [
        jnp.stack([it[i] for it in items]) if i in contract.vmap_argnums else items[0][i]
        for i in range(len(items[0]))
    ]
    in_axes = tuple(0 if i in contract.vmap_argnums else None for i in range(len(stacked)))
    out = jax.jit(jax.vmap(contract.fn, in_axes=in_axes))(*stacked)
    for k, it in enumerate(items):
        args = [it[i] if i in contract.vmap_argnums else items[0][i] for i in range(len(it))]
        _tree_close(
            jax.tree.map(lambda a, k=k: a[k], out), contract.fn(*args), contract.rtol["float64"]
        )


@pytest.mark.parametrize(
    ("contract", "dtype"),
    [(c, d) for c in REGISTRY for d in c.dtypes],
    ids=[f"{c.name}-{jnp.dtype(d).name}" for c in REGISTRY for d in c.dtypes],
)
def test_dtypes(contract: Contract, dtype):
    args = contract.make_args(np.random.default_rng(2), dtype)
    out = jax.jit(contract.fn)(*args)
    for leaf in jax.tree.leaves(out):
        assert leaf.dtype == jnp.dtype(dtype), f"{contract.name}: {leaf.dtype} != {dtype}"
        assert bool(jnp.all(jnp.isfinite(leaf.astype(jnp.float32))))
    if dtype != jnp.float64:  # agrees with the float64 result to the dtype's tolerance
        ref = contract.fn(*contract.make_args(np.random.default_rng(2), jnp.float64))
        _tree_close(out, ref, 10 * contract.rtol[jnp.dtype(dtype).name])


@pytest.mark.parametrize("contract", [c for c in REGISTRY if c.batch], ids=lambda c: c.name)
def test_leading_batch_axes(contract: Contract):
    rng = np.random.default_rng(3)
    items = [contract.make_args(rng, jnp.float64) for _ in range(2)]
    first = jnp.stack([it[0] for it in items])
    out = contract.fn(first, *items[0][1:])
    for k, it in enumerate(items):
        ref = contract.fn(it[0], *items[0][1:])
        _tree_close(jax.tree.map(lambda a, k=k: a[k], out), ref, contract.rtol["float64"])


@pytest.mark.slow  # over the unit budget; CI runs it in the slow step
@pytest.mark.parametrize("contract", [c for c in REGISTRY if c.grad], ids=lambda c: c.name)
def test_gradients_match_finite_differences(contract: Contract):
    args = contract.make_args(np.random.default_rng(4), jnp.float64)
    weights = jax.tree.map(
        lambda a: jnp.asarray(np.random.default_rng(5).standard_normal(a.shape)),
        contract.fn(*args),
    )

    def scalar(x):
        out = contract.fn(x, *args[1:])
        return sum(jnp.vdot(w, o) for w, o in zip(jax.tree.leaves(weights), jax.tree.leaves(out)))

    x = args[0]
    grad = jax.grad(scalar)(x)
    direction = jnp.asarray(np.random.default_rng(6).standard_normal(x.shape))
    h = 1e-6
    fd = (scalar(x + h * direction) - scalar(x - h * direction)) / (2 * h)
    assert float(jnp.vdot(grad, direction)) == pytest.approx(float(fd), rel=1e-5, abs=1e-7)
