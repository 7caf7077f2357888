"""The pass protocol (Pass, PassResult, options) and the PassManager that runs a pipeline to a fixed point.

The JIT layer defines what a pass is and runs it; the built-in passes live in :mod:`graphopt.passes` (above this
layer) and plug in through the context's registry, like third-party passes do.

A pass mutates the model in place through the IR's methods and returns an honest :class:`PassResult`. The manager
times each pass, counts the nodes it removed, added and rewrote (the IR tracks them), rolls a failing pass back
through the IR's journal (no graph clone), records the failure and goes on, unless the pipeline is strict.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import GraphoptError, PassError
from ..ir.core import ChangeTracker, Model, Node
from ..ir.verify import verify

if TYPE_CHECKING:
    from .context import JitContext

log = logging.getLogger(__name__)

KINDS = ("cleanup", "folding", "fusion", "analysis")


@dataclass
class PassResult:
    """What a pass did. `changed` must be true exactly when the pass mutated the model."""

    changed: bool = False
    stats: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, **counts: int) -> PassResult:
        """A result whose `changed` is derived from the counts (any non-zero count means a change)."""
        return cls(changed=any(v for v in counts.values()), stats={k: int(v) for k, v in counts.items() if v})


@dataclass(frozen=True)
class OptionInfo:
    name: str
    type: str
    default: Any
    help: str


@dataclass(frozen=True)
class Pass:
    """Base class of passes. Options are dataclass fields with defaults; `graphopt passes` lists them.

    Subclasses set `name` (the registry key and CLI name), `kind` (cleanup, folding, fusion, analysis), a one-line
    `summary`, and `presets` (which of O1, O2, O3 include the pass).
    """

    name: ClassVar[str] = ""
    kind: ClassVar[str] = "cleanup"
    summary: ClassVar[str] = ""
    presets: ClassVar[frozenset[str]] = frozenset()

    def run(self, model: Model, ctx: JitContext) -> PassResult:
        raise NotImplementedError

    @classmethod
    def option_infos(cls) -> list[OptionInfo]:
        out = []
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else None)  # type: ignore[misc]
            t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
            out.append(OptionInfo(f.name, str(t), default, str(f.metadata.get("help", ""))))
        return out

    def options(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def option(default: Any, help: str) -> Any:
    """A pass option with a default and a line of help (shown by `graphopt passes`)."""
    return field(default=default, metadata={"help": help})


# ----------------------------------------------------------------------------------------------------------------
@dataclass
class PassRecord:
    """One run of one pass."""

    name: str
    round: int
    seconds: float
    changed: bool
    removed: int = 0
    added: int = 0
    rewritten: int = 0
    rolled_back: bool = False
    error: dict[str, Any] | None = None
    stats: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class PipelineRecord:
    """What the whole pipeline did; feeds the report."""

    passes: list[PassRecord] = field(default_factory=list)
    rounds: int = 0
    converged: bool = True
    seconds: float = 0.0
    nodes_before: int = 0
    nodes_after: int = 0
    warnings: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def summary_by_pass(self) -> dict[str, dict[str, Any]]:
        """Per pass name: total time, removed, added, rewritten, runs, whether it was ever rolled back."""
        out: dict[str, dict[str, Any]] = {}
        for r in self.passes:
            d = out.setdefault(r.name, {"seconds": 0.0, "removed": 0, "added": 0, "rewritten": 0, "runs": 0,
                                        "changed_runs": 0, "rolled_back": False, "error": None, "stats": {}})
            d["seconds"] += r.seconds
            d["removed"] += r.removed
            d["added"] += r.added
            d["rewritten"] += r.rewritten
            d["runs"] += 1
            d["changed_runs"] += int(r.changed)
            d["rolled_back"] = d["rolled_back"] or r.rolled_back
            if r.error and d["error"] is None:
                d["error"] = r.error
            for k, v in r.stats.items():
                d["stats"][k] = d["stats"].get(k, 0) + v
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"rounds": self.rounds, "converged": self.converged, "seconds": self.seconds,
                "nodes_before": self.nodes_before, "nodes_after": self.nodes_after,
                "warnings": list(self.warnings), "failed": list(self.failed),
                "runs": [r.to_dict() for r in self.passes]}


class PassManager:
    """Runs passes in order, round after round, until a round changes nothing or `max_rounds` is reached."""

    def __init__(self, ctx: JitContext, passes: Sequence[Pass], *, max_rounds: int = 8, strict: bool = False,
                 verify_each: bool = False, on_pass: Callable[[str, int], None] | None = None,
                 fixed_point: bool = True):
        self.ctx = ctx
        self.passes = list(passes)
        self.fixed_point = fixed_point  # False: one round, by request (no "did not converge" warning)
        self.max_rounds = max(1, int(max_rounds)) if fixed_point else 1
        self.strict = strict
        self.verify_each = verify_each
        self.on_pass = on_pass

    def run(self, model: Model) -> PipelineRecord:
        rec = PipelineRecord(nodes_before=model.num_nodes())
        t0 = time.perf_counter()
        disabled: set[str] = set()
        rnd = 0
        if self.passes:
            while True:
                rnd += 1
                any_change = False
                for p in self.passes:
                    if p.name in disabled:
                        continue
                    if self.on_pass is not None:
                        self.on_pass(p.name, rnd)
                    r = self._run_one(p, model, rnd)
                    rec.passes.append(r)
                    if r.rolled_back:
                        disabled.add(p.name)
                        rec.failed.append(p.name)
                        msg = (f"pass {p.name!r} failed and was rolled back: "
                               f"{(r.error or {}).get('message', '')}")
                        rec.warnings.append(msg)
                        log.warning(msg)
                    any_change = any_change or r.changed
                if not any_change or not self.fixed_point:
                    break
                if rnd >= self.max_rounds:
                    rec.converged = False
                    msg = (f"the pipeline did not reach a fixed point in {self.max_rounds} rounds "
                           f"(raise it with --max-rounds)")
                    rec.warnings.append(msg)
                    log.warning(msg)
                    break
        rec.rounds = rnd
        rec.seconds = time.perf_counter() - t0
        rec.nodes_after = model.num_nodes()
        return rec

    def _run_one(self, p: Pass, model: Model, rnd: int) -> PassRecord:
        ctx = self.ctx
        tracker = ChangeTracker()
        model._track = tracker
        journal = model.begin_journal()
        m0 = model.mutations
        ctx.current_node = None
        ctx.current_step = None
        t = time.perf_counter()
        # A pass allocates many small objects and frees most by reference counting; the cyclic collector would
        # only rescan the (large, long-lived) model again and again. It runs again between passes.
        gc_was = gc.isenabled()
        gc.disable()
        try:
            res = p.run(model, ctx)
            if not isinstance(res, PassResult):
                raise TypeError(f"pass {p.name!r} returned {type(res).__name__}, not PassResult")
            if self.verify_each:
                problems = verify(model, strict=False)
                if problems:
                    raise PassError(f"pass {p.name!r} left an inconsistent graph: {problems[0]}"
                                    + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
                                    pass_name=p.name)
                mutated = model.mutations != m0
                if mutated != res.changed:
                    log.warning("pass %r reported changed=%s but %s the model", p.name, res.changed,
                                "mutated" if mutated else "did not mutate")
        except (KeyboardInterrupt, SystemExit):
            model.rollback(journal)
            model._track = None
            raise
        except BaseException as e:  # noqa: BLE001 - a failing pass is rolled back and reported, never fatal
            secs = time.perf_counter() - t
            model.rollback(journal)
            model._track = None
            err = self._pass_error(p, e)
            if self.strict:
                raise err from e
            return PassRecord(p.name, rnd, secs, False, rolled_back=True, error=err.to_dict())
        finally:
            model.end_journal()
            if gc_was:
                gc.enable()
        secs = time.perf_counter() - t
        model._track = None
        changed = bool(res.changed) or model.mutations != m0 and bool(
            tracker.added or tracker.removed or tracker.touched)
        return PassRecord(p.name, rnd, secs, changed, removed=tracker.removed, added=len(tracker.added),
                          rewritten=tracker.rewritten(), stats=dict(res.stats))

    def _pass_error(self, p: Pass, e: BaseException) -> PassError:
        ctx = self.ctx
        node = ctx.current_node
        node_desc = _describe(node) if node is not None else None
        if isinstance(e, PassError) and e.pass_name:
            return e
        if isinstance(e, GraphoptError):
            base_msg = e.message
        else:
            translated = ctx.translators.translate(e, stage="pass")
            base_msg = translated.message if not translated.kind == "internal" else f"{type(e).__name__}: {e}"
        where = f" at {node_desc}" if node_desc else ""
        step = f" ({ctx.current_step})" if ctx.current_step else ""
        err = PassError(f"pass {p.name!r} failed{where}{step}: {base_msg}", pass_name=p.name, node=node_desc,
                        step=ctx.current_step)
        err.__cause__ = e
        if hasattr(e, "add_note"):
            e.add_note(f"while running pass {p.name!r}{where}{step}")
        return err


def _describe(node: Node) -> str:
    name = node.name
    return f"{node.op_type} node {name!r}" if name else f"{node.op_type} node producing " \
        f"{node.outputs[0].name if node.outputs else '?'!r}"
