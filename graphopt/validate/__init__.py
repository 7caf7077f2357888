"""Prove that an optimized model computes what the original did, with onnxruntime; find the pass that broke it.

- :mod:`.inputs`: input specs, dim bindings per trial, random feeds, ``.npz`` inputs;
- :mod:`.compare`: :class:`Validator` (onnxruntime sessions, per-output comparison, tolerances), ``check_model``;
- :mod:`.bench`: interleaved latency measurement;
- :mod:`.bisect`: the culprit pass by bisection;
- :mod:`.results`: the plain data all of them return.

Everything here returns plain data (dataclasses); nothing prints.

The names below load their modules on first use (PEP 562): the CLI reads :data:`ORT_LEVELS` and builds
:class:`ValidateOptions` without importing numpy or onnxruntime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

# Eager, and light (no numpy, onnx or onnxruntime at import time): the function `bisect` must shadow the
# submodule of the same name whatever imported `graphopt.validate.bisect` first; the plain data is wanted early.
from .bisect import bisect, fresh_context, optimize_with
from .results import (
    ORT_LEVELS,
    BisectResult,
    BisectStep,
    Culprit,
    ModelSource,
    OutputCheck,
    Trial,
    ValidateOptions,
    ValidationResult,
)

if TYPE_CHECKING:
    from .compare import DEFAULT_TOLERANCE, TOLERANCES, StepCallback, Validator, check_model, tolerance
    from .inputs import INT_RANGES, InputSpec, index_ranges, load_npz, random_feeds, symbols_of, trial_bindings

_LAZY: dict[str, str] = {
    **dict.fromkeys(("DEFAULT_TOLERANCE", "TOLERANCES", "StepCallback", "Validator", "check_model", "tolerance"),
                    ".compare"),
    **dict.fromkeys(("INT_RANGES", "InputSpec", "index_ranges", "load_npz", "random_feeds", "symbols_of",
                     "trial_bindings"), ".inputs"),
}

__all__ = ["DEFAULT_TOLERANCE", "INT_RANGES", "ORT_LEVELS", "TOLERANCES", "BisectResult", "BisectStep", "Culprit",
           "InputSpec", "ModelSource", "OutputCheck", "StepCallback", "Trial", "ValidateOptions", "ValidationResult",
           "Validator", "bisect", "check_model", "fresh_context", "index_ranges", "load_npz", "optimize_with",
           "random_feeds", "symbols_of", "tolerance", "trial_bindings"]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
