"""graphopt: an ONNX graph optimizer.

>>> import graphopt
>>> report = graphopt.optimize_file("model.onnx")                 # doctest: +SKIP
>>> report.exit_code, report.nodes_before, report.nodes_after      # doctest: +SKIP
>>> small = graphopt.optimize(onnx.load("model.onnx"))             # doctest: +SKIP
"""

from .version import __version__

import logging as _logging

# A library logs; the application (our CLI, or the user's) decides where logs go.
_logging.getLogger(__name__).addHandler(_logging.NullHandler())

from .api import (  # noqa: E402
    OptimizeResult,
    check_file,
    load,
    optimize,
    optimize_file,
    run,
    save,
    to_html,
    write_html,
)
from .errors import GraphoptError  # noqa: E402
from .ir import Model  # noqa: E402
from .jit import JitContext, init  # noqa: E402
from .report import ModelReport  # noqa: E402

__all__ = ["GraphoptError", "JitContext", "Model", "ModelReport", "OptimizeResult", "__version__", "check_file",
           "init", "load", "optimize", "optimize_file", "run", "save", "to_html", "write_html"]
