"""Bisection: test-only passes planted among real ones in a test-only context; the culprit is found and disabled."""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar


from graphopt.ir.builder import Builder
from graphopt.ir.core import Model
from graphopt.jit import init
from graphopt.passes.base import Pass, PassResult
from graphopt.pipeline import PipelineConfig, resolve
from graphopt.testing import from_text, snapshot
from graphopt.validate import (
    ModelSource,
    ValidateOptions,
    Validator,
    bisect,
    optimize_with,
)

from ._helpers import HDR


# ================================================================================================================
# Bisection
# ================================================================================================================
@dataclasses.dataclass(frozen=True)
class BreakAdd(Pass):
    """Planted bug: a + b becomes a - b."""

    name: ClassVar[str] = "test-break-add"
    summary: ClassVar[str] = "wrong on purpose"

    def run(self, model: Model, ctx: object) -> PassResult:
        n = 0
        g = model.graph
        for node in list(g):
            if node.op_type == "Add":
                new = Builder(g, before=node).op("Sub", node.input(0), node.input(1))
                node.output.replace_all_uses_with(new)
                g.remove([node])
                n += 1
        return PassResult.of(add_to_sub=n)


@dataclasses.dataclass(frozen=True)
class BreakMul(Pass):
    """Second planted bug: a * b becomes a + b."""

    name: ClassVar[str] = "test-break-mul"

    def run(self, model: Model, ctx: object) -> PassResult:
        n = 0
        g = model.graph
        for node in list(g):
            if node.op_type == "Mul":
                new = Builder(g, before=node).op("Max", node.input(0), node.input(1))
                node.output.replace_all_uses_with(new)
                g.remove([node])
                n += 1
        return PassResult.of(mul_to_max=n)


@dataclasses.dataclass(frozen=True)
class DropIdentity(Pass):
    """Correct: bypasses Identity nodes that are not graph outputs."""

    name: ClassVar[str] = "test-drop-identity"

    def run(self, model: Model, ctx: object) -> PassResult:
        n = 0
        g = model.graph
        for node in list(g):
            if node.op_type == "Identity" and not node.output.is_graph_output():
                node.output.replace_all_uses_with(node.input(0))
                g.remove([node])
                n += 1
        return PassResult.of(identity_removed=n)


BISECT_MODEL = """
g (float[N,4] x) => (float[N,4] y, float[N,4] z) {
    i = Identity(x)
    r = Relu(i)
    y = Mul(r, x)
    z = Add(x, r)
}
"""


def _test_ctx(model: Model, order: list[str]) -> object:
    """A test-only context: the built-in passes that exist today plus the test passes, pipeline `order` (names
    of passes that are not registered are dropped, so the test does not depend on which real passes exist)."""
    ctx = init(model, PipelineConfig(passes=[]), plugins=False)
    for cls in (BreakAdd, BreakMul, DropIdentity):
        ctx.passes.register(cls, origin="test")
    ctx.config = PipelineConfig(passes=[n for n in order if n in ctx.passes])
    ctx.pipeline = resolve(ctx.config, ctx.passes)
    return ctx


REAL = ["simplify-control-flow", "fold-constants", "simplify-shapes", "eliminate-noops", "fuse", "cse", "dce"]


def _run_bisect(order: list[str]):
    original = ModelSource(data=snapshot(from_text(HDR + BISECT_MODEL)))
    model = original.load()
    ctx = _test_ctx(model, order)
    record = optimize_with(ctx, model)
    validator = Validator(original, ValidateOptions(trials=2))
    first = validator.compare(model)
    assert first.failed
    return ctx, validator, bisect(original, ctx, validator, failing=first, failing_record=record)


def test_bisection_finds_a_planted_bad_pass_among_real_ones() -> None:
    order = REAL[:3] + ["test-drop-identity", "test-break-add"] + REAL[3:]
    ctx, validator, b = _run_bisect(order)
    assert [c.name for c in b.culprits] == ["test-break-add"]
    c = b.culprits[0]
    assert c.first_output == "z" and c.rewrites == {"add_to_sub": 1}
    assert b.resolved and b.validation is not None and b.validation.passed
    assert "test-break-add" not in b.passes and "test-drop-identity" in b.passes
    n = len(ctx.pipeline)  # type: ignore[attr-defined]
    assert len(b.steps) <= math.ceil(math.log2(n)) + 1  # halving, plus the final re-validation
    # the model handed back is the one without the culprit, optimized by the good passes
    assert b.model is not None
    ops = [nd.op_type for nd in b.model.graph]
    assert "Identity" not in ops and "Add" in ops
    assert validator.sessions_created == 1 + 1 + len(b.steps)


def test_bisection_finds_two_bad_passes() -> None:
    order = ["test-break-mul", "test-drop-identity", "test-break-add"]
    _, _, b = _run_bisect(order)
    assert [c.name for c in b.culprits] == ["test-break-mul", "test-break-add"]
    assert [c.first_output for c in b.culprits] == ["y", "z"]
    assert b.resolved and b.passes == ["test-drop-identity"]
    d = b.to_dict()
    assert set(d) == {"culprits", "steps", "resolved", "passes", "seconds"}
    assert all(s["status"] in ("passed", "failed") for s in d["steps"])


def test_bisection_result_crosses_process_boundaries_without_the_model() -> None:
    import pickle

    _, _, b = _run_bisect(["test-break-add"])
    c = pickle.loads(pickle.dumps(b))
    assert c.model is None and c.ctx is None and c.culprits == b.culprits
