"""Tensors held by the IR: lazy by default.

A :class:`Tensor` wraps either a numpy array (made by a pass) or a serialized tensor (loaded from a model,
inline or in an external data file). For a loaded tensor, dtype, shape and byte size come from the header
fields alone: nothing is decoded or read from disk until a pass calls :meth:`Tensor.numpy`. External data is
memory-mapped, never read twice into memory, and never read from outside the model's folder.

The ONNX data-type numbers are spec constants, repeated here so that the IR does not import onnx.
"""

from __future__ import annotations

import enum
import hashlib
import os
from typing import Any

import numpy as np



def _serde():  # noqa: ANN202 - the serde module, imported once (serde imports this module)
    global _SERDE
    if _SERDE is None:
        from . import serde as _s

        _SERDE = _s
    return _SERDE


_SERDE = None
# sample_digest: tensors up to this many bytes are hashed whole, bigger ones at _SAMPLES evenly spread slices
_SAMPLE_ALL = 1 << 16
_SAMPLES = 64
_SAMPLE_BYTES = 256

class DataType(enum.IntEnum):
    """ONNX TensorProto.DataType numbers."""

    UNDEFINED = 0
    FLOAT = 1
    UINT8 = 2
    INT8 = 3
    UINT16 = 4
    INT16 = 5
    INT32 = 6
    INT64 = 7
    STRING = 8
    BOOL = 9
    FLOAT16 = 10
    DOUBLE = 11
    UINT32 = 12
    UINT64 = 13
    COMPLEX64 = 14
    COMPLEX128 = 15
    BFLOAT16 = 16
    FLOAT8E4M3FN = 17
    FLOAT8E4M3FNUZ = 18
    FLOAT8E5M2 = 19
    FLOAT8E5M2FNUZ = 20
    UINT4 = 21
    INT4 = 22
    FLOAT4E2M1 = 23
    FLOAT8E8M0 = 24
    UINT2 = 25
    INT2 = 26


# Bits per element, for size checks without decoding.
_BITS = {
    DataType.FLOAT: 32, DataType.UINT8: 8, DataType.INT8: 8, DataType.UINT16: 16, DataType.INT16: 16,
    DataType.INT32: 32, DataType.INT64: 64, DataType.BOOL: 8, DataType.FLOAT16: 16, DataType.DOUBLE: 64,
    DataType.UINT32: 32, DataType.UINT64: 64, DataType.COMPLEX64: 64, DataType.COMPLEX128: 128,
    DataType.BFLOAT16: 16, DataType.FLOAT8E4M3FN: 8, DataType.FLOAT8E4M3FNUZ: 8, DataType.FLOAT8E5M2: 8,
    DataType.FLOAT8E5M2FNUZ: 8, DataType.UINT4: 4, DataType.INT4: 4, DataType.FLOAT4E2M1: 4,
    DataType.FLOAT8E8M0: 8, DataType.UINT2: 2, DataType.INT2: 2,
}

_NP_OF = {
    DataType.FLOAT: np.float32, DataType.UINT8: np.uint8, DataType.INT8: np.int8, DataType.UINT16: np.uint16,
    DataType.INT16: np.int16, DataType.INT32: np.int32, DataType.INT64: np.int64, DataType.BOOL: np.bool_,
    DataType.FLOAT16: np.float16, DataType.DOUBLE: np.float64, DataType.UINT32: np.uint32,
    DataType.UINT64: np.uint64, DataType.COMPLEX64: np.complex64, DataType.COMPLEX128: np.complex128,
    DataType.STRING: np.object_,
}

FLOAT_TYPES = frozenset({
    DataType.FLOAT, DataType.DOUBLE, DataType.FLOAT16, DataType.BFLOAT16, DataType.FLOAT8E4M3FN,
    DataType.FLOAT8E4M3FNUZ, DataType.FLOAT8E5M2, DataType.FLOAT8E5M2FNUZ, DataType.FLOAT4E2M1,
    DataType.FLOAT8E8M0,
})
INT_TYPES = frozenset({
    DataType.UINT8, DataType.INT8, DataType.UINT16, DataType.INT16, DataType.INT32, DataType.INT64,
    DataType.UINT32, DataType.UINT64, DataType.UINT4, DataType.INT4, DataType.UINT2, DataType.INT2,
})


_BITS_INT = {int(k): v for k, v in _BITS.items()}


def bits_of(dtype: int) -> int:
    """Bits per element of an ONNX data type (0 when unknown or variable, as for strings)."""
    return _BITS_INT.get(dtype, 0)


_NP_DTYPES: dict[int, np.dtype] = {}


def numpy_dtype(dtype: int) -> np.dtype:
    """The numpy dtype that holds an ONNX data type (ml_dtypes types for bfloat16, float8, int4...)."""
    got = _NP_DTYPES.get(dtype)
    if got is not None:
        return got
    try:
        got = np.dtype(_NP_OF[DataType(dtype)])
    except (KeyError, ValueError):
        serde = _serde()

        got = serde.numpy_dtype_of(dtype)
    _NP_DTYPES[int(dtype)] = got
    return got


def dtype_of_numpy(dt: np.dtype) -> int:
    """The ONNX data type of a numpy dtype."""
    dt = np.dtype(dt)
    for k, v in _NP_OF.items():
        if np.dtype(v) == dt and k != DataType.STRING:
            return int(k)
    if dt.kind in ("U", "S", "O"):
        return int(DataType.STRING)
    serde = _serde()

    return serde.dtype_of_numpy_extended(dt)


def dtype_name(dtype: int | None) -> str:
    if dtype is None:
        return "?"
    try:
        return DataType(dtype).name.lower()
    except ValueError:
        return f"dtype{dtype}"


class ExternalRef:
    """Where an externally stored tensor lives: a file relative to the model's folder, an offset and a length."""

    __slots__ = ("location", "offset", "length", "base_dir", "extra")

    def __init__(self, location: str, offset: int, length: int | None, base_dir: str, extra: dict[str, str]):
        self.location = location
        self.offset = offset
        self.length = length
        self.base_dir = base_dir
        self.extra = extra  # other key/value pairs (checksum, basepath...) kept for the round trip

    def path(self) -> str:
        """The absolute path of the data file; refuses locations that leave the model's folder."""
        from ..errors import ExternalDataError

        loc = self.location
        if os.path.isabs(loc) or loc.startswith(("/", "\\")):
            raise ExternalDataError(f"external data location {loc!r} is an absolute path",
                                    hint="graphopt only reads external data files inside the model's folder")
        base = os.path.realpath(self.base_dir or ".")
        full = os.path.realpath(os.path.join(base, loc))
        if os.path.commonpath([base, full]) != base:
            raise ExternalDataError(f"external data location {loc!r} points outside the model's folder",
                                    hint="graphopt only reads external data files inside the model's folder")
        if not os.path.exists(full):
            raise ExternalDataError(f"external data file {loc!r} not found beside the model (looked in {base})",
                                    hint="copy the .data file(s) next to the model, or load from the model's own folder")
        return full


class Tensor:
    """A constant tensor. Lazy: header fields are known at once, numbers only when asked for.

    Build one from numpy with :meth:`from_numpy`; the loader builds them from serialized tensors. Tensors are
    treated as immutable: a pass that needs different numbers makes a new Tensor.
    """

    __slots__ = ("_proto", "_array", "_dtype", "_shape", "_ext", "_digest", "_sparse", "_base", "_sample",
                 "__weakref__")

    def __init__(self) -> None:
        self._proto: Any = None  # a TensorProto (or SparseTensorProto when _sparse) as loaded
        self._array: np.ndarray | None = None
        self._dtype: int = 0
        self._shape: tuple[int, ...] = ()
        self._ext: ExternalRef | None = None
        self._digest: bytes | None = None
        self._sample: bytes | None = None
        self._sparse = False
        self._base: str | None = None  # folder that external data locations are relative to

    def _header(self) -> None:
        if self._dtype == -1:
            serde = _serde()

            serde._decode_header(self)

    # -- construction ----------------------------------------------------------------------------------------
    @classmethod
    def from_numpy(cls, array: Any, dtype: int | None = None) -> Tensor:
        """A tensor holding `array` (numpy arrays, Python scalars and lists are accepted)."""
        arr = np.asarray(array)
        t = cls()
        t._dtype = int(dtype) if dtype is not None else dtype_of_numpy(arr.dtype)
        if t._dtype != DataType.STRING:
            want = numpy_dtype(t._dtype)
            if arr.dtype != want:
                arr = arr.astype(want)
        t._array = arr
        t._shape = tuple(int(d) for d in arr.shape)
        return t

    @classmethod
    def _from_proto(cls, proto: Any, base_dir: str | None, sparse: bool = False) -> Tensor:
        serde = _serde()

        return serde.tensor_from_proto(proto, base_dir, sparse)

    # -- header ------------------------------------------------------------------------------------------------
    @property
    def dtype(self) -> int:
        if self._dtype == -1:
            self._header()
        return self._dtype

    @property
    def shape(self) -> tuple[int, ...]:
        if self._dtype == -1:
            self._header()
        return self._shape

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        """Bytes of the dense data, from dtype and shape alone (strings: a rough estimate)."""
        b = bits_of(self.dtype)
        if b == 0:
            if self._array is not None and self._dtype == DataType.STRING:
                return int(sum(len(str(s)) for s in self._array.flat))
            return self.size * 16
        return (self.size * b + 7) // 8

    @property
    def is_external(self) -> bool:
        self._header()
        return self._ext is not None

    @property
    def is_sparse(self) -> bool:
        return self._sparse

    @property
    def external(self) -> ExternalRef | None:
        self._header()
        return self._ext

    @property
    def is_loaded(self) -> bool:
        return self._array is not None

    # -- data --------------------------------------------------------------------------------------------------
    def numpy(self) -> np.ndarray:
        """The numbers, decoded on first use (external data is memory-mapped). Do not modify the result."""
        if self._array is None:
            serde = _serde()

            arr = serde.decode_tensor(self)
            if isinstance(arr, np.ndarray) and arr.flags.writeable and not isinstance(arr, np.memmap):
                arr.flags.writeable = False
            self._array = arr
        return self._array

    def item(self) -> Any:
        return self.numpy().reshape(-1)[0].item() if self.size == 1 else None

    def digest(self) -> bytes:
        """A content hash (dtype, shape and bytes) for deduplication; cached."""
        if self._digest is None:
            self._header()
            h = hashlib.blake2b(digest_size=16)
            h.update(repr((self._dtype, self._shape, self._sparse)).encode())
            raw = None
            if self._array is None and self._proto is not None and not self._sparse and self._ext is None:
                raw = self._proto.raw_data or None
            if raw is not None:
                h.update(raw)
            else:
                arr = self.numpy()
                if arr.dtype == object:
                    for s in arr.flat:
                        h.update(s if isinstance(s, bytes) else str(s).encode())
                        h.update(b"\0")
                else:
                    h.update(np.ascontiguousarray(arr).tobytes())
            self._digest = h.digest()
        return self._digest

    def content(self) -> Any:
        """The dense contents as bytes-like (little-endian, as raw_data holds them), or a numpy object array for
        strings; not cached (a loaded tensor's numbers are not kept decoded for this)."""
        self._header()
        if self._array is not None:
            arr = self._array
        elif self._proto is not None and not self._sparse and self._ext is None:
            raw = self._proto.raw_data
            if raw:
                return raw
            arr = self.numpy()
        else:
            arr = self.numpy()
        if arr.dtype == object:
            return arr
        return memoryview(np.ascontiguousarray(arr).reshape(-1).view(np.uint8))

    def sample_digest(self) -> Any:
        """A hash of dtype, shape and a few evenly spread slices of the contents (all of them when small); cached.
        Equal tensors have equal sample digests; tensors that differ almost always differ here too (compare the
        bytes to be sure), and for a big tensor this reads a few KiB instead of all of it (external data is
        memory-mapped: only those pages). A key for this process's dicts, not stable across runs."""
        s = getattr(self, "_sample", None)
        if s is None:
            head = (self.dtype, self.shape, self._sparse)
            data = self.content()
            if isinstance(data, np.ndarray):  # strings
                s = hash((head, tuple(x if isinstance(x, bytes) else str(x) for x in data.flat)))
            else:
                n = len(data)
                if n <= _SAMPLE_ALL:
                    s = hash((head, bytes(data)))
                else:
                    step = n // _SAMPLES
                    parts = [bytes(data[i * step:i * step + _SAMPLE_BYTES]) for i in range(_SAMPLES)]
                    parts.append(bytes(data[n - _SAMPLE_BYTES:]))
                    s = hash((head, b"".join(parts)))
            self._sample = s
        return s

    def __repr__(self) -> str:
        where = " external" if self.is_external else ""
        return f"Tensor({dtype_name(self.dtype)}{list(self.shape)}{where})"
