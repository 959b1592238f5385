"""A protocol-faithful fake ComfyUI (0.3.64 or 0.33.0) for the project's tests and benchmarks.

    from tests.comfy_double import ComfyDouble, Faults
"""

from .double import ComfyDouble
from .faults import Faults

__all__ = ["ComfyDouble", "Faults"]
