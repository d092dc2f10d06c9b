"""jaxspec: differentiable sparse and spectral optimization in JAX."""

from jaxspec import spectral
from jaxspec._status import Status, status_message

__version__ = "0.1.0"

__all__ = ["Status", "spectral", "status_message", "__version__"]
