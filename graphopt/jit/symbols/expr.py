"""The shape-expression algebra: :class:`SymExpr`, its parser and rendering, and the dim/shape types built on it.

* :class:`SymExpr` is a small normalized expression type for the shape arithmetic exporters emit: sums of products
  of symbols with integer coefficients, plus floor-division and modulo by positive constants (no sympy). Its
  canonical form makes equal expressions compare and hash equal: ``batch*seq``, ``seq+1``, ``(seq+1)//2``,
  ``2*heads*64 == 128*heads``. Symbols stand for dimensions, so they are never negative.
* :class:`ShapeSymbol` is one dimension: a static size or a named symbol (the model's dim_param, or a fresh
  ``unk_N`` for an unknown dim, numbered in graph order and never assumed equal to anything).
* :class:`SymbolicShape` is a rank that may be unknown and a tuple of dims, each a :class:`SymExpr`.

Nothing here knows about graphs: the algebra is tested on its own.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

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

    __slots__ = ("dims", "_cc")

    def __init__(self, dims: tuple[SymExpr, ...] | None) -> None:
        self.dims = dims
        self._cc: Any = None  # a symbol table's canonical form of this shape, with the table's token

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
