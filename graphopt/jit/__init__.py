"""The JIT context: registries, exception translators, shape symbols and pipeline configuration, owned by one
:class:`JitContext` built by :func:`init` in four steps."""

from .context import STEPS, InitStep, JitContext, init
from .registry import ENTRY_POINT_GROUP, PassRegistry, RuleRegistry
from .translators import TranslatorRegistry

__all__ = ["ENTRY_POINT_GROUP", "STEPS", "InitStep", "JitContext", "PassRegistry", "RuleRegistry",
           "TranslatorRegistry", "init"]
