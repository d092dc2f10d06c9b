"""Coefficient schedules: named rows, safety factor, scalar bounds, the Remez generator."""

import numpy as np
import pytest

from jaxspec import spectral
from jaxspec.spectral import _schedules

# CANS (Grishina et al. 2025) rows as published in NVIDIA Emerging-Optimizers: the greedy
# minimax schedule for [1e-3, 1] with no cushion and no safety factor.
CANS = np.array(
    [
        (8.4703, -25.1081, 18.6293),
        (4.1828, -3.1087, 0.5806),
        (3.9619, -2.9541, 0.5630),
        (3.2866, -2.4647, 0.5074),
        (2.2737, -1.6447, 0.4162),
    ]
)

# The table in orthogonalize's docstring (normalized singular values in [1e-3, 1]).
DOC_TABLE = {
    ("polar_express", 5): (0.8524, 1.1236),
    ("polar_express", 6): (0.9956, 1.0012),
    ("polar_express", 8): (1.0000, 1.0000),
    ("jordan", 5): (0.4705, 1.2024),
    ("jordan", 6): (0.6818, 1.2024),
    ("jordan", 8): (0.6818, 1.1344),
    ("you", 5): (0.4750, 1.1450),
    ("you", 6): (0.9778, 1.1450),
    ("you", 8): (0.9787, 0.9936),
    ("cubic", 5): (0.0076, 1.0000),
    ("cubic", 6): (0.0114, 1.0000),
    ("cubic", 8): (0.0256, 1.0000),
}


@pytest.mark.parametrize(("schedule", "steps"), sorted(DOC_TABLE))
def test_docstring_table_matches_scalar_bounds(schedule, steps):
    lo, hi = spectral.singular_value_bounds(schedule, steps, lower=1e-3)
    doc_lo, doc_hi = DOC_TABLE[(schedule, steps)]
    assert abs(lo - doc_lo) <= 5.1e-5 and abs(hi - doc_hi) <= 5.1e-5


def test_named_rows():
    jordan = spectral.schedule_coefficients("jordan", 3)
    np.testing.assert_array_equal(jordan, np.tile([3.4445, -4.7750, 2.0315], (3, 1)))
    you = spectral.schedule_coefficients("you", 7)
    np.testing.assert_array_equal(you[:5], np.array(_schedules.YOU))
    np.testing.assert_array_equal(you[5], you[4])
    np.testing.assert_array_equal(spectral.schedule_coefficients("you", 2), you[:2])
    cubic = spectral.schedule_coefficients("cubic")
    assert cubic.shape == (5, 3) and np.all(cubic == [1.5, -0.5, 0.0])


def test_polar_express_safety_factor_on_all_but_last():
    rows = spectral.schedule_coefficients("polar_express", 10)
    raw = np.array([_schedules.POLAR_EXPRESS[min(t, 7)] for t in range(10)])
    scale = np.array([1.01, 1.01**3, 1.01**5])
    np.testing.assert_allclose(rows[:-1], raw[:-1] / scale, rtol=1e-15)
    np.testing.assert_array_equal(rows[-1], (1.875, -1.25, 0.375))


def test_generator_reproduces_cans_rows():
    rows = spectral.polar_express_schedule(1e-3, 5, cushion=0.0, safety=1.0)
    np.testing.assert_allclose(rows, CANS, atol=6e-5)


def test_generator_is_minimax_equioscillating():
    # The first row is the minimax odd quintic on [l, 1]: |1 - p| peaks equally at 4 points.
    lower = 0.05
    a, b, c = spectral.polar_express_schedule(lower, 1, cushion=0.0, safety=1.0)[0]
    x = np.linspace(lower, 1.0, 200_001)
    err = 1 - x * (a + x**2 * (b + c * x**2))
    # After centring, the errors at the end points are equal and opposite to the interior.
    assert err[0] > 0 and err[-1] < 0
    np.testing.assert_allclose(np.max(err), -np.min(err), rtol=1e-6)
    # No other odd quintic does better: compare against the fixed 'polar_express' first row.
    a2, b2, c2 = _schedules.POLAR_EXPRESS[0]
    err2 = 1 - x * (a2 + x**2 * (b2 + c2 * x**2))
    assert np.max(np.abs(err)) < np.max(np.abs(err2))


def test_generated_schedule_for_tiny_lower_bound_converges():
    rows = spectral.polar_express_schedule(1e-6, 12, cushion=0.0)
    lo, hi = spectral.singular_value_bounds(rows, lower=1e-6)
    assert lo > 0.99 and hi < 1.001


def test_scalar_map_monotone_for_cubic():
    x = np.linspace(0, 1, 1001)
    y = spectral.apply_schedule_scalar(spectral.schedule_coefficients("cubic", 3), x)
    assert np.all(np.diff(y) >= 0) and y[-1] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("schedule", "steps", "match"),
    [
        ("newton", None, "schedule"),
        (np.ones((3, 2)), None, "schedule"),
        (np.ones((3, 3)), 4, "steps"),
        ("jordan", 0, "steps"),
        (np.array([[1.0, np.nan, 0.0]]), None, "finite"),
    ],
)
def test_bad_schedules(schedule, steps, match):
    with pytest.raises(ValueError, match=match):
        spectral.schedule_coefficients(schedule, steps)


def test_generator_bad_arguments():
    with pytest.raises(ValueError, match="lower"):
        spectral.polar_express_schedule(0.0, 3)
    with pytest.raises(ValueError, match="safety"):
        spectral.polar_express_schedule(1e-3, 3, safety=0.5)
