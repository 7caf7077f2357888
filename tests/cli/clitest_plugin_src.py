"""Test-only passes for graphopt's CLI and report tests, installed as a real plugin package.

:func:`install` lays this file out in a folder exactly as an installer lays out a package in site-packages: the
module as ``graphopt_clitest_plugin`` plus a ``.dist-info`` folder whose entry_points.txt names the passes in the
``graphopt.passes`` group. With that folder on sys.path (in-process, and in spawned worker processes, which inherit
sys.path) or on PYTHONPATH (subprocesses), graphopt discovers the passes through importlib.metadata like any
installed plugin. None of them is in a preset: tests choose them with --passes.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from graphopt.ir.builder import Builder
from graphopt.passes.base import Pass, PassResult

ENTRY_POINTS = """\
[graphopt.passes]
break-add = graphopt_clitest_plugin:BreakAdd
drop-identity = graphopt_clitest_plugin:DropIdentity
explode = graphopt_clitest_plugin:Explode
corrupt = graphopt_clitest_plugin:Corrupt
nudge = graphopt_clitest_plugin:Nudge
rename-output = graphopt_clitest_plugin:RenameOutput
bad-attr = graphopt_clitest_plugin:BadAttr
dangle = graphopt_clitest_plugin:Dangle
sleep = graphopt_clitest_plugin:Sleep
"""


def install(site: Path) -> Path:
    """Install this module as the package graphopt_clitest_plugin in `site`; returns `site`."""
    pkg = site / "graphopt_clitest_plugin"
    pkg.mkdir(parents=True, exist_ok=True)
    shutil.copy(__file__, pkg / "__init__.py")
    di = site / "graphopt_clitest_plugin-0.1.dist-info"
    di.mkdir(exist_ok=True)
    (di / "METADATA").write_text("Metadata-Version: 2.1\nName: graphopt-clitest-plugin\nVersion: 0.1\n")
    (di / "entry_points.txt").write_text(ENTRY_POINTS)
    (di / "RECORD").write_text("")
    return site



@dataclass(frozen=True)
class BreakAdd(Pass):
    """Wrong on purpose: computes a - b where the model says a + b."""

    name: ClassVar[str] = "test-break-add"
    kind: ClassVar[str] = "cleanup"
    summary: ClassVar[str] = "test only: turns Add into Sub (wrong)"
    presets: ClassVar[frozenset[str]] = frozenset()

    def run(self, model: Any, ctx: Any) -> PassResult:
        n = 0
        g = model.graph
        for node in list(g):
            if node.op_type != "Add":
                continue
            new = Builder(g, before=node).op("Sub", node.input(0), node.input(1))
            node.output.replace_all_uses_with(new)
            g.remove([node])
            n += 1
        return PassResult.of(add_to_sub=n)


@dataclass(frozen=True)
class DropIdentity(Pass):
    """Correct: bypasses Identity nodes whose output is not a graph output."""

    name: ClassVar[str] = "test-drop-identity"
    kind: ClassVar[str] = "cleanup"
    summary: ClassVar[str] = "test only: removes Identity nodes"
    presets: ClassVar[frozenset[str]] = frozenset()

    def run(self, model: Any, ctx: Any) -> PassResult:
        n = 0
        g = model.graph
        for node in list(g):
            if node.op_type != "Identity" or node.output.is_graph_output():
                continue
            node.output.replace_all_uses_with(node.input(0))
            g.remove([node])
            n += 1
        return PassResult.of(identity_removed=n)


@dataclass(frozen=True)
class Explode(Pass):
    """Always raises (a pass with a bug)."""

    name: ClassVar[str] = "test-explode"
    kind: ClassVar[str] = "cleanup"
    summary: ClassVar[str] = "test only: raises"
    presets: ClassVar[frozenset[str]] = frozenset()

    def run(self, model: Any, ctx: Any) -> PassResult:
        raise RuntimeError("boom: the test pass exploded")


@dataclass(frozen=True)
class Corrupt(Pass):
    """Leaves the model in a state the writer cannot serialize (a bug graphopt does not catch)."""

    name: ClassVar[str] = "test-corrupt"
    kind: ClassVar[str] = "cleanup"
    summary: ClassVar[str] = "test only: corrupts model metadata"
    presets: ClassVar[frozenset[str]] = frozenset()

    def run(self, model: Any, ctx: Any) -> PassResult:
        if model.producer_name == 12345:
            return PassResult()
        model.producer_name = 12345
        return PassResult.of(corrupted=1)


@dataclass(frozen=True)
class Nudge(Pass):
    """Scales every Relu's input by 1.0002: a tiny numeric change, inside the default float32 tolerance."""

    name: ClassVar[str] = "test-nudge"
    kind: ClassVar[str] = "cleanup"
    summary: ClassVar[str] = "test only: multiplies Relu inputs by 1.0002"
    presets: ClassVar[frozenset[str]] = frozenset()

    def run(self, model: Any, ctx: Any) -> PassResult:
        import numpy as np

        n = 0
        g = model.graph
        for node in list(g):
            if node.op_type != "Relu":
                continue
            p = node.input(0).producer
            if p is not None and p.name.startswith("graphopt/nudge"):
                continue  # already nudged: idempotent
            b = Builder(g, before=node, name_hint="nudge")
            k = b.const(np.array(1.0002, dtype=np.float32))
            node.replace_input_with(0, b.op("Mul", node.input(0), k))
            n += 1
        return PassResult.of(nudged=n)


@dataclass(frozen=True)
class RenameOutput(Pass):
    """Wrong on purpose: renames the first graph output (the model's interface changes)."""

    name: ClassVar[str] = "test-rename-output"
    kind: ClassVar[str] = "cleanup"
    summary: ClassVar[str] = "test only: renames the first graph output (breaks the interface)"
    presets: ClassVar[frozenset[str]] = frozenset()

    def run(self, model: Any, ctx: Any) -> PassResult:
        v = model.graph.outputs[0]
        if v.name.endswith("_renamed"):
            return PassResult()
        v.rename(v.name + "_renamed")
        return PassResult.of(renamed=1)


@dataclass(frozen=True)
class BadAttr(Pass):
    """Wrong on purpose: gives every Relu an attribute its schema does not have (onnx's checker refuses it)."""

    name: ClassVar[str] = "test-bad-attr"
    kind: ClassVar[str] = "cleanup"
    summary: ClassVar[str] = "test only: adds an unknown attribute to Relu nodes"
    presets: ClassVar[frozenset[str]] = frozenset()

    def run(self, model: Any, ctx: Any) -> PassResult:
        n = 0
        for node in model.graph:
            if node.op_type == "Relu" and "bogus" not in node.attrs:
                node.set_attr("bogus", 1)
                n += 1
        return PassResult.of(bad_attrs=n)


@dataclass(frozen=True)
class Dangle(Pass):
    """Wrong on purpose: makes the first node read a value that nothing produces."""

    name: ClassVar[str] = "test-dangle"
    kind: ClassVar[str] = "cleanup"
    summary: ClassVar[str] = "test only: makes a node read an undefined value"
    presets: ClassVar[frozenset[str]] = frozenset()

    def run(self, model: Any, ctx: Any) -> PassResult:
        from graphopt.ir.core import Value

        node = next(iter(model.graph))
        if node.input(0) is not None and node.input(0).name == "ghost":
            return PassResult()
        node.replace_input_with(0, Value("ghost", type=node.input(0).type))
        return PassResult.of(dangled=1)


@dataclass(frozen=True)
class Sleep(Pass):
    """Sleeps (in small steps) after leaving a marker file in $GRAPHOPT_TEST_MARKERS: lets a test signal a
    process, or its workers, in the middle of a pass."""

    name: ClassVar[str] = "test-sleep"
    kind: ClassVar[str] = "cleanup"
    summary: ClassVar[str] = "test only: sleeps"
    presets: ClassVar[frozenset[str]] = frozenset()

    def run(self, model: Any, ctx: Any) -> PassResult:
        import os
        import time

        folder = os.environ.get("GRAPHOPT_TEST_MARKERS")
        if folder:
            with open(os.path.join(folder, f"started-{os.getpid()}"), "w") as f:
                f.write("1")
        for _ in range(600):
            time.sleep(0.05)
        return PassResult()
