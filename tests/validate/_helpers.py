"""Helpers shared by the validation tests: tiny models as ModelSources, one-call validation."""

from __future__ import annotations


import numpy as np

from graphopt.testing import from_text, snapshot
from graphopt.validate import (
    ModelSource,
    ValidateOptions,
    Validator,
)

HDR = '<ir_version: 8, opset_import: ["": 17]>'


def src(text: str, inits: dict[str, np.ndarray] | None = None) -> ModelSource:
    return ModelSource(data=snapshot(from_text(HDR + text, inits)))


def validate(original: str, optimized: str, *, inits: dict[str, np.ndarray] | None = None,
             opt_inits: dict[str, np.ndarray] | None = None, **opts: object):
    v = Validator(src(original, inits), ValidateOptions(**opts))  # type: ignore[arg-type]
    return v, v.compare(src(optimized, opt_inits if opt_inits is not None else inits))


TWO_OUT = """
g (float[N,3] x) => (float[N,3] y, float[N,3] z) {
    y = Relu(x)
    z = Add(x, x)
}
"""
