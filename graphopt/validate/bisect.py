"""Find the pass that makes the optimized model's outputs differ, by bisection over the pass list.

:func:`bisect` re-runs the pipeline from the original with a prefix of the pass list (halving it each step),
disables the culprit, re-optimizes, re-validates, and repeats if another pass is also at fault.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .results import BisectResult, BisectStep, Culprit, ModelSource, ValidationResult

if TYPE_CHECKING:  # light at import time (graphopt.validate imports this module eagerly)
    from ..ir.core import Model
    from ..jit.context import JitContext
    from ..passes.base import Pass, PipelineRecord
    from .compare import StepCallback, Validator

log = logging.getLogger("graphopt.validate")

def fresh_context(ctx: JitContext, model: Model) -> JitContext:
    """A context for another model with `ctx`'s registries, translators, configuration and pipeline. Symbols
    are per model, so the table is bound to this one (and infers on demand); the rest is shared, not rebuilt
    (plugins are not loaded again, and passes registered by hand, as tests do, stay)."""
    from ..jit.context import JitContext

    new = JitContext()
    new.passes = ctx.passes
    new.rules = ctx.rules
    new.translators = ctx.translators
    new.config = ctx.config
    new.pipeline = list(ctx.pipeline)
    new.plugins = list(ctx.plugins)
    with new.translators.guard("infer"):
        new.symbols.seed(model)
    return new


def optimize_with(ctx: JitContext, model: Model, passes: Sequence[Pass] | None = None,
                  on_pass: Callable[[str, int], None] | None = None) -> PipelineRecord:
    """Run `passes` (default: the context's pipeline) on `model` and, when the configuration asks for it
    (``annotate_shapes``), write the inferred shapes into value_info, as `graphopt optimize` does."""
    record = ctx.run_pipeline(model, passes=None if passes is None else list(passes), on_pass=on_pass)
    if getattr(ctx.config, "annotate_shapes", False) and hasattr(ctx.symbols, "annotate"):
        with ctx.translators.guard("infer"):
            ctx.symbols.annotate(model)
    return record


def bisect(original: ModelSource, ctx: JitContext, validator: Validator, *,
           passes: Sequence[Pass] | None = None, failing: ValidationResult | None = None,
           failing_record: PipelineRecord | None = None, on_step: StepCallback | None = None) -> BisectResult:
    """Find the passes that make the optimized model's outputs differ and optimize without them.

    `passes` (default: the context's pipeline) is known to produce a mismatch (`failing`, with its record
    `failing_record`). Each step reloads the original from `original`, runs a prefix of the pass list in a fresh
    context, and compares; the shortest failing prefix names the culprit (log2(passes) steps). The culprit is
    removed, the remaining pipeline re-run and re-validated, and the search repeats while a mismatch remains (at
    most once per pass). Only the latest candidate model is kept in memory.
    """
    t0 = time.perf_counter()
    remaining = list(ctx.pipeline if passes is None else passes)
    out = BisectResult()
    cache: dict[tuple[str, ...], tuple[ValidationResult, Any]] = {}
    last: dict[str, Any] = {}

    def say(msg: str) -> None:
        log.info("bisect: %s", msg)
        if on_step is not None:
            on_step(msg)

    def attempt(subset: list[Pass], *, need_model: bool = False) -> tuple[ValidationResult, Any]:
        key = tuple(p.name for p in subset)
        if key in cache and (not need_model or last.get("key") == key):
            return cache[key]
        ts = time.perf_counter()
        say(f"trying {len(subset)} pass(es): {', '.join(key) or '(none)'}")
        last.clear()  # drop the previous candidate before loading the next one
        model = original.load()
        c = fresh_context(ctx, model)
        rec = optimize_with(c, model, subset)
        res = validator.compare(model)
        out.steps.append(BisectStep(list(key), res.status, res.first_mismatch, time.perf_counter() - ts))
        cache[key] = (res, rec)
        last.update(key=key, model=model, ctx=c)
        return cache[key]

    if failing is not None:
        cache[tuple(p.name for p in remaining)] = (failing, failing_record)
    final: tuple[ValidationResult, Any] | None = None
    for _ in range(len(remaining) + 1):
        res_full = attempt(remaining)
        if not res_full[0].failed:
            final = attempt(remaining, need_model=True)
            break
        if not remaining:
            final = res_full
            break
        # invariant: prefix `lo` is assumed good (the empty prefix is the round trip), prefix `hi` fails
        lo, hi = 0, len(remaining)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if attempt(remaining[:mid])[0].failed:
                hi = mid
            else:
                lo = mid
        if hi == 1 and attempt([])[0].failed:
            # not a pass: the model differs after a bare load/save round trip
            res0 = cache[()][0]
            out.culprits.append(Culprit("(round trip)", res0.first_mismatch, {}, res0.reason))
            final = attempt([], need_model=True)
            remaining = []
            break
        bad = remaining[hi - 1]
        res_bad, rec_bad = attempt(remaining[:hi])
        stats: dict[str, int] = {}
        if rec_bad is not None:
            stats = dict(rec_bad.summary_by_pass().get(bad.name, {}).get("stats", {}))
        out.culprits.append(Culprit(bad.name, res_bad.first_mismatch, stats, res_bad.reason))
        say(f"culprit: {bad.name} (first differing output: {res_bad.first_mismatch})")
        remaining = [p for p in remaining if p is not bad]
    assert final is not None
    out.resolved = final[0].passed
    out.passes = [p.name for p in remaining]
    out.model, out.ctx = last.get("model"), last.get("ctx")
    out.record, out.validation = final[1], final[0]
    out.seconds = time.perf_counter() - t0
    return out
