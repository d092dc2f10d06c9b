"""Spectral maps without SVDs: Newton–Schulz orthogonalization, polar factors, spectral norms,
soft/hard spectral clipping, and SPECTRA-style optax transforms.

References:
    Jordan et al., "Muon", 2024. Amsel et al., "The Polar Express", arXiv:2505.16932.
    Jiang, Semenov, Stich, "Enhancing LLM Training via Spectral Clipping", arXiv:2603.14315.
"""

from jaxspec.spectral._clipping import hard_clip, soft_clip
from jaxspec.spectral._newton_schulz import orthogonalize
from jaxspec.spectral._norms import spectral_norm
from jaxspec.spectral._polar import PolarSolution, polar
from jaxspec.spectral._schedules import (
    SCHEDULES,
    apply_schedule_scalar,
    polar_express_schedule,
    schedule_coefficients,
    singular_value_bounds,
)
from jaxspec.spectral._transforms import (
    SpectraState,
    clip_gradients,
    clip_updates,
    scale_by_signum,
    spectra,
    spectra_adamw,
    spectra_signum,
)

__all__ = [
    "SCHEDULES",
    "PolarSolution",
    "SpectraState",
    "apply_schedule_scalar",
    "clip_gradients",
    "clip_updates",
    "hard_clip",
    "orthogonalize",
    "polar",
    "polar_express_schedule",
    "scale_by_signum",
    "schedule_coefficients",
    "singular_value_bounds",
    "soft_clip",
    "spectra",
    "spectra_adamw",
    "spectra_signum",
    "spectral_norm",
]
