"""Raising a model's default-domain opset, so that rules may emit newer ops (the fuse pass's `target-opset`).

This is the schema adapter: like folding's evaluator adapter it imports onnx (``onnx.defs``), lazily, and nothing
else in the passes does.

A raise from opset v to t keeps every node's meaning when, for every default-domain op type in the model (all
graphs), the schema in force at t has the same signature as the one at v: the same inputs (names and optionality;
new inputs only optional and at the end), the same outputs, every old attribute with the same default, and new
attributes optional (their absence keeps the old behaviour). Between opsets 13 and 23 that holds for the type-list
extensions that make up most version bumps (Reshape, Shape, Cast, Transpose, ... gained int4/bfloat16/float8
types), and fails where inputs or attributes moved. Two moves that exporters' models hit are converted:

* Reduce ops whose ``axes`` attribute became an input (ReduceSum at 13, the others at 18): the attribute becomes
  a constant int64 input; ``noop_with_empty_axes`` defaults to 0, so a node without axes keeps reducing all axes.
* Squeeze and Unsqueeze (13): likewise.

GroupNormalization 21 changed the meaning of its scale and bias with an unchanged signature; it always blocks.
Every other change blocks the raise with a reason (the model keeps its opset). Models with local functions are
not raised (their bodies import opsets of their own).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np

from ..ir.builder import add_constant
from ..ir.core import Model, Node
from ..ir.tensors import Tensor

# op type -> the opset whose version moved `axes` from an attribute to an input
_AXES_TO_INPUT = {
    "ReduceSum": 13, "Squeeze": 13, "Unsqueeze": 13,
    **{op: 18 for op in ("ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
                         "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare")},
}
# (op type, version) whose meaning changed while the signature did not
_SEMANTIC_BREAKS = {("GroupNormalization", 21)}


@cache
def _schema(op: str, version: int) -> Any:
    import onnx.defs

    try:
        return onnx.defs.get_schema(op, version, "")
    except Exception:  # noqa: BLE001 - unknown op or version: no schema
        return None


def _signature_fail(op: str, old: Any, new: Any) -> str | None:
    if old.since_version == new.since_version:
        return None
    if (op, new.since_version) in _SEMANTIC_BREAKS:
        return f"{op} changed meaning at opset {new.since_version}"
    oi, ni = old.inputs, new.inputs
    if len(ni) < len(oi) or any(a.name != b.name or a.option != b.option for a, b in zip(oi, ni)):
        return f"{op}'s inputs changed at opset {new.since_version}"
    if any(x.option != x.option.Optional for x in ni[len(oi):]):
        return f"{op} gained a required input at opset {new.since_version}"
    if [o.name for o in old.outputs] != [o.name for o in new.outputs]:
        return f"{op}'s outputs changed at opset {new.since_version}"
    for name, a in old.attributes.items():
        b = new.attributes.get(name)
        if b is None:
            return f"{op}'s attribute {name!r} was removed at opset {new.since_version}"
        if a.default_value.SerializeToString() != b.default_value.SerializeToString():
            return f"{op}'s attribute {name!r} changed its default at opset {new.since_version}"
    for name, b in new.attributes.items():
        if name not in old.attributes and b.required:
            return f"{op} gained a required attribute {name!r} at opset {new.since_version}"
    return None


def _converts(node: Node, old: int, target: int) -> bool:
    since = _AXES_TO_INPUT.get(node.op_type)
    return since is not None and old < since <= target


def upgrade_blockers(model: Model, target: int) -> list[str]:
    """Why the model's default-domain opset cannot be raised to `target` (empty: it can)."""
    old = model.opset("")
    if old is None or old >= target:
        return []
    if model.functions:
        return ["the model has local functions"]
    out: dict[str, None] = {}
    seen: set[str] = set()
    for node in model.graph.all_nodes():
        if node.domain not in ("", "ai.onnx") or node.op_type in seen:
            continue
        seen.add(node.op_type)
        a, b = _schema(node.op_type, old), _schema(node.op_type, target)
        if a is None or b is None:
            out[f"no schema for {node.op_type} at opset {old if a is None else target}"] = None
            continue
        if _converts(node, old, target):
            continue
        why = _signature_fail(node.op_type, a, b)
        if why:
            out[why] = None
    return list(out)


def upgrade(model: Model, target: int) -> int:
    """Raise the default-domain opset to `target` (call only when :func:`upgrade_blockers` is empty), converting
    the nodes whose axes moved to an input. Returns the number of nodes converted."""
    old = model.opset("")
    assert old is not None
    converted = 0
    for node in list(model.graph.all_nodes()):
        if node.domain not in ("", "ai.onnx") or not _converts(node, old, target):
            continue
        axes = node.attr("axes", None)
        if axes is None:
            continue  # reduce over all axes: the same without the input (noop_with_empty_axes = 0)
        assert node.graph is not None
        v = add_constant(node.graph, Tensor.from_numpy(np.array([int(a) for a in axes], np.int64)),
                         prefix="axes")
        node.del_attr("axes")
        node.set_inputs([node.input(0), v])
        converted += 1
    imports = dict(model.opset_imports)
    key = "" if "" in imports or "ai.onnx" not in imports else "ai.onnx"
    imports[key] = target
    model.set_opset_imports(imports)
    return converted
