"""The only bridge between the IR and onnx protobuf: load, save, from_proto, to_proto.

Speed comes from laziness. Loading parses the file once (protobuf's C code), then walks the nodes reading only
op type, domain, input and output names; attributes, tensors and types stay serialized until a pass asks. Saving
writes every node and tensor that no pass touched back as the very message that was loaded, so the cost of a
round trip follows what changed, not the size of the model.

Lossless: every field the IR does not model (metadata, doc strings, quantization annotations, training info,
fields newer than this code) lives on in the loaded messages: the model and graph messages are kept as templates
with their lists taken out.

- :mod:`.read`: bytes or a file -> the IR (lazily);
- :mod:`.write`: the IR -> bytes, atomic saves with external data;
- :mod:`.convert`: tensors, types and attributes both ways.
"""

from .convert import (
    TWO_GB,
    _decode_header as _decode_header,
    attr_to_proto,
    attr_value,
    attrs_from_proto,
    decode_tensor,
    dtype_of_numpy_extended,
    numpy_dtype_of,
    tensor_from_proto,
    tensor_to_proto,
    type_from_proto,
    type_to_proto,
)
from .read import (
    check_external_data,
    from_proto,
    load,
    loads,
    parse_model_proto,
    read_bytes,
)
from .write import (
    ExtPlan,
    SaveInfo,
    dumps,
    external_tensors,
    node_to_proto,
    save,
    serialize,
    to_proto,
)

__all__ = ["check_external_data", "ExtPlan", "SaveInfo", "TWO_GB", "attr_to_proto", "attr_value", "attrs_from_proto", "decode_tensor", "dtype_of_numpy_extended", "dumps", "external_tensors", "from_proto", "load", "loads", "node_to_proto", "numpy_dtype_of", "parse_model_proto", "read_bytes", "save", "serialize", "tensor_from_proto", "tensor_to_proto", "to_proto", "type_from_proto", "type_to_proto"]
