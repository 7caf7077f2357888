"""verify(graph): the IR's invariants, checked in one linear walk.

Checks: every node input is defined before it is read (graph inputs, initializers, earlier node outputs, or values
of enclosing scopes defined before the owning node); use lists match node inputs both ways; producers match
outputs; graph outputs are defined; value names are unique across the model (SSA); no dead node, and no node
outside the model, is still listed as a use. Returns the list of problems (empty when all is well) or raises with
``strict``.
"""

from __future__ import annotations

from .core import Graph, IRError, Model, Value


def verify(target: Model | Graph, *, strict: bool = True) -> list[str]:
    graph = target.graph if isinstance(target, Model) else target
    problems: list[str] = []
    names: dict[str, Value] = {}
    seen: set = set()  # the nodes of the model, to catch uses by nodes that are alive but not part of it
    values: list[Value] = []

    # names are unique within a graph and its enclosing graphs (a subgraph may not shadow an outer name, wherever
    # the outer graph defines it), but sibling subgraphs (an If's two branches, the bodies of two nodes) are
    # separate scopes and may reuse a name, as onnx's checker and onnxruntime allow: `names` holds the names of the
    # graphs on the path being walked, each graph's own names entered before its subgraphs are walked
    def name_ok(v: Value, where: str, mine: list[str]) -> None:
        if not v.name:
            return
        other = names.get(v.name)
        if other is not None and other is not v:
            problems.append(f"value name {v.name!r} is used by two values ({where})")
            return
        if other is None:
            mine.append(v.name)
        names[v.name] = v

    # one set for every scope: a graph adds its values while it is walked and takes them out at the end, so that a
    # subgraph sees the values of enclosing scopes without a copy per subgraph (quadratic with many If nodes)
    defined: set[Value] = set()

    def walk(g: Graph) -> None:
        mine: list[Value] = []
        my_names: list[str] = []
        for v in g._inputs:
            name_ok(v, "input", my_names)
        for v in g._initializers.values():
            name_ok(v, "initializer", my_names)
        for n in g:
            for v in n._outputs:
                name_ok(v, "node output", my_names)

        def define(v: Value) -> None:
            if v not in defined:
                defined.add(v)
                mine.append(v)

        for v in g._inputs:
            if v.producer is not None:
                problems.append(f"graph input {v.name!r} has a producer")
            define(v)
        for name, v in g._initializers.items():
            if v.name != name:
                problems.append(f"initializer key {name!r} names value {v.name!r}")
            if v.const is None:
                problems.append(f"initializer {name!r} has no tensor")
            define(v)
        count = 0
        for n in g:
            count += 1
            seen.add(n)
            if n.graph is not g:
                problems.append(f"{n!r} is listed in a graph it does not point to")
            for i, v in enumerate(n._inputs):
                if v is None:
                    continue
                if v not in defined:
                    problems.append(f"{n!r} reads {v.name!r} before it is defined")
                if (n, i) not in v._uses:
                    problems.append(f"{v.name!r} does not list its use by {n!r} input {i}")
            if n._subgraphs:
                for sg in n._subgraphs:
                    if sg.owner is not n:
                        problems.append(f"a subgraph of {n!r} does not point to it")
                    walk(sg)
            for i, v in enumerate(n._outputs):
                if v.producer is not n or v.index != i:
                    problems.append(f"output {i} of {n!r} does not point back to it")
                if v.name:
                    if v in defined:
                        problems.append(f"{v.name!r} is defined twice")
                    define(v)
                values.append(v)
                for u, j in v._uses:
                    if not u.is_alive:
                        problems.append(f"{v.name!r} lists a use by removed node {u!r}")
                    elif j >= len(u._inputs) or u._inputs[j] is not v:
                        problems.append(f"{v.name!r} lists a stale use by {u!r} input {j}")
        if count != len(g):
            problems.append(f"graph {g.name!r} counts {len(g)} nodes but holds {count}")
        for v in g._outputs:
            if v not in defined:
                problems.append(f"graph output {v.name!r} is not defined")
            if not v._out_graphs or g not in v._out_graphs:
                problems.append(f"graph output {v.name!r} does not know it is an output")
        if len(g._out_vi) != len(g._outputs):
            problems.append("output declarations out of step with outputs")
        for v in g._inputs + [x for x in g._initializers.values()]:
            values.append(v)
            for u, j in v._uses:
                if not u.is_alive:
                    problems.append(f"{v.name!r} lists a use by removed node {u!r}")
                elif j >= len(u._inputs) or u._inputs[j] is not v:
                    problems.append(f"{v.name!r} lists a stale use by {u!r} input {j}")
        defined.difference_update(mine)
        for name in my_names:
            del names[name]

    walk(graph)
    for v in values:
        for u, _ in v._uses:
            if u.is_alive and u not in seen:
                problems.append(f"{v.name!r} lists a use by {u!r}, which is not part of the model")
    if problems and strict:
        raise IRError("IR verification failed:\n  " + "\n  ".join(problems[:20]))
    return problems
