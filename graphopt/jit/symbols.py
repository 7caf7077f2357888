"""Shape symbols, symbolic shape expressions, and symbolic shape inference.

* :class:`SymExpr` is a small normalized expression type for the shape arithmetic exporters emit: sums of products
  of symbols with integer coefficients, plus floor-division and modulo by positive constants (no sympy). Its
  canonical form makes equal expressions compare and hash equal: ``batch*seq``, ``seq+1``, ``(seq+1)//2``,
  ``2*heads*64 == 128*heads``. Symbols stand for dimensions, so they are never negative.
* :class:`ShapeSymbol` is one dimension: a static size or a named symbol (the model's dim_param, or a fresh
  ``unk_N`` for an unknown dim, numbered in graph order and never assumed equal to anything).
* :class:`SymbolicShape` is a rank that may be unknown and a tuple of dims, each a :class:`SymExpr`.
* :class:`SymbolTable` (one per :class:`~graphopt.jit.context.JitContext`) seeds symbols from the model's inputs,
  runs onnx's shape inference for dtypes and static shapes, then walks the whole graph once (subgraphs included),
  propagating shapes and the values of small integer "shape tensors" through the shape-arithmetic ops, and
  unifying symbols the graph forces equal (a union-find, recorded for ``graphopt inspect``).

What the table claims holds for every binding of the symbols under which the model runs without error; the
inference never assumes that a dim that could be 1 broadcasts like a dim that is not, nor that two unknown dims are
equal. One knowing approximation, shared with onnx's own data propagation: a Reshape target entry read from a
shape tensor is taken as the output dim (at runtime an entry of 0 would copy the input dim instead).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..ir.core import Graph, Model, Node, Value
from ..ir.shapes import TensorType
from ..ir.tensors import INT_TYPES, DataType, bits_of

log = logging.getLogger(__name__)

# ================================================================================================================
# SymExpr
# ================================================================================================================
# A monomial is a sorted tuple of atoms (repeated for powers); an atom is a symbol name (str) or a _Op (floor
# division or modulo of an expression by a positive constant). A SymExpr is a sorted tuple of (monomial, coeff)
# with non-zero coefficients: that is the canonical form.


def _term_key(t: tuple) -> tuple:
    m = t[0]
    return (-len(m), m)


class _Op:
    """An atom ``arg // k`` or ``arg % k`` (floor semantics, k > 0), with `arg` already reduced."""

    __slots__ = ("kind", "arg", "k", "key", "_hash")

    def __init__(self, kind: str, arg: SymExpr, k: int):
        self.kind = kind
        self.arg = arg
        self.k = k
        # sorts after every plain symbol name (printable), deterministically
        self.key = f"\x7f{kind}{arg}\x00{k}"
        self._hash = hash((kind, arg, k))

    def __eq__(self, o: object) -> bool:
        return self is o or (o.__class__ is _Op and o.k == self.k and o.kind == self.kind  # type: ignore[attr-defined]
                             and o.arg == self.arg)  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return self._hash

    # A total order on atoms: every symbol name sorts before every _Op; _Ops by key. This lets monomials (tuples
    # of atoms) sort and compare natively.
    def __lt__(self, o: Any) -> bool:
        return o.__class__ is _Op and self.key < o.key

    def __gt__(self, o: Any) -> bool:
        return o.__class__ is not _Op or self.key > o.key

    def __le__(self, o: Any) -> bool:
        return self == o or self < o

    def __ge__(self, o: Any) -> bool:
        return self == o or self > o

    def __repr__(self) -> str:
        return f"_Op({self.kind!r}, {self.arg}, {self.k})"


class SymExpr:
    """An integer expression over shape symbols in canonical form; immutable, hashable.

    Equal canonical forms mean equal expressions. Build with :meth:`const`, :meth:`symbol` and the operators
    ``+ - *`` (with SymExprs or ints), ``//`` and ``%`` by positive ints (or an exact monomial divisor for ``//``).
    """

    __slots__ = ("terms", "c", "_hash", "_str", "_syms")

    def __init__(self, terms: tuple) -> None:
        self.terms = terms
        n = len(terms)
        self.c: int | None = 0 if n == 0 else (terms[0][1] if n == 1 and not terms[0][0] else None)
        # a constant hashes like the int it equals
        self._hash = hash(terms) if self.c is None else hash(self.c)
        self._str: str | None = None
        self._syms: frozenset[str] | None = None

    # -- construction ----------------------------------------------------------------------------------------
    @staticmethod
    def const(k: int) -> SymExpr:
        """The constant `k`."""
        e = _CONSTS.get(k)
        if e is None:
            e = SymExpr(((((), int(k)),)) if k else ())
            if -1024 <= k <= 1 << 16:
                _CONSTS[k] = e
        return e

    @staticmethod
    def symbol(name: str) -> SymExpr:
        """The symbol `name` (a dimension: never negative)."""
        e = _SYMS.get(name)
        if e is None:
            e = _SYMS[name] = SymExpr((((name,), 1),))
        return e

    @staticmethod
    def parse(text: str) -> SymExpr:
        """Parse the rendering of an expression (``str(e)``): identifiers, ints, ``+ - * // %`` and parentheses.

        Raises ValueError on anything else."""
        return _Parser(text).parse()

    # -- queries ---------------------------------------------------------------------------------------------
    @property
    def is_const(self) -> bool:
        return self.c is not None

    @property
    def symbol_name(self) -> str | None:
        """The symbol's name when the expression is exactly one symbol, else None."""
        t = self.terms
        if len(t) == 1 and t[0][1] == 1 and len(t[0][0]) == 1 and t[0][0][0].__class__ is str:
            return t[0][0][0]
        return None

    @property
    def free_symbols(self) -> frozenset[str]:
        s = self._syms
        if s is None:
            names: set[str] = set()
            for m, _ in self.terms:
                for a in m:
                    if a.__class__ is str:
                        names.add(a)
                    else:
                        names |= a.arg.free_symbols
            s = self._syms = frozenset(names)
        return s

    def const_term(self) -> int:
        t = self.terms
        return t[-1][1] if t and not t[-1][0] else 0

    def nonneg(self) -> bool:
        """True when the expression is >= 0 for every binding (symbols are never negative)."""
        for m, c in self.terms:
            if c < 0:
                return False
            for a in m:
                if a.__class__ is not str and a.kind == "//" and not a.arg.nonneg():
                    return False
        return True

    def positive(self) -> bool:
        """True when the expression is >= 1 for every binding."""
        return self.nonneg() and self.const_term() >= 1

    def can_be(self, k: int) -> bool:
        """False only when the expression provably never equals `k`."""
        d = self - k
        if d.c is not None:
            return d.c == 0
        if d.positive() or (-d).positive():
            return False
        g = 0
        for m, c in d.terms:
            if m:
                g = math.gcd(g, c)
        return g == 0 or d.const_term() % g == 0

    def evaluate(self, bindings: Mapping[str, int]) -> int:
        """The value under `bindings` (every free symbol bound); floor semantics for ``//`` and ``%``."""
        total = 0
        for m, c in self.terms:
            v = c
            for a in m:
                if a.__class__ is str:
                    v *= int(bindings[a])
                else:
                    x = a.arg.evaluate(bindings)
                    v *= x // a.k if a.kind == "//" else x % a.k
            total += v
        return total

    def subs(self, fn: Callable[[str], SymExpr | None]) -> SymExpr:
        """Substitute symbols (`fn` returns the replacement, or None to keep the symbol)."""
        acc = ZERO
        for m, c in self.terms:
            t = SymExpr.const(c)
            for a in m:
                if a.__class__ is str:
                    r = fn(a)
                    t = t * (r if r is not None else SymExpr.symbol(a))
                else:
                    inner = a.arg.subs(fn)
                    t = t * (inner._floordiv_const(a.k) if a.kind == "//" else inner._mod_const(a.k))
            acc = acc + t
        return acc

    # -- arithmetic ------------------------------------------------------------------------------------------
    def __add__(self, o: SymExpr | int) -> SymExpr:
        o = _lift(o)
        if o.c is not None:
            if o.c == 0:
                return self
            if self.c is not None:
                return SymExpr.const(self.c + o.c)
        elif self.c == 0:
            return o
        d = dict(self.terms)
        for m, c in o.terms:
            d[m] = d.get(m, 0) + c
        return _mk(d)

    __radd__ = __add__

    def __neg__(self) -> SymExpr:
        if self.c is not None:
            return SymExpr.const(-self.c)
        return SymExpr(tuple((m, -c) for m, c in self.terms))

    def __sub__(self, o: SymExpr | int) -> SymExpr:
        return self + (-_lift(o))

    def __rsub__(self, o: SymExpr | int) -> SymExpr:
        return _lift(o) + (-self)

    def __mul__(self, o: SymExpr | int) -> SymExpr:
        o = _lift(o)
        a, b = self, o
        if a.c is not None and b.c is not None:
            return SymExpr.const(a.c * b.c)
        if b.c is not None:
            a, b = b, a
        if a.c is not None:
            if a.c == 0:
                return ZERO
            if a.c == 1:
                return b
            return SymExpr(tuple((m, c * a.c) for m, c in b.terms))
        d: dict[tuple, int] = {}
        for m1, c1 in a.terms:
            for m2, c2 in b.terms:
                m = tuple(sorted(m1 + m2)) if m1 and m2 else (m1 or m2)
                d[m] = d.get(m, 0) + c1 * c2
        return _mk(d)

    __rmul__ = __mul__

    def __floordiv__(self, o: SymExpr | int) -> SymExpr:
        r = self.floordiv(o)
        if r is None:
            raise ValueError(f"({self}) // ({o}) has no exact symbolic form")
        return r

    def __mod__(self, o: SymExpr | int) -> SymExpr:
        o = _lift(o)
        if o.c is None or o.c <= 0:
            raise ValueError(f"({self}) % ({o}): only positive constant divisors are supported")
        return self._mod_const(o.c)

    def floordiv(self, o: SymExpr | int) -> SymExpr | None:
        """``floor(self / o)``: by a positive constant always; by a monomial when it divides exactly; else None."""
        o = _lift(o)
        if o.c is not None:
            if o.c > 0:
                return self._floordiv_const(o.c)
            if o.c < 0 and self.c is not None:
                return SymExpr.const(self.c // o.c)
            return None
        return self.exact_div(o)

    def exact_div(self, o: SymExpr) -> SymExpr | None:
        """``self / o`` when `o` is a monomial (``c*m``) that divides every term exactly, else None."""
        if o.c is not None:
            if o.c != 0 and all(c % o.c == 0 for _, c in self.terms):
                return SymExpr(tuple((m, c // o.c) for m, c in self.terms)) if self.c is None else \
                    SymExpr.const(self.c // o.c)
            return None
        if len(o.terms) != 1:
            return None
        dm, dc = o.terms[0]
        out: dict[tuple, int] = {}
        for m, c in self.terms:
            if c % dc:
                return None
            rest = list(m)
            for a in dm:
                try:
                    rest.remove(a)
                except ValueError:
                    return None
            out[tuple(rest)] = c // dc
        return _mk(out)

    def _floordiv_const(self, k: int) -> SymExpr:
        if k == 1:
            return self
        if self.c is not None:
            return SymExpr.const(self.c // k)
        # floor((k*q + r) / k) = q + floor(r / k) for integer q: keep the part divisible by k outside.
        q: dict[tuple, int] = {}
        r: dict[tuple, int] = {}
        for m, c in self.terms:
            qq, rr = divmod(c, k)
            if qq:
                q[m] = qq
            if rr:
                r[m] = rr
        qe = _mk(q)
        re_ = _mk(r)
        if re_.c is not None:
            return qe + re_.c // k
        # floor(g*x / (g*k')) = floor(x / k')
        g = k
        for _, c in re_.terms:
            g = math.gcd(g, c)
        if g > 1:
            re_ = SymExpr(tuple((m, c // g) for m, c in re_.terms))
            k //= g
            if k == 1:
                return qe + re_
        # floor(floor(x / a) / k) = floor(x / (a*k)) for a, k > 0
        t = re_.terms
        if len(t) == 1 and t[0][1] == 1 and len(t[0][0]) == 1 and t[0][0][0].__class__ is _Op \
                and t[0][0][0].kind == "//":
            inner = t[0][0][0]
            return qe + inner.arg._floordiv_const(inner.k * k)
        return qe + SymExpr((((_Op("//", re_, k),), 1),))

    def _mod_const(self, k: int) -> SymExpr:
        if k == 1:
            return ZERO
        if self.c is not None:
            return SymExpr.const(self.c % k)
        r = {m: c % k for m, c in self.terms if c % k}
        re_ = _mk(r)
        if re_.c is not None:
            return SymExpr.const(re_.c % k)
        # (g*x) mod (g*k') = g * (x mod k')
        g = k
        for _, c in re_.terms:
            g = math.gcd(g, c)
        if g > 1:
            re_ = SymExpr(tuple((m, c // g) for m, c in re_.terms))
            return SymExpr((((_Op("%", re_, k // g),), g),))
        return SymExpr((((_Op("%", re_, k),), 1),))

    # -- identity --------------------------------------------------------------------------------------------
    def __eq__(self, o: object) -> bool:
        if self is o:
            return True
        if o.__class__ is SymExpr:
            return self._hash == o._hash and self.terms == o.terms  # type: ignore[attr-defined]
        if isinstance(o, (int, np.integer)) and not isinstance(o, bool):
            return self.c == int(o)
        return NotImplemented

    def __hash__(self) -> int:
        return self._hash

    def __bool__(self) -> bool:
        raise TypeError("the truth value of a SymExpr is ambiguous; compare with == or use .c")

    def __int__(self) -> int:
        if self.c is None:
            raise TypeError(f"{self} is not a constant")
        return self.c

    # -- rendering -------------------------------------------------------------------------------------------
    def __str__(self) -> str:
        s = self._str
        if s is None:
            s = self._str = _render(self)
        return s

    def __repr__(self) -> str:
        return f"SymExpr({str(self)!r})"


def _lift(o: SymExpr | int) -> SymExpr:
    if o.__class__ is SymExpr:
        return o  # type: ignore[return-value]
    if isinstance(o, (int, np.integer)):
        return SymExpr.const(int(o))
    raise TypeError(f"cannot use {type(o).__name__} in a shape expression")


def _mk(d: dict[tuple, int]) -> SymExpr:
    items = [(m, c) for m, c in d.items() if c]
    if not items:
        return ZERO
    if len(items) == 1 and not items[0][0]:
        return SymExpr.const(items[0][1])
    items.sort(key=_term_key)
    return SymExpr(tuple(items))


_CONSTS: dict[int, SymExpr] = {}
_SYMS: dict[str, SymExpr] = {}
ZERO = SymExpr(())
_CONSTS[0] = ZERO
ONE = SymExpr.const(1)


def _render_atom(a: Any) -> str:
    if a.__class__ is str:
        return a
    arg = a.arg
    inner = str(arg)
    if arg.symbol_name is None:
        inner = f"({inner})"
    return f"{inner}{a.kind}{a.k}"


def _render(e: SymExpr) -> str:
    if e.c is not None:
        return str(e.c)
    parts: list[str] = []
    for i, (m, c) in enumerate(e.terms):
        neg = c < 0
        ac = -c if neg else c
        if not m:
            body = str(ac)
        else:
            # a // or % atom is bare only when it is the whole term with coefficient +1 (so that the text parses
            # back the same: "-x//2" would read as (-x)//2)
            ops_bare = len(m) == 1 and c == 1
            factors = [(_render_atom(a) if (a.__class__ is str or ops_bare) else f"({_render_atom(a)})")
                       for a in m]
            body = "*".join(factors) if ac == 1 else f"{ac}*" + "*".join(factors)
        if i == 0:
            parts.append(("-" if neg else "") + body)
        else:
            parts.append(("-" if neg else "+") + body)
    return "".join(parts)


_TOKEN = re.compile(r"\s*(?:(\d+)|([A-Za-z_][A-Za-z0-9_.:]*)|(//|[-+*%()]))")


class _Parser:
    def __init__(self, text: str):
        self.toks: list[tuple[str, str]] = []
        pos = 0
        text = text.rstrip()
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                raise ValueError(f"cannot parse shape expression {text!r}")
            if m.group(1):
                self.toks.append(("int", m.group(1)))
            elif m.group(2):
                self.toks.append(("id", m.group(2)))
            else:
                self.toks.append(("op", m.group(3)))
            pos = m.end()
        self.i = 0
        self.text = text

    def _peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def _take(self) -> tuple[str, str]:
        t = self._peek()
        if t is None:
            raise ValueError(f"unexpected end of shape expression {self.text!r}")
        self.i += 1
        return t

    def parse(self) -> SymExpr:
        e = self._expr()
        if self._peek() is not None:
            raise ValueError(f"trailing text in shape expression {self.text!r}")
        return e

    def _expr(self) -> SymExpr:
        e = self._term()
        while (t := self._peek()) is not None and t[1] in ("+", "-") and t[0] == "op":
            self._take()
            r = self._term()
            e = e + r if t[1] == "+" else e - r
        return e

    def _term(self) -> SymExpr:
        e = self._unary()
        while (t := self._peek()) is not None and t[0] == "op" and t[1] in ("*", "//", "%"):
            self._take()
            r = self._unary()
            if t[1] == "*":
                e = e * r
            elif t[1] == "//":
                e = e // r
            else:
                e = e % r
        return e

    def _unary(self) -> SymExpr:
        t = self._take()
        if t == ("op", "-"):
            return -self._unary()
        if t == ("op", "("):
            e = self._expr()
            if self._take() != ("op", ")"):
                raise ValueError(f"unbalanced parentheses in {self.text!r}")
            return e
        if t[0] == "int":
            return SymExpr.const(int(t[1]))
        if t[0] == "id":
            return SymExpr.symbol(t[1])
        raise ValueError(f"unexpected {t[1]!r} in shape expression {self.text!r}")


# ================================================================================================================
# ShapeSymbol, SymbolicShape
# ================================================================================================================
@dataclass(frozen=True)
class ShapeSymbol:
    """One dimension: static (``value`` set, no name) or a named symbol with where it came from.

    ``kind`` is "input" (a dim_param of a model input), "fresh" (an unknown dim: ``unk_N``), "named" (a dim_param
    met inside the graph), or "static".
    """

    name: str | None
    value: int | None = None
    origin: str = ""
    kind: str = "named"

    @staticmethod
    def static(n: int) -> ShapeSymbol:
        return ShapeSymbol(None, int(n), "", "static")

    @property
    def is_static(self) -> bool:
        return self.value is not None

    @property
    def expr(self) -> SymExpr:
        return SymExpr.const(self.value) if self.value is not None else SymExpr.symbol(self.name or "?")

    def __str__(self) -> str:
        return str(self.value) if self.value is not None else str(self.name)


class SymbolicShape:
    """A shape: ``dims`` is a tuple of :class:`SymExpr` (a static dim is a constant), or None for unknown rank.

    Immutable by convention (treat ``dims`` as read-only); equal and hashed by dims."""

    __slots__ = ("dims",)

    def __init__(self, dims: tuple[SymExpr, ...] | None) -> None:
        self.dims = dims

    def __eq__(self, o: object) -> bool:
        return isinstance(o, SymbolicShape) and o.dims == self.dims

    def __hash__(self) -> int:
        return hash(self.dims)

    def __repr__(self) -> str:
        return f"SymbolicShape({self})"

    @property
    def rank(self) -> int | None:
        return None if self.dims is None else len(self.dims)

    def is_static(self) -> bool:
        return self.dims is not None and all(d.c is not None for d in self.dims)

    def static(self) -> tuple[int, ...] | None:
        """The dims as ints when every dim is static, else None."""
        if self.dims is None or any(d.c is None for d in self.dims):
            return None
        return tuple(d.c for d in self.dims)  # type: ignore[misc]

    def __len__(self) -> int:
        if self.dims is None:
            raise TypeError("rank unknown")
        return len(self.dims)

    def __getitem__(self, i: int) -> SymExpr:
        if self.dims is None:
            raise TypeError("rank unknown")
        return self.dims[i]

    def __str__(self) -> str:
        if self.dims is None:
            return "[*]"
        return "[" + ", ".join(str(d) for d in self.dims) + "]"

    @staticmethod
    def of(dims: Iterable[SymExpr | int | str] | None) -> SymbolicShape:
        """A shape from ints, symbol names and SymExprs (None = unknown rank)."""
        if dims is None:
            return UNKNOWN_RANK
        out = []
        for d in dims:
            if isinstance(d, SymExpr):
                out.append(d)
            elif isinstance(d, str):
                out.append(SymExpr.symbol(d))
            else:
                out.append(SymExpr.const(int(d)))
        return SymbolicShape(tuple(out))


UNKNOWN_RANK = SymbolicShape(None)



# ================================================================================================================
# The symbol table
# ================================================================================================================
_BOOL = int(DataType.BOOL)
_INT64 = int(DataType.INT64)
_FLOAT = int(DataType.FLOAT)
_INT_DT = frozenset(int(d) for d in INT_TYPES)
_VALUE_DT = _INT_DT | {_BOOL}  # dtypes whose small 1-D/scalar tensors get tracked values
_RANGE = {int(DataType.INT8): (-(1 << 7), (1 << 7) - 1), int(DataType.UINT8): (0, (1 << 8) - 1),
          int(DataType.INT16): (-(1 << 15), (1 << 15) - 1), int(DataType.UINT16): (0, (1 << 16) - 1),
          int(DataType.INT32): (-(1 << 31), (1 << 31) - 1), int(DataType.UINT32): (0, (1 << 32) - 1),
          int(DataType.INT64): (-(1 << 63), (1 << 63) - 1), int(DataType.UINT64): (0, (1 << 64) - 1),
          int(DataType.INT4): (-8, 7), int(DataType.UINT4): (0, 15), int(DataType.INT2): (-2, 1),
          int(DataType.UINT2): (0, 3), _BOOL: (0, 1)}
_ANON = re.compile(r"unk__\d+$")
_OURS = re.compile(r"unk_\d+$")
# Slice bounds at or past this are "to the end" (dims are assumed to stay below 2**31 - 1).
_BIG = (1 << 31) - 1
# Initializers with more elements go to onnx's inference as header-only stubs (it never needs their numbers).
_STUB_ELEMENTS = 1024
_STUB_ABOVE_BYTES = 1 << 30
_STUB_LOCATION = "graphopt-shape-inference-stub.bin"
# Exceptions a rule may raise on a malformed node; the node's outputs then fall back to onnx's types.
_RULE_ERRORS = (ValueError, TypeError, IndexError, KeyError, ZeroDivisionError, OverflowError, AttributeError)

Out = tuple  # (dims: list[SymExpr | None] | None, value: tuple[SymExpr, ...] | None, dtype: int | None)


class SymbolTable:
    """Per-context shape symbols and what symbolic inference knows about every value of one model.

    ``seed(model)`` makes the symbols of the model's inputs; ``infer(model)`` (re)runs the inference;
    ``ensure(model)`` re-infers only when the model changed since. Queries are keyed by :class:`Value` object:
    ``shape_of``, ``value_of`` (the symbolic contents of a small integer shape tensor), ``dtype_of``. Results
    are in canonical form under the symbols unified so far.
    """

    def __init__(self, *, max_value_len: int = 1024) -> None:
        self.max_value_len = max_value_len
        self._version = -1
        self._model_id: int | None = None
        self._reset()

    def _reset(self) -> None:
        self._symbols: dict[str, ShapeSymbol] = {}
        self._order: dict[str, int] = {}
        self._reserved: set[str] = set()
        self._anon: dict[str, SymExpr] = {}
        self._fresh = 0
        self._input_syms: list[str] = []
        self._input_syms_set: set[str] = set()
        self._parent: dict[str, str] = {}
        self._const_of: dict[str, int] = {}
        self._redirected: set[str] = set()
        self._canon_cache: dict[SymExpr, SymExpr] = {}
        self._unions: list[tuple[str, str, str]] = []
        self._conflicts: list[str] = []
        self._shape: dict[Value, SymbolicShape] = {}
        self._val: dict[Value, tuple[SymExpr, ...]] = {}
        self._cval: dict[Value, tuple[SymExpr, ...] | None] = {}
        self._dtype: dict[Value, int] = {}
        self._gp: dict[Graph, Any] = {}
        self._vi: dict[Graph, dict[str, Any]] = {}
        self._fresh_names: set[str] = set()
        self._onnx_status = "not run"
        self._opset = 21
        self._stats: dict[str, Any] = {}

    # ------------------------------------------------------------------------------------------------------------
    # public API
    # ------------------------------------------------------------------------------------------------------------
    def seed(self, model: Model) -> None:
        """Forget everything, then make symbols for the main graph's inputs: dim_params become symbols (one per
        name), unknown dims get fresh ``unk_N`` symbols in input order."""
        self._reset()
        self._opset = model.opset("") or 21
        for g in model.graph.all_graphs():
            for v in (*g._inputs, *g._outputs):
                t = v.type
                if isinstance(t, TensorType) and t.shape:
                    for d in t.shape:
                        if isinstance(d, str):
                            self._reserved.add(d)
        for v in model.graph._inputs:
            self._seed_value(v, f"input {v.name!r}", "input", parse=False)
        self._input_syms = list(self._symbols)
        self._input_syms_set = set(self._input_syms)

    def infer(self, model: Model) -> dict[str, Any]:
        """Run symbolic shape inference over the whole model (subgraphs included); returns details for the
        report (counts, timings, onnx inference status). Never raises for an op it does not know."""
        import time

        t0 = time.perf_counter()
        self.seed(model)
        t1 = time.perf_counter()
        self._run_onnx(model)
        t2 = time.perf_counter()
        self._walk(model.graph)
        t3 = time.perf_counter()
        self._version = model.mutations
        self._model_id = id(model)
        targets = self._shape_targets(model)
        total = len(targets)
        shaped = sum(1 for v in targets if self._shape.get(v, UNKNOWN_RANK).dims is not None)
        nvals = sum(1 for v in self._val if v.producer is not None)
        self._stats = {"values": total, "shaped": shaped, "shape_values": nvals}
        fresh = sum(1 for s in self._symbols.values() if s.kind == "fresh")
        return {"symbols": len(self._symbols), "input_symbols": list(self._input_syms), "fresh_symbols": fresh,
                "unifications": len(self._unions), "conflicts": list(self._conflicts), "values": total,
                "shaped": shaped, "shape_values": nvals, "onnx_inference": self._onnx_status,
                "seconds": {"seed": round(t1 - t0, 6), "onnx": round(t2 - t1, 6), "walk": round(t3 - t2, 6)}}

    def ensure(self, model: Model) -> None:
        """Re-infer when `model` changed (its mutation counter moved) or is another model than last time."""
        if self._version != model.mutations or self._model_id != id(model):
            self.infer(model)

    def shape_of(self, value: Value) -> SymbolicShape | None:
        """The symbolic shape of `value`, or None when the table knows nothing of it."""
        sh = self._shape.get(value)
        if sh is None:
            if value._const is None:
                return None
            sh = self._shape_unwalked(value)
        if sh.dims is None or not self._redirected:
            return sh
        return SymbolicShape(tuple(self.canon(d) for d in sh.dims))

    def value_of(self, value: Value) -> list[SymExpr] | None:
        """The symbolic contents of a scalar or 1-D integer tensor (a shape tensor), or None when unknown."""
        r = self._v(value)
        return None if r is None else list(r)

    def dtype_of(self, value: Value) -> int | None:
        return self._dt(value)

    def symbol(self, name: str) -> ShapeSymbol | None:
        return self._symbols.get(name)

    def symbols(self) -> list[ShapeSymbol]:
        """Every symbol, in creation order."""
        return list(self._symbols.values())

    def canon(self, e: SymExpr) -> SymExpr:
        """`e` with every symbol replaced by its class representative (or the constant its class equals)."""
        if not self._redirected or e.c is not None:
            return e
        r = self._canon_cache.get(e)
        if r is None:
            r = e if e.free_symbols.isdisjoint(self._redirected) else e.subs(self._repl)
            self._canon_cache[e] = r
        return r

    def equal(self, a: SymExpr, b: SymExpr) -> bool:
        """True when `a` and `b` are equal for every binding (under the unifications made)."""
        return self.canon(a) == self.canon(b)

    def unify(self, a: SymExpr, b: SymExpr, reason: str = "") -> bool:
        """Record that the graph forces `a == b` (symbol~symbol, symbol~constant, or c*s~c*t / c*s~k forms).
        Returns False when the pair has another form (nothing recorded) or contradicts what is known."""
        return self._unify(a, b, reason)

    def unifications(self) -> list[tuple[str, str, str]]:
        """(a, b, reason) for every unification, in the order made."""
        return list(self._unions)

    def describe(self) -> str:
        """One line for the init log."""
        names = self._input_syms
        shown = ", ".join(names[:8]) + (f", ... {len(names) - 8} more" if len(names) > 8 else "")
        s = f"{len(names)} symbol{'s' if len(names) != 1 else ''} from inputs" + (f" ({shown})" if names else "")
        st = self._stats
        if st:
            s += f"; {st['shaped']} of {st['values']} values shaped, {st['shape_values']} shape values known"
        if self._unions:
            s += f", {len(self._unions)} unification{'s' if len(self._unions) != 1 else ''}"
        if self._onnx_status.startswith("failed"):
            s += " (onnx shape inference failed; own rules only)"
        return s

    def summary(self) -> dict[str, Any]:
        """Plain data for ``graphopt inspect`` and the report: the symbols (model and input symbols, and fresh
        ones only when they unified with something), with their origin and the names they unified with."""
        classes: dict[str, list[str]] = {}
        for name in self._symbols:
            classes.setdefault(self._find(name), []).append(name)
        out = []
        hidden = 0
        for name, sym in self._symbols.items():
            root = self._find(name)
            others = [o for o in classes[root] if o != name]
            c = self._const_of.get(root)
            if c is not None:
                others.append(str(c))
            if sym.kind == "fresh" and not others and name not in self._input_syms:
                hidden += 1
                continue
            out.append({"name": name, "origin": sym.origin, "kind": sym.kind, "unified_with": others})
        return {"symbols": out, "fresh_symbols_not_shown": hidden,
                "unifications": [{"a": a, "b": b, "reason": r} for a, b, r in self._unions],
                "conflicts": list(self._conflicts), **self._stats, "onnx_inference": self._onnx_status}

    def annotate(self, model: Model) -> int:
        """Write the inferred types into the model's value_info (every graph), symbolic dims named by their
        canonical rendering (``batch*seq``, ``(seq+1)//2``). Graph inputs, outputs and initializers keep their
        declarations. Returns how many values it declared or retyped."""
        self.ensure(model)
        n = 0
        for g in model.graph.all_graphs():
            for node in g:
                for v in node._outputs:
                    if not v._name or v._out_graphs:
                        continue
                    dt = self._dtype.get(v)
                    sh = self._shape.get(v)
                    if dt is None or sh is None or not dt:
                        continue
                    if sh.dims is None:
                        shape = None
                    else:
                        dl: list[Any] = []
                        for d in sh.dims:
                            d = self.canon(d)
                            if d.c is not None:
                                dl.append(d.c if d.c >= 0 else None)
                            else:
                                dl.append(str(d))
                        shape = tuple(dl)
                    t = TensorType(dt, shape)
                    touched = False
                    if v.type != t:
                        v.type = t
                        touched = True
                    if v not in g._value_info:
                        g.declare(v)
                        touched = True
                    n += touched
        # annotating changes the model but not what the table knows about it
        self._version = model.mutations
        return n

    # ------------------------------------------------------------------------------------------------------------
    # symbols and union-find
    # ------------------------------------------------------------------------------------------------------------
    def _register(self, name: str, origin: str, kind: str) -> SymExpr:
        if name not in self._symbols:
            self._symbols[name] = ShapeSymbol(name, None, origin, kind)
            self._order[name] = len(self._order)
        return SymExpr.symbol(name)

    def _fresh_sym(self, origin: str) -> SymExpr:
        while True:
            name = f"unk_{self._fresh}"
            self._fresh += 1
            if name not in self._symbols and name not in self._reserved:
                self._fresh_names.add(name)
                return self._register(name, origin, "fresh")

    def _from_param(self, s: str, origin: str, parse: bool = True) -> SymExpr:
        sym = self._symbols.get(s)
        if sym is not None and (sym.kind != "fresh" or s in self._input_syms_set):
            return SymExpr.symbol(s)
        if (_ANON.match(s) or _OURS.match(s)) and s not in self._reserved:
            # A name onnx's inference made up for an unknown dim (unk__N), or one of our fresh names written by
            # an earlier run's annotate() (unk_N) that may now stand for another dim: one new fresh symbol per
            # name, so that equal names stay equal without aliasing this run's symbols. (The fresh names of
            # input dims are the same in every run, since seeding comes first: those keep their meaning.)
            e = self._anon.get(s)
            if e is None:
                e = self._anon[s] = self._fresh_sym(origin)
            return e
        if parse and any(ch in s for ch in "+-*/%()"):
            try:
                e = SymExpr.parse(s)
            except ValueError:
                e = None
            if e is not None and str(e) == s:  # our own rendering (a model graphopt annotated before)
                for name in sorted(e.free_symbols):
                    self._register(name, origin, "named")
                return e
        return self._register(s, origin, "named")

    def _find(self, name: str) -> str:
        p = self._parent
        root = name
        while root in p:
            root = p[root]
        while name != root:
            nxt = p[name]
            p[name] = root
            name = nxt
        return root

    def _repl(self, name: str) -> SymExpr | None:
        root = self._find(name)
        c = self._const_of.get(root)
        if c is not None:
            return SymExpr.const(c)
        return SymExpr.symbol(root) if root != name else None

    def _unify(self, a: SymExpr, b: SymExpr, reason: str) -> bool:
        a = self.canon(a)
        b = self.canon(b)
        if a == b:
            return True
        if a.c is not None and b.c is not None:
            self._conflict(f"{reason}: {a} != {b}")
            return False
        if a.c is not None:
            a, b = b, a
        ta = a.terms
        if len(ta) != 1 or len(ta[0][0]) != 1 or ta[0][0][0].__class__ is not str:
            return False
        ca, sa = ta[0][1], ta[0][0][0]
        if b.c is not None:
            if b.c % ca or b.c // ca < 0:
                self._conflict(f"{reason}: {a} cannot equal {b}")
                return False
            return self._bind(sa, b.c // ca, reason)
        tb = b.terms
        if len(tb) != 1 or len(tb[0][0]) != 1 or tb[0][0][0].__class__ is not str or tb[0][1] != ca:
            return False
        return self._union(sa, tb[0][0][0], reason)

    def _conflict(self, msg: str) -> None:
        if len(self._conflicts) < 100:
            self._conflicts.append(msg)
        log.debug("shape conflict: %s", msg)

    def _changed_classes(self) -> None:
        self._canon_cache.clear()

    def _bind(self, s: str, val: int, reason: str) -> bool:
        r = self._find(s)
        c = self._const_of.get(r)
        if c is not None:
            if c != val:
                self._conflict(f"{reason}: {s} = {c} and {val}")
                return False
            return True
        self._const_of[r] = val
        self._redirected.add(r)
        self._unions.append((s, str(val), reason))
        self._changed_classes()
        return True

    def _union(self, x: str, y: str, reason: str) -> bool:
        rx, ry = self._find(x), self._find(y)
        if rx == ry:
            return True
        cx, cy = self._const_of.get(rx), self._const_of.get(ry)
        if cx is not None and cy is not None and cx != cy:
            self._conflict(f"{reason}: {x} = {cx} and {y} = {cy}")
            return False
        big = 1 << 62
        # the earliest symbol (model inputs first) represents the class
        if self._order.get(ry, big) < self._order.get(rx, big) or (
                self._order.get(ry, big) == self._order.get(rx, big) and ry < rx):
            rx, ry = ry, rx
        self._parent[ry] = rx
        self._redirected.add(ry)
        c = cx if cx is not None else cy
        if c is not None:
            self._const_of[rx] = c
            self._redirected.add(rx)
        self._const_of.pop(ry, None)
        self._unions.append((x, y, reason))
        self._changed_classes()
        return True

    # ------------------------------------------------------------------------------------------------------------
    # onnx's inference
    # ------------------------------------------------------------------------------------------------------------
    def _run_onnx(self, model: Model) -> None:
        """Types from onnx's shape inference (C++, with data propagation), keyed by our Values. Big initializers
        go as header-only stubs. Any failure leaves the table with the model's declared types only."""
        try:
            import onnx.shape_inference

            from ..ir import serde

            data = serde.serialize(model)
            if len(data) > _STUB_ABOVE_BYTES:
                # protobuf refuses 2 GiB: send big initializers as header-only stubs (inference never reads them)
                data = b""
                plan: dict[int, Any] = {}
                for g in model.graph.all_graphs():
                    for v in g._initializers.values():
                        t = v._const
                        if t is None or t.is_sparse:
                            continue
                        size = 1
                        for d in t.shape:
                            size *= d
                        if size > _STUB_ELEMENTS and not t.is_external:
                            plan[id(t)] = ("external", _STUB_LOCATION, 0, (size * bits_of(t.dtype) + 7) // 8, {})
                data = serde.serialize(model, plan)
            inferred = onnx.shape_inference.infer_shapes(data, check_type=False, strict_mode=False,
                                                         data_prop=True)
        except Exception as e:  # noqa: BLE001 - onnx raises many types; its results are optional here
            self._onnx_status = f"failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            log.warning("onnx shape inference failed (%s); using declared types and graphopt's rules",
                        self._onnx_status)
            return
        self._onnx_status = "ok"
        self._map_onnx(model.graph, inferred.graph)

    def _map_onnx(self, g: Graph, gp: Any) -> None:
        """Pair our graphs with onnx's inferred GraphProtos (subgraphs by node position and attribute order);
        the name -> ValueInfoProto tables are built only when a graph's types are first asked for."""
        self._gp[g] = gp
        nodes = gp.node
        nn = len(nodes)
        i = 0
        for n in g:
            if n._subgraphs and i < nn and nodes[i].op_type == n.op_type:
                protos = []
                for a in nodes[i].attribute:
                    if a.type == 5:  # GRAPH
                        protos.append(a.g)
                    elif a.type == 10:  # GRAPHS
                        protos.extend(a.graphs)
                for sg, sgp in zip(n._subgraphs, protos):
                    self._map_onnx(sg, sgp)
            i += 1

    def _vi_table(self, g: Graph) -> dict[str, Any]:
        t = self._vi.get(g)
        if t is None:
            gp = self._gp.get(g)
            t = {}
            if gp is not None:
                t = {vi.name: vi for vi in gp.value_info}
                for vi in gp.output:
                    t[vi.name] = vi
                if g.owner is not None:
                    for vi in gp.input:
                        t[vi.name] = vi
            self._vi[g] = t
        return t

    def _onnx_info(self, v: Value) -> tuple[int | None, list | None]:
        """(dtype, dims as int/str/None) from onnx's inference, else from the model's declaration."""
        g = v.graph
        vi = self._vi_table(g).get(v._name) if g is not None and self._gp else None  # type: ignore[arg-type]
        if vi is not None:
            tp = vi.type
            if tp.WhichOneof("value") != "tensor_type":
                return None, None
            tt = tp.tensor_type
            dt = tt.elem_type or None
            if not tt.HasField("shape"):
                return dt, None
            dims: list[Any] = []
            for d in tt.shape.dim:
                w = d.WhichOneof("value")
                dims.append(d.dim_value if w == "dim_value" else (d.dim_param if w == "dim_param" else None))
            return dt, dims
        t = v.type
        if isinstance(t, TensorType):
            return (t.dtype or None), (list(t.shape) if t.shape is not None else None)
        return None, None

    # ------------------------------------------------------------------------------------------------------------
    # the walk
    # ------------------------------------------------------------------------------------------------------------
    def _seed_value(self, v: Value, origin: str, kind: str, parse: bool = True,
                    rank_hint: int | None = None, dtype_hint: int | None = None) -> None:
        dt, dims = self._onnx_info(v)
        if dims is None and v._const is not None:
            dims = list(v._const.shape)
        if dims is None and rank_hint is not None:
            dims = [None] * rank_hint
        if dt is None:
            dt = dtype_hint if dtype_hint is not None else (v._const.dtype if v._const is not None else None)
        if dims is None:
            sh = UNKNOWN_RANK
        else:
            out = []
            for i, d in enumerate(dims):
                if d.__class__ is int and d >= 0:
                    out.append(SymExpr.const(d))
                elif d.__class__ is str and d:
                    if kind == "input" and d not in self._symbols:
                        out.append(self._register(d, f"{origin} dim {i}", "input"))
                    else:
                        out.append(self._from_param(d, f"{origin} dim {i}", parse))
                else:
                    out.append(self._fresh_sym(f"{origin} dim {i}"))
            sh = SymbolicShape(tuple(out))
        self._shape[v] = sh
        if dt is not None:
            self._dtype[v] = dt

    def _walk(self, g: Graph) -> None:
        rules = _RULES
        for n in g:
            if n._subgraphs:
                self._seed_subgraphs(n)
            outs = None
            dom = n.domain
            if not dom or dom == "ai.onnx":
                fn = rules.get(n.op_type)
                if fn is not None:
                    try:
                        outs = fn(self, n)
                    except _RULE_ERRORS as e:
                        log.debug("shape rule for %s failed: %s", n.op_type, e)
                        outs = None
            self._finish(n, outs)

    def _seed_subgraphs(self, n: Node) -> None:
        op = n.op_type
        std = not n.domain or n.domain == "ai.onnx"
        where = f"{op} {n.name!r}" if n.name else op
        for sg in n._subgraphs or ():
            ins = sg._inputs
            for j, v in enumerate(ins):
                origin = f"{where} body input {v.name!r}"
                if std and op == "Loop":
                    if j == 0:
                        self._shape[v] = SymbolicShape(())
                        self._dtype[v] = _INT64
                        continue
                    if j == 1:
                        self._shape[v] = SymbolicShape(())
                        self._dtype[v] = _BOOL
                        continue
                    outer = n.input(j)
                    os_ = self._s(outer) if outer is not None else None
                    self._seed_value(v, origin, "fresh", rank_hint=None if os_ is None else len(os_),
                                     dtype_hint=self._dt(outer))
                elif std and op == "Scan" and self._opset >= 9:
                    m = int(n.attr("num_scan_inputs", 0))
                    nstate = len(n._inputs) - m
                    outer = n.input(j)
                    if j >= nstate and outer is not None:
                        os_ = self._s(outer)
                        axes = list(n.attr("scan_input_axes", None) or [0] * m)
                        k = j - nstate
                        if os_ is not None and k < len(axes):
                            ax = axes[k] + len(os_) if axes[k] < 0 else axes[k]
                            dt, dims = self._onnx_info(v)
                            self._shape[v] = SymbolicShape(tuple(os_[:ax]) + tuple(os_[ax + 1:]))
                            dt = dt or self._dt(outer)
                            if dt is not None:
                                self._dtype[v] = dt
                            continue
                    os_ = self._s(outer) if outer is not None else None
                    self._seed_value(v, origin, "fresh", rank_hint=None if os_ is None else len(os_),
                                     dtype_hint=self._dt(outer) if outer is not None else None)
                else:
                    self._seed_value(v, origin, "fresh")
            self._walk(sg)

    def _finish(self, n: Node, outs: list[Out] | None) -> None:
        shape_map = self._shape
        i = -1
        for v in n._outputs:
            i += 1
            if not v._name:
                continue
            o = outs[i] if outs is not None and i < len(outs) else None
            if o is None:
                dims, val, dt = None, None, None
            else:
                dims, val, dt = o
            # onnx's answer fills what our rule left open
            ask = dt is None or dims is None
            if not ask:
                for d in dims:  # type: ignore[union-attr]
                    if d is None:
                        ask = True
                        break
            if ask:
                odt, odims = self._onnx_info(v)
                if dt is None:
                    dt = odt
                dims = self._merge(dims, odims, v, n)
            if dims is None:
                shape_map[v] = UNKNOWN_RANK
            else:
                shape_map[v] = SymbolicShape(tuple(dims))
                if val is not None and len(val) <= self.max_value_len and (
                        (not dims and len(val) == 1) or (len(dims) == 1 and dims[0].c == len(val))):
                    self._val[v] = val
            if dt is not None:
                self._dtype[v] = dt

    def _merge(self, dims: list | None, odims: list | None, v: Value, n: Node) -> list | None:
        if dims is None:
            if odims is None:
                return None
            return [self._conv_dim(d, v, i, n) for i, d in enumerate(odims)]
        out = list(dims)
        same = odims is not None and len(odims) == len(dims)
        for i, d in enumerate(out):
            # onnx's answer only fills what our rules could not derive: it may come from value_info the model
            # declares, which can be stale (a static dim traced at export), and a wrong static dim would let a
            # Shape fold to a constant that holds for one binding only
            if d is None:
                out[i] = self._conv_dim(odims[i] if same else None, v, i, n)  # type: ignore[index]
        return out

    def _conv_dim(self, d: Any, v: Value, i: int, n: Node) -> SymExpr:
        if d.__class__ is int and d >= 0:
            return SymExpr.const(d)
        origin = f"dim {i} of {v.name!r} ({n.op_type})"
        if d.__class__ is str and d:
            return self._from_param(d, origin)
        return self._fresh_sym(origin)

    # -- accessors used by the rules ---------------------------------------------------------------------------
    def _shape_unwalked(self, v: Value) -> SymbolicShape:
        c = v._const
        if c is not None:
            sh = SymbolicShape(tuple(SymExpr.const(d) for d in c.shape))
            self._dtype.setdefault(v, c.dtype)
        else:
            dt, dims = self._onnx_info(v)
            if dims is None:
                sh = UNKNOWN_RANK
            else:
                sh = SymbolicShape(tuple(SymExpr.const(d) if d.__class__ is int and d >= 0 else (
                    self._from_param(d, f"dim {i} of {v.name!r}") if d.__class__ is str and d else
                    self._fresh_sym(f"dim {i} of {v.name!r}")) for i, d in enumerate(dims)))
            if dt is not None:
                self._dtype.setdefault(v, dt)
        self._shape[v] = sh
        return sh

    def _s(self, v: Value | None) -> tuple[SymExpr, ...] | None:
        if v is None:
            return None
        sh = self._shape.get(v)
        if sh is None:
            sh = self._shape_unwalked(v)
        dims = sh.dims
        if dims is None or not self._redirected:
            return dims
        canon = self.canon
        return tuple(canon(d) for d in dims)

    def _v(self, v: Value | None) -> tuple[SymExpr, ...] | None:
        if v is None:
            return None
        r = self._val.get(v)
        if r is None:
            if v.producer is not None or v._const is None:
                return None
            if v in self._cval:
                r = self._cval[v]
            else:
                r = self._cval[v] = self._const_value(v)
            if r is None:
                return None
        if not self._redirected:
            return r
        canon = self.canon
        return tuple(canon(e) for e in r)

    def _const_value(self, v: Value) -> tuple[SymExpr, ...] | None:
        if not v.is_constant():
            return None
        t = v._const
        assert t is not None
        if t.is_sparse or t.dtype not in _VALUE_DT or len(t.shape) > 1 or t.size > self.max_value_len:
            return None
        try:
            arr = t.numpy()
        except Exception:  # noqa: BLE001 - unreadable data: the value is simply unknown
            return None
        return tuple(SymExpr.const(int(x)) for x in np.asarray(arr).reshape(-1).tolist())

    def _dt(self, v: Value | None) -> int | None:
        if v is None:
            return None
        dt = self._dtype.get(v)
        if dt is None and v._const is not None:
            dt = v._const.dtype
        return dt

    def _ints(self, v: Value | None) -> list[int] | None:
        r = self._v(v)
        if r is None or any(e.c is None for e in r):
            return None
        return [e.c for e in r]  # type: ignore[misc]

    def _prod(self, dims: Sequence[SymExpr | None] | None) -> SymExpr | None:
        if dims is None:
            return None
        p = ONE
        for d in dims:
            if d is None:
                return None
            p = p * d
        return p

    def _bcast_dim(self, a: SymExpr | None, b: SymExpr | None, reason: str) -> SymExpr | None:
        if a is None or b is None:
            k = b if a is None else a
            # the unknown side must be 1 or k: when k cannot be 1 the result is k
            if k is not None and not k.can_be(1):
                return k
            return None
        if a is b:
            return a
        a = self.canon(a)
        b = self.canon(b)
        if a == b:
            return a
        if a.c == 1:
            return b
        if b.c == 1:
            return a
        a1 = a.can_be(1)
        b1 = b.can_be(1)
        if not a1 and not b1:
            # neither side can be 1: the graph forces them equal
            return a if self._unify(a, b, reason) or a.c is None else (b if b.c is None else None)
        if not a1:
            return a
        if not b1:
            return b
        return None

    def _bcast(self, shapes: Sequence[Sequence[SymExpr | None] | None], reason: str) -> list | None:
        first = shapes[0]
        if first is None:
            return None
        same = True
        for s in shapes:
            if s is None:
                return None
            if same and s != first:  # tuples compare element identity first: cheap for shared SymExprs
                same = False
        if same:
            return list(first)
        r = max(len(s) for s in shapes)  # type: ignore[arg-type]
        out: list[SymExpr | None] = []
        bd = self._bcast_dim
        for i in range(r):
            cur: Any = _ABSENT
            for s in shapes:
                j = i - (r - len(s))  # type: ignore[arg-type]
                if j < 0:
                    continue
                x = s[j]  # type: ignore[index]
                cur = x if cur is _ABSENT else bd(cur, x, reason)
            out.append(cur)
        return out

    def _unify_products(self, a: SymExpr, b: SymExpr, reason: str) -> None:
        """a == b for products of dims: unify only what holds even when some dim is 0 (constants cancel)."""
        a, b = self.canon(a), self.canon(b)
        if a == b or len(a.terms) != 1 or len(b.terms) != 1:
            return
        (ma, ca), (mb, cb) = a.terms[0], b.terms[0]
        g = math.gcd(ca, cb)
        if g == 0:
            return
        ca //= g
        cb //= g
        if len(ma) == 1 and len(mb) == 1 and ca == cb == 1 and ma[0].__class__ is str and \
                mb[0].__class__ is str:
            self._unify(SymExpr.symbol(ma[0]), SymExpr.symbol(mb[0]), reason)
        elif len(ma) == 1 and not mb and ma[0].__class__ is str and cb % ca == 0:
            self._unify(SymExpr.symbol(ma[0]), SymExpr.const(cb // ca), reason)
        elif len(mb) == 1 and not ma and mb[0].__class__ is str and ca % cb == 0:
            self._unify(SymExpr.symbol(mb[0]), SymExpr.const(ca // cb), reason)

    def _shape_targets(self, model: Model) -> list[Value]:
        return [v for g in model.graph.all_graphs() for n in g for v in n._outputs if v._name]


_ABSENT = object()


# ================================================================================================================
# Rules. Each takes (table, node) and returns one (dims, value, dtype) per output, None meaning "ask onnx's
# inference, else fresh symbols". Input dims are SymExprs; output dims may be None (unknown).
# ================================================================================================================
def _attr_str(n: Node, name: str, default: str) -> str:
    a = n.attr(name, default)
    return a.decode() if isinstance(a, bytes) else str(a)


def _norm_axis(a: int, r: int) -> int:
    a = int(a)
    if a < 0:
        a += r
    if not 0 <= a < r:
        raise IndexError(f"axis {a} out of range for rank {r}")
    return a


def _zip_vals(vals: Sequence[tuple[SymExpr, ...]], fn: Callable[..., SymExpr | None]) -> tuple | None:
    n = max(len(v) for v in vals)
    if any(len(v) not in (1, n) for v in vals):
        return None
    out = []
    for i in range(n):
        r = fn(*[v[i] if len(v) > 1 else v[0] for v in vals])
        if r is None:
            return None
        out.append(r)
    return tuple(out)


def _trunc_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _div(a: SymExpr, b: SymExpr) -> SymExpr | None:
    """ONNX integer Div (truncating)."""
    if a.c is not None and b.c is not None:
        return SymExpr.const(_trunc_div(a.c, b.c)) if b.c else None
    q = a.exact_div(b)
    if q is not None:
        return q
    if b.c is not None and b.c > 0 and a.nonneg():
        return a._floordiv_const(b.c)
    return None


def _mod(a: SymExpr, b: SymExpr, fmod: int) -> SymExpr | None:
    if b.c is not None and a.c is not None:
        if not b.c:
            return None
        if fmod:
            return SymExpr.const(a.c - b.c * _trunc_div(a.c, b.c))
        return SymExpr.const(a.c % b.c)
    if b.c is not None and b.c > 0 and (not fmod or a.nonneg()):
        return a._mod_const(b.c)
    return None


def _min(a: SymExpr, b: SymExpr) -> SymExpr | None:
    if (b - a).nonneg():
        return a
    if (a - b).nonneg():
        return b
    return None


def _max(a: SymExpr, b: SymExpr) -> SymExpr | None:
    if (b - a).nonneg():
        return b
    if (a - b).nonneg():
        return a
    return None


def _cmp(a: SymExpr, b: SymExpr, op: str) -> SymExpr | None:
    """Decide a comparison for every binding (1 / 0), or None."""
    d = a - b
    if op == "Equal":
        if d.c is not None:
            return ONE if d.c == 0 else ZERO
        return None if d.can_be(0) else ZERO
    if op in ("Greater", "LessOrEqual"):
        gt = True if d.positive() else (False if (-d).nonneg() else None)
        if gt is None:
            return None
        return ONE if gt == (op == "Greater") else ZERO
    if op in ("Less", "GreaterOrEqual"):
        lt = True if (-d).positive() else (False if d.nonneg() else None)
        if lt is None:
            return None
        return ONE if lt == (op == "Less") else ZERO
    return None


def _bool(e: SymExpr) -> bool | None:
    return None if e.c is None else e.c != 0


_ARITH: dict[str, Callable[[SymExpr, SymExpr], SymExpr | None]] = {
    "Add": lambda a, b: a + b, "Sub": lambda a, b: a - b, "Mul": lambda a, b: a * b, "Div": _div,
    "Max": _max, "Min": _min, "Sum": lambda a, b: a + b,
}


def _r_binary(t: SymbolTable, n: Node) -> list[Out]:
    ins = [v for v in n._inputs if v is not None]
    if not ins:
        return [(None, None, None)]
    dt = t._dt(ins[0])
    dims = t._bcast([t._s(v) for v in ins], n.op_type) if len(ins) > 1 else (
        None if t._s(ins[0]) is None else list(t._s(ins[0])))  # type: ignore[arg-type]
    val = None
    op = n.op_type
    if dt in _VALUE_DT and dt != _BOOL:
        vals = [t._v(v) for v in ins]
        if all(v is not None for v in vals):
            if op == "Mod":
                fmod = int(n.attr("fmod", 0))
                val = _zip_vals(vals, lambda a, b: _mod(a, b, fmod))  # type: ignore[arg-type]
            elif op in _ARITH:
                f = _ARITH[op]

                def fold(*xs: SymExpr) -> SymExpr | None:
                    acc: SymExpr | None = xs[0]
                    for x in xs[1:]:
                        if acc is None:
                            return None
                        acc = f(acc, x)
                    return acc

                val = _zip_vals(vals, fold)  # type: ignore[arg-type]
    return [(dims, val, dt)]


def _r_compare(t: SymbolTable, n: Node) -> list[Out]:
    a, b = n.input(0), n.input(1)
    dims = t._bcast([t._s(a), t._s(b)], n.op_type)
    val = None
    if t._dt(a) in _VALUE_DT:
        va, vb = t._v(a), t._v(b)
        if va is not None and vb is not None:
            op = n.op_type
            val = _zip_vals([va, vb], lambda x, y: _cmp(x, y, op))
    return [(dims, val, _BOOL)]


def _r_logic(t: SymbolTable, n: Node) -> list[Out]:
    ins = [n.input(i) for i in range(n.num_inputs)]
    dims = t._bcast([t._s(v) for v in ins], n.op_type) if len(ins) > 1 else (
        None if t._s(ins[0]) is None else list(t._s(ins[0])))  # type: ignore[arg-type]
    vals = [t._v(v) for v in ins]
    val = None
    if all(v is not None for v in vals):
        op = n.op_type

        def f(*xs: SymExpr) -> SymExpr | None:
            bs = [_bool(x) for x in xs]
            if any(b is None for b in bs):
                return None
            if op == "Not":
                r = not bs[0]
            elif op == "And":
                r = bs[0] and bs[1]
            elif op == "Or":
                r = bs[0] or bs[1]
            else:
                r = bs[0] != bs[1]
            return ONE if r else ZERO

        val = _zip_vals(vals, f)  # type: ignore[arg-type]
    return [(dims, val, _BOOL)]


def _r_where(t: SymbolTable, n: Node) -> list[Out]:
    c, x, y = n.input(0), n.input(1), n.input(2)
    dims = t._bcast([t._s(c), t._s(x), t._s(y)], "Where")
    dt = t._dt(x) or t._dt(y)
    val = None
    vc, vx, vy = t._v(c), t._v(x), t._v(y)
    if vc is not None and vx is not None and vy is not None and dt in _VALUE_DT:
        val = _zip_vals([vc, vx, vy], lambda cc, a, b: None if cc.c is None else (a if cc.c else b))
    return [(dims, val, dt)]


def _r_unary_val(t: SymbolTable, n: Node) -> list[Out]:
    x = n.input(0)
    s = t._s(x)
    dt = t._dt(x)
    val = None
    vx = t._v(x)
    if vx is not None and dt in _VALUE_DT and dt != _BOOL:
        if n.op_type == "Neg":
            val = tuple(-e for e in vx)
        elif n.op_type == "Abs":
            val = _zip_vals([vx], lambda e: e if e.nonneg() else (-e if (-e).nonneg() else None))
    return [(None if s is None else list(s), val, dt)]


def _r_same(t: SymbolTable, n: Node) -> list[Out]:
    """Ops whose first output has the first input's shape and dtype (and no tracked value)."""
    x = n.input(0)
    s = t._s(x)
    return [(None if s is None else list(s), None, t._dt(x))]


def _r_same_shape(t: SymbolTable, n: Node) -> list[Out]:
    """Same shape as the first input, dtype from onnx's inference (IsNaN, QuantizeLinear, ...)."""
    s = t._s(n.input(0))
    return [(None if s is None else list(s), None, None)]


def _r_identity(t: SymbolTable, n: Node) -> list[Out]:
    x = n.input(0)
    s = t._s(x)
    return [(None if s is None else list(s), t._v(x), t._dt(x))]


def _r_constant(t: SymbolTable, n: Node) -> list[Out] | None:
    for name, a in n.attrs.items():
        v = a.value
        if name == "value":
            dims = [SymExpr.const(d) for d in v.shape]
            val = None
            if v.dtype in _VALUE_DT and len(v.shape) <= 1 and v.size <= t.max_value_len:
                val = tuple(SymExpr.const(int(x)) for x in np.asarray(v.numpy()).reshape(-1).tolist())
            return [(dims, val, v.dtype)]
        if name == "value_int":
            return [([], (SymExpr.const(int(v)),), _INT64)]
        if name == "value_ints":
            return [([SymExpr.const(len(v))], tuple(SymExpr.const(int(x)) for x in v), _INT64)]
        if name == "value_float":
            return [([], None, _FLOAT)]
        if name == "value_floats":
            return [([SymExpr.const(len(v))], None, _FLOAT)]
    return None


def _r_shape(t: SymbolTable, n: Node) -> list[Out]:
    s = t._s(n.input(0))
    if s is None:
        return [(None, None, _INT64)]
    r = len(s)
    start = int(n.attr("start", 0))
    end = n.attr("end", None)
    sel = s[start:] if end is None else s[start:int(end)]
    return [([SymExpr.const(len(sel))], tuple(sel), _INT64)]


def _r_size(t: SymbolTable, n: Node) -> list[Out]:
    p = t._prod(t._s(n.input(0)))
    return [([], None if p is None else (p,), _INT64)]


def _r_cast(t: SymbolTable, n: Node) -> list[Out]:
    x = n.input(0)
    s = t._s(x)
    to = int(n.attr("to")) if n.op_type == "Cast" else t._dt(n.input(1))
    val = None
    vx = t._v(x)
    src = t._dt(x)
    if vx is not None and to in _VALUE_DT and src in _VALUE_DT:
        if to == _BOOL:
            val = _zip_vals([vx], lambda e: None if e.c is None else (ONE if e.c else ZERO))
        else:
            lo, hi = _RANGE.get(to, (None, None))  # type: ignore[arg-type]
            # a constant that does not fit would wrap: leave it unknown; symbolic dims are assumed to fit
            val = _zip_vals([vx], lambda e: e if e.c is None or lo is None or lo <= e.c <= hi else None)
    return [(None if s is None else list(s), val, to)]


def _r_gather(t: SymbolTable, n: Node) -> list[Out]:
    x, idx = n.input(0), n.input(1)
    xs, is_ = t._s(x), t._s(idx)
    dt = t._dt(x)
    if xs is None or is_ is None:
        return [(None, None, dt)]
    r = len(xs)
    axis = _norm_axis(n.attr("axis", 0), r)
    dims = list(xs[:axis]) + list(is_) + list(xs[axis + 1:])
    val = None
    xv = t._v(x)
    if xv is not None and r == 1 and len(is_) <= 1:
        iv = t._ints(idx)
        if iv is not None:
            L = len(xv)
            picked = []
            for k in iv:
                k = k + L if k < 0 else k
                if not 0 <= k < L:
                    picked = None
                    break
                picked.append(xv[k])
            if picked is not None:
                val = tuple(picked)
    return [(dims, val, dt)]


def _slice_len(t: SymbolTable, d: SymExpr, st: SymExpr, en: SymExpr, sp: int) -> SymExpr | None:
    """The length of x[st:en:sp] along a dim of size d (ONNX clamping), when exact for every binding."""
    if sp == 0:
        return None
    if d.c is not None and st.c is not None and en.c is not None:
        return SymExpr.const(len(range(*slice(st.c, en.c, sp).indices(d.c))))
    if sp < 0:
        # a full reverse: start at the end, end before the beginning
        if (st.c is not None and (st.c >= _BIG or st.c == -1)) and en.c is not None and en.c <= -_BIG:
            return d if sp == -1 else (d + (-sp - 1))._floordiv_const(-sp)
        return None
    s = st.c
    if s is None:
        return None
    L: SymExpr | None
    if s < 0:
        # the last -s elements, to the end
        L = SymExpr.const(-s) if en.c is not None and en.c >= _BIG and (d + s).nonneg() else None
    elif en.c is not None:
        e = en.c
        if e >= _BIG:
            L = d if s == 0 else (d - s if (d - s).nonneg() else None)
        elif e < 0:
            L = d + e - s if (d + e - s).nonneg() else None
        else:
            L = (SymExpr.const(max(e - s, 0)) if (d - e).nonneg() else None)
    else:
        e_ = t.canon(en)
        if e_ == d:
            L = d if s == 0 else (d - s if (d - s).nonneg() else None)
        elif (d - e_).nonneg() and (e_ - s).nonneg():
            L = e_ - s
        else:
            L = None
    if L is None or sp == 1:
        return L
    return (L + (sp - 1))._floordiv_const(sp)


def _r_slice(t: SymbolTable, n: Node) -> list[Out]:
    x = n.input(0)
    xs = t._s(x)
    dt = t._dt(x)
    if xs is None:
        return [(None, None, dt)]
    r = len(xs)
    if n.has_attr("starts"):  # opset < 10
        starts = tuple(SymExpr.const(int(a)) for a in n.attr("starts"))
        ends = tuple(SymExpr.const(int(a)) for a in n.attr("ends"))
        axes = [int(a) for a in n.attr("axes", None) or range(len(starts))]
        steps = [1] * len(starts)
    else:
        starts, ends = t._v(n.input(1)), t._v(n.input(2))  # type: ignore[assignment]
        a_in, s_in = n.input(3), n.input(4)
        axes = t._ints(a_in) if a_in is not None else None  # type: ignore[assignment]
        steps = t._ints(s_in) if s_in is not None else None  # type: ignore[assignment]
        if starts is None or ends is None or (a_in is not None and axes is None) or (
                s_in is not None and steps is None):
            return [([None] * r, None, dt)]
        if axes is None:
            axes = list(range(len(starts)))
        if steps is None:
            steps = [1] * len(starts)
    dims: list[SymExpr | None] = list(xs)
    for st, en, ax, sp in zip(starts, ends, axes, steps):
        ax = _norm_axis(ax, r)
        dims[ax] = _slice_len(t, xs[ax], st, en, sp)
    val = None
    xv = t._v(x)
    if xv is not None and r == 1 and len(starts) == 1 and starts[0].c is not None and ends[0].c is not None:
        val = tuple(xv[slice(starts[0].c, ends[0].c, steps[0])])
    return [(dims, val, dt)]


def _r_concat(t: SymbolTable, n: Node) -> list[Out]:
    ins = [v for v in n._inputs if v is not None]
    shapes = [t._s(v) for v in ins]
    dt = t._dt(ins[0]) if ins else None
    known = [s for s in shapes if s is not None]
    if not known:
        return [(None, None, dt)]
    r = len(known[0])
    if any(len(s) != r for s in known):
        return [(None, None, dt)]
    axis = _norm_axis(n.attr("axis"), r)
    dims: list[SymExpr | None] = []
    for i in range(r):
        if i == axis:
            if len(known) == len(shapes):
                tot = ZERO
                for s in known:
                    tot = tot + s[i]
                dims.append(tot)
            else:
                dims.append(None)
        else:
            first = known[0][i]
            for s in known[1:]:
                t._unify(first, s[i], "Concat")
            dims.append(t.canon(first))
    val = None
    if r == 1:
        vals = [t._v(v) for v in ins]
        if all(v is not None for v in vals):
            val = tuple(e for v in vals for e in v)  # type: ignore[union-attr]
    return [(dims, val, dt)]


def _axes_of(t: SymbolTable, n: Node, idx: int = 1) -> list[int] | None:
    """Axes from the attribute (older opsets) or the input `idx` (static); [] when absent."""
    a = n.attr("axes", None)
    if a is not None:
        return [int(x) for x in a]
    v = n.input(idx)
    if v is None:
        return []
    return t._ints(v)


def _r_unsqueeze(t: SymbolTable, n: Node) -> list[Out]:
    x = n.input(0)
    xs = t._s(x)
    dt = t._dt(x)
    axes = _axes_of(t, n)
    if xs is None or axes is None:
        return [(None, None, dt)]
    ro = len(xs) + len(axes)
    dims: list[SymExpr | None] = list(xs)
    for a in sorted(_norm_axis(a, ro) for a in axes):
        dims.insert(a, ONE)
    val = t._v(x) if len(xs) == 0 and ro == 1 else None
    return [(dims, val, dt)]


def _r_squeeze(t: SymbolTable, n: Node) -> list[Out]:
    x = n.input(0)
    xs = t._s(x)
    dt = t._dt(x)
    axes = _axes_of(t, n)
    if xs is None or axes is None:
        return [(None, None, dt)]
    r = len(xs)
    if not axes:
        # squeeze every dim that is 1: only known when no dim might or might not be 1
        if any(d.c is None and d.can_be(1) for d in xs):
            return [(None, None, dt)]
        dims = [d for d in xs if d.c != 1]
    else:
        drop = {_norm_axis(a, r) for a in axes}
        dims = [d for i, d in enumerate(xs) if i not in drop]
    val = t._v(x) if r <= 1 and len(dims) == 0 else None
    return [(dims, val, dt)]


def _r_reshape(t: SymbolTable, n: Node) -> list[Out]:
    x, sh = n.input(0), n.input(1)
    xs = t._s(x)
    dt = t._dt(x)
    tgt = t._v(sh)
    if tgt is None:
        ss = t._s(sh)
        if ss is not None and len(ss) == 1 and ss[0].c is not None:
            return [([None] * ss[0].c, None, dt)]
        return [(None, None, dt)]
    allowzero = int(n.attr("allowzero", 0))
    dims: list[SymExpr | None] = []
    neg = -1
    for i, e in enumerate(tgt):
        c = e.c
        if c == 0 and not allowzero:
            dims.append(xs[i] if xs is not None and i < len(xs) else None)
        elif c == -1:
            if neg >= 0:
                return [([None] * len(tgt), None, dt)]
            neg = i
            dims.append(None)
        elif c is not None and c < 0:
            return [([None] * len(tgt), None, dt)]
        else:
            dims.append(e)
    if neg >= 0:
        total = t._prod(xs)
        rest = t._prod([d for i, d in enumerate(dims) if i != neg])
        if total is not None and rest is not None:
            # exact in every run that does not fail (the runtime checks divisibility, and rest != 0)
            dims[neg] = t.canon(total).floordiv(t.canon(rest))
    elif xs is not None and [d for d in xs if d.c is None] != [d for d in dims if d is None or d.c is None]:
        # the symbolic dims differ between input and output: their products must match
        total, out = t._prod(xs), t._prod(dims)
        if total is not None and out is not None:
            t._unify_products(total, out, "Reshape")
    val = None
    xv = t._v(x)
    if xv is not None and len(dims) <= 1:
        val = xv
    return [(dims, val, dt)]


def _r_expand(t: SymbolTable, n: Node) -> list[Out]:
    x = n.input(0)
    xs = t._s(x)
    dt = t._dt(x)
    tv = t._v(n.input(1))
    if tv is None:
        ss = t._s(n.input(1))
        if xs is not None and ss is not None and len(ss) == 1 and ss[0].c is not None:
            return [([None] * max(len(xs), ss[0].c), None, dt)]
        return [(None, None, dt)]
    dims = t._bcast([xs, tv], "Expand")
    val = None
    xv = t._v(x)
    if xv is not None and dims is not None:
        if not dims:
            val = xv
        elif len(dims) == 1 and dims[0] is not None and dims[0].c is not None:
            L = dims[0].c
            val = xv if len(xv) == L else (xv * L if len(xv) == 1 and L <= t.max_value_len else None)
    return [(dims, val, dt)]


def _r_constant_of_shape(t: SymbolTable, n: Node) -> list[Out]:
    a = n.attr("value", None)
    dt = a.dtype if a is not None else _FLOAT
    tv = t._v(n.input(0))
    if tv is None:
        ss = t._s(n.input(0))
        if ss is not None and len(ss) == 1 and ss[0].c is not None:
            return [([None] * ss[0].c, None, dt)]
        return [(None, None, dt)]
    dims = list(tv)
    val = None
    if dt in _VALUE_DT and len(dims) <= 1:
        fill = SymExpr.const(int(np.asarray(a.numpy()).reshape(-1)[0])) if a is not None else ZERO
        if not dims:
            val = (fill,)
        elif dims[0].c is not None and dims[0].c <= t.max_value_len:
            val = (fill,) * dims[0].c
    return [(dims, val, dt)]


def _r_range(t: SymbolTable, n: Node) -> list[Out]:
    s, lim, d = (t._v(n.input(i)) for i in range(3))
    dt = t._dt(n.input(0))
    if s is None or lim is None or d is None or len(s) != 1 or len(lim) != 1 or len(d) != 1:
        return [([None], None, dt)]
    a, b, k = t.canon(s[0]), t.canon(lim[0]), t.canon(d[0])
    if a.c is not None and b.c is not None and k.c is not None:
        if k.c == 0:
            return [([None], None, dt)]
        length = max(0, -(-(b.c - a.c) // k.c))
        val = tuple(SymExpr.const(a.c + i * k.c) for i in range(length)) if length <= t.max_value_len else None
        return [([SymExpr.const(length)], val, dt)]
    if k.c is None or k.c == 0:
        return [([None], None, dt)]
    diff = b - a if k.c > 0 else a - b
    step = abs(k.c)
    if not diff.nonneg():
        return [([None], None, dt)]
    return [([(diff + (step - 1))._floordiv_const(step)], None, dt)]


def _r_tile(t: SymbolTable, n: Node) -> list[Out]:
    x = n.input(0)
    xs = t._s(x)
    reps = t._v(n.input(1))
    dt = t._dt(x)
    if xs is None:
        return [(None, None, dt)]
    if reps is None or len(reps) != len(xs):
        return [([None] * len(xs), None, dt)]
    return [([d * r for d, r in zip(xs, reps)], None, dt)]


def _r_matmul(t: SymbolTable, n: Node) -> list[Out]:
    a, b = n.input(0), n.input(1)
    sa, sb = t._s(a), t._s(b)
    dt = t._dt(a)
    if sa is None or sb is None or not sa or not sb:
        return [(None, None, dt)]
    la, lb = list(sa), list(sb)
    if len(la) == 1 and len(lb) == 1:
        t._unify(la[0], lb[0], "MatMul inner dims")
        return [([], None, dt)]
    drop_a = len(la) == 1
    drop_b = len(lb) == 1
    if drop_a:
        la = [ONE] + la
    if drop_b:
        lb = lb + [ONE]
    t._unify(la[-1], lb[-2], "MatMul inner dims")
    batch = t._bcast([la[:-2], lb[:-2]], "MatMul batch dims")
    if batch is None:
        return [(None, None, dt)]
    out = batch + ([] if drop_a else [la[-2]]) + ([] if drop_b else [lb[-1]])
    return [(out, None, dt)]


def _r_gemm(t: SymbolTable, n: Node) -> list[Out]:
    sa, sb = t._s(n.input(0)), t._s(n.input(1))
    dt = t._dt(n.input(0))
    if sa is None or sb is None or len(sa) != 2 or len(sb) != 2:
        return [([None, None], None, dt)]
    m, ka = (sa[1], sa[0]) if n.attr("transA", 0) else (sa[0], sa[1])
    kb, nn = (sb[1], sb[0]) if n.attr("transB", 0) else (sb[0], sb[1])
    t._unify(ka, kb, "Gemm inner dims")
    return [([m, nn], None, dt)]


def _r_transpose(t: SymbolTable, n: Node) -> list[Out]:
    x = n.input(0)
    xs = t._s(x)
    dt = t._dt(x)
    if xs is None:
        return [(None, None, dt)]
    perm = n.attr("perm", None)
    perm = list(range(len(xs)))[::-1] if perm is None else [int(p) for p in perm]
    return [([xs[p] for p in perm], None, dt)]


def _r_flatten(t: SymbolTable, n: Node) -> list[Out]:
    x = n.input(0)
    xs = t._s(x)
    dt = t._dt(x)
    if xs is None:
        return [([None, None], None, dt)]
    axis = int(n.attr("axis", 1))
    if axis < 0:
        axis += len(xs)
    return [([t._prod(xs[:axis]), t._prod(xs[axis:])], None, dt)]


def _r_reduce(t: SymbolTable, n: Node) -> list[Out]:
    x = n.input(0)
    xs = t._s(x)
    dt = t._dt(x)
    keep = int(n.attr("keepdims", 1))
    if xs is None:
        return [(None, None, dt)]
    r = len(xs)
    axes = _axes_of(t, n)
    if axes is None:
        return [([None] * r, None, dt) if keep else (None, None, dt)]
    if not axes:
        if int(n.attr("noop_with_empty_axes", 0)):
            return [(list(xs), None, dt)]
        axes = list(range(r))
    red = {_norm_axis(a, r) for a in axes}
    if keep:
        return [([ONE if i in red else d for i, d in enumerate(xs)], None, dt)]
    return [([d for i, d in enumerate(xs) if i not in red], None, dt)]


def _r_argmax(t: SymbolTable, n: Node) -> list[Out]:
    xs = t._s(n.input(0))
    if xs is None:
        return [(None, None, _INT64)]
    ax = _norm_axis(n.attr("axis", 0), len(xs))
    if int(n.attr("keepdims", 1)):
        return [([ONE if i == ax else d for i, d in enumerate(xs)], None, _INT64)]
    return [([d for i, d in enumerate(xs) if i != ax], None, _INT64)]


def _r_split(t: SymbolTable, n: Node) -> list[Out]:
    x = n.input(0)
    xs = t._s(x)
    dt = t._dt(x)
    k = len(n._outputs)
    if xs is None:
        return [(None, None, dt)] * k
    ax = _norm_axis(n.attr("axis", 0), len(xs))
    split = n.attr("split", None)
    sizes: list[SymExpr | None]
    if split is not None:
        sizes = [SymExpr.const(int(s)) for s in split]
    elif n.input(1) is not None:
        sv = t._v(n.input(1))
        sizes = list(sv) if sv is not None else [None] * k
    else:
        d = xs[ax]
        num = int(n.attr("num_outputs", k))
        if d.c is not None:
            chunk = -(-d.c // num)
            sizes = [SymExpr.const(min(chunk, max(d.c - i * chunk, 0))) for i in range(num)]
        elif t._opset < 18:
            sizes = [d._floordiv_const(num)] * num  # the spec requires an even split
        else:
            chunk_e = (d + (num - 1))._floordiv_const(num)
            sizes = [chunk_e] * (num - 1) + [d - (num - 1) * chunk_e]
    outs: list[Out] = []
    for i in range(k):
        dims: list[SymExpr | None] = list(xs)
        dims[ax] = sizes[i] if i < len(sizes) else None
        outs.append((dims, None, dt))
    return outs


def _conv_like(t: SymbolTable, n: Node, channels: SymExpr | None, kernel: list[int | None]) -> list | None:
    xs = t._s(n.input(0))
    if xs is None or len(xs) < 3:
        return None
    sp = len(xs) - 2
    strides = [int(s) for s in (n.attr("strides", None) or [1] * sp)]
    dil = [int(s) for s in (n.attr("dilations", None) or [1] * sp)]
    pads = [int(s) for s in (n.attr("pads", None) or [0] * (2 * sp))]
    auto = _attr_str(n, "auto_pad", "NOTSET")
    ceil_mode = int(n.attr("ceil_mode", 0))
    dims: list[SymExpr | None] = [xs[0], channels]
    for i in range(sp):
        d = xs[2 + i]
        s = strides[i]
        k = kernel[i] if i < len(kernel) else None
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            dims.append((d + (s - 1))._floordiv_const(s))
            continue
        if k is None:
            dims.append(None)
            continue
        pb, pe = (0, 0) if auto == "VALID" else (pads[i], pads[i + sp])
        num = d + (pb + pe - dil[i] * (k - 1) - 1)
        if ceil_mode:
            if num.c is None:
                dims.append(None)  # ceil_mode drops a last window starting in the padding: leave to onnx
                continue
            out = -(-num.c // s) + 1
            if (out - 1) * s >= d.c + pb:  # type: ignore[operator]
                out -= 1
            dims.append(SymExpr.const(out))
            continue
        dims.append(num._floordiv_const(s) + 1)
    return dims


def _r_conv(t: SymbolTable, n: Node) -> list[Out]:
    dt = t._dt(n.input(0))
    ws = t._s(n.input(1))
    ks = n.attr("kernel_shape", None)
    kernel: list[int | None] = [int(k) for k in ks] if ks is not None else (
        [d.c for d in ws[2:]] if ws is not None else [])
    dims = _conv_like(t, n, ws[0] if ws is not None else None, kernel)
    return [(dims, None, dt)]


def _r_pool(t: SymbolTable, n: Node) -> list[Out]:
    x = n.input(0)
    xs = t._s(x)
    dt = t._dt(x)
    ks = n.attr("kernel_shape", None)
    dims = _conv_like(t, n, xs[1] if xs is not None and len(xs) > 1 else None,
                      [int(k) for k in ks] if ks is not None else [])
    return [(dims, None, dt), (dims, None, _INT64)]


def _r_global_pool(t: SymbolTable, n: Node) -> list[Out]:
    x = n.input(0)
    xs = t._s(x)
    if xs is None or len(xs) < 2:
        return [(None, None, t._dt(x))]
    return [([xs[0], xs[1]] + [ONE] * (len(xs) - 2), None, t._dt(x))]


def _r_pad(t: SymbolTable, n: Node) -> list[Out]:
    x = n.input(0)
    xs = t._s(x)
    dt = t._dt(x)
    if xs is None:
        return [(None, None, dt)]
    r = len(xs)
    pa = n.attr("pads", None)
    pads: tuple[SymExpr, ...] | None
    pads = tuple(SymExpr.const(int(p)) for p in pa) if pa is not None else t._v(n.input(1))
    axes = list(range(r)) if n.input(3) is None else t._ints(n.input(3))
    if pads is None or axes is None or len(pads) != 2 * len(axes):
        return [([None] * r, None, dt)]
    dims: list[SymExpr | None] = list(xs)
    na = len(axes)
    for j, a in enumerate(axes):
        a = _norm_axis(a, r)
        dims[a] = xs[a] + pads[j] + pads[j + na]
    return [(dims, None, dt)]


def _r_topk(t: SymbolTable, n: Node) -> list[Out]:
    x = n.input(0)
    xs = t._s(x)
    dt = t._dt(x)
    kv = t._v(n.input(1)) if n.input(1) is not None else (SymExpr.const(int(n.attr("k"))),)
    if xs is None:
        return [(None, None, dt), (None, None, _INT64)]
    ax = _norm_axis(n.attr("axis", -1), len(xs))
    dims: list[SymExpr | None] = list(xs)
    dims[ax] = kv[0] if kv is not None and len(kv) == 1 else None
    return [(dims, None, dt), (list(dims), None, _INT64)]


def _r_nonzero(t: SymbolTable, n: Node) -> list[Out]:
    xs = t._s(n.input(0))
    return [([SymExpr.const(len(xs)) if xs is not None else None, None], None, _INT64)]


def _r_layernorm(t: SymbolTable, n: Node) -> list[Out]:
    x = n.input(0)
    xs = t._s(x)
    dt = t._dt(x)
    if xs is None:
        return [(None, None, dt)]
    ax = _norm_axis(n.attr("axis", -1), len(xs))
    stat = list(xs[:ax]) + [ONE] * (len(xs) - ax)
    return [(list(xs), None, dt), (stat, None, None), (list(stat), None, None)]


def _r_dropout(t: SymbolTable, n: Node) -> list[Out]:
    x = n.input(0)
    xs = t._s(x)
    d = None if xs is None else list(xs)
    return [(d, None, t._dt(x)), (d, None, _BOOL)]


def _r_gather_elements(t: SymbolTable, n: Node) -> list[Out]:
    s = t._s(n.input(1))
    return [(None if s is None else list(s), None, t._dt(n.input(0)))]


def _r_if(t: SymbolTable, n: Node) -> list[Out] | None:
    tg, eg = n.attr("then_branch", None), n.attr("else_branch", None)
    if not isinstance(tg, Graph) or not isinstance(eg, Graph):
        return None
    cv = t._v(n.input(0))
    if cv is not None and len(cv) == 1 and cv[0].c is not None:
        g = tg if cv[0].c else eg
        return [(None if t._s(o) is None else list(t._s(o)), t._v(o), t._dt(o))  # type: ignore[arg-type]
                for o in g._outputs]
    outs: list[Out] = []
    for a, b in zip(tg._outputs, eg._outputs):
        sa, sb = t._s(a), t._s(b)
        dt = t._dt(a) or t._dt(b)
        if sa is None or sb is None or len(sa) != len(sb):
            outs.append((None, None, dt))
            continue
        dims = [x if x == y else None for x, y in zip(sa, sb)]
        va, vb = t._v(a), t._v(b)
        outs.append((dims, va if va is not None and va == vb else None, dt))
    return outs


def _carried(t: SymbolTable, init: Value | None, bin_: Value | None, bout: Value | None) -> Out:
    """A loop-carried value's final shape: dims that the body keeps (output dim = input dim) or that are the
    same constant before and after every iteration."""
    si, sbi, so = t._s(init), t._s(bin_), t._s(bout)
    dt = t._dt(init) or t._dt(bout)
    if si is None or so is None or len(si) != len(so):
        return (None, None, dt)
    dims: list[SymExpr | None] = []
    for i, (a, o) in enumerate(zip(si, so)):
        if o.c is not None and a == o:
            dims.append(a)
        elif sbi is not None and len(sbi) == len(so) and o == sbi[i]:
            dims.append(a)
        else:
            dims.append(None)
    return (dims, None, dt)


def _r_loop(t: SymbolTable, n: Node) -> list[Out] | None:
    body = n.attr("body", None)
    if not isinstance(body, Graph):
        return None
    nc = len(n._inputs) - 2
    bo = body._outputs
    bi = body._inputs
    outs: list[Out] = []
    for j in range(nc):
        outs.append(_carried(t, n.input(2 + j), bi[2 + j] if 2 + j < len(bi) else None,
                             bo[1 + j] if 1 + j < len(bo) else None))
    for o in bo[1 + nc:]:
        so = t._s(o)
        outs.append((None if so is None else [None] + list(so), None, t._dt(o)))
    return outs


def _r_scan(t: SymbolTable, n: Node) -> list[Out] | None:
    body = n.attr("body", None)
    if not isinstance(body, Graph) or t._opset < 9:
        return None
    m = int(n.attr("num_scan_inputs", 0))
    ns = len(n._inputs) - m
    bo, bi = body._outputs, body._inputs
    outs: list[Out] = []
    for j in range(ns):
        outs.append(_carried(t, n.input(j), bi[j] if j < len(bi) else None, bo[j] if j < len(bo) else None))
    seq: SymExpr | None = None
    first = n.input(ns)
    fs = t._s(first)
    in_axes = list(n.attr("scan_input_axes", None) or [0] * m)
    if fs is not None and in_axes:
        seq = fs[_norm_axis(in_axes[0], len(fs))]
    out_axes = list(n.attr("scan_output_axes", None) or [0] * (len(bo) - ns))
    for k, o in enumerate(bo[ns:]):
        so = t._s(o)
        if so is None:
            outs.append((None, None, t._dt(o)))
            continue
        dims: list[SymExpr | None] = list(so)
        ax = out_axes[k] if k < len(out_axes) else 0
        ax = ax + len(so) + 1 if ax < 0 else ax
        dims.insert(ax, seq)
        outs.append((dims, None, t._dt(o)))
    return outs


_RULES: dict[str, Callable[[SymbolTable, Node], list[Out] | None]] = {}
for _op in ("Add", "Sub", "Mul", "Div", "Mod", "Max", "Min", "Sum", "Pow", "PRelu", "BitShift", "Mean",
            "BitwiseAnd", "BitwiseOr", "BitwiseXor"):
    _RULES[_op] = _r_binary
for _op in ("Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"):
    _RULES[_op] = _r_compare
for _op in ("Not", "And", "Or", "Xor"):
    _RULES[_op] = _r_logic
for _op in ("Relu", "Sigmoid", "Tanh", "Exp", "Log", "Sqrt", "Erf", "Softmax", "LogSoftmax", "Hardmax", "Gelu",
            "LeakyRelu", "Elu", "Selu", "Celu", "HardSigmoid", "HardSwish", "Softplus", "Softsign", "Clip",
            "Floor", "Ceil", "Round", "Reciprocal", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh",
            "Asinh", "Acosh", "Atanh", "Sign", "Mish", "Shrink", "ThresholdedRelu", "BatchNormalization",
            "InstanceNormalization", "LRN", "CumSum", "Trilu", "ScatterElements", "ScatterND", "Scatter",
            "MeanVarianceNormalization", "GroupNormalization", "RMSNormalization", "BitwiseNot", "Swish"):
    _RULES[_op] = _r_same
for _op in ("IsNaN", "IsInf", "QuantizeLinear", "DequantizeLinear"):
    _RULES[_op] = _r_same_shape
for _op in ("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
            "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"):
    _RULES[_op] = _r_reduce
for _op in ("MaxPool", "AveragePool", "LpPool"):
    _RULES[_op] = _r_pool
for _op in ("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"):
    _RULES[_op] = _r_global_pool
_RULES.update({
    "Neg": _r_unary_val, "Abs": _r_unary_val, "Identity": _r_identity, "Constant": _r_constant,
    "Shape": _r_shape, "Size": _r_size, "Cast": _r_cast, "CastLike": _r_cast, "Gather": _r_gather,
    "Slice": _r_slice, "Concat": _r_concat, "Unsqueeze": _r_unsqueeze, "Squeeze": _r_squeeze,
    "Reshape": _r_reshape, "Expand": _r_expand, "ConstantOfShape": _r_constant_of_shape, "Range": _r_range,
    "Tile": _r_tile, "Where": _r_where, "MatMul": _r_matmul, "Gemm": _r_gemm, "Transpose": _r_transpose,
    "Flatten": _r_flatten, "ArgMax": _r_argmax, "ArgMin": _r_argmax, "Split": _r_split, "Conv": _r_conv,
    "Pad": _r_pad, "TopK": _r_topk, "NonZero": _r_nonzero, "LayerNormalization": _r_layernorm,
    "Dropout": _r_dropout, "GatherElements": _r_gather_elements, "If": _r_if, "Loop": _r_loop, "Scan": _r_scan,
})
del _op

__all__ = ["ONE", "ZERO", "ShapeSymbol", "SymExpr", "SymbolTable", "SymbolicShape", "UNKNOWN_RANK"]
