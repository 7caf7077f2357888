"""The validity gate: each class of invalid model is refused before any pass, in words; what onnxruntime runs is
accepted (nodes out of order are sorted, known false alarms of strict inference are warnings); the interface guard
lets dims become more specific and nothing else. Real onnx, real onnxruntime."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h

from graphopt.errors import ExternalDataError, InvalidModelError
from graphopt.ir import serde
from graphopt.testing import session
from graphopt.validate.gate import (
    LENIENT,
    Interface,
    Port,
    check_input,
    check_output,
    interface_of,
    interface_problems,
)

X = h.make_tensor_value_info("x", T.FLOAT, [2, 3])
Y = h.make_tensor_value_info("y", T.FLOAT, [2, 3])


def _model(nodes: list, inputs: list | None = None, outputs: list | None = None, inits: list | None = None,
           opset: int = 17) -> onnx.ModelProto:
    g = h.make_graph(nodes, "g", inputs if inputs is not None else [X], outputs if outputs is not None else [Y],
                     inits or [])
    return h.make_model(g, opset_imports=[h.make_opsetid("", opset)], ir_version=8)


def _gate(mp: onnx.ModelProto, **kw: object):  # noqa: ANN202
    data = mp.SerializeToString()
    return check_input(serde.loads(data, path="m.onnx"), data=data, name="m.onnx", **kw)  # type: ignore[arg-type]


def _refused(mp: onnx.ModelProto, **kw: object) -> InvalidModelError:
    with pytest.raises(InvalidModelError) as ei:
        _gate(mp, **kw)
    assert ei.value.path == "m.onnx" and ei.value.hint
    return ei.value


def _ort_refuses(mp: onnx.ModelProto) -> bool:
    try:
        session(mp.SerializeToString())
    except Exception:  # noqa: BLE001
        return True
    return False


# ----------------------------------------------------------------------------------------------------------------
# structure
# ----------------------------------------------------------------------------------------------------------------
def test_a_cycle_is_refused_in_words() -> None:
    mp = _model([h.make_node("Add", ["x", "b"], ["a"]), h.make_node("Relu", ["a"], ["b"]),
                 h.make_node("Relu", ["b"], ["y"])])
    e = _refused(mp)
    assert "cycle" in e.message and "Add node" in e.message
    assert _ort_refuses(mp)


def test_reading_a_value_nothing_produces_is_refused() -> None:
    mp = _model([h.make_node("Add", ["x", "ghost"], ["a"]), h.make_node("Relu", ["x"], ["y"])])
    e = _refused(mp)
    assert "'ghost'" in e.message and "no node produces" in e.message and "Add node" in e.message
    assert _ort_refuses(mp)


def test_an_output_nothing_produces_is_refused() -> None:
    mp = _model([h.make_node("Relu", ["x"], ["a"])])
    e = _refused(mp)
    assert e.message == "graph output 'y' is not produced by any node"


def test_a_subgraph_reading_an_undefined_value_is_refused() -> None:
    then = h.make_graph([h.make_node("Add", ["x", "nowhere"], ["t"])], "then", [],
                        [h.make_tensor_value_info("t", T.FLOAT, [2, 3])])
    other = h.make_graph([h.make_node("Relu", ["x"], ["e"])], "else", [], [h.make_tensor_value_info(
        "e", T.FLOAT, [2, 3])])
    c = h.make_tensor_value_info("c", T.BOOL, [])
    mp = _model([h.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)], inputs=[X, c])
    e = _refused(mp)
    assert "'nowhere'" in e.message and "subgraph of If node" in e.message


def test_the_load_order_vouches_for_acyclicity_only_until_the_model_changes() -> None:
    # in order as loaded: no sort is needed (the loader saw each value defined before it was read)
    mp = _model([h.make_node("Neg", ["x"], ["a"]), h.make_node("Relu", ["a"], ["y"])])
    data = mp.SerializeToString()
    m = serde.loads(data)
    assert m.meta["in_order_at"] == m.mutations
    assert check_input(m, data=data, name="m.onnx").sorted_nodes is False
    # a caller edits the loaded model into a cycle: the gate looks again
    neg, relu = list(m.graph)
    neg.replace_input_with(0, relu.outputs[0])
    assert m.meta["in_order_at"] != m.mutations
    with pytest.raises(InvalidModelError, match="cycle"):
        check_input(m, checker=False, name="m.onnx")
    # a cycle or a value read before its definition is a forward reference: the loader does not vouch
    cyc = serde.loads(_model([h.make_node("Add", ["x", "b"], ["a"]), h.make_node("Relu", ["a"], ["b"]),
                              h.make_node("Relu", ["b"], ["y"])]).SerializeToString())
    assert cyc.meta["in_order_at"] is None


def test_nodes_out_of_order_are_sorted_with_a_warning() -> None:
    mp = _model([h.make_node("Relu", ["a"], ["y"]), h.make_node("Neg", ["x"], ["a"])])
    assert not _ort_refuses(mp)  # onnxruntime runs it: refusing it would be wrong
    data = mp.SerializeToString()
    m = serde.loads(data)
    res = check_input(m, data=data, name="m.onnx")
    assert res.sorted_nodes and "topological order" in res.warnings[0]
    assert [n.op_type for n in m.graph] == ["Neg", "Relu"]


def test_two_producers_of_one_name_name_the_file(tmp_path: Path) -> None:
    mp = _model([h.make_node("Relu", ["x"], ["y"]), h.make_node("Neg", ["x"], ["y"])])
    p = tmp_path / "two.onnx"
    onnx.save(mp, str(p))
    with pytest.raises(InvalidModelError) as ei:
        serde.load(p)
    assert ei.value.one_line().startswith(f"{p}: value 'y' is defined twice")


# ----------------------------------------------------------------------------------------------------------------
# stored tensors, from sizes only
# ----------------------------------------------------------------------------------------------------------------
def _with_init(t: onnx.TensorProto) -> onnx.ModelProto:
    return _model([h.make_node("Add", ["x", "w"], ["y"])], inits=[t])


def _tensor(dtype: int, dims: list[int], **fields: object) -> onnx.TensorProto:
    t = onnx.TensorProto(name="w", data_type=dtype, dims=dims)
    for k, v in fields.items():
        if k == "raw_data":
            t.raw_data = v  # type: ignore[assignment]
        else:
            getattr(t, k).extend(v)  # type: ignore[arg-type]
    return t


@pytest.mark.parametrize("t, needle", [
    (_tensor(T.FLOAT, [2, 3], raw_data=np.ones(5, np.float32).tobytes()), "takes 24 bytes, but it stores 20"),
    (_tensor(T.FLOAT, [2, 3], raw_data=np.ones(7, np.float32).tobytes()), "takes 24 bytes, but it stores 28"),
    (_tensor(T.FLOAT, [2, 3], float_data=[1.0] * 7), "6 value(s), but it stores 7"),
    (_tensor(T.FLOAT, [2, 3], float_data=[1.0] * 5), "6 value(s), but it stores 5"),
    (_tensor(T.FLOAT, [2, 3]), "stores no data"),
], ids=["raw short", "raw long", "typed long", "typed short", "empty"])
def test_stored_bytes_that_do_not_fit_the_declaration_are_refused(t: onnx.TensorProto, needle: str) -> None:
    mp = _with_init(t)
    e = _refused(mp)
    assert needle in e.message and "initializer 'w'" in e.message, e.message
    assert _ort_refuses(mp)


@pytest.mark.parametrize("arr", [np.ones((2, 3), np.float32), np.arange(6, dtype=np.int64).reshape(2, 3),
                                 np.ones((2, 3), np.float16), np.array([[True, False, True]] * 2),
                                 np.array(["a", "bc", "d", "e", "f", "g"], dtype=object).reshape(2, 3),
                                 np.ones((2, 3), np.complex64), np.ones((0, 3), np.float32)],
                         ids=["float", "int64", "float16", "bool", "string", "complex64", "empty"])
@pytest.mark.parametrize("raw", [True, False], ids=["raw", "typed"])
def test_well_formed_tensors_of_every_kind_pass(arr: np.ndarray, raw: bool) -> None:
    if arr.dtype == object and raw:
        pytest.skip("strings have no raw form")
    t = onnx.numpy_helper.from_array(arr, "w")
    if not raw and arr.dtype != object:
        t = h.make_tensor("w", t.data_type, arr.shape, arr.reshape(-1).tolist(), raw=False)
    from graphopt.validate.gate import tensor_problem

    m = serde.loads(_with_init(t).SerializeToString())
    assert tensor_problem(m.graph.initializers["w"].const, "w", None) is None


def test_a_constant_node_with_short_data_is_refused() -> None:
    t = _tensor(T.FLOAT, [2, 3], raw_data=b"\0" * 8)
    mp = _model([h.make_node("Constant", [], ["w"], value=t), h.make_node("Add", ["x", "w"], ["y"])])
    assert "the value of Constant node" in _refused(mp).message


def _external(tmp_path: Path, location: str, *, file_bytes: int = 24, length: int | None = 24) -> Path:
    d = tmp_path / "m"
    d.mkdir(exist_ok=True)
    (tmp_path / "outside.bin").write_bytes(b"\0" * 24)
    if file_bytes and not location.startswith(("/", "..")):
        (d / location).write_bytes(b"\0" * file_bytes)
    t = onnx.TensorProto(name="w", data_type=T.FLOAT, dims=[2, 3], data_location=T.EXTERNAL)
    for k, v in (("location", location), ("offset", "0"), ("length", None if length is None else str(length))):
        if v is not None:
            e = t.external_data.add()
            e.key, e.value = k, v
    p = d / "model.onnx"
    onnx.save(_with_init(t), str(p))
    return p


@pytest.mark.parametrize("location, needle", [("../outside.bin", "points outside the model's folder"),
                                              ("ABS", "is an absolute path"),
                                              ("missing.bin", "not found beside the model")])
def test_external_data_that_leaves_the_folder_or_is_missing_is_refused(tmp_path: Path, location: str,
                                                                       needle: str) -> None:
    if location == "ABS":
        location = str(tmp_path / "outside.bin")
    p = _external(tmp_path, location, file_bytes=0 if location == "missing.bin" else 24)
    m = serde.load(p)  # loading stays lazy: the IR does not read the data
    with pytest.raises(ExternalDataError) as ei:
        check_input(m, path=str(p), name=str(p))
    assert needle in ei.value.message and ei.value.path == str(p)


def test_external_data_through_a_symlink_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    p = _external(tmp_path, "w.bin")
    os.unlink(p.parent / "w.bin")
    os.symlink(tmp_path / "outside.bin", p.parent / "w.bin")
    with pytest.raises(ExternalDataError, match="outside the model's folder"):
        check_input(serde.load(p), path=str(p))


@pytest.mark.parametrize("file_bytes, length, needle", [(16, 24, "holds only 16 bytes"),
                                                        (24, 20, "its external data entry says 20 bytes")])
def test_external_data_of_the_wrong_size_is_refused(tmp_path: Path, file_bytes: int, length: int,
                                                    needle: str) -> None:
    p = _external(tmp_path, "w.bin", file_bytes=file_bytes, length=length)
    with pytest.raises(InvalidModelError, match=needle):
        check_input(serde.load(p), path=str(p))


def test_external_data_inside_the_folder_passes(tmp_path: Path) -> None:
    p = _external(tmp_path, "w.bin")
    res = check_input(serde.load(p), path=str(p))
    assert res.checker == "ok" and not res.warnings


# ----------------------------------------------------------------------------------------------------------------
# onnx's checker with strict shape inference
# ----------------------------------------------------------------------------------------------------------------
MATMUL = _model([h.make_node("MatMul", ["x", "w"], ["y"])], outputs=[h.make_tensor_value_info("y", T.FLOAT, [2, 5])],
                inits=[onnx.numpy_helper.from_array(np.ones((5, 5), np.float32), "w")])


def test_shapes_that_contradict_each_other_are_refused_unless_no_check() -> None:
    e = _refused(MATMUL)
    assert e.message == ("its types and shapes contradict each other: MatMul node: incompatible dimensions for "
                         "matrix multiplication")
    assert "--no-check" in e.hint
    assert _ort_refuses(MATMUL)
    assert _gate(MATMUL, checker=False).checker == "skipped"


def test_no_check_never_skips_the_structural_checks() -> None:
    mp = _model([h.make_node("Add", ["x", "ghost"], ["y"])])
    _refused(mp, checker=False)


def test_an_unknown_attribute_is_refused_by_the_checker() -> None:
    mp = _model([h.make_node("Relu", ["x"], ["y"], bogus=1)])
    assert _refused(mp).message.startswith("the ONNX checker rejects it: Unrecognized attribute: bogus")


def test_known_false_alarms_of_strict_inference_are_warnings() -> None:
    from onnx.backend.test.case.node import collect_testcases

    case = next(c for c in collect_testcases(None) if c.name == "test_mvn")
    assert not _ort_refuses(case.model)
    res = _gate(case.model)
    assert res.checker == "lenient" and "false alarm" in res.warnings[0]
    assert LENIENT


# ----------------------------------------------------------------------------------------------------------------
# the interface guard and the output gate
# ----------------------------------------------------------------------------------------------------------------
def _iface(*dims: tuple) -> Interface:
    return Interface((Port("x", "tensor", 1, dims[0]),), (Port("y", "tensor", 1, dims[1]),))


@pytest.mark.parametrize("after, ok", [
    ((("batch", 3), ("batch", 3)), True),
    ((("batch", 3), (4, 3)), True),              # a name may become a size
    ((("batch", 3), (None, 3)), False),          # but not be dropped
    ((("batch", 3), ("n", 3)), False),           # nor renamed
    ((("batch", 3), ("batch", 4)), False),       # a size never changes
    ((("batch", 3), ("batch",)), False),         # nor the rank
    ((("batch", 3), None), False),
])
def test_interface_dims_may_only_become_more_specific(after: tuple, ok: bool) -> None:
    before = _iface(("batch", 3), ("batch", 3))
    assert (interface_problems(before, _iface(*after)) == []) is ok


def test_interface_names_order_and_dtypes_are_kept() -> None:
    before = Interface((Port("a", "tensor", 1, None), Port("b", "tensor", 1, None)), (Port("y", "tensor", 1, None),))
    swapped = Interface((Port("b", "tensor", 1, None), Port("a", "tensor", 1, None)), before.outputs)
    retyped = Interface(before.inputs, (Port("y", "tensor", 7, None),))
    assert "graph inputs changed" in interface_problems(before, swapped)[0]
    assert "became" in interface_problems(before, retyped)[0]
    unknown_before = Interface(before.inputs, (Port("y", "tensor", None, None),))
    assert interface_problems(unknown_before, retyped) == []


def test_output_gate_accepts_the_input_and_catches_a_renamed_output() -> None:
    mp = _model([h.make_node("Relu", ["x"], ["y"])])
    m = serde.loads(mp.SerializeToString())
    iface = interface_of(m)
    assert check_output(m, iface, data=serde.serialize(m)) == []
    m.graph.outputs[0].rename("z")
    assert "graph outputs changed" in check_output(m, iface, data=serde.serialize(m))[0]


def test_output_gate_checks_models_with_external_data_wherever_it_runs(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    p = _external(tmp_path, "w.bin")
    m = serde.load(p)
    monkeypatch.chdir(tmp_path)  # onnx resolves external data of bytes against the working directory
    assert check_output(m, interface_of(m), data=serde.serialize(m)) == []
    assert sorted(os.listdir(tmp_path)) == ["m", "outside.bin"]  # the check left nothing behind
