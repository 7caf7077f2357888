"""Helpers for the rewrite tests: run one rule (or the fuse pass), check structure, numbers and Fail reasons."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from graphopt.ir import serde
from graphopt.ir.core import Model
from graphopt.jit import init
from graphopt.pipeline import PipelineConfig
from graphopt.rewrite.driver import ExplainReport, explain
from graphopt.testing import assert_same_outputs, assert_valid, count_ops, from_text, run_pass, snapshot


def ctx_for(model: Model | None = None) -> Any:
    return init(model, PipelineConfig(passes=[]), plugins=False)


def fuse(model: Model, rules: Sequence[str] | None = None, **opts: Any) -> dict[str, int]:
    """Run the fuse pass once (strict, verified); returns its stats. `rules` restricts it to those rules."""
    if rules is not None:
        opts["rules"] = tuple(rules)
    rec = run_pass(model, "fuse", **opts)
    (r,) = rec.passes
    assert r.changed == bool(r.stats.get("rewrites")), "changed must follow the rewrites"
    return r.stats


def check_fuses(text: str, inits: Mapping[str, Any], rule: str, expect: Mapping[str, int], *,
                bindings: Sequence[Mapping[str, int]] | None = None, rtol: float = 1e-4, atol: float = 1e-5,
                fires: int = 1, level: str = "portable") -> Model:
    """Build, fuse with `rule` alone, and check: it fired `fires` times, the op counts are `expect` exactly, the
    model is valid, onnxruntime gives the same outputs, and a second run changes nothing."""
    m = from_text(text, inits)
    before = snapshot(m)
    stats = fuse(m, [rule], level=level)
    assert stats.get(rule, 0) == fires, (stats, explain_reasons(serde.loads(before), rule))
    assert dict(count_ops(m)) == dict(expect), dict(count_ops(m))
    assert_valid(m)
    assert_same_outputs(before, m, bindings=bindings, rtol=rtol, atol=atol)
    again = fuse(m, [rule], level=level)
    assert again == {}, f"second run changed something: {again}"
    return m


def explain_reasons(model: Model, rule: str) -> list[str]:
    """The Fail reasons (or "fired") per candidate root node, for `rule` alone on a copy of `model`."""
    rep = explain_report(model, rule)
    return [c.reason for c in rep.candidates] + ([rep.opset_reason] if rep.opset_reason else [])


def explain_report(model: Model, rule: str) -> ExplainReport:
    copy = serde.loads(snapshot(model))
    ctx = ctx_for(copy)
    return explain(copy, ctx.rules.get(rule), jit=ctx)


def check_not_fused(text: str, inits: Mapping[str, Any], rule: str, reason: str) -> Model:
    """The rule must not fire, the model must be unchanged, and some candidate's Fail reason contains `reason`."""
    m = from_text(text, inits)
    before = snapshot(m)
    reasons = explain_reasons(m, rule)
    assert any(reason in r for r in reasons), f"{reason!r} not in {reasons}"
    assert "fired" not in reasons
    stats = fuse(m, [rule], level="aggressive")
    assert stats == {}
    assert snapshot(m) == before
    return m
