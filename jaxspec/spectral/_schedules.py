"""Newton–Schulz coefficient schedules for odd quintic polar iterations.

A schedule is an array of shape ``(steps, 3)``; row ``t`` holds ``(a, b, c)`` of the odd
polynomial ``p_t(x) = a x + b x^3 + c x^5`` applied to the singular values at step ``t``
(as the matrix map ``X <- a X + (b A + c A^2) X`` with ``A = X X^T``).

Everything here is NumPy in float64 (schedules are constants of the algorithm, built once on
the host); the iterations cast them to the working dtype.
"""

from __future__ import annotations

import numpy as np

from jaxspec._checks import check_choice, check_int

# Keller Jordan's Muon quintic, repeated every step.
JORDAN = (3.4445, -4.7750, 2.0315)

# You Jiacheng's 5-row schedule (optax calls it "dion").
YOU = (
    (4.0848, -6.8946, 2.9270),
    (3.9505, -6.3029, 2.6377),
    (3.7418, -5.5913, 2.3037),
    (2.8769, -3.1427, 1.2046),
    (2.8366, -3.0525, 1.2012),
)

# Polar Express, Algorithm 1 of Amsel et al. (2025), designed for [1e-3, 1], before the
# safety factor; later steps repeat the last row (the classic quintic).
POLAR_EXPRESS = (
    (8.28721201814563, -23.595886519098837, 17.300387312530933),
    (4.107059111542203, -2.9478499167379106, 0.5448431082926601),
    (3.9486908534822946, -2.908902115962949, 0.5518191394370137),
    (3.3184196573706015, -2.488488024314874, 0.51004894012372),
    (2.300652019954817, -1.6689039845747493, 0.4188073119525673),
    (1.891301407787398, -1.2679958271945868, 0.37680408948524835),
    (1.8750014808534479, -1.2500016453999487, 0.3750001645474248),
    (1.875, -1.25, 0.375),
)

# Classic quintic Newton–Schulz (15 x - 10 x^3 + 3 x^5) / 8: fixed point 1, third order.
QUINTIC = (1.875, -1.25, 0.375)
# Classic cubic Newton–Schulz (3 x - x^3) / 2.
CUBIC = (1.5, -0.5, 0.0)

SCHEDULES = ("polar_express", "jordan", "you", "cubic")
DEFAULT_STEPS = 5
SAFETY = 1.01


def apply_safety(rows: np.ndarray, safety: float = SAFETY, *, last: bool = False) -> np.ndarray:
    """Replace ``p(x)`` by ``p(x / safety)`` on every row (but the last unless ``last``).

    The safety factor keeps round-off from pushing singular values above the interval each
    polynomial was designed for (Amsel et al. 2025, Sec. 5).
    """
    rows = np.array(rows, dtype=np.float64, copy=True)
    scale = np.array([safety, safety**3, safety**5])
    n = len(rows) if last else len(rows) - 1
    rows[:n] = rows[:n] / scale
    return rows


def schedule_coefficients(schedule: str | np.ndarray, steps: int | None = None) -> np.ndarray:
    """Coefficient rows ``(steps, 3)`` (float64) of a named schedule or a user array.

    Args:
        schedule: ``"polar_express"`` (per-step minimax rows with the 1.01 safety factor on
            every step but the last, continuing with ``(1.875, -1.25, 0.375)`` past row 8),
            ``"jordan"`` (``(3.4445, -4.7750, 2.0315)`` repeated), ``"you"`` (5 rows; fewer
            steps take the first rows, more steps repeat the last row), ``"cubic"``
            (``(1.5, -0.5, 0)`` repeated), or an array of shape ``(steps, 3)``.
        steps: number of steps; defaults to 5 for named schedules and to the number of rows
            of a user array (which it must then equal).

    Returns:
        A float64 NumPy array of shape ``(steps, 3)``.

    Raises:
        ValueError: on an unknown name, a malformed array, or ``steps < 1``.
    """
    if isinstance(schedule, str):
        check_choice(schedule, "schedule", SCHEDULES)
        steps = DEFAULT_STEPS if steps is None else check_int(steps, "steps")
        if schedule == "jordan":
            return np.tile(np.array(JORDAN, dtype=np.float64), (steps, 1))
        if schedule == "cubic":
            return np.tile(np.array(CUBIC, dtype=np.float64), (steps, 1))
        if schedule == "you":
            rows = [YOU[min(t, len(YOU) - 1)] for t in range(steps)]
            return np.array(rows, dtype=np.float64)
        rows = [POLAR_EXPRESS[min(t, len(POLAR_EXPRESS) - 1)] for t in range(steps)]
        return apply_safety(np.array(rows, dtype=np.float64))
    rows = np.asarray(schedule, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != 3 or rows.shape[0] < 1:
        raise ValueError(
            f"`schedule` array must have shape (steps, 3) with steps >= 1, got {rows.shape}."
        )
    if not np.all(np.isfinite(rows)):
        raise ValueError("`schedule` array must be finite.")
    if steps is not None and check_int(steps, "steps") != rows.shape[0]:
        raise ValueError(
            f"`steps`={steps} disagrees with the `schedule` array's {rows.shape[0]} rows."
        )
    return rows


def apply_schedule_scalar(rows: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Apply the composed scalar polynomials of ``rows`` to singular values ``x`` (float64).

    In exact arithmetic the matrix iteration maps each normalized singular value ``x`` to this
    value, so this is the reference for tests and for :func:`singular_value_bounds`.
    """
    x = np.asarray(x, dtype=np.float64)
    for a, b, c in np.asarray(rows, dtype=np.float64):
        x2 = x * x
        x = x * (a + x2 * (b + c * x2))
    return x


def singular_value_bounds(
    schedule: str | np.ndarray, steps: int | None = None, lower: float = 1e-3
) -> tuple[float, float]:
    """Interval that normalized singular values in ``[lower, 1]`` land in after the schedule.

    Evaluated in float64 on a dense grid (log-spaced plus linear, 400k points) of
    ``[lower, 1]``; the composed polynomial is smooth, so the grid extremes match the true
    ones to about 1e-9.

    Args:
        schedule: a schedule accepted by :func:`schedule_coefficients`.
        steps: number of steps.
        lower: smallest normalized singular value ``sigma_min / ||X||`` of the input.

    Returns:
        ``(lo, hi)``: the smallest and largest output singular value.
    """
    rows = schedule_coefficients(schedule, steps)
    grid = np.concatenate([np.geomspace(lower, 1.0, 200_001), np.linspace(lower, 1.0, 200_001)])
    out = apply_schedule_scalar(rows, grid)
    return float(out.min()), float(out.max())


def _optimal_odd_quintic(lo: float, hi: float) -> np.ndarray:
    """Minimax odd quintic ``p`` for ``max_{x in [lo, hi]} |1 - p(x)|`` (Remez exchange).

    The optimal error equioscillates at ``lo``, the two interior critical points of ``p`` and
    ``hi``; each exchange solves the 4x4 linear system for ``(a, b, c, E)`` and moves the
    interior points to the roots of ``p'``.
    """
    if lo / hi >= 1.0 - 5e-6:
        return np.array([15 / 8 / hi, -10 / 8 / hi**3, 3 / 8 / hi**5])
    q, r = (3 * lo + hi) / 4, (lo + 3 * hi) / 4
    signs = np.array([1.0, -1.0, 1.0, -1.0])
    err = np.inf
    coef = np.array(QUINTIC)
    for _ in range(200):
        pts = np.array([lo, q, r, hi])
        system = np.stack([pts, pts**3, pts**5, signs], axis=1)
        a, b, c, new_err = np.linalg.solve(system, np.ones(4))
        coef = np.array([a, b, c])
        disc = 9 * b * b - 20 * a * c
        if disc <= 0 or c == 0:
            break
        roots = np.sort([(-3 * b - np.sqrt(disc)) / (10 * c), (-3 * b + np.sqrt(disc)) / (10 * c)])
        if roots[0] <= 0:
            break
        q, r = np.sqrt(roots)
        if abs(new_err - err) < 1e-15:
            break
        err = new_err
    return coef


def polar_express_schedule(
    lower: float, steps: int, *, cushion: float = 0.0, safety: float = SAFETY
) -> np.ndarray:
    """Greedy minimax (Polar Express) schedule for singular values in ``[lower, 1]``.

    Step ``t`` takes the minimax odd quintic on the current interval ``[l_t, u_t]`` (designed
    on ``[max(l_t, cushion u_t), u_t]``), rescales it so the image is centred on 1, and maps
    the interval to ``[p_t(l_t), 2 - p_t(l_t)]``. With ``cushion=0`` and ``safety=1`` and
    ``lower=1e-3`` this reproduces the CANS rows (8.4703, -25.1081, 18.6293), ... . The
    safety factor is applied to every row but the last.

    Args:
        lower: lower bound on the normalized singular values (``0 < lower < 1``).
        steps: number of rows.
        cushion: design-interval floor relative to ``u_t`` (0 disables cushioning).
        safety: safety factor (>= 1).

    Returns:
        float64 array ``(steps, 3)``.

    References:
        Amsel, Persson, Musco, Gower, "The Polar Express: Optimal Matrix Sign Methods and
        Their Application to the Muon Algorithm", arXiv:2505.16932, 2025.
        Grishina et al., "Accelerating Newton-Schulz Iteration for Orthogonalization via
        Chebyshev-type Polynomials" (CANS), arXiv:2506.10935, 2025.
    """
    if not 0.0 < lower < 1.0:
        raise ValueError(f"`lower` must lie in (0, 1), got {lower!r}.")
    steps = check_int(steps, "steps")
    if not 0.0 <= cushion < 1.0:
        raise ValueError(f"`cushion` must lie in [0, 1), got {cushion!r}.")
    if safety < 1.0:
        raise ValueError(f"`safety` must be >= 1, got {safety!r}.")
    lo, hi = float(lower), 1.0
    rows = []
    for _ in range(steps):
        design_lo = max(lo, cushion * hi)
        a, b, c = _optimal_odd_quintic(design_lo, hi)
        grid = np.linspace(lo, hi, 20_001)
        vals = grid * (a + grid**2 * (b + c * grid**2))
        scale = 2.0 / (vals.min() + vals.max())
        rows.append((a * scale, b * scale, c * scale))
        lo = float(scale * vals.min())
        hi = 2.0 - lo
    return apply_safety(np.array(rows), safety)
