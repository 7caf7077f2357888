"""graphopt: an ONNX graph optimizer.

>>> import graphopt
>>> m = graphopt.load("model.onnx")            # doctest: +SKIP
>>> graphopt.optimize(m)                        # doctest: +SKIP
>>> graphopt.save(m, "model.opt.onnx")          # doctest: +SKIP
"""

__version__ = "0.1.0"

import logging as _logging

# A library logs; the application (our CLI, or the user's) decides where logs go.
_logging.getLogger(__name__).addHandler(_logging.NullHandler())

from .api import OptimizeResult, load, optimize, run, save  # noqa: E402
from .errors import GraphoptError  # noqa: E402
from .ir import Model  # noqa: E402
from .jit import JitContext, init  # noqa: E402

__all__ = ["GraphoptError", "JitContext", "Model", "OptimizeResult", "__version__", "init", "load", "optimize",
           "run", "save"]
