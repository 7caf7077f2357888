"""serde: lossless round trips of the fields the IR does not model, subgraphs, changed nodes, and load errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx.parser
import pytest
from onnx import helper, numpy_helper

import graphopt.ir as ir
from graphopt.errors import ModelDecodeError, ModelNotFoundError, NotOnnxError
from graphopt.ir import Node, serde
from graphopt.testing import assert_same_outputs, from_text

from ._util import check_use_def, proto

LOOP = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[4] x, int64 n, bool c) => (float[4] y) {
  k = Exp(x)
  y = Loop(n, c, x) <body = b1 (int64 i, bool cin, float[4] acc) => (bool cout, float[4] accout) {
      cout = Identity(cin)
      accout = If(cin) <then_branch = t1 () => (float[4] r1) { r1 = Add(acc, k) },
                        else_branch = t2 () => (float[4] r2) { r2 = Identity(acc) }>
  }>
}
"""


def _rt(mp: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.ParseFromString(serde.serialize(serde.loads(mp.SerializeToString())))
    return out


def test_untouched_subgraphs_round_trip() -> None:
    # Regression: loading moves a subgraph's lists out of its node's message, and the writer used to write that
    # emptied message back for an untouched node, dropping every subgraph's nodes.
    mp = onnx.parser.parse_model(LOOP)
    out = _rt(mp)
    assert out == mp
    assert len(out.graph.node[1].attribute[0].g.node) == 2


def test_changed_node_inside_nested_subgraph_is_written() -> None:
    m = serde.loads(onnx.parser.parse_model(LOOP).SerializeToString())
    loop = list(m.graph)[1]
    body = loop.subgraphs()[0]
    iff = list(body)[1]
    add = list(iff.subgraphs()[0])[0]
    add.set_attr("unused_marker", 1)  # a change two levels down
    add.del_attr("unused_marker")
    add.name = "inner_add"
    mp = proto(m)
    assert mp.graph.node[1].attribute[0].g.node[1].attribute[0].g.node[0].name == "inner_add"
    base = onnx.parser.parse_model(LOOP)
    base.graph.node[1].attribute[0].g.node[1].attribute[0].g.node[0].name = "inner_add"
    assert mp == base
    onnx.checker.check_model(mp, full_check=True)


def test_fields_the_ir_does_not_model_survive() -> None:
    mp = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17, "local" : 1], producer_name: "me", producer_version: "1.2",
     domain: "ai.test", model_version: 7, doc_string: "a model">
    g (float[N,4] x) => (float[N,4] y) {
      t = local.twice(x)
      y = Relu(t)
    }
    <domain: "local", opset_import: ["" : 17]>
    twice (a) => (b) { b = Add(a, a) }
    """)
    mp.graph.doc_string = "the graph"
    mp.graph.node[0].doc_string = "node doc"
    mp.graph.node[1].name = "relu"
    helper.set_model_props(mp, {"k1": "v1", "k2": "v2"})
    mp.graph.input[0].doc_string = "input doc"
    mp.graph.output[0].type.denotation = "TENSOR"
    qa = mp.graph.quantization_annotation.add()
    qa.tensor_name = "t"
    e = qa.quant_parameter_tensor_names.add()
    e.key, e.value = "SCALE_TENSOR", "s"
    vi = helper.make_tensor_value_info("t", onnx.TensorProto.FLOAT, ["N", 4])
    vi.doc_string = "declared"
    mp.graph.value_info.append(vi)
    mp.graph.value_info.append(helper.make_tensor_value_info("ghost", onnx.TensorProto.FLOAT, [1]))  # orphan
    ti = mp.training_info.add()
    ti.algorithm.name = "train"
    mp.graph.metadata_props.add(key="gk", value="gv")
    out = _rt(mp)
    assert out == mp
    # and after a change the unmodelled fields are still there
    m = serde.loads(mp.SerializeToString())
    list(m.graph)[1].name = "renamed"
    out2 = proto(m)
    assert out2.graph.quantization_annotation == mp.graph.quantization_annotation
    assert out2.training_info == mp.training_info and out2.metadata_props == mp.metadata_props
    assert out2.functions == mp.functions and out2.graph.doc_string == "the graph"
    assert out2.graph.node[0].doc_string == "node doc"


def test_node_attributes_of_every_kind_round_trip_after_a_change() -> None:
    t = numpy_helper.from_array(np.arange(3, dtype=np.int64), "")
    node = helper.make_node("Custom", ["x"], ["y"], domain="test.custom", f=1.5, i=-3, s="txt", floats=[1.0, 2.5],
                            ints=[1, 2, 3], strings=["a", "b"], t=t, tensors=[t, t])
    node.attribute.append(helper.make_attribute("tp", helper.make_tensor_type_proto(1, [2, 3])))
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", 1, [2])],
                          [helper.make_tensor_value_info("y", 1, [2])])
    mp = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("test.custom", 1)])
    assert _rt(mp) == mp
    m = serde.loads(mp.SerializeToString())
    n = m.graph.first()
    assert n is not None
    values = {k: a.value for k, a in n.attrs.items()}
    assert values["f"] == 1.5 and values["i"] == -3 and values["s"] == "txt" and values["ints"] == [1, 2, 3]
    assert values["strings"] == ["a", "b"] and values["floats"] == [1.0, 2.5]
    assert values["tp"] == ir.TensorType(1, (2, 3))
    n.name = "touched"  # the node is rewritten; attributes that were only read come back as they were
    for k in list(n.attrs):
        n.set_attr(k, n.attrs[k].value)
    back = proto(m)
    want = onnx.ModelProto()
    want.CopyFrom(mp)
    want.graph.node[0].name = "touched"
    assert back == want


def test_model_changes_are_written(rng: np.random.Generator) -> None:
    m = from_text("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N,4] x) => (float[N,4] y) { t = Neg(x)  y = Relu(t) }
    """)
    ref = from_text("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N,4] x) => (float[N,4] y) { t = Neg(x)  y = Relu(t) }
    """)
    m.producer_name = "graphopt"
    m.metadata_props["opt"] = "yes"
    m.set_opset_imports({"": 18})
    m.ir_version = 9
    mp = proto(m)
    assert (mp.producer_name, mp.ir_version, mp.opset_import[0].version) == ("graphopt", 9, 18)
    assert {p.key: p.value for p in mp.metadata_props} == {"opt": "yes"}
    assert_same_outputs(ref, m, bindings=[{"N": 2}])


def test_value_info_follows_changes() -> None:
    m = from_text("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[N,4] x) => (float[N,4] y) <float[N,4] t> { t = Neg(x)  y = Relu(t) }
    """)
    t = list(m.graph)[0].output
    t.type = ir.TensorType(1, ("M", 4))
    mp = proto(m)
    assert mp.graph.value_info[0].type.tensor_type.shape.dim[0].dim_param == "M"
    m.graph.undeclare(t)
    assert not proto(m).graph.value_info
    check_use_def(m)


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError):
        ir.load(tmp_path / "missing.onnx")
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(ModelDecodeError, match="empty"):
        ir.load(tmp_path / "empty.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\xff\xff\xff\xff garbage")
    with pytest.raises(ModelDecodeError):
        ir.load(tmp_path / "junk.onnx")
    (tmp_path / "tensor.onnx").write_bytes(numpy_helper.from_array(np.ones(3, np.float32)).SerializeToString())
    with pytest.raises(NotOnnxError):
        ir.load(tmp_path / "tensor.onnx")


def test_save_and_load_file(tmp_path: Path) -> None:
    mp = onnx.parser.parse_model(LOOP)
    p = tmp_path / "m.onnx"
    p.write_bytes(mp.SerializeToString())
    m = ir.load(p)
    m.graph.append(Node("Neg", [m.graph.inputs[0]]))
    info = ir.save(m, tmp_path / "out.onnx")
    assert info.bytes_written == (tmp_path / "out.onnx").stat().st_size
    back = onnx.load(str(tmp_path / "out.onnx"))
    assert [n.op_type for n in back.graph.node] == ["Exp", "Loop", "Neg"]
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".graphopt-")]


def _reordered(mp: onnx.ModelProto) -> bytes:
    """`mp` serialized with its opset imports before its graph (protobuf reads fields in any order, and
    concatenated messages merge): a valid file that is not in protobuf's own field order."""
    head, ops, graph = onnx.ModelProto(), onnx.ModelProto(), onnx.ModelProto()
    head.CopyFrom(mp)
    head.ClearField("graph")
    head.ClearField("opset_import")
    ops.opset_import.extend(mp.opset_import)
    graph.graph.CopyFrom(mp.graph)
    return head.SerializeToString() + ops.SerializeToString() + graph.SerializeToString()


def test_unchanged_model_is_saved_as_the_file_it_came_from(tmp_path: Path) -> None:
    mp = onnx.parser.parse_model('<ir_version: 8, opset_import: ["" : 17]>\n'
                                 "g (float[N, 4] x) => (float[N, 4] y) { a = Relu(x)  y = Neg(a) }")
    data = _reordered(mp)
    assert data != mp.SerializeToString() and onnx.load_from_string(data) == mp
    src = tmp_path / "in.onnx"
    src.write_bytes(data)
    m = ir.load(src)
    ir.save(m, tmp_path / "out.onnx")
    assert (tmp_path / "out.onnx").read_bytes() == data  # byte for byte, not merely the same message
    # an edit: the model is serialized (in protobuf's field order)
    next(iter(m.graph)).name = "relu"
    ir.save(m, tmp_path / "edited.onnx")
    edited = (tmp_path / "edited.onnx").read_bytes()
    assert edited != data and onnx.load_from_string(edited).graph.node[0].name == "relu"


def test_a_source_file_changed_after_loading_is_not_copied(tmp_path: Path) -> None:
    mp = onnx.parser.parse_model('<ir_version: 8, opset_import: ["" : 17]>\n'
                                 "g (float[N, 4] x) => (float[N, 4] y) { y = Relu(x) }")
    src = tmp_path / "in.onnx"
    src.write_bytes(_reordered(mp))
    m = ir.load(src)
    other = onnx.parser.parse_model('<ir_version: 8, opset_import: ["" : 17]>\n'
                                    "g (float[N, 4] x) => (float[N, 4] y) { y = Neg(x) }")
    src.write_bytes(other.SerializeToString())
    ir.save(m, tmp_path / "out.onnx")
    out = onnx.load(str(tmp_path / "out.onnx"))
    assert [n.op_type for n in out.graph.node] == ["Relu"]


def test_edits_outside_the_journal_still_reach_the_file(tmp_path: Path) -> None:
    # fields the IR does not journal (graph name, ir_version, opsets set directly) are compared, not assumed
    mp = onnx.parser.parse_model('<ir_version: 8, opset_import: ["" : 17]>\n'
                                 "g (float[N, 4] x) => (float[N, 4] y) { y = Relu(x) }")
    src = tmp_path / "in.onnx"
    src.write_bytes(_reordered(mp))
    for edit in ("name", "ir", "opset"):
        m = ir.load(src)
        if edit == "name":
            m.graph.name = "renamed"
        elif edit == "ir":
            m.ir_version = 9
        else:
            m.opset_imports = {"": 18}
        ir.save(m, tmp_path / "out.onnx")
        out = onnx.load(str(tmp_path / "out.onnx"))
        assert (out.graph.name, out.ir_version, out.opset_import[0].version) == {
            "name": ("renamed", 8, 17), "ir": ("g", 9, 17), "opset": ("g", 8, 18)}[edit]
