"""External data: lazy loading, faithful saving (same locations and offsets), never clobbering the source, refusing
locations outside the model's folder, and atomic saves.

Models are written by onnx itself (``onnx.save(..., save_as_external_data=True)``) and checked in onnxruntime.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

import graphopt.ir as ir
from graphopt.errors import ExternalDataError, OutputError
from graphopt.ir import Node, serde


def _model(rng: np.random.Generator) -> onnx.ModelProto:
    """x @ W + B + c, where c is a Constant node's tensor attribute, and an If whose branch holds a tensor too."""
    w = rng.standard_normal((64, 64)).astype(np.float32)
    b = rng.standard_normal((64,)).astype(np.float32)
    c = rng.standard_normal((64,)).astype(np.float32)
    e = rng.standard_normal((64,)).astype(np.float32)
    then = helper.make_graph([helper.make_node("Constant", [], ["e"], value=numpy_helper.from_array(e, "e_t"))],
                             "then", [], [helper.make_tensor_value_info("e", 1, [64])])
    other = helper.make_graph([helper.make_node("Identity", ["B"], ["f"])], "else", [],
                              [helper.make_tensor_value_info("f", 1, [64])])
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["t"]),
        helper.make_node("Add", ["t", "B"], ["u"]),
        helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(c, "c_t")),
        helper.make_node("Add", ["u", "c"], ["v"]),
        helper.make_node("If", ["flag"], ["k"], then_branch=then, else_branch=other),
        helper.make_node("Add", ["v", "k"], ["y"]),
    ]
    g = helper.make_graph(nodes, "g",
                          [helper.make_tensor_value_info("x", 1, ["N", 64]),
                           helper.make_tensor_value_info("flag", 9, [1])],
                          [helper.make_tensor_value_info("y", 1, ["N", 64])],
                          [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")])
    mp = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    mp.ir_version = 8
    return mp


def _save_onnx(mp: onnx.ModelProto, path: Path, *, one_file: bool = True, location: str = "weights.bin") -> None:
    onnx.save_model(mp, str(path), save_as_external_data=True, all_tensors_to_one_file=one_file,
                    location=location, size_threshold=0, convert_attribute=True)


def _ext_entries(path: Path) -> list[tuple[str, dict[str, str]]]:
    """(tensor name, external_data dict) for every external tensor of the model file, attributes included."""
    mp = onnx.load(str(path), load_external_data=False)
    out = []
    for t in onnx.external_data_helper._get_all_tensors(mp):
        if t.data_location == onnx.TensorProto.EXTERNAL:
            out.append((t.name, {e.key: e.value for e in t.external_data}))
    return out


def _outputs(path: Path, n: int = 3) -> list[np.ndarray]:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    x = np.arange(n * 64, dtype=np.float32).reshape(n, 64) / 100
    return [sess.run(None, {"x": x, "flag": np.array([f])})[0] for f in (True, False)]


def _same_outputs(a: Path, b: Path) -> None:
    for x, y in zip(_outputs(a), _outputs(b)):
        np.testing.assert_array_equal(x, y)


@pytest.fixture
def src(tmp_path: Path, rng: np.random.Generator) -> Path:
    d = tmp_path / "src"
    d.mkdir()
    _save_onnx(_model(rng), d / "model.onnx")
    assert len(_ext_entries(d / "model.onnx")) == 4  # W, B and both attribute tensors are external
    return d / "model.onnx"


def test_loading_reads_no_data(src: Path) -> None:
    data = src.parent / "weights.bin"
    hidden = src.parent / "hidden.bin"
    data.rename(hidden)  # loading must not need the data file at all
    m = ir.load(src)
    inits = list(m.graph.initializers.values())
    assert [v.name for v in inits] == ["W", "B"]
    for v in inits:
        t = v.const
        assert t is not None and t._array is None
        assert t.is_external and t.external is not None and t.external.location == "weights.bin"
        assert t.shape in ((64, 64), (64,)) and t.dtype == 1 and t.nbytes in (64 * 64 * 4, 64 * 4)
        assert t._array is None  # header fields read nothing either
    with pytest.raises(ExternalDataError, match="weights.bin"):
        inits[0].const.numpy()  # type: ignore[union-attr]
    hidden.rename(data)
    w = inits[0].const.numpy()  # type: ignore[union-attr]
    assert isinstance(w, np.memmap)  # mapped, not read into memory
    ref = onnx.load(str(src))
    np.testing.assert_array_equal(w, numpy_helper.to_array(ref.graph.initializer[0]))


def test_save_to_another_folder_keeps_locations_offsets_and_bytes(src: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "model.onnx"
    out.parent.mkdir()
    m = ir.load(src)
    info = ir.save(m, out)
    assert _ext_entries(out) == _ext_entries(src)
    assert (out.parent / "weights.bin").read_bytes() == (src.parent / "weights.bin").read_bytes()
    assert sorted(os.listdir(out.parent)) == ["model.onnx", "weights.bin"]
    assert [os.path.basename(p) for p in info.external_files] == ["weights.bin"]
    _same_outputs(src, out)
    # and the untouched model is the same message
    assert onnx.load(str(out), load_external_data=False) == onnx.load(str(src), load_external_data=False)


def test_save_several_files(tmp_path: Path, rng: np.random.Generator) -> None:
    d = tmp_path / "src"
    d.mkdir()
    _save_onnx(_model(rng), d / "model.onnx", one_file=False)
    files = sorted(f for f in os.listdir(d) if f != "model.onnx")
    assert len(files) == 4
    out = tmp_path / "out" / "model.onnx"
    out.parent.mkdir()
    ir.save(ir.load(d / "model.onnx"), out)
    assert _ext_entries(out) == _ext_entries(d / "model.onnx")
    for f in files:
        assert (out.parent / f).read_bytes() == (d / f).read_bytes()
    _same_outputs(d / "model.onnx", out)


def test_save_beside_the_source_does_not_touch_its_data(src: Path) -> None:
    data = src.parent / "weights.bin"
    before = data.read_bytes()
    stat = data.stat()
    out = src.parent / "opt.onnx"
    m = ir.load(src)
    ir.save(m, out)
    assert data.read_bytes() == before and data.stat().st_mtime_ns == stat.st_mtime_ns
    assert {e["location"] for _, e in _ext_entries(out)} == {"opt.onnx.data"}
    offsets_src = [(n, e["offset"], e["length"]) for n, e in _ext_entries(src)]
    offsets_out = [(n, e["offset"], e["length"]) for n, e in _ext_entries(out)]
    assert offsets_out == offsets_src  # nothing moved inside the file
    assert (src.parent / "opt.onnx.data").read_bytes() == before
    _same_outputs(src, out)


def test_save_over_the_source_without_in_place_ok_keeps_the_data(src: Path) -> None:
    data = src.parent / "weights.bin"
    before = data.read_bytes()
    ref = _outputs(src)
    m = ir.load(src)
    ir.save(m, src)  # same file, not in place: the weights go to model.onnx.data, weights.bin stays as it was
    assert data.read_bytes() == before
    assert {e["location"] for _, e in _ext_entries(src)} == {"model.onnx.data"}
    for x, y in zip(ref, _outputs(src)):
        np.testing.assert_array_equal(x, y)


def test_in_place_save(src: Path) -> None:
    ref = _outputs(src)
    entries = _ext_entries(src)
    m = ir.load(src)
    c = m.graph.initializers["B"].const
    assert c is not None
    c.numpy()  # a live memory map on the file about to be replaced
    next(iter(m.graph)).name = "changed"  # a change, so that the model file is really rewritten
    ir.save(m, src, in_place_ok=True)
    assert _ext_entries(src) == entries  # same locations and offsets
    assert sorted(os.listdir(src.parent)) == ["model.onnx", "weights.bin"]
    for x, y2 in zip(ref, _outputs(src)):
        np.testing.assert_array_equal(x, y2)
    np.testing.assert_array_equal(ir.load(src).graph.initializers["B"].const.numpy(),  # type: ignore[union-attr]
                                  c.numpy())


def test_changed_external_tensor_is_written(src: Path, tmp_path: Path) -> None:
    m = ir.load(src)
    bv = m.graph.initializers["B"]
    m.graph.set_const(bv, ir.Tensor.from_numpy(np.zeros(64, np.float32)))
    out = tmp_path / "out" / "model.onnx"
    out.parent.mkdir()
    ir.save(m, out)
    back = onnx.load(str(out))
    b = next(t for t in back.graph.initializer if t.name == "B")
    np.testing.assert_array_equal(numpy_helper.to_array(b), np.zeros(64, np.float32))
    w = next(t for t in back.graph.initializer if t.name == "W")
    np.testing.assert_array_equal(numpy_helper.to_array(w), m.graph.initializers["W"].const.numpy())  # type: ignore


def test_missing_data_file(src: Path, tmp_path: Path) -> None:
    (src.parent / "weights.bin").unlink()
    m = ir.load(src)  # loading needs no data
    out = tmp_path / "out.onnx"
    with pytest.raises(ExternalDataError, match="weights.bin"):
        ir.save(m, out)
    assert not out.exists()
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".graphopt-")]
    with pytest.raises(ExternalDataError, match="weights.bin"):
        m.graph.initializers["W"].const.numpy()  # type: ignore[union-attr]


@pytest.mark.parametrize("location", ["../outside.bin", "sub/../../outside.bin", "/etc/passwd", "ABSOLUTE"])
def test_locations_outside_the_folder_are_refused(tmp_path: Path, rng: np.random.Generator, location: str) -> None:
    d = tmp_path / "model"
    d.mkdir()
    outside = tmp_path / "outside.bin"
    outside.write_bytes(np.ones(64 * 64 + 64, np.float32).tobytes())
    if location == "ABSOLUTE":
        location = str(outside)
    mp = _model(rng)
    for t in mp.graph.initializer:
        t.ClearField("raw_data")
        t.ClearField("float_data")
        t.data_location = onnx.TensorProto.EXTERNAL
        for k, v in (("location", location), ("offset", "0"), ("length", str(4 * int(np.prod(t.dims))))):
            e = t.external_data.add()
            e.key, e.value = k, v
    (d / "model.onnx").write_bytes(mp.SerializeToString())
    m = ir.load(d / "model.onnx")
    with pytest.raises(ExternalDataError, match="outside the model's folder|absolute path"):
        m.graph.initializers["W"].const.numpy()  # type: ignore[union-attr]
    with pytest.raises(ExternalDataError):
        ir.save(m, tmp_path / "copy.onnx")
    with pytest.raises(ExternalDataError):
        serde.dumps(m)


def test_dumps_pulls_external_data_inline(src: Path) -> None:
    m = ir.load(src)
    mp = onnx.ModelProto()
    mp.ParseFromString(serde.dumps(m))
    assert not [t for t in onnx.external_data_helper._get_all_tensors(mp)
                if t.data_location == onnx.TensorProto.EXTERNAL]
    ref = onnx.load(str(src))
    for a, b in zip(onnx.external_data_helper._get_all_tensors(ref),
                    onnx.external_data_helper._get_all_tensors(mp)):
        np.testing.assert_array_equal(numpy_helper.to_array(a), numpy_helper.to_array(b))


# ---------------------------------------------------------------------------------------------------------------
# Atomicity
# ---------------------------------------------------------------------------------------------------------------
def _fail_replace(monkeypatch: pytest.MonkeyPatch, after: int = 0) -> None:
    """The os.replace call after `after` successful ones fails (an I/O error between renames); later calls work."""
    real = os.replace
    calls = {"n": 0}

    def replace(a: str, b: str) -> None:
        calls["n"] += 1
        if calls["n"] == after + 1:
            raise OSError(28, "No space left on device")
        real(a, b)

    monkeypatch.setattr(os, "replace", replace)


@pytest.mark.parametrize("external", [False, True])
def test_failed_save_leaves_previous_output_intact(tmp_path: Path, src: Path, external: bool,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "model.onnx"
    m = ir.load(src) if external else serde.loads(serde.dumps(ir.load(src)))
    ir.save(m, out)
    previous = {f: (out_dir / f).read_bytes() for f in os.listdir(out_dir)}
    # change the model, then fail while saving it
    m.graph.append(Node("Neg", [m.graph.inputs[0]]))
    _fail_replace(monkeypatch)
    with pytest.raises(OutputError, match="no space"):
        ir.save(m, out)
    assert {f: (out_dir / f).read_bytes() for f in os.listdir(out_dir)} == previous  # no partial file, no tmp
    monkeypatch.undo()
    ir.save(m, out)
    assert sorted(os.listdir(out_dir)) == sorted(previous)
    _same_outputs(src, out)


@pytest.mark.parametrize("after", [0, 1])
def test_failed_save_after_data_files_were_replaced_restores_them(tmp_path: Path, src: Path, after: int,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # the data file is replaced first, the model last: when the model's rename fails, the data file written for
    # the new model must not stay beside the old model (whose offsets point into the old data)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "model.onnx"
    m = ir.load(src)
    ir.save(m, out)
    previous = {f: (out_dir / f).read_bytes() for f in os.listdir(out_dir)}
    ref = _outputs(out)
    # a bigger B moves what follows it in the data file
    m.graph.set_const(m.graph.initializers["W"], ir.Tensor.from_numpy(np.full((64, 64), 0.5, np.float32)))
    _fail_replace(monkeypatch, after=after)
    with pytest.raises(OutputError):
        ir.save(m, out)
    assert {f: (out_dir / f).read_bytes() for f in os.listdir(out_dir)} == previous
    for x, y in zip(ref, _outputs(out)):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("after", [0, 1])
def test_failed_save_with_no_previous_output_leaves_nothing(tmp_path: Path, src: Path, after: int,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    m = ir.load(src)
    _fail_replace(monkeypatch, after=after)
    with pytest.raises(OutputError):
        ir.save(m, out_dir / "model.onnx")
    assert os.listdir(out_dir) == []


def test_save_to_missing_folder_is_an_output_error(tmp_path: Path, src: Path) -> None:
    with pytest.raises(OutputError, match="does not exist"):
        ir.save(ir.load(src), tmp_path / "nope" / "model.onnx")


@pytest.mark.parametrize("mode", ["unsupported", "partial"])
def test_data_copy_falls_back_when_the_kernel_copy_fails(src: Path, tmp_path: Path, mode: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    real = getattr(os, "copy_file_range", None)
    calls = {"n": 0}

    def copy_file_range(fd_in: int, fd_out: int, count: int, offset_src: int | None = None) -> int:
        calls["n"] += 1
        if mode == "unsupported" or real is None or calls["n"] > 1:
            raise OSError(38, "Function not implemented")
        return real(fd_in, fd_out, min(count, 1000), offset_src)  # a short copy, then a failure

    monkeypatch.setattr(os, "copy_file_range", copy_file_range, raising=False)
    out = tmp_path / "out" / "model.onnx"
    out.parent.mkdir()
    ir.save(ir.load(src), out)
    assert calls["n"] >= 1
    assert (out.parent / "weights.bin").read_bytes() == (src.parent / "weights.bin").read_bytes()
    assert _ext_entries(out) == _ext_entries(src)
