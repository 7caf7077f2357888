"""The fuse pass: applies the registered fusion rules (graphopt/rewrite/rules/) with the worklist driver.

At -O2 it runs the portable rules (standard ONNX ops, exact math); the O3 preset sets ``level = "aggressive"``,
which adds the runtime-specific rules (onnxruntime contrib ops). ``rules`` / ``skip-rules`` pick rules by name.

In a later run of the pipeline (``ctx.changes``) each rule is tried first only where a change can have made it match
(below the changed nodes, through its pattern's op types, as deep as its pattern reaches: see
:func:`~graphopt.rewrite.driver.change_seeds`), not at every node of the model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import ConfigError
from ..ir.core import Model
from ..rewrite.driver import DEFAULT_MAX_REWRITES, change_seeds, rewrite_model
from ..rewrite.rule import LEVELS, Rule
from ._opsets import upgrade, upgrade_blockers
from .base import Pass, PassResult, option

if TYPE_CHECKING:
    from ..jit.context import JitContext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fuse(Pass):
    """Fuse op sequences into fewer ops with the registered rewrite rules."""

    name: ClassVar[str] = "fuse"
    kind: ClassVar[str] = "fusion"
    summary: ClassVar[str] = "fuse op sequences (Conv+BN, MatMul+Add, LayerNorm, Gelu, ...) with rewrite rules"
    presets: ClassVar[frozenset[str]] = frozenset({"O2", "O3"})
    uses_symbols: ClassVar[bool] = True
    # options a preset implies (graphopt.pipeline applies them before the user's own)
    preset_options: ClassVar[dict[str, dict[str, Any]]] = {"O3": {"level": "aggressive"}}

    level: str = option("portable", "portable: standard ONNX ops, exact math; aggressive: also onnxruntime "
                                    "contrib ops (com.microsoft), set by -O3")
    rules: tuple[str, ...] = option((), "run only these rules (names as in `graphopt explain`); empty: all of "
                                        "the level")
    skip_rules: tuple[str, ...] = option((), "rules not to run")
    max_rewrites: int = option(DEFAULT_MAX_REWRITES, "stop after this many rewrites (a safety cap: every built-in "
                                                     "rule removes at least one node)")
    target_opset: int = option(0, "raise the model's default-domain opset to this version first, when every op "
                                  "keeps its meaning there, so that rules may emit newer ops (23: "
                                  "RMSNormalization); 0 keeps the model's opset")

    def __post_init__(self) -> None:
        # a bad level is a usage error when the pipeline is built, not a pass failure later
        if self.level not in LEVELS:
            raise ConfigError(f"fuse: unknown level {self.level!r}", hint="use one of: " + ", ".join(LEVELS))

    def selected_rules(self, ctx: JitContext) -> list[Rule]:
        """The rules this pass runs, in registry order. Raises ConfigError for an unknown rule name."""
        for n in (*self.rules, *self.skip_rules):
            if n not in ctx.rules:
                try:
                    ctx.rules.get(n)
                except ConfigError as e:  # the hint goes into the message: a pass failure reports only that
                    raise ConfigError(f"fuse: {e.message} ({e.hint})", hint=e.hint) from None
        skip = set(self.skip_rules)
        if self.rules:
            wanted = set(self.rules)
            return [r for r in ctx.rules.all() if r.name in wanted and r.name not in skip]
        allowed = LEVELS[: LEVELS.index(self.level) + 1]
        return [r for r in ctx.rules.all() if getattr(r, "level", "portable") in allowed and r.name not in skip]

    def run(self, model: Model, ctx: JitContext) -> PassResult:
        rules = self.selected_rules(ctx)
        raised = self._raise_opset(model)
        seeds = None
        changes = getattr(ctx, "changes", None)
        if changes is not None and not changes.full and not raised:  # a raised opset may let any rule match
            seeds = change_seeds(changes, rules)
            if all(sd is not None and not sd for sd in seeds.values()):
                return PassResult(changed=False)
        st = rewrite_model(model, rules, jit=ctx, max_rewrites=self.max_rewrites, seeds=seeds)
        stats: dict[str, int] = {"rewrites": st.rewrites} if st.rewrites else {}
        if raised:
            stats["opset_raised"] = 1
        stats.update(sorted(st.fired.items()))
        if st.cap_hit:
            stats["cap_hit"] = 1
        return PassResult(changed=st.rewrites > 0 or raised, stats=stats)

    def _raise_opset(self, model: Model) -> bool:
        """Raise the default-domain opset to `target_opset` where that keeps every op's meaning."""
        have = model.opset("")
        if not self.target_opset or have is None or have >= self.target_opset:
            return False
        why = upgrade_blockers(model, self.target_opset)
        if why:
            log.warning("fuse: the model keeps opset %d (target-opset %d): %s", have, self.target_opset,
                        "; ".join(why[:3]) + (f" (+{len(why) - 3} more)" if len(why) > 3 else ""))
            return False
        upgrade(model, self.target_opset)
        log.info("fuse: raised the default-domain opset from %d to %d", have, self.target_opset)
        return True
