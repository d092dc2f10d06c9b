"""Classical sparse Bayesian learning by EM or MacKay fixed-point updates (and M-SBL)."""

from __future__ import annotations

from typing import Literal, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from jaxspec._checks import check_choice, check_int, check_positive, is_concrete
from jaxspec._status import Status
from jaxspec.sbl._common import (
    NOISE_FLOOR,
    abs2,
    check_dictionary_and_data,
    check_noise_var,
    check_unit_interval,
    real_dtype,
)
from jaxspec.sbl._posterior import FORMS, Posterior, posterior, resolve_form
from jaxspec.sbl._solution import SBLSolution

UPDATES: tuple[str, ...] = ("em", "mackay", "fast")


class _State(NamedTuple):
    gamma: jax.Array  # (N,)
    noise_var: jax.Array
    post: Posterior  # at (gamma, noise_var)
    change: jax.Array  # max |gamma - gamma_prev| / max gamma
    step: jax.Array


def update_hyperparameters(
    post: Posterior,
    gamma: jax.Array,
    noise_var: jax.Array,
    *,
    update: str,
    learn_noise: bool,
    prune: jax.Array,
    m: int,
    noise_floor: jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """One M-step: new ``(gamma, noise_var)`` from the posterior at ``(gamma, noise_var)``.

    EM (Wipf and Rao 2004): ``gamma <- |mu|^2 + Sigma_ii``; MacKay (Tipping 2001):
    ``gamma <- |mu|^2 / g`` with ``g = 1 - Sigma_ii / gamma``. ``|mu|^2`` is averaged over the
    measurement vectors (M-SBL). Noise: EM ``(||Y - A mu||^2 / L + noise_var sum g) / M``,
    MacKay ``||Y - A mu||^2 / (L (M - sum g))``. Atoms with ``gamma < prune * max(gamma)``
    are set to zero, and zero is a fixed point of both rules (a pruned atom stays pruned).
    """
    num_vectors = post.mean.shape[1]
    active = gamma > 0
    safe_gamma = jnp.where(active, gamma, 1.0)
    g = jnp.where(active, 1 - post.covariance_diag / safe_gamma, 0.0)
    power = jnp.mean(abs2(post.mean), axis=1)
    if update == "em":
        new_gamma = power + post.covariance_diag
    else:
        tiny = jnp.finfo(gamma.dtype).tiny
        new_gamma = power / jnp.maximum(g, jnp.sqrt(tiny))
    new_gamma = jnp.where(active, new_gamma, 0.0)
    new_gamma = jnp.where(new_gamma < prune * jnp.max(new_gamma), 0.0, new_gamma)
    if not learn_noise:
        return new_gamma, noise_var
    residual = post.residual_sq / num_vectors
    if update == "em":
        new_noise = (residual + noise_var * jnp.sum(g)) / m
    else:
        new_noise = residual / jnp.maximum(m - jnp.sum(g), 1.0)
    return new_gamma, jnp.maximum(new_noise, noise_floor)


def sbl(
    A: jax.typing.ArrayLike,
    y: jax.typing.ArrayLike,
    *,
    noise_var: jax.typing.ArrayLike | None = None,
    update: Literal["em", "mackay", "fast"] = "mackay",
    max_steps: int = 1000,
    tol: jax.typing.ArrayLike | None = None,
    prune: jax.typing.ArrayLike = 1e-8,
    form: Literal["auto", "woodbury", "primal"] = "auto",
    gamma0: jax.typing.ArrayLike | None = None,
    noise_var0: jax.typing.ArrayLike | None = None,
    capacity: int | None = None,
    throw: bool = False,
) -> SBLSolution:
    r"""Sparse Bayesian learning: type-II maximum likelihood for ``y = A x + n``.

    Each coefficient ``x_i ~ N(0, gamma_i)``, the noise is white with variance ``noise_var``;
    the hyperparameters minimize the type-II cost
    ``log|Sigma_y| + y^H Sigma_y^{-1} y`` with ``Sigma_y = noise_var I + A diag(gamma) A^H``,
    and the estimate is the posterior mean ``mu = diag(gamma) A^H Sigma_y^{-1} y``. Atoms whose
    ``gamma`` falls below ``prune * max(gamma)`` are pruned (``gamma = 0`` exactly, kept by
    masks so shapes stay static under ``jit``/``vmap``).

    Updates:

    * ``"mackay"`` (default; MacKay 1992; Tipping 2001):
      ``gamma <- |mu|^2 / (1 - Sigma_ii / gamma)``; irrelevant atoms leave fast, so the active
      set shrinks early and the cheaper compacted iterations (``capacity``) take over.
    * ``"em"`` (Wipf and Rao 2004): ``gamma <- |mu|^2 + Sigma_ii``; the cost never increases
      (with ``noise_var`` fixed); irrelevant ``gamma`` decay only like ``1/t``, so it is slow
      near phase transitions and needs a larger ``prune`` to shed atoms.
    * ``"fast"`` (Tipping and Faul 2003): the sequential algorithm that adds,
      re-estimates or deletes one atom per step, whichever lowers the cost most, keeping a
      fixed-capacity active set of at most ``capacity`` atoms (see :func:`fast_sbl`); only
      single measurement vectors.

    The dense updates use the Woodbury (``M x M``) form when ``M < N`` and the primal
    (``N x N``) form otherwise (``form``), Cholesky solves only, and only ``diag(Sigma)``.
    ``y`` of shape ``(M, L)`` is M-SBL (Wipf and Rao 2007): ``L`` measurement vectors sharing
    one ``gamma``; ``|mu_i|^2`` is then the mean over the vectors. Complex ``A``, ``y`` use the
    circular complex Gaussian model (conjugate transposes; ``gamma`` stays real).

    Noise: a given ``noise_var`` is kept fixed (traceable: sweep it with ``vmap``);
    ``None`` learns it (EM: ``(||y - A mu||^2 + noise_var sum_i g_i) / M``; MacKay and fast:
    ``||y - A mu||^2 / (M - sum_i g_i)``, ``g_i = 1 - Sigma_ii / gamma_i``), starting from
    ``noise_var0`` (default ``0.1 ||y||^2 / M``) and floored at ``100 eps ||y||^2 / M``.
    Learning the noise is unreliable below about 20 dB SNR; give it when it is known.

    Stopping (dense updates): ``max_i |gamma_i - gamma_i^prev| <= tol * max_i gamma_i``
    (``CONVERGED``), the step budget (``MAX_STEPS``), or a non-finite value (``NONFINITE``, the
    iteration stops). EM moves slowly near phase transitions, so a loose ``tol`` can stop it
    short of the optimum; pass a smaller one where the fixed point matters.

    Gradients: ``jax.grad`` of the returned ``mean`` (or ``cost``) with respect to ``A``,
    ``y`` and a given ``noise_var`` is exact at the converged hyperparameters: the solve is
    wrapped by the implicit function theorem at the stationary point of the type-II cost
    (``jaxspec/sbl/_implicit.py``; the backward pass forms the ``(N + 1) x (N + 1)`` Hessian
    of the cost); it is supported for the ``"em"`` and ``"mackay"`` updates.

    Args:
        A: dictionary ``(M, N)``, real or complex, float32 or float64.
        y: measurements ``(M,)`` or ``(M, L)`` (M-SBL).
        noise_var: fixed noise variance ``> 0`` (traceable), or ``None`` to learn it.
        update: ``"mackay"`` (default), ``"em"`` or ``"fast"`` (static).
        max_steps: iteration budget (static). For ``"fast"`` one step changes one atom.
        tol: stopping threshold ``> 0`` (traceable): for the dense updates the relative
            change of ``gamma`` (default 1e-4, the KroSBL code's rule), for ``"fast"`` the
            largest ``|Delta log alpha|`` of a re-estimate (default 1e-3, SparseBayes').
        prune: relative pruning threshold in ``[0, 1)`` (traceable; ``0`` never prunes).
        form: ``"auto"``, ``"woodbury"`` or ``"primal"`` (static; dense updates only).
        gamma0: initial ``gamma`` ``(N,)`` for the dense updates; default
            ``||y||^2 / (L ||A||_F^2)`` for every atom.
        noise_var0: initial noise variance when it is learned.
        capacity: active-set size (static). ``"fast"``: its slots (default ``min(M, N)``).
            Dense updates: each time pruning leaves at most half the current number of
            atoms (while above ``capacity``), and then at most ``capacity``, the iteration
            continues on the remaining atoms alone (Woodbury form while more than ``M``,
            then the primal ``K x K`` form): the same iterates at ``O(M^2 K)`` or
            ``O(M K^2)`` instead of ``O(M^2 N)`` a step (default ``min(M, N)``; ``N`` turns
            it off).
        throw: raise at run time (``eqx.error_if``) unless the status is ``CONVERGED``.

    Returns:
        An :class:`SBLSolution` with ``mean`` of shape ``(N,)`` (``(N, L)`` for M-SBL).

    Raises:
        ValueError: naming the argument, for integer or mismatched ``A``/``y``, an unknown
            ``update``/``form``, ``noise_var <= 0``, ``tol <= 0``, ``prune`` outside
            ``[0, 1)``, a negative ``max_steps``, a ``gamma0`` of the wrong shape,
            ``capacity`` outside ``[1, N]``, or ``"fast"`` with several measurement vectors.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jaxspec import sbl
        >>> A = jax.random.normal(jax.random.key(0), (20, 40))
        >>> x = jnp.zeros(40).at[jnp.array([3, 17, 31])].set(jnp.array([1.0, -2.0, 1.5]))
        >>> sol = sbl.sbl(A, A @ x)
        >>> [int(i) for i in jnp.flatnonzero(jnp.abs(sol.mean) > 1e-3)]
        [3, 17, 31]

    References:
        Tipping, "Sparse Bayesian learning and the relevance vector machine", JMLR 1, 2001.
        Wipf and Rao, "Sparse Bayesian learning for basis selection", IEEE TSP 52(8), 2004.
        Wipf and Rao, "An empirical Bayesian strategy for solving the simultaneous sparse
        approximation problem", IEEE TSP 55(7), 2007.
        Tipping and Faul, "Fast marginal likelihood maximisation for sparse Bayesian
        models", AISTATS 2003.
        MacKay, "Bayesian interpolation", Neural Computation 4(3), 1992.
    """
    check_choice(update, "update", UPDATES)
    check_choice(form, "form", FORMS)
    a, y2, vector = check_dictionary_and_data(A, y)
    max_steps = check_int(max_steps, "max_steps", minimum=0)
    check_noise_var(noise_var)
    if tol is None:
        tol = 1e-3 if update == "fast" else 1e-4
    check_positive(tol, "tol")
    check_unit_interval(prune, "prune")
    if noise_var0 is not None:
        check_positive(noise_var0, "noise_var0")
    if update == "fast":
        from jaxspec.sbl._fast import fast_sbl

        if not vector:
            raise ValueError(
                '`update` "fast" takes one measurement vector y (M,); use "mackay" or "em" '
                f"for y of shape {tuple(y2.shape)}."
            )
        if gamma0 is not None:
            raise ValueError('`gamma0` is not used by update="fast" (it starts empty).')
        return fast_sbl(
            a,
            y2[:, 0],
            noise_var=noise_var,
            max_steps=max_steps,
            tol=tol,
            capacity=capacity,
            noise_var0=noise_var0,
            throw=throw,
        )
    from jaxspec.sbl._implicit import solve_hyperparameters

    m, n = a.shape
    rdtype = real_dtype(a.dtype)
    if gamma0 is not None:
        gamma0 = jnp.asarray(gamma0, rdtype)
        if gamma0.shape != (n,):
            raise ValueError(f"`gamma0` must have shape ({n},), got {tuple(gamma0.shape)}.")
        if is_concrete(gamma0) and not bool(jnp.all(jnp.isfinite(gamma0) & (gamma0 >= 0))):
            raise ValueError("`gamma0` must be finite and >= 0 (0 starts an atom pruned).")
    if capacity is None:
        capacity = min(m, n)
    capacity = check_int(capacity, "capacity", minimum=1)
    if capacity > n:
        raise ValueError(f"`capacity` must be <= N = {n}, got {capacity}.")
    options = dict(
        update=update,
        form=resolve_form(form, m, n),
        max_steps=max_steps,
        learn_noise=noise_var is None,
        capacity=capacity,
    )
    hyper = dict(
        tol=jnp.asarray(tol, rdtype),
        prune=jnp.asarray(prune, rdtype),
        gamma0=gamma0,
        noise_var0=None if noise_var0 is None else jnp.asarray(noise_var0, rdtype),
    )
    given = None if noise_var is None else jnp.asarray(noise_var, rdtype)
    gamma, noise, steps, status = solve_hyperparameters(a, y2, given, hyper, options)
    if given is not None:
        noise = given  # the fixed noise enters the posterior directly (its gradient path)
    post = final_posterior(a, y2, gamma, noise, options)
    mean = post.mean[:, 0] if vector else post.mean
    sol = SBLSolution(mean, gamma, noise, post.cost, post.covariance_diag, steps, status)
    if throw:
        mean = eqx.error_if(
            sol.mean, sol.status != Status.CONVERGED, "sbl did not converge (status != 0)."
        )
        sol = sol._replace(mean=mean)
    return sol


def final_posterior(a, y, gamma, noise_var, options: dict) -> Posterior:
    """The posterior at the solution (differentiable in ``a``, ``y``, ``noise_var``): on the
    ``capacity`` largest ``gamma`` alone, in the compact form, when no other is nonzero
    (pruned atoms are exact zeros: the same posterior), else on all atoms."""
    m, n = a.shape
    k = options["capacity"]

    def full(a, y, gamma, noise_var):
        return posterior(a, y, gamma, noise_var, options["form"])

    if k >= n:
        return full(a, y, gamma, noise_var)

    def compact(a, y, gamma, noise_var):
        keep = jax.lax.top_k(gamma, k)[1]
        post = posterior(a[:, keep], y, gamma[keep], noise_var, resolve_form("auto", m, k))
        mean = jnp.zeros((n, y.shape[1]), post.mean.dtype).at[keep].set(post.mean)
        cov_diag = jnp.zeros(n, post.covariance_diag.dtype).at[keep].set(post.covariance_diag)
        return post._replace(mean=mean, covariance_diag=cov_diag)

    fits = jnp.sum(gamma > 0) <= k
    return jax.lax.cond(fits, compact, full, a, y, gamma, noise_var)


def initial_hyperparameters(a, y, noise_var, hyper: dict):
    """``(gamma (N,), noise_var, noise_floor)`` to start from: ``hyper["gamma0"]`` or
    ``||Y||^2 / (L ||A||_F^2)`` for every atom; a given noise, or ``hyper["noise_var0"]``, or
    ``0.1 ||Y||^2 / (M L)``, floored at ``NOISE_FLOOR eps ||Y||^2 / (M L)`` (for ``Y = 0``:
    ``gamma = 0``, the optimum, and ``||Y||^2 / L`` taken as 1)."""
    m, n = a.shape
    rdtype = real_dtype(a.dtype)
    power = jnp.sum(abs2(y)) / y.shape[1]
    signal = power > 0
    power = jnp.where(signal, power, 1.0)  # y = 0 (say a padded signal): scale 1
    noise_floor = NOISE_FLOOR * jnp.finfo(rdtype).eps * power / m
    gamma = hyper["gamma0"]
    if gamma is None:
        # for y = 0, gamma = 0 is the optimum (the cost falls as gamma -> 0); EM would only
        # approach it like 1/t, and under vmap hold its batch to max_steps
        a_energy = jnp.sum(abs2(a))
        gamma0 = jnp.where(signal, power / jnp.where(a_energy > 0, a_energy, 1.0), 0.0)
        gamma = jnp.full((n,), gamma0, rdtype)
    if noise_var is None:
        noise0 = hyper["noise_var0"]
        noise0 = 0.1 * power / m if noise0 is None else noise0
        noise0 = jnp.maximum(noise0, noise_floor)
    else:
        noise0 = noise_var
    return gamma, noise0, noise_floor


def stage_sizes(n: int, capacity: int) -> tuple[int, ...]:
    """Working sizes of the compacting iteration: ``N``, halved while above ``capacity``,
    then ``capacity`` (``(256, 128, 100)`` for ``N = 256``, ``capacity = 100``)."""
    sizes = [n]
    while sizes[-1] // 2 > capacity:
        sizes.append(sizes[-1] // 2)
    if capacity < n:
        sizes.append(capacity)
    return tuple(sizes)


def _iterate(a, y, st: _State, hyper: dict, options: dict, noise_floor, until, active):
    """EM/MacKay iterations on the columns ``a`` from ``st`` until converged, the budget, a
    non-finite value, or (``until``) until at most ``until`` atoms remain; none unless
    ``active``."""
    m, k = a.shape
    form = options["form"] if k == options["num_atoms"] else resolve_form("auto", m, k)
    gram = aty = None
    if form == "primal":
        gram = jnp.conj(a.T) @ a
        aty = jnp.conj(a.T) @ y

    def e_step(gamma, noise):
        return posterior(a, y, gamma, noise, form, gram, aty)

    def body(st: _State) -> _State:
        gamma, noise = update_hyperparameters(
            st.post,
            st.gamma,
            st.noise_var,
            update=options["update"],
            learn_noise=options["learn_noise"],
            prune=hyper["prune"],
            m=m,
            noise_floor=noise_floor,
        )
        top = jnp.max(gamma)  # 0 once every atom is pruned (y = 0): the change is absolute
        change = jnp.max(jnp.abs(gamma - st.gamma)) / jnp.where(top > 0, top, 1.0)
        return _State(gamma, noise, e_step(gamma, noise), change, st.step + 1)

    def running(st: _State) -> jax.Array:
        finite = ~jnp.isnan(st.change) & jnp.isfinite(st.post.cost)
        go = (st.step < options["max_steps"]) & (st.change > hyper["tol"]) & finite & active
        if until is not None:
            go = go & (jnp.sum(st.gamma > 0) > until)
        return go

    st = st._replace(post=e_step(st.gamma, st.noise_var))
    return jax.lax.while_loop(running, body, st)


def run_fixed_point(
    a: jax.Array,
    y: jax.Array,
    noise_var: jax.Array | None,
    hyper: dict,
    options: dict,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """The EM/MacKay iteration: ``(gamma, noise_var, steps, status)``.

    The iteration starts on all ``N`` atoms (``options["form"]``). Each time pruning leaves
    at most the next of :func:`stage_sizes` atoms, the remaining atoms are gathered into an
    ``M x K`` dictionary and the iteration continues there (Woodbury form while ``K > M``,
    then the primal ``K x K`` form). Pruned atoms are exact zeros, so the iterates are the
    same, at ``O(M^2 K)`` or ``O(M K^2)`` instead of ``O(M^2 N)`` per iteration.
    """
    m, n = a.shape
    num_vectors = y.shape[1]
    rdtype = real_dtype(a.dtype)
    gamma, noise0, noise_floor = initial_hyperparameters(a, y, noise_var, hyper)
    zero = jnp.zeros((), rdtype)
    sizes = stage_sizes(n, options["capacity"])

    def blank(k):
        return Posterior(jnp.zeros((k, num_vectors), a.dtype), jnp.zeros(k, rdtype), zero, zero)

    options = dict(options, num_atoms=n)
    until = sizes[1] if len(sizes) > 1 else None
    init = _State(gamma, noise0, blank(n), jnp.asarray(jnp.inf, rdtype), jnp.int32(0))
    st = _iterate(a, y, init, hyper, options, noise_floor, until, jnp.bool_(True))
    cost = st.post.cost
    running = jnp.bool_(True)
    for i, size in enumerate(sizes[1:], start=1):
        # the previous stage ran and pruned down to ``size`` atoms (else it stopped early)
        running = running & (jnp.sum(st.gamma > 0) <= size)
        keep = jax.lax.top_k(st.gamma, size)[1]  # every nonzero gamma when it fits
        compact = _State(st.gamma[keep], st.noise_var, blank(size), st.change, st.step)
        until = sizes[i + 1] if i + 1 < len(sizes) else None
        out = _iterate(a[:, keep], y, compact, hyper, options, noise_floor, until, running)
        st = _State(
            jnp.where(running, jnp.zeros(n, rdtype).at[keep].set(out.gamma), st.gamma),
            jnp.where(running, out.noise_var, st.noise_var),
            blank(n),
            jnp.where(running, out.change, st.change),
            jnp.where(running, out.step, st.step),
        )
        cost = jnp.where(running, out.post.cost, cost)
    finite = (
        jnp.isfinite(cost)
        & jnp.all(jnp.isfinite(st.gamma))
        & jnp.isfinite(st.noise_var)
        & ~jnp.isnan(st.change)
    )
    status = jnp.where(
        ~finite,
        jnp.int32(Status.NONFINITE),
        jnp.where(st.change <= hyper["tol"], jnp.int32(Status.CONVERGED), Status.MAX_STEPS),
    ).astype(jnp.int32)
    return st.gamma, st.noise_var, st.step, status
