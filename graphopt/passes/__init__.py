"""Built-in passes. Each module defines one pass; :func:`register_builtins` puts them in a context."""

from __future__ import annotations

from typing import Any

from .base import Pass, PassManager, PassRecord, PassResult, PipelineRecord, option


def builtin_pass_classes() -> list[type[Pass]]:
    """The built-in pass classes, in registration order."""
    import importlib

    out: list[type[Pass]] = []
    for mod_name, cls_name in _BUILTINS:
        try:
            mod = importlib.import_module(f"{__name__}.{mod_name}")
        except ModuleNotFoundError as e:
            if e.name == f"{__name__}.{mod_name}":
                continue  # pass not written yet
            raise
        out.append(getattr(mod, cls_name))
    return out


_BUILTINS: list[tuple[str, str]] = [
    ("dce", "DeadCodeElimination"),
    ("cse", "CommonSubexpressionElimination"),
    ("fold", "FoldConstants"),
    ("noop", "EliminateNoops"),
    ("shapes", "SimplifyShapes"),
    ("control_flow", "SimplifyControlFlow"),
    ("fuse", "Fuse"),
    ("functions", "OptimizeFunctions"),
]


def register_builtins(ctx: Any) -> None:
    for cls in builtin_pass_classes():
        ctx.passes.register(cls, origin="builtin")
    try:
        from ..rewrite.rules import register_builtin_rules
    except ImportError:
        return
    register_builtin_rules(ctx)


__all__ = ["Pass", "PassManager", "PassRecord", "PassResult", "PipelineRecord", "builtin_pass_classes", "option",
           "register_builtins"]
