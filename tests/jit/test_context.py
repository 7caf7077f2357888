"""The JIT context: four init steps, in order, each observable; no shared state between contexts."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest

from graphopt.errors import ModelDecodeError
from graphopt.jit import STEPS, JitContext, init
from graphopt.passes.base import Pass, PassResult
from graphopt.pipeline import PipelineConfig
from graphopt.testing import from_text

MODEL = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[batch, seq, 4] x) => (float[batch, seq, 4] y) {
  a = Identity(x)
  y = Relu(a)
}
"""


@dataclass(frozen=True)
class CountRelu(Pass):
    """A test pass: counts Relu nodes (never changes the model)."""

    name = "count-relu"
    kind = "analysis"
    summary = "count Relu nodes"

    def run(self, model, ctx):  # type: ignore[no-untyped-def]
        ctx.meta["relus"] = sum(1 for n in model.graph.all_nodes() if n.op_type == "Relu")
        return PassResult()


@dataclass(frozen=True)
class RenameNothing(Pass):
    name = "other-pass"
    kind = "analysis"

    def run(self, model, ctx):  # type: ignore[no-untyped-def]
        return PassResult()


def test_init_runs_the_four_steps_in_order() -> None:
    ctx = init(from_text(MODEL), PipelineConfig(preset="O1"), plugins=False)
    assert [s.name for s in ctx.init_steps] == list(STEPS)
    assert [s.index for s in ctx.init_steps] == [1, 2, 3, 4]
    for s in ctx.init_steps:
        assert s.summary and s.seconds >= 0


def test_step1_submodule_registers_builtins() -> None:
    ctx = init(None, PipelineConfig(passes=[]), plugins=False)
    names = ctx.passes.names()
    assert names, "no built-in pass registered"
    assert all(ctx.passes.origin(n) == "builtin" for n in names)
    assert ctx.step("submodule").details["passes"] == names
    bare = init(None, PipelineConfig(passes=[]), plugins=False, builtins=False)
    assert bare.passes.names() == []


def test_step2_translators_are_installed() -> None:
    from google.protobuf.message import DecodeError

    ctx = init(None, PipelineConfig(passes=[]), plugins=False)
    err = ctx.translators.translate(DecodeError("bad wire type"), stage="load", path="m.onnx")
    assert isinstance(err, ModelDecodeError) and err.exit_code == 3 and err.path == "m.onnx"
    assert len(ctx.translators) >= 15
    assert ctx.step("translators").details["translators"] == ctx.translators.names()
    # an empty context translates nothing specifically: the step is what installs the table
    assert JitContext().translators.translate(DecodeError("x")).kind == "internal"


def test_step3_symbols_see_the_model() -> None:
    ctx = init(from_text(MODEL), PipelineConfig(passes=[]), plugins=False)
    assert ctx.step("symbols").summary != "no model yet: empty symbol table"
    empty = init(None, PipelineConfig(passes=[]), plugins=False)
    assert empty.step("symbols").summary == "no model yet: empty symbol table"


def test_step4_pipeline_resolves_the_config() -> None:
    ctx = init(None, PipelineConfig(preset="O1"), plugins=False)
    assert [p.name for p in ctx.pipeline] == ctx.step("pipeline").details["passes"]
    ctx0 = init(None, PipelineConfig(preset="O0"), plugins=False)
    assert ctx0.pipeline == []
    names = ctx.passes.names()[:2]
    ctx2 = init(None, PipelineConfig(passes=list(reversed(names))), plugins=False)
    assert [p.name for p in ctx2.pipeline] == list(reversed(names))


def test_init_steps_log_one_line_each() -> None:
    records: list[logging.LogRecord] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    # attach to the logger itself: the CLI (run in-process by other tests) may stop "graphopt" from propagating
    logger = logging.getLogger("graphopt.jit")
    h = _Keep(logging.INFO)
    old_level = logger.level
    logger.addHandler(h)
    logger.setLevel(logging.INFO)
    try:
        init(from_text(MODEL), PipelineConfig(preset="O2"), plugins=False)
    finally:
        logger.removeHandler(h)
        logger.setLevel(old_level)
    lines = [r.getMessage() for r in records]
    assert len(lines) == 4
    for i, (line, step) in enumerate(zip(lines, STEPS), 1):
        assert line.startswith(f"jit init {i}/4 {step}: ")


def test_two_contexts_side_by_side() -> None:
    a = init(None, PipelineConfig(passes=[]), plugins=False)
    b = init(None, PipelineConfig(passes=[]), plugins=False)
    a.passes.register(CountRelu)
    b.passes.register(RenameNothing)
    assert "count-relu" in a.passes and "count-relu" not in b.passes
    assert "other-pass" in b.passes and "other-pass" not in a.passes
    a.translators.register(ZeroDivisionError, lambda e, t: ModelDecodeError("custom"))
    assert a.translators.translate(ZeroDivisionError()).message == "custom"
    assert b.translators.translate(ZeroDivisionError()).kind == "internal"
    assert a.symbols is not b.symbols and a.rules is not b.rules and a.config is not b.config
    # each runs its own pipeline on its own model
    m1, m2 = from_text(MODEL), from_text(MODEL)
    a.run_pipeline(m1, passes=[a.passes.create("count-relu")])
    assert a.meta["relus"] == 1 and "relus" not in b.meta
    with pytest.raises(Exception, match="unknown pass"):
        b.passes.create("count-relu")
    b.run_pipeline(m2, passes=[b.passes.create("other-pass")])


def test_no_module_level_mutable_registries() -> None:
    """Registries are created per context: nothing registered in one context leaks into a new one."""
    a = init(None, PipelineConfig(passes=[]), plugins=False)
    a.passes.register(CountRelu)
    fresh = init(None, PipelineConfig(passes=[]), plugins=False)
    assert "count-relu" not in fresh.passes
