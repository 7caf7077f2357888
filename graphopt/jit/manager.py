"""The pass protocol (Pass, PassResult, options) and the PassManager that runs a pipeline to a fixed point.

The JIT layer defines what a pass is and runs it; the built-in passes live in :mod:`graphopt.passes` (above this
layer) and plug in through the context's registry, like third-party passes do.

A pass mutates the model in place through the IR's methods and returns an honest :class:`PassResult`. The manager
times each pass, counts the nodes it removed, added and rewrote (the IR tracks them), rolls a failing pass back
through the IR's journal (no graph clone), records the failure and goes on, unless the pipeline is strict.

Rounds after the first cost what changed, not the size of the model: the manager follows the model's
:class:`~graphopt.ir.core.ChangeLog` and tells each pass, through ``ctx.changes`` (a :class:`Changes`), which nodes
changed since that pass last ran (edited, added, or next to a removal, and those whose inferred shapes changed);
a pass that can limits its work to them. When a pass declares ``uses_symbols``, the context's shape symbols are
inferred for the whole model once, before the first pass (every pass then sees the closure of the unifications
the graph forces); a later unification anywhere makes every pass look at everything again. The cyclic garbage
collector is paused for the whole run (it would rescan the big, long-lived model again and again); the IR's
invariants are checked after a pass only with ``verify_each``.
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
from ..ir.core import ChangeLog, ChangeTracker, Model, Node
from ..ir.verify import verify

if TYPE_CHECKING:
    from .context import JitContext

_log = logging.getLogger(__name__)

KINDS = ("cleanup", "folding", "fusion", "analysis")


class Changes:
    """What changed in the model since a pass last ran, for a pass that limits its work to it.

    ``full``: the pass has not run on this model yet in this pipeline, or something changed everywhere (a new
    unification of shape symbols): look at everything. Else ``nodes`` holds every node added or edited since
    (inputs, attributes, names), every node next to a change (the producer of a value that lost a reader, the few
    readers left), and every node whose inferred shapes changed; some may have been removed since
    (:meth:`alive` skips them); ``values`` holds the initializers added, given another tensor or left with a
    reader less. A pass whose decision at a node depends only on the node, its inputs' producers
    and its inferred facts finds every new opportunity among these nodes and the readers of their outputs
    (:meth:`frontier`).
    """

    __slots__ = ("full", "nodes", "values")

    def __init__(self, full: bool = True, nodes: dict[Node, None] | None = None):
        self.full = full
        self.nodes: dict[Node, None] = nodes if nodes is not None else {}
        self.values: dict[Any, None] = {}  # initializers added, given another tensor, or with a reader less

    def alive(self) -> list[Node]:
        """The changed nodes still in a live graph of the model."""
        return [n for n in self.nodes if _attached(n)]

    def frontier(self) -> dict[Node, None]:
        """The live changed nodes and the live readers of their outputs (subgraph readers included)."""
        out: dict[Node, None] = {}
        for n in self.nodes:
            if not _attached(n):
                continue
            out[n] = None
            for v in n._outputs:
                for u, _ in v._uses:
                    out[u] = None
        return {n: None for n in out if _attached(n)}

    def __repr__(self) -> str:
        return "Changes(full)" if self.full else f"Changes({len(self.nodes)} nodes)"


def _attached(n: Node) -> bool:
    """`n` is in a graph that is part of its model (every owner up the chain alive)."""
    while True:
        g = n.graph
        if g is None or n._erased:
            return False
        o = g.owner
        if o is None:
            return g.model is not None and g.model.graph is g
        n = o


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
    # the pass asks ctx.symbols for shapes: the manager infers them for the whole model before the first pass
    uses_symbols: ClassVar[bool] = False

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
    symbols_seconds: float = 0.0  # inferring every value's shape before the first pass (see Pass.uses_symbols)
    bookkeeping_seconds: float = 0.0  # after each pass: what it changed, handed on; the symbols caught up with it

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
                "symbols_seconds": self.symbols_seconds, "bookkeeping_seconds": self.bookkeeping_seconds,
                "nodes_before": self.nodes_before, "nodes_after": self.nodes_after,
                "warnings": list(self.warnings), "failed": list(self.failed),
                "runs": [r.to_dict() for r in self.passes]}


class PassManager:
    """Runs passes in order, round after round, until a round changes nothing or `max_rounds` is reached."""

    def __init__(self, ctx: JitContext, passes: Sequence[Pass], *, max_rounds: int = 8, strict: bool = False,
                 verify_each: bool = False, on_pass: Callable[[str, int], None] | None = None,
                 fixed_point: bool = True, incremental: bool = True):
        self.ctx = ctx
        self.passes = list(passes)
        self.fixed_point = fixed_point  # False: one round, by request (no "did not converge" warning)
        self.max_rounds = max(1, int(max_rounds)) if fixed_point else 1
        self.strict = strict
        self.verify_each = verify_each
        self.on_pass = on_pass
        # False: every pass looks at the whole model in every round (what incremental runs must equal; tests)
        self.incremental = incremental

    def run(self, model: Model) -> PipelineRecord:
        rec = PipelineRecord(nodes_before=model.num_nodes())
        t0 = time.perf_counter()
        disabled: set[str] = set()
        rnd = 0
        if not self.passes:
            rec.seconds = time.perf_counter() - t0
            rec.nodes_after = rec.nodes_before
            return rec
        ctx = self.ctx
        gc_was = gc.isenabled()
        # Passes allocate many small objects and free most by reference counting; the cyclic collector would only
        # rescan the (large, long-lived) model again and again, between passes as much as inside them.
        gc.disable()
        clog = model.watch()
        self._clog: ChangeLog | None = clog
        symbols = getattr(ctx, "symbols", None)
        self._symbols = symbols if symbols is not None and hasattr(symbols, "take_changed") else None
        # what changed since each pass last ran (none has yet: everything is new)
        self._pending: dict[str, Changes] = {p.name: Changes(full=True) for p in self.passes}
        try:
            if self._symbols is not None and any(getattr(p, "uses_symbols", False) for p in self.passes):
                ts = time.perf_counter()
                with ctx.translators.guard("infer"):
                    self._symbols.complete(model)
                self._symbols.take_changed()
                rec.symbols_seconds = time.perf_counter() - ts
            self._epoch = self._symbols.epoch if self._symbols is not None else 0
            clog.take()
            while True:
                rnd += 1
                any_change = False
                for p in self.passes:
                    if p.name in disabled:
                        continue
                    if self.on_pass is not None:
                        self.on_pass(p.name, rnd)
                    ctx.changes = self._pending[p.name]
                    self._pending[p.name] = Changes(full=not self.incremental)
                    sym = self._symbols
                    if sym is not None:
                        sym.defer_sync = True  # the pass's own edits are caught up with once, after it
                    try:
                        r = self._run_one(p, model, rnd)
                    finally:
                        ctx.changes = None
                        if sym is not None:
                            sym.defer_sync = False
                    tb = time.perf_counter()
                    self._collect(model)
                    rec.bookkeeping_seconds += time.perf_counter() - tb
                    rec.passes.append(r)
                    if r.rolled_back:
                        disabled.add(p.name)
                        rec.failed.append(p.name)
                        msg = (f"pass {p.name!r} failed and was rolled back: "
                               f"{(r.error or {}).get('message', '')}")
                        rec.warnings.append(msg)
                        _log.warning(msg)
                    any_change = any_change or r.changed
                if not any_change or not self.fixed_point:
                    break
                if rnd >= self.max_rounds:
                    rec.converged = False
                    msg = (f"the pipeline did not reach a fixed point in {self.max_rounds} rounds "
                           f"(raise it with --max-rounds)")
                    rec.warnings.append(msg)
                    _log.warning(msg)
                    break
        finally:
            model.unwatch(clog)
            self._clog = None
            if gc_was:
                gc.enable()
        rec.rounds = rnd
        rec.seconds = time.perf_counter() - t0
        rec.nodes_after = model.num_nodes()
        return rec

    def _collect(self, model: Model) -> None:
        """After a pass: hand what it changed (and the shape facts that changed with it) to every pass's next
        run."""
        clog = self._clog
        assert clog is not None
        changed: dict[Node, None] = dict.fromkeys(clog.nodes)
        changed.update(clog.nearby)
        values = dict(clog.values)
        clog.take()
        sym = self._symbols
        if sym is not None and getattr(sym, "_model", None) is model and changed:
            with self.ctx.translators.guard("infer"):
                sym.ensure(model)  # recompute what the edits touched: facts that changed name their nodes
            clog.take()  # (inference does not edit the model; nothing of its own to hand on)
        # nodes the pass removed for good (its journal is closed): free them now, not in a collector's pass
        for n in changed:
            if n.graph is None and n._erased and not n._subgraphs:
                n._release()
        full = False
        if sym is not None and getattr(sym, "_model", None) is model:
            for n in sym.take_changed():
                changed[n] = None
            if sym.epoch != self._epoch:
                self._epoch = sym.epoch
                full = True
        if not changed and not values and not full:
            return
        for ch in self._pending.values():
            if ch.full:
                continue
            if full:
                ch.full = True
                ch.nodes = {}
                ch.values = {}
            else:
                ch.nodes.update(changed)
                ch.values.update(values)

    def _run_one(self, p: Pass, model: Model, rnd: int) -> PassRecord:
        ctx = self.ctx
        tracker = ChangeTracker()
        model._track = tracker
        journal = model.begin_journal()
        m0 = model.mutations
        ctx.current_node = None
        ctx.current_step = None
        t = time.perf_counter()
        # (the cyclic collector is paused: see run(); a pass run on its own pauses it here)
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
                    _log.warning("pass %r reported changed=%s but %s the model", p.name, res.changed,
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
