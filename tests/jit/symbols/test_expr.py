"""The SymExpr algebra (canonical forms, parsing, rendering, exactness) and the dim/shape value types."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from graphopt.jit.symbols import ShapeSymbol, SymbolicShape, SymExpr

S = SymExpr.symbol
C = SymExpr.const
b, s, h = S("batch"), S("seq"), S("heads")


# ------------------------------------------------------------------------------------------------------------------
# SymExpr algebra
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("a, e", [
    (b * s, s * b),
    (2 * h * 64, 128 * h),
    ((s + 1) - 1, s),
    (s * (b + 1), b * s + s),
    ((s + 1) * (s - 1), s * s - 1),
    ((2 * s + 2) // 2, s + 1),
    ((2 * s + 3) // 2, s + 1),
    ((2 * s + 2) // 4, (s + 1) // 2),
    (((s + 1) // 2) // 3, (s + 1) // 6),
    ((b * s * 768) // 768, b * s),
    ((2 * s + 2) % 4, 2 * ((s + 1) % 2)),
    ((4 * s + 3) % 2, C(1)),
    (s - s, C(0)),
])
def test_canonical_forms_equal_and_hash_equal(a: SymExpr, e: SymExpr) -> None:
    assert a == e
    assert hash(a) == hash(e)
    assert str(a) == str(e)


def test_different_expressions_differ() -> None:
    assert b * s != b + s
    assert (s + 1) // 2 != s // 2
    assert s % 2 != s
    assert len({b * s, s * b, s + 1, 1 + s, (s + 1) // 2}) == 3


@pytest.mark.parametrize("e, text", [
    (b * s, "batch*seq"), (s + 1, "seq+1"), ((s + 1) // 2, "(seq+1)//2"), (2 * h * 64, "128*heads"),
    (s - 1, "seq-1"), (-((s + 1) // 2), "-((seq+1)//2)"), (2 * ((s + 1) // 2) + 1, "2*((seq+1)//2)+1"),
    (s // 2 + 1, "seq//2+1"), (s % 2, "seq%2"), (C(7), "7"), (C(-3), "-3"), (5 - s, "-seq+5"),
])
def test_rendering_is_canonical_and_parses_back(e: SymExpr, text: str) -> None:
    assert str(e) == text
    assert SymExpr.parse(text) == e


@pytest.mark.parametrize("bad", ["seq+", "(seq", "seq$2", "2**seq", ""])
def test_parse_rejects_garbage(bad: str) -> None:
    with pytest.raises(ValueError):
        SymExpr.parse(bad)


def test_floordiv_by_monomial_is_exact_or_refused() -> None:
    assert (b * s * 768).floordiv(s) == 768 * b
    assert (b * s + s).floordiv(s) == b + 1
    assert (b * s).floordiv(b + 1) is None
    assert (b * s + 1).floordiv(s) is None
    assert (3 * s).floordiv(2 * s) is None
    with pytest.raises(ValueError):
        _ = (b * s) // (b + s)


def test_truth_value_is_refused() -> None:
    with pytest.raises(TypeError):
        bool(s)


def test_predicates() -> None:
    assert not (s + 2).can_be(1) and not (2 * s).can_be(1) and not (2 * s + 4).can_be(1)
    assert s.can_be(1) and (s - 1).can_be(1) and (b * s).can_be(1)
    assert (s + 1).positive() and not s.positive()
    assert (s // 2).nonneg() and not ((s - 3) // 2).nonneg() and not (s - 1).nonneg()
    assert s.symbol_name == "seq" and (2 * s).symbol_name is None and C(3).c == 3 and s.c is None


def _random_expr(rng: np.random.Generator, depth: int) -> tuple[SymExpr, object]:
    """A random expression and a Python function computing it directly (floor semantics)."""
    names = ["a", "b", "c"]
    if depth == 0 or rng.random() < 0.25:
        if rng.random() < 0.5:
            k = int(rng.integers(-5, 6))
            return C(k), (lambda env, k=k: k)
        nm = names[int(rng.integers(0, 3))]
        return S(nm), (lambda env, nm=nm: env[nm])
    op = ["+", "-", "*", "//", "%"][int(rng.integers(0, 5))]
    x, fx = _random_expr(rng, depth - 1)
    if op in ("//", "%"):
        k = int(rng.integers(1, 7))
        if op == "//":
            return x // k, (lambda env, fx=fx, k=k: fx(env) // k)
        return x % k, (lambda env, fx=fx, k=k: fx(env) % k)
    y, fy = _random_expr(rng, depth - 1)
    if op == "+":
        return x + y, (lambda env, fx=fx, fy=fy: fx(env) + fy(env))
    if op == "-":
        return x - y, (lambda env, fx=fx, fy=fy: fx(env) - fy(env))
    return x * y, (lambda env, fx=fx, fy=fy: fx(env) * fy(env))


def test_canonical_form_is_exact_for_every_binding(rng: np.random.Generator) -> None:
    bindings = [dict(zip("abc", v)) for v in itertools.product([0, 1, 2, 5, 12], repeat=3)]
    for _ in range(300):
        e, f = _random_expr(rng, 4)
        for env in bindings:
            assert e.evaluate(env) == f(env), (str(e), env)  # type: ignore[operator]
        # rendering round-trips to the same canonical expression
        assert SymExpr.parse(str(e)) == e, str(e)


def test_shape_symbol_and_shape_types() -> None:
    assert ShapeSymbol.static(3).is_static and str(ShapeSymbol.static(3)) == "3"
    sy = ShapeSymbol("batch", origin="input x dim 0", kind="input")
    assert sy.expr == b and not sy.is_static
    sh = SymbolicShape.of(["batch", 3, s + 1])
    assert sh.rank == 3 and str(sh) == "[batch, 3, seq+1]" and not sh.is_static()
    assert SymbolicShape.of([2, 3]).static() == (2, 3)
    assert SymbolicShape.of(None).rank is None and str(SymbolicShape.of(None)) == "[*]"
    assert SymbolicShape.of([2]) == SymbolicShape.of([C(2)]) and hash(SymbolicShape.of([b])) == hash(
        SymbolicShape.of(["batch"]))


def test_constants_hash_like_ints() -> None:
    assert C(3) == 3 and hash(C(3)) == hash(3) and hash(C(0)) == hash(0)
    assert {C(3): "x"}[SymExpr.parse("1+2")] == "x"
