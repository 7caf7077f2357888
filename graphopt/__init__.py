"""graphopt: an ONNX graph optimizer.

>>> import graphopt
>>> report = graphopt.optimize_file("model.onnx")                 # doctest: +SKIP
>>> report.exit_code, report.nodes_before, report.nodes_after      # doctest: +SKIP
>>> small = graphopt.optimize(onnx.load("model.onnx"))             # doctest: +SKIP

Importing the package is cheap: the public names load their modules on first use (PEP 562), so that
``graphopt --version`` and ``graphopt --help`` import neither onnx nor onnxruntime nor numpy.
"""

from __future__ import annotations

import logging as _logging
from typing import TYPE_CHECKING

from ._lazy import lazy_exports
from .version import __version__

# A library logs; the application (our CLI, or the user's) decides where logs go.
_logging.getLogger(__name__).addHandler(_logging.NullHandler())

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ imports on first use
    from .api import OptimizeResult, check_file, load, optimize, optimize_file, run, save, to_html, write_html
    from .errors import GraphoptError
    from .ir import Model
    from .jit import JitContext, init
    from .report import ModelReport

# public name -> the module that defines it
_LAZY: dict[str, str] = {
    "OptimizeResult": ".api", "check_file": ".api", "load": ".api", "optimize": ".api",
    "optimize_file": ".api", "run": ".api", "save": ".api", "to_html": ".api", "write_html": ".api",
    "GraphoptError": ".errors",
    "Model": ".ir",
    "JitContext": ".jit", "init": ".jit",
    "ModelReport": ".report",
}

__all__ = ["GraphoptError", "JitContext", "Model", "ModelReport", "OptimizeResult", "__version__", "check_file",
           "init", "load", "optimize", "optimize_file", "run", "save", "to_html", "write_html"]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
