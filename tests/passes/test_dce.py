"""Tests of the dce pass (graphopt/passes/dce.py), and of the IR behaviour it relies on."""

from __future__ import annotations

from graphopt.ir.verify import verify
from graphopt.testing import from_text

IF_READS_OUTER = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[2] x, bool[1] c) => (float[2] y, float[2] z) {
  t = Neg(x)
  z = If(c) <then_branch = g1 () => (float[2] a) { a = Abs(t) }, else_branch = g2 () => (float[2] t2) { t2 = Identity(t) }>
  y = Relu(x)
}
"""

IF_OUTPUTS_OUTER = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[2] x, bool[1] c) => (float[2] y, float[2] z) {
  t = Neg(x)
  z = If(c) <then_branch = g1 () => (float[2] a) { a = Abs(t) }, else_branch = g2 () => (float[2] t) { }>
  y = Relu(x)
}
"""


def test_ir_removing_a_node_releases_its_subgraphs_reads_of_outer_values() -> None:
    # Regression (graphopt/ir/core.py): removing an If left its branches' reads of `t` registered, so `t` looked
    # used forever and DCE could never remove its producer; undo must register them again.
    for text in (IF_READS_OUTER, IF_OUTPUTS_OUTER):
        m = from_text(text)
        g = m.graph
        neg, if_node, relu = list(g)
        t = neg.output
        assert t.is_used()
        j = m.begin_journal()
        if_node.output.replace_all_uses_with(relu.output)
        g.remove(if_node)
        assert t.uses() == () and t.output_graphs() == () and not t.is_used()
        g.remove(neg)  # no longer refused
        m.rollback(j)
        assert t.is_used() and len(t.uses()) + len(t.output_graphs()) == 2
        assert verify(m, strict=False) == []
