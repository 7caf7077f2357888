"""The JIT context and its four init steps.

``init()`` builds a :class:`JitContext` in four steps, in this order, each logged on one line and recorded for
the report:

1. submodule: the registries (passes, fusion rules), filled with the built-in passes and rules and with the passes
   that installed plugins declare in the ``graphopt.passes`` entry-point group;
2. translators: the table that turns foreign exceptions into graphopt errors;
3. symbols: the shape-symbol table, bound to the model and seeded from its inputs; shapes are inferred on demand
   (what a pass asks for, kept current as passes edit the model), or for every value at once with
   ``infer_symbols=True`` (``graphopt inspect``);
4. pipeline: the pass list, from preset, config file and flags, with options applied.

All state lives in the context: two contexts can live side by side with different registries.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..ir.core import Model, Node
from .registry import PassRegistry, RuleRegistry, load_plugins, resolve_ref
from .symbols import SymbolTable
from .translators import TranslatorRegistry, install_defaults

log = logging.getLogger("graphopt.jit")

STEPS = ("submodule", "translators", "symbols", "pipeline")

# What step 1 registers before any plugin: graphopt's own passes and fusion rules, as a "module:callable" reference.
BUILTINS = "graphopt.passes:register_builtins"


@dataclass
class InitStep:
    """One init step: its name, a one-line summary of what it set up, details for the report, and its time."""

    index: int
    name: str
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "summary": self.summary, "details": self.details,
                "seconds": self.seconds}


class JitContext:
    """All of graphopt's JIT state: registries, translators, symbols, pipeline configuration."""

    def __init__(self) -> None:
        from ..pipeline import PipelineConfig

        self.passes = PassRegistry()
        self.rules = RuleRegistry()
        self.translators = TranslatorRegistry()
        self.symbols = SymbolTable()
        self.config = PipelineConfig()
        self.pipeline: list[Any] = []
        self.init_steps: list[InitStep] = []
        self.warnings: list[str] = []
        self.plugins: list[str] = []
        # breadcrumbs a pass may leave so that its failure names the node and the step
        self.current_node: Node | None = None
        self.current_step: str | None = None
        # set by the PassManager while a pass runs: what changed since that pass last ran (jit.manager.Changes);
        # None means "look at everything"
        self.changes: Any = None
        self.meta: dict[str, Any] = {}

    # -- running -----------------------------------------------------------------------------------------------
    def run_pipeline(self, model: Model, *, on_pass: Any = None, passes: list[Any] | None = None,
                     incremental: bool = True) -> Any:
        """Run the configured pipeline (or `passes`) on `model` to a fixed point; returns the PipelineRecord.
        `incremental=False` makes every pass look at the whole model in every round (for comparison)."""
        from .manager import PassManager

        pm = PassManager(self, self.pipeline if passes is None else passes, max_rounds=self.config.max_rounds,
                         strict=self.config.strict, verify_each=self.config.verify_each, on_pass=on_pass,
                         incremental=incremental)
        return pm.run(model)

    def step(self, name: str) -> InitStep | None:
        for s in self.init_steps:
            if s.name == name:
                return s
        return None

    def _record(self, index: int, name: str, summary: str, details: dict[str, Any], t0: float) -> None:
        st = InitStep(index, name, summary, details, time.perf_counter() - t0)
        self.init_steps.append(st)
        log.info("jit init %d/4 %s: %s", index, name, summary)


def init(model: Model | None = None, config: Any = None, *, plugins: bool = True,
         entry_points: Iterable[Any] | None = None, builtins: bool = True,
         infer_symbols: bool | None = None) -> JitContext:
    """Build a JitContext in four steps: submodule, translators, symbols, pipeline.

    `config` is a :class:`~graphopt.pipeline.PipelineConfig` (default: the O2 preset). `entry_points` replaces the
    installed ``graphopt.passes`` entry points (tests use it); `plugins=False` skips them. Symbols are inferred on
    demand unless `infer_symbols` is True (every value now) or False (the table is not even bound to the model).
    """
    from ..pipeline import PipelineConfig, resolve

    ctx = JitContext()

    # 1. submodule ------------------------------------------------------------------------------------------------
    t0 = time.perf_counter()
    if builtins:
        # the built-in passes are the first plugin: loaded by reference, like an entry point, so that this layer
        # never imports the passes package (which imports it)
        resolve_ref(BUILTINS)(ctx)
    n_builtin = len(ctx.passes)
    loaded: list[str] = []
    if plugins:
        loaded, warns = load_plugins(ctx, entry_points)
        ctx.warnings.extend(warns)
    ctx.plugins = loaded
    ctx._record(1, "submodule",
                f"{len(ctx.passes)} passes ({n_builtin} built-in, {len(ctx.passes) - n_builtin} from "
                f"{len(loaded)} plugin(s)), {len(ctx.rules)} fusion rules",
                {"passes": ctx.passes.names(), "plugins": loaded, "rules": len(ctx.rules),
                 "plugin_warnings": [w for w in ctx.warnings]}, t0)

    # 2. translators ------------------------------------------------------------------------------------------------
    t0 = time.perf_counter()
    install_defaults(ctx.translators)
    names = ctx.translators.names()
    n_ort = sum(1 for n in names if n.startswith("onnxruntime."))
    ctx._record(2, "translators",
                f"{len(names)} exception translators (protobuf, onnx checker and shape inference, "
                f"{n_ort} onnxruntime error classes, OS, memory)", {"translators": names}, t0)

    # 3. symbols --------------------------------------------------------------------------------------------------
    t0 = time.perf_counter()
    details: dict[str, Any] = {}
    if model is not None and infer_symbols is not False:
        with ctx.translators.guard("infer"):
            if infer_symbols:
                details = dict(ctx.symbols.infer(model) or {})
            else:
                ctx.symbols.seed(model)
                details = {"inference": "on demand", "input_symbols": [s.name for s in ctx.symbols.symbols()]}
        summary = ctx.symbols.describe() if hasattr(ctx.symbols, "describe") else "symbol table ready"
    elif model is not None:
        summary = "symbol inference off"
    else:
        summary = "no model yet: empty symbol table"
    ctx._record(3, "symbols", summary, details, t0)

    # 4. pipeline ---------------------------------------------------------------------------------------------------
    t0 = time.perf_counter()
    cfg = config if config is not None else PipelineConfig()
    ctx.config = cfg
    ctx.pipeline = resolve(cfg, ctx.passes)
    plan = ", ".join(p.name for p in ctx.pipeline) or "(none)"
    what = "passes " + ",".join(cfg.passes) if cfg.passes is not None else f"preset -{cfg.preset.upper().lstrip('-')}"
    ctx._record(4, "pipeline",
                f"{what}: {len(ctx.pipeline)} passes [{plan}], at most {cfg.max_rounds} rounds"
                + (f", skipping {', '.join(cfg.skip)}" if cfg.skip else "") + (", strict" if cfg.strict else ""),
                {"preset": cfg.preset, "passes": [p.name for p in ctx.pipeline],
                 "options": {p.name: p.options() for p in ctx.pipeline}, "max_rounds": cfg.max_rounds,
                 "strict": cfg.strict, "sources": list(cfg.sources)}, t0)
    return ctx
