"""Prove that an optimized model computes what the original did, with onnxruntime; find the pass that broke it.

- :mod:`.inputs`: input specs, dim bindings per trial, random feeds, ``.npz`` inputs;
- :mod:`.compare`: :class:`Validator` (onnxruntime sessions, per-output comparison, tolerances), ``check_model``;
- :mod:`.bench`: interleaved latency measurement;
- :mod:`.bisect`: the culprit pass by bisection;
- :mod:`.results`: the plain data all of them return.

Everything here returns plain data (dataclasses); nothing prints.
"""

from .bisect import bisect, fresh_context, optimize_with
from .compare import DEFAULT_TOLERANCE, TOLERANCES, StepCallback, Validator, check_model, tolerance
from .inputs import INT_RANGES, InputSpec, load_npz, random_feeds, symbols_of, trial_bindings
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

__all__ = ["DEFAULT_TOLERANCE", "INT_RANGES", "ORT_LEVELS", "TOLERANCES", "BisectResult", "BisectStep", "Culprit",
           "InputSpec", "ModelSource", "OutputCheck", "StepCallback", "Trial", "ValidateOptions", "ValidationResult",
           "Validator", "bisect", "check_model", "fresh_context", "load_npz", "optimize_with", "random_feeds",
           "symbols_of", "tolerance", "trial_bindings"]
