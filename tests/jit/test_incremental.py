"""Inference on demand and incremental rounds give the same answers as doing everything every time.

* The symbol table, asked value by value (outputs first), knows what :meth:`SymbolTable.infer` knows for every
  value: the same dtypes, ranks, static dims and shape-tensor values, and the same equalities between dims (fresh
  symbols are compared by which dims they make equal, not by name), on every model of onnx's corpus and the
  samples.
* The pipeline with incremental rounds (each pass after its first run looks only at what changed since) writes the
  same bytes as the pipeline whose every pass looks at the whole model in every round.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from graphopt.ir import serde
from graphopt.jit import init
from graphopt.jit.symbols import SymbolTable
from graphopt.pipeline import build_config
from graphopt.testing import corpus_cases, corpus_model_bytes

SAMPLES = sorted((Path(__file__).resolve().parents[2] / "samples").glob("*.onnx"))
FILES = [(c.id, c) for c in corpus_cases(nodes=False)] + [(p.name, p) for p in SAMPLES]


def _bytes(case: Any) -> bytes:
    return case.read_bytes() if isinstance(case, Path) else corpus_model_bytes(case)


def _facts(t: SymbolTable, values: list[Any]) -> tuple[dict[Any, Any], set[frozenset[Any]]]:
    """Per value: dtype, rank, static dims and values; and the partition of dim/value positions by equal
    canonical expression (what the fresh symbols say, whatever their names)."""
    plain: dict[Any, Any] = {}
    exprs: dict[str, set[Any]] = {}
    for v in values:
        sh, val = t.shape_of(v), t.value_of(v)
        plain[(v.name, "dtype")] = t.dtype_of(v)
        plain[(v.name, "rank")] = None if sh is None or sh.dims is None else len(sh.dims)
        for kind, items in (("d", () if sh is None or sh.dims is None else sh.dims), ("v", val or ())):
            for i, e in enumerate(items):
                c = t.canon(e)
                if c.c is not None:
                    plain[(v.name, kind, i)] = c.c
                else:
                    exprs.setdefault(str(c), set()).add((v.name, kind, i))
    return plain, {frozenset(s) for s in exprs.values()}


def _same_on_demand(case: Any) -> bool:
    m = serde.loads(_bytes(case))
    values = [v for g in m.graph.all_graphs() for n in g for v in n.outputs if v.name] + list(m.graph.inputs)
    eager = SymbolTable()
    eager.infer(m)
    lazy = SymbolTable()
    lazy.seed(m)
    return _facts(lazy, values[::-1]) == _facts(eager, values) and \
        lazy.summary()["onnx_nodes"] <= eager.summary()["onnx_nodes"]


@pytest.mark.slow
@pytest.mark.parametrize("case", [c for _, c in FILES], ids=[i for i, _ in FILES])
def test_symbols_on_demand_equal_eager_inference(case: Any) -> None:
    assert _same_on_demand(case)


@pytest.mark.slow
def test_symbols_on_demand_equal_eager_inference_node_suite() -> None:
    bad = [c.id for c in corpus_cases(files=False) if not _same_on_demand(c)]
    assert not bad, f"{len(bad)} cases differ, first: {bad[:5]}"


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["O1", "O2", "O3"])
def test_incremental_rounds_write_what_full_rounds_write(preset: str) -> None:
    cases = FILES if preset == "O2" else [(p.name, p) for p in SAMPLES]
    for cid, case in cases:
        data = _bytes(case)
        outs = []
        for incremental in (True, False):
            m = serde.loads(data)
            ctx = init(m, build_config(preset=preset, use_pyproject=False))
            rec = ctx.run_pipeline(m, incremental=incremental)
            outs.append((serde.serialize(m), rec.rounds))
        assert outs[0][0] == outs[1][0], cid


def test_later_rounds_look_only_at_what_changed() -> None:
    # a pass that records what it is told: everything on its first run, then only what changed since
    from dataclasses import dataclass
    from typing import ClassVar

    from graphopt.passes.base import Pass, PassResult
    from graphopt.testing import from_text

    seen: list[Any] = []

    @dataclass(frozen=True)
    class Spy(Pass):
        name: ClassVar[str] = "spy"

        def run(self, model: Any, ctx: Any) -> PassResult:
            seen.append(ctx.changes)
            return PassResult()

    @dataclass(frozen=True)
    class DropOneIdentity(Pass):
        name: ClassVar[str] = "drop-one-identity"

        def run(self, model: Any, ctx: Any) -> PassResult:
            for n in model.graph:
                if n.op_type == "Identity":
                    n.output.replace_all_uses_with(n.input(0))
                    model.graph.remove(n)
                    return PassResult(changed=True)
            return PassResult()

    m = from_text('<ir_version: 8, opset_import: ["" : 17]>\n'
                  "g (float[2] x) => (float[2] y) { a = Relu(x)  b = Identity(a)  c = Neg(b)  y = Abs(c) }")
    ctx = init(m, build_config(passes=[], use_pyproject=False), plugins=False)
    rec = ctx.run_pipeline(m, passes=[Spy(), DropOneIdentity()])
    assert rec.rounds == 2 and len(seen) == 2
    assert seen[0].full
    assert not seen[1].full and sorted(n.op_type for n in seen[1].alive()) == ["Neg", "Relu"]
    assert sorted(n.op_type for n in seen[1].frontier()) == ["Abs", "Neg", "Relu"]
