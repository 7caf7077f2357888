"""Shape symbols and symbolic shape inference (placeholder API; the full implementation lands with issue 3)."""

from __future__ import annotations

from typing import Any


class SymbolTable:
    """Per-context table of shape symbols."""

    def __init__(self) -> None:
        self._version = -1

    def seed(self, model: Any) -> None:
        pass

    def infer(self, model: Any) -> dict[str, Any]:
        self._version = model.mutations
        return {}

    def ensure(self, model: Any) -> None:
        if self._version != model.mutations:
            self.infer(model)

    def shape_of(self, value: Any) -> Any:
        return None

    def value_of(self, value: Any) -> Any:
        return None

    def summary(self) -> dict[str, Any]:
        return {}
