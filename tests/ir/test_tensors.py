"""Tensors and attributes stay lazy: loading decodes nothing; header fields come without decoding; numpy() decodes
once; untouched tensors are written back as the very message that was loaded."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from graphopt.ir import DataType, Tensor, serde
from graphopt.ir.core import _UNSET
from graphopt.testing import from_text

TEXT = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N,4] x) => (float[N,4] y) <float[N,4] t> {
  c = Constant <value = float[4] {1.0, 2.0, 3.0, 4.0}> ()
  t = Add(x, w)
  u = Mul(t, c)
  y = Add(u, i)
}
"""


def _model_bytes(rng: np.random.Generator) -> bytes:
    mp = onnx.parser.parse_model(TEXT)
    mp.graph.initializer.append(numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "w"))
    # a tensor stored in the typed field rather than raw_data
    mp.graph.initializer.append(helper.make_tensor("i", onnx.TensorProto.FLOAT, [4], [0.5, 1.5, 2.5, 3.5]))
    return mp.SerializeToString()


def test_loading_decodes_nothing(rng: np.random.Generator) -> None:
    data = _model_bytes(rng)
    m = serde.loads(data)
    inits = list(m.graph.initializers.values())
    for v in inits:
        t = v.const
        assert t is not None and t._array is None and not t.is_loaded
    nodes = list(m.graph)
    for n in nodes:
        assert n._attrs is None  # attributes stay serialized
        for v in n.outputs:
            assert v._type in (None, _UNSET)  # types too
    assert m.graph.inputs[0]._type is _UNSET
    # header fields are read without decoding the numbers
    w = inits[0].const
    assert w is not None
    assert (w.dtype, w.shape, w.size, w.nbytes, w.is_external) == (DataType.FLOAT, (4,), 4, 16, False)
    assert w._array is None
    # the value's type: decoded on first read, still without touching tensors
    assert m.graph.inputs[0].type is not None and w._array is None
    # numbers: decoded on first use, once, read-only
    arr = w.numpy()
    assert arr is w.numpy() and w.is_loaded
    with pytest.raises(ValueError):
        arr[0] = 1.0
    ref = onnx.ModelProto()
    ref.ParseFromString(data)
    np.testing.assert_array_equal(arr, numpy_helper.to_array(ref.graph.initializer[0]))
    np.testing.assert_array_equal(inits[1].const.numpy(), [0.5, 1.5, 2.5, 3.5])  # type: ignore[union-attr]
    # attribute tensors are lazy too
    c = nodes[0].attrs["value"].value
    assert isinstance(c, Tensor) and c._array is None and c.shape == (4,)
    np.testing.assert_array_equal(c.numpy(), [1, 2, 3, 4])


def test_untouched_tensors_are_written_back_as_loaded(rng: np.random.Generator) -> None:
    data = _model_bytes(rng)
    m = serde.loads(data)
    w = m.graph.initializers["w"].const
    assert w is not None
    w.numpy()  # reading the numbers does not make it "changed"
    assert serde.tensor_to_proto(w, "w") is w._proto
    out = onnx.ModelProto()
    out.ParseFromString(serde.serialize(m))
    ref = onnx.ModelProto()
    ref.ParseFromString(data)
    assert out == ref
    # the typed-field tensor stays in its typed field (no silent conversion to raw_data)
    assert list(out.graph.initializer[1].float_data) == [0.5, 1.5, 2.5, 3.5]


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64, np.int8, np.uint8, np.int16, np.int32,
                                   np.int64, np.uint16, np.uint32, np.uint64, np.bool_, np.complex64])
def test_from_numpy_round_trip(dtype: type, rng: np.random.Generator) -> None:
    arr = (rng.standard_normal((2, 3)) * 10).astype(dtype)
    t = Tensor.from_numpy(arr)
    assert t.shape == (2, 3) and t.is_loaded
    tp = serde.tensor_to_proto(t, "k")
    assert tp.name == "k" and tp.data_type == t.dtype
    np.testing.assert_array_equal(numpy_helper.to_array(tp), arr)
    assert t.nbytes == arr.nbytes


def test_from_numpy_with_explicit_dtype_and_strings() -> None:
    t = Tensor.from_numpy([1, 2, 3], DataType.FLOAT16)
    assert t.dtype == DataType.FLOAT16 and t.numpy().dtype == np.float16
    s = Tensor.from_numpy(np.array(["a", "bc"], dtype=object))
    assert s.dtype == DataType.STRING
    tp = serde.tensor_to_proto(s, "s")
    assert list(tp.string_data) == [b"a", b"bc"]


def test_digest_is_by_content() -> None:
    a = Tensor.from_numpy(np.arange(6, dtype=np.float32).reshape(2, 3))
    b = Tensor.from_numpy(np.arange(6, dtype=np.float32).reshape(2, 3))
    c = Tensor.from_numpy(np.arange(6, dtype=np.float32).reshape(3, 2))
    d = Tensor.from_numpy(np.arange(6, dtype=np.int32).reshape(2, 3))
    assert a.digest() == b.digest()
    assert len({a.digest(), c.digest(), d.digest()}) == 3
    # a loaded tensor hashes like the same numbers made in memory... at least consistently with itself
    m = from_text("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2,3] x) => (float[2,3] y) { y = Add(x, w) }
    """, {"w": np.arange(6, dtype=np.float32).reshape(2, 3)})
    w = m.graph.initializers["w"].const
    assert w is not None
    assert w.digest() == w.digest() and w._array is None  # hashing raw bytes decodes nothing


def test_sparse_initializer_round_trips(rng: np.random.Generator) -> None:
    mp = onnx.parser.parse_model("""
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[3,4] x) => (float[3,4] y) { y = Add(x, s) }
    """)
    vals = numpy_helper.from_array(np.array([1.5, -2.0], np.float32), "s")
    idx = numpy_helper.from_array(np.array([1, 7], np.int64), "")
    mp.graph.sparse_initializer.append(helper.make_sparse_tensor(vals, idx, [3, 4]))
    m = serde.loads(mp.SerializeToString())
    s = m.graph.initializers["s"].const
    assert s is not None and s.is_sparse and s.shape == (3, 4)
    dense = s.numpy()
    assert dense.shape == (3, 4) and dense[0, 1] == 1.5 and dense[1, 3] == -2.0 and dense.sum() == -0.5
    out = onnx.ModelProto()
    out.ParseFromString(serde.serialize(m))
    assert out == mp
