"""Shape symbols, symbolic shape expressions, and symbolic shape inference.

- :mod:`.expr`: the algebra (:class:`SymExpr`, its parser and rendering) and the dim/shape types
  (:class:`ShapeSymbol`, :class:`SymbolicShape`);
- :mod:`.table`: :class:`SymbolTable` (symbols seeded from the model, unification, inference, annotation);
- :mod:`.ops`: the per-op shape rules, registered by op type (one decorated function per rule).
"""

from .expr import ONE, UNKNOWN_RANK, ZERO, ShapeSymbol, SymbolicShape, SymExpr
from .ops import builtin_shape_rules, shape_rule
from .table import SymbolTable

__all__ = ["ONE", "UNKNOWN_RANK", "ZERO", "ShapeSymbol", "SymExpr", "SymbolTable", "SymbolicShape",
           "builtin_shape_rules", "shape_rule"]
