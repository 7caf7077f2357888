"""Helpers shared by the symbol tests."""

from __future__ import annotations

import numpy as np

from graphopt.jit.symbols import SymbolTable
from graphopt.testing import from_text

I64 = {"i0": np.array(0), "i1": np.array(1), "i2": np.array(2), "a0": np.array([0]), "a1": np.array([1]),
       "k": np.array([12, 64]), "m1": np.array([-1]), "two": np.array(2), "big": np.array([2**62])}
HDR = '<ir_version: 8, opset_import: ["" : 17]>\n'


def _table(text: str, inits: dict | None = None) -> tuple[SymbolTable, object]:
    m = from_text(text, inits)
    t = SymbolTable()
    t.infer(m)
    return t, m


def _out(m: object, name: str) -> object:
    for g in m.graph.all_graphs():  # type: ignore[attr-defined]
        for n in g:
            for v in n.outputs:
                if v.name == name:
                    return v
    raise KeyError(name)
