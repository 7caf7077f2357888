"""graphopt: an ONNX graph optimizer."""

__version__ = "0.1.0"

from .ir import Model, load, save  # noqa: E402

__all__ = ["Model", "__version__", "load", "save"]
