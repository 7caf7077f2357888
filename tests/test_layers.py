"""The one-way data flow of docs/architecture.md, enforced: a module may import its own layer and the layers below,
never a layer above. Every import counts, at module level or inside a function, under TYPE_CHECKING or not: a
lazy import from above is still a dependency on it.

Also: the library never imports the CLI, the peers the benchmarks compare against, or torch.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Lowest first. A module's layer is that of its first path part under graphopt/ (a package or a module file).
LAYERS: list[tuple[str, ...]] = [
    ("errors", "version", "_lazy"),
    ("ir", "files"),
    ("jit", "pipeline"),
    ("rewrite",),
    ("passes",),
    ("validate", "summary", "provenance", "diff"),
    ("report",),
    ("html_report",),
    ("runner",),
    ("api", "testing", "__init__"),
    ("cli",),
]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}
FOREIGN = ("torch", "onnxsim", "onnxslim", "onnxoptimizer", "onnxscript", "onnx_ir", "polygraphy",
           "onnx_graphsurgeon")


def _modules() -> list[tuple[str, Path]]:
    out = []
    for p in sorted((ROOT / "graphopt").rglob("*.py")):
        rel = p.relative_to(ROOT / "graphopt").with_suffix("")
        out.append(("graphopt." + ".".join(rel.parts), p))
    for p in sorted((ROOT / "cli").rglob("*.py")):
        rel = p.relative_to(ROOT / "cli").with_suffix("")
        out.append(("graphopt.cli." + ".".join(rel.parts), p))
    return out


def _layer(module: str) -> str:
    parts = module.split(".")
    assert parts[0] == "graphopt"
    if len(parts) == 1:
        return "__init__"
    return parts[1]


def _imports(module: str, path: Path) -> list[tuple[str, int]]:
    """Absolute names of everything `module` imports (graphopt's own modules resolved from relative imports)."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((a.name, node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append((name, node.lineno))
    return out


MODULES = _modules()


def test_layers_cover_every_package() -> None:
    missing = sorted({_layer(m) for m, _ in MODULES} - set(RANK))
    assert not missing, f"give these a layer in LAYERS (and docs/architecture.md): {missing}"


@pytest.mark.parametrize("module, path", MODULES, ids=[m for m, _ in MODULES])
def test_no_import_from_a_higher_layer(module: str, path: Path) -> None:
    mine = RANK[_layer(module)]
    bad = []
    for name, line in _imports(module, path):
        if name == "graphopt" or name.startswith("graphopt."):
            other = _layer(name)
            if RANK.get(other, len(LAYERS)) > mine:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name} ({other} is above {_layer(module)})")
        elif name.split(".")[0] in FOREIGN and not module.startswith("graphopt.cli"):
            bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}: the library never depends on it")
    assert not bad, "\n".join(bad)


def test_architecture_doc_lists_the_same_layers_in_the_same_order() -> None:
    import re

    doc = (ROOT / "docs" / "architecture.md").read_text()
    rows = re.findall(r"^\| ((?:`[^`]+`(?:, )?)+)(?: \([^)]*\))? \|", doc, flags=re.M)
    listed = [tuple(re.findall(r"`([^`]+)`", r)) for r in rows]
    assert listed == LAYERS


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    # the test can fail: an ir module importing the jit is caught, relative or absolute
    p = tmp_path / "core.py"
    p.write_text("from ..jit.context import JitContext\nimport graphopt.passes\n")
    names = [n for n, _ in _imports("graphopt.ir.core", p)]
    assert names == ["graphopt.jit.context", "graphopt.passes"]
    assert all(RANK[_layer(n)] > RANK["ir"] for n in names)
