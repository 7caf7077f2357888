"""graphopt.diff: what the pipeline changed, as regions with pictures' data. Real runs (graphopt.runner, real passes,
the original reloaded from disk) on tiny models whose changes are known; one test per promise of the module
docstring, and the runner's opt-in (no cost on a default run)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx.parser
import pytest

from graphopt.diff import GraphDiff, Picture, graph_diff
from graphopt.ir import serde
from graphopt.pipeline import PipelineConfig
from graphopt.runner import Job, execute
from graphopt.testing import from_text, run_pass, snapshot

CONV_BN = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 3, 6, 6] x) => (float[N, 4, 6, 6] y) {
  h = Sigmoid(x)
  c = Conv <pads = [1, 1, 1, 1]> (h, w)
  b = BatchNormalization (c, s, bb, mu, var)
  r = Relu(b)
  y = Neg(r)
}
"""

IDENTITY = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 4] x) => (float[N, 4] y) {
  a = Relu(x)
  t = Identity(a)
  y = Neg(t)
}
"""

CLEAN = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 4] x) => (float[N, 4] y) {
  a = Relu(x)
  y = Neg(a)
}
"""


def conv_bn_inits(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
            "s": rng.uniform(0.5, 1.5, 4).astype(np.float32), "bb": rng.standard_normal(4).astype(np.float32),
            "mu": rng.standard_normal(4).astype(np.float32), "var": rng.uniform(0.5, 2, 4).astype(np.float32)}


def blocks(ops: list[str]) -> str:
    """One block per op: Relu, Identity (removed by eliminate-noops), `op` (rewritten: its input changes). The
    Relus are untouched and keep the blocks' changes apart."""
    lines, prev = [], "x"
    for i, op in enumerate(ops):
        lines += [f"r{i} = Relu({prev})", f"t{i} = Identity(r{i})", f"u{i} = {op}(t{i})"]
        prev = f"u{i}"
    lines.append(f"y = Relu({prev})")
    body = "\n  ".join(lines)
    return f"""<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 4] x) => (float[N, 4] y) {{
  {body}
}}"""


def save(tmp_path: Path, text: str, inits: dict[str, np.ndarray] | None = None, name: str = "m.onnx") -> Path:
    p = tmp_path / name
    p.write_bytes(snapshot(from_text(text, inits)))
    return p


def run(path: Path, passes: list[str] | None, *, graph_diff_on: bool = True, **kw: object) -> GraphDiff:
    job = Job("check", str(path), PipelineConfig(passes=passes), validate=False, graph_diff=graph_diff_on)
    out = execute(job)
    assert out.report.exit_code == 0, out.report.error
    assert out.report.graph_diff is not None
    return out.report.graph_diff


def ops(p: Picture, status: str | None = None) -> list[str]:
    return [n.label for n in p.nodes if n.kind == "op" and (status is None or n.status == status)]


def terminals(p: Picture, kind: str) -> list[str]:
    return [n.label for n in p.nodes if n.kind == kind]


# ----------------------------------------------------------------------------------------------------------------
def test_a_fusion_is_one_region_with_its_rule_neighbours_and_shapes(tmp_path: Path, rng: np.random.Generator) -> None:
    d = run(save(tmp_path, CONV_BN, conv_bn_inits(rng)), ["fuse"])
    assert (d.removed, d.added, d.rewritten) == (2, 1, 1)
    assert d.regions_total == 1 and len(d.regions) == 1
    (r,) = d.regions
    assert r.rules == ["fuse-conv-bn"]
    assert r.summary == "Conv, BatchNormalization, Relu -> Conv, Relu"
    assert (r.removed, r.added, r.rewritten) == (2, 1, 1)
    assert ops(r.before, "removed") == ["Conv", "BatchNormalization"]
    assert ops(r.before, "rewritten") == ops(r.after, "rewritten") == ["Relu"]
    # the nearest unchanged neighbours, the same on both sides
    assert ops(r.before, "context") == ops(r.after, "context") == ["Sigmoid", "Neg"]
    (fused,) = [n for n in r.after.nodes if n.status == "added"]
    assert fused.label == "Conv" and fused.rule == "fuse-conv-bn"
    assert all(n.rule is None for n in r.before.nodes)
    # the weights the change is about are drawn; the graph input is not (only the unchanged Sigmoid reads it)
    assert set(terminals(r.before, "initializer")) == {"w", "s", "bb", "mu", "var"}
    assert terminals(r.before, "input") == []
    # edges carry types on both sides: the original's from the context's symbols taken before the passes
    by_value = {e.value: e.type for e in r.before.edges}
    assert by_value["c"] == "float[N, 4, 6, 6]" and by_value["h"] == "float[N, 3, 6, 6]"
    assert by_value["w"] == "float[4, 3, 3, 3]"
    kinds = {n.id: n.kind for n in r.after.nodes}
    op_edges = [e for e in r.after.edges if kinds[e.src] == kinds[e.dst] == "op"]
    assert len(op_edges) == 3 and all(e.type == ("float[N, 3, 6, 6]" if e.value == "h" else "float[N, 4, 6, 6]")
                                      for e in op_edges), op_edges
    ids = [n.id for n in r.before.nodes] + [n.id for n in r.after.nodes]
    assert len(ids) == len(set(ids)), "picture ids are unique"


def test_a_removed_node_makes_its_reader_rewritten(tmp_path: Path) -> None:
    d = run(save(tmp_path, IDENTITY), ["eliminate-noops"])
    assert (d.removed, d.added, d.rewritten) == (1, 0, 1)
    (r,) = d.regions
    assert ops(r.before) == ["Relu", "Identity", "Neg"] and ops(r.before, "removed") == ["Identity"]
    assert ops(r.after) == ["Relu", "Neg"] and ops(r.after, "rewritten") == ["Neg"]
    assert r.anchor == "t"   # unnamed nodes are anchored by their first output
    assert terminals(r.before, "output") == terminals(r.after, "output") == ["y"]
    edges = {(e.value, e.type) for e in r.after.edges}
    assert ("a", "float[N, 4]") in edges


def test_nothing_changed_means_no_region(tmp_path: Path) -> None:
    d = run(save(tmp_path, CLEAN), None)  # the whole -O2 pipeline, which finds nothing to do
    assert (d.removed, d.added, d.rewritten, d.regions_total, d.regions) == (0, 0, 0, 0, [])
    d0 = run(save(tmp_path, IDENTITY, name="i.onnx"), [])  # -O0-like: no passes, so no change at all
    assert d0.changed == 0


def test_the_same_change_is_drawn_once_and_counted(tmp_path: Path) -> None:
    d = run(save(tmp_path, blocks(["Sigmoid"] * 12)), ["eliminate-noops"])
    assert (d.removed, d.rewritten, d.regions_total) == (12, 12, 12)
    (r,) = d.regions
    assert r.repeats == 11 and d.repeated == 11
    assert r.repeat_anchors == [f"t{i}" for i in range(1, 9)]   # at most 8 named
    assert ops(r.before) == ["Relu", "Identity", "Sigmoid", "Relu"]


def test_regions_over_the_cap_are_counted_not_drawn(tmp_path: Path) -> None:
    path = save(tmp_path, blocks(["Sigmoid", "Tanh", "Neg", "Abs", "Exp"]))
    before = serde.load(path)
    after = serde.load(path)
    run_pass(after, "eliminate-noops")
    d = graph_diff(before, after, max_regions=2)
    assert d.regions_total == 5 and [r.index for r in d.regions] == [1, 2]
    assert [r.summary for r in d.regions] == ["Identity, Sigmoid -> Sigmoid", "Identity, Tanh -> Tanh"]
    assert (d.left_out, d.left_out_nodes, d.repeated) == (3, 6, 0)
    assert d.limits["max_regions"] == 2


def test_a_big_region_is_cut_to_max_nodes_and_max_terminals(tmp_path: Path) -> None:
    chain = "\n  ".join(["t0 = Identity(x)"] + [f"t{i} = Identity(t{i - 1})" for i in range(1, 10)])
    text = f"""<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 4] x) => (float[N, 4] y) {{
  {chain}
  y = Neg(t9)
}}"""
    path = save(tmp_path, text)
    before, after = serde.load(path), serde.load(path)
    run_pass(after, "eliminate-noops")
    d = graph_diff(before, after, max_nodes=4)
    (r,) = d.regions
    assert len(ops(r.before)) == 4 and r.before.omitted_nodes == 7   # 10 Identity + Neg, 4 drawn
    assert ops(r.after) == ["Neg"] and r.after.omitted_nodes == 0

    wide = """<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 4] x) => (float[N, 10] y) {
  t = Identity(x)
  y = Concat <axis = 1> (t, w0, w1, w2, w3, w4, w5)
}"""
    inits = {f"w{i}": np.zeros((1, 1), np.float32) for i in range(6)}
    m = from_text(wide, inits)
    before, after = serde.loads(snapshot(m)), serde.loads(snapshot(m))
    run_pass(after, "eliminate-noops")
    d = graph_diff(before, after, max_terminals=3)
    (r,) = d.regions
    # before: x, w0..w5, y = 8 values at the edge; after: the same (Concat reads x now)
    for pic in (r.before, r.after):
        assert len([n for n in pic.nodes if n.kind != "op"]) == 3 and pic.omitted_terminals == 5


def test_without_a_snapshot_the_originals_types_are_inferred(tmp_path: Path, rng: np.random.Generator) -> None:
    path = save(tmp_path, CONV_BN, conv_bn_inits(rng))
    before, after = serde.load(path), serde.load(path)
    run_pass(after, "fuse")
    d = graph_diff(before, after)
    (r,) = d.regions
    by_value = {e.value: e.type for e in r.before.edges}
    assert by_value["c"] == "float[N, 4, 6, 6]"


def test_a_change_inside_a_body_shows_its_if_node(tmp_path: Path) -> None:
    text = """<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 4] x, bool c) => (float[N, 4] y) {
  y = If(c) <then_branch = t1 () => (float[N, 4] o1) { i1 = Identity(x)
                                                      o1 = Neg(i1) },
             else_branch = t2 () => (float[N, 4] o2) { o2 = Relu(x) }>
}"""
    d = run(save(tmp_path, text), ["eliminate-noops"])
    assert (d.removed, d.added, d.rewritten) == (0, 0, 1)
    (r,) = d.regions
    assert ops(r.before, "rewritten") == ops(r.after, "rewritten") == ["If"]


def test_an_untouched_node_is_not_compared_by_attributes(tmp_path: Path) -> None:
    # the fast path: a node as loaded is unchanged without reading its attributes (which stay serialized)
    path = save(tmp_path, IDENTITY.replace("a = Relu(x)", "a = LeakyRelu <alpha = 0.5> (x)"))
    before, after = serde.load(path), serde.load(path)
    d = graph_diff(before, after)
    assert d.changed == 0
    assert all(n.as_loaded for n in after.graph)


def test_a_renamed_attribute_value_is_a_rewrite(tmp_path: Path) -> None:
    path = save(tmp_path, IDENTITY.replace("a = Relu(x)", "a = LeakyRelu <alpha = 0.5> (x)"))
    before, after = serde.load(path), serde.load(path)
    (leaky,) = [n for n in after.graph if n.op_type == "LeakyRelu"]
    leaky.set_attr("alpha", 0.25)
    d = graph_diff(before, after)
    assert (d.removed, d.added, d.rewritten) == (0, 0, 1)
    leaky.set_attr("alpha", 0.5)   # the same value again: touched, but equal
    assert graph_diff(before, after).changed == 0


# -- the runner: opt-in, from every kind of source ----------------------------------------------------------------
def test_a_default_run_records_nothing(tmp_path: Path) -> None:
    out = execute(Job("check", str(save(tmp_path, IDENTITY)), PipelineConfig(), validate=False))
    assert out.report.graph_diff is None and out.types_before is None
    assert out.report.to_dict()["graph_diff"] is None


def test_in_memory_and_stdin_sources_are_compared_too(tmp_path: Path) -> None:
    m = from_text(IDENTITY)
    out = execute(Job("optimize", "<model>", PipelineConfig(passes=["eliminate-noops"]), model=m, validate=False,
                      check=False, graph_diff=True))
    d = out.report.graph_diff
    assert d is not None and (d.removed, d.rewritten) == (1, 1)
    data = snapshot(from_text(IDENTITY))
    out = execute(Job("optimize", "<bytes>", PipelineConfig(passes=["eliminate-noops"]), data=data,
                      validate=False, graph_diff=True))
    d = out.report.graph_diff
    assert d is not None and (d.removed, d.rewritten) == (1, 1)


def test_the_report_serializes_and_pickles(tmp_path: Path, rng: np.random.Generator) -> None:
    import json
    import pickle

    jsonschema = pytest.importorskip("jsonschema")
    from graphopt.report import Report, load_schema

    out = execute(Job("check", str(save(tmp_path, CONV_BN, conv_bn_inits(rng))), PipelineConfig(),
                      graph_diff=True))
    rep = Report("check", [out.report])
    jsonschema.validate(rep.to_dict(), load_schema())
    back = pickle.loads(pickle.dumps(out.report))
    assert json.dumps(back.to_dict()["graph_diff"]) == json.dumps(rep.to_dict()["models"][0]["graph_diff"])
    onnx.checker.check_model(onnx.load(str(tmp_path / "m.onnx")))  # the input is untouched
