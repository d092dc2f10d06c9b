"""jaxspec: differentiable sparse and spectral optimization in JAX."""

from jaxspec import spectral
from jaxspec._cpu_pool import cpu_pool_guard
from jaxspec._status import Status, status_message

__version__ = "0.1.0"

__all__ = ["Status", "cpu_pool_guard", "spectral", "status_message", "__version__"]
