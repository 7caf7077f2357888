"""Per-op symbolic shape rules, registered by op type.

A rule is one function ``rule(table, node) -> list[Out] | None`` decorated with :func:`shape_rule` and the op types
it covers; it returns one ``(dims, value, dtype)`` per output (``dims``: a list of :class:`SymExpr` or None per
axis, or None for an unknown rank; ``value``: the symbolic contents of a small integer shape tensor, or None;
``dtype``: an onnx elem type or None), or None for "ask onnx's inference, else fresh symbols". Adding an op's shape
rule is one decorated function in the module of its family and its test.

:func:`builtin_shape_rules` collects the rules of this package into a fresh mapping, which each
:class:`~graphopt.jit.symbols.table.SymbolTable` owns (no module-level registry is mutated).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_FAMILIES = ("elementwise", "shape", "nn", "control")


def shape_rule(*op_types: str) -> Callable[[F], F]:
    """Mark a function as the shape rule of `op_types` (default domain)."""

    def mark(fn: F) -> F:
        fn.shape_ops = tuple(op_types)  # type: ignore[attr-defined]
        return fn

    return mark


def builtin_shape_rules() -> dict[str, Callable[..., Any]]:
    """op type -> rule, for every rule of this package (a new dict per call: callers may extend it)."""
    import importlib

    out: dict[str, Callable[..., Any]] = {}
    for fam in _FAMILIES:
        mod = importlib.import_module(f"{__name__}.{fam}")
        for fn in vars(mod).values():
            for op in getattr(fn, "shape_ops", ()):
                if op in out:
                    raise ValueError(f"two shape rules for {op}: {out[op].__name__} and {fn.__name__}")
                out[op] = fn
    return out


__all__ = ["builtin_shape_rules", "shape_rule"]
