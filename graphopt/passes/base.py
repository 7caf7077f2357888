"""The pass protocol and the pass manager, defined by the JIT layer (:mod:`graphopt.jit.manager`) and re-exported
here, where pass authors look for them: ``from graphopt.passes.base import Pass, PassResult, option``."""

from ..jit.manager import (
    KINDS,
    Changes,
    OptionInfo,
    Pass,
    PassManager,
    PassRecord,
    PassResult,
    PipelineRecord,
    option,
)

__all__ = ["KINDS", "Changes", "OptionInfo", "Pass", "PassManager", "PassRecord", "PassResult", "PipelineRecord", "option"]
