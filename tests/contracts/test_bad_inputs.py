"""Bad input over the whole contract registry: a clear error at trace time, never a crash.

For every registered callable the first array argument is spoiled in each of these ways (and,
for callables with several array arguments, the second argument's shape is changed):

* ``int``: an integer array: ``ValueError`` at trace time;
* ``rank``: one axis fewer than the example (a matrix becomes a vector, a vector a scalar):
  ``ValueError`` at trace time;
* ``mismatch``: the second array argument one entry shorter along its last axis:
  ``ValueError`` at trace time;
* ``empty``: a zero-length last axis: a ``ValueError`` at trace time, or a result free of
  NaN (an empty or finite output);
* ``complex``: a complex array: ``ValueError`` at trace time (no public function here
  documents complex support unless ``KNOWN`` says so);
* ``nonfinite`` / ``inf``: a NaN / +Inf entry: a run-time error (``eqx.error_if``), a
  ``ValueError``, or an output that carries the NaN (propagated, not invented) or reports it
  in a status; never an unrelated exception from deep inside JAX;
* ``nonpositive``: the first scalar argument after the first (a threshold, radius, step
  size, ...) set to -1, called eagerly (so the value is concrete): a ``ValueError`` naming it,
  or a run-time error.

``KNOWN`` lists the exceptions: inputs valid by design, arguments that only reach the test's
own wrapper, and the remaining gaps (strict xfails).
"""

from __future__ import annotations

import fnmatch

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.contracts.registry import REGISTRY, Contract

# "name-case" patterns (fnmatch) -> (kind, reason). kind "valid": the input is valid by design
# and must keep working; "n/a": the spoiled argument only feeds the test's own wrapper (a user
# loss, the transform harness), not a jaxspec check; "gap": a missing check, kept as a strict
# xfail so that fixing it makes the test fail until the entry is removed.
KNOWN: dict[str, tuple[str, str]] = {
    "lmo.*-rank": ("valid", "vector sets take one norm over the whole input, any rank"),
    "pursuit.*_threshold-rank": ("valid", "thresholds are elementwise"),
    "frank_wolfe.lp_*-mismatch": ("valid", "the last axis of `y` is the sample count"),
    "orthogonalize*-complex": ("valid", "spectral maps are documented for complex matrices"),
    "polar*-complex": ("valid", "spectral maps are documented for complex matrices"),
    "spectral_norm-complex": ("valid", "spectral maps are documented for complex matrices"),
    "*_clip*-complex": ("valid", "spectral maps are documented for complex matrices"),
    "sbl.*-complex": ("valid", "SBL is documented for complex data (circular Gaussian model)"),
    "manifolds.skew-complex": ("valid", "plain transpose parts, defined for complex matrices"),
    "manifolds.sym-complex": ("valid", "plain transpose parts, defined for complex matrices"),
    "manifolds.minimize*-*": ("n/a", "the argument feeds the user's objective"),
    "frank_wolfe.solve*-*": ("n/a", "the argument feeds the user's objective"),
    "frank_wolfe.stochastic_*-*": ("n/a", "the argument feeds the user's objective"),
}


def _known(contract: Contract, case: str) -> tuple[str, str] | None:
    for pattern, entry in KNOWN.items():
        if fnmatch.fnmatchcase(f"{contract.name}-{case}", pattern):
            return entry
    return None


CASES = ("int", "complex", "rank", "mismatch", "empty", "nonfinite", "inf", "nonpositive")


def _scalar_index(args) -> int | None:
    """Index of the first 0-d argument after the first (a hyperparameter), if any."""
    return next((i for i, a in enumerate(args) if i > 0 and np.ndim(a) == 0), None)


def _first_is_array(contract: Contract) -> bool:
    args = contract.make_args(np.random.default_rng(0), jnp.float64)
    return np.ndim(args[0]) >= 1


def _spoil(contract: Contract, case: str):
    args = list(contract.make_args(np.random.default_rng(7), jnp.float64))
    x = jnp.asarray(args[0])
    if case == "int":
        args[0] = jnp.round(x).astype(jnp.int32)
    elif case == "complex":
        args[0] = x.astype(jnp.complex128) * (1 + 0.5j)
    elif case == "rank":
        args[0] = x[..., 0]
    elif case == "empty":
        args[0] = x[..., :0]
    elif case == "nonfinite":
        args[0] = x.at[(0,) * x.ndim].set(jnp.nan)
    elif case == "inf":
        args[0] = x.at[(0,) * x.ndim].set(jnp.inf)
    elif case == "nonpositive":
        i = _scalar_index(args)
        args[i] = jnp.asarray(-1, jnp.asarray(args[i]).dtype)
    elif case == "mismatch":
        y = jnp.asarray(args[1])
        args[1] = y[..., :-1]
    return args


def _cases():
    out = []
    for contract in REGISTRY:
        if not _first_is_array(contract):
            continue
        for case in CASES:
            if case == "mismatch":
                second = contract.make_args(np.random.default_rng(0), jnp.float64)[1:2]
                if not second or np.ndim(second[0]) < 1 or 1 not in contract.vmap_argnums:
                    continue
            if case == "nonpositive":
                args = contract.make_args(np.random.default_rng(0), jnp.float64)
                if _scalar_index(args) is None:
                    continue
            known = _known(contract, case)
            marks = (
                [pytest.mark.xfail(strict=True, reason=known[1])]
                if known and known[0] == "gap"
                else []
            )
            out.append(pytest.param(contract, case, id=f"{contract.name}-{case}", marks=marks))
    return out


CASE_PARAMS = _cases()


def _has_nan(tree) -> bool:
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
    return any(bool(jnp.any(jnp.isnan(jnp.asarray(x)))) for x in leaves)


@pytest.mark.parametrize(("contract", "case"), CASE_PARAMS)
def test_bad_input_is_rejected_or_handled(contract: Contract, case: str):
    args = _spoil(contract, case)
    known = _known(contract, case)
    if known and known[0] == "n/a":
        pytest.skip(known[1])
    if case == "nonpositive":  # eager: the hyperparameter is concrete
        try:
            jax.block_until_ready(contract.fn(*args))
        except ValueError as err:
            assert "`" in str(err), f"the error should name the argument: {err}"
            return
        except jax.errors.JaxRuntimeError:  # eqx.error_if at run time
            return
        assert known and known[0] == "valid", "a negative hyperparameter was accepted"
        return
    fn = jax.jit(contract.fn)
    if case in ("int", "complex", "rank", "mismatch"):
        if known and known[0] == "valid":  # valid by design for some entries of the pattern:
            try:  # it runs, or raises a clear error where the input is not valid after all
                jax.block_until_ready(fn(*args))
            except ValueError as err:
                assert "`" in str(err), f"the error should name the argument: {err}"
            return
        with pytest.raises(ValueError, match="`"):  # the message names the argument
            fn(*args)
        return
    try:
        out = fn(*args)
        jax.block_until_ready(out)
    except ValueError as err:
        assert "`" in str(err), f"the error should name the argument: {err}"
        return
    except jax.errors.JaxRuntimeError as err:  # eqx.error_if at run time
        assert case in ("nonfinite", "inf"), f"{case}: unexpected run-time error {err}"
        return
    if case == "empty":
        assert not _has_nan(out), "an empty input produced NaN"
    # nonfinite: a result that carries the NaN (or a status) is the documented behaviour
