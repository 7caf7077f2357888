"""The plain data of validation: options, the model source, per-output checks, trials, results and bisection
records. Nothing here runs onnxruntime; everything serializes to JSON through ``to_dict``."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # light at import time: the CLI builds ValidateOptions before any model is read
    from ..ir.core import Model

ORT_LEVELS = ("disable", "basic", "extended", "all")
DEFAULT_TRIALS = 3
BENCH_MIN_RUNS = 3      # timed runs of each model in a budgeted benchmark, however long they take
BENCH_MAX_RUNS = 50     # ... and at most this many, however short


# ================================================================================================================
# Options and results (plain data)
# ================================================================================================================
@dataclass(frozen=True)
class ValidateOptions:
    """How to validate. `dims` binds symbolic dims by name in every trial; unbound ones get small sizes that
    change from trial to trial (see :func:`trial_bindings`).

    Two kinds of onnxruntime sessions, for two questions:

    - the proof (do both models compute the same outputs?) runs at `ort_level`, by default ``disable``: each model
      runs as written, so the comparison is about graphopt's rewrites and not about which of onnxruntime's own
      fusions happen to fire on each graph; creating such a session is cheap. Its runs use `check_threads`
      intra-op threads, by default the idle cores (:meth:`proof_threads`): nothing is timed there;
    - the latency benchmark (is the optimized model faster?) runs at `bench_level`, by default ``all``, as a user
      runs the model, with `threads` intra-op threads (1: steadier figures on a busy machine). It has a time
      budget: the two models run alternately on one input until `bench_time` seconds have passed, at least
      :data:`BENCH_MIN_RUNS` and at most :data:`BENCH_MAX_RUNS` times each (see :mod:`.bench`); `bench_runs` N
      instead runs exactly N times each after a warm-up (0: no benchmark).
    """

    seed: int = 0
    trials: int | None = None          # None: 1, 2 or 3 by the inputs' free symbolic dims (see trial_count)
    dims: Mapping[str, int] = field(default_factory=dict)
    inputs: str | None = None          # an .npz file with real inputs (one trial)
    rtol: float | None = None          # overrides the per-dtype defaults for every float output
    atol: float | None = None
    bench_runs: int | None = None      # timed runs per model; None: as many as bench_time allows; 0: no benchmark
    bench_time: float = 2.0            # seconds of timed runs when bench_runs is None; 0: no benchmark
    threads: int = 1                   # onnxruntime intra-op threads of the benchmark
    ort_level: str = "disable"         # onnxruntime graph optimization level of the proof
    bench_level: str = "all"           # onnxruntime graph optimization level of the benchmark
    check_threads: int = 0             # onnxruntime intra-op threads of the proof; 0: the idle cores (proof_threads)

    @property
    def bench_enabled(self) -> bool:
        return self.bench_runs != 0 and (self.bench_runs is not None or self.bench_time > 0)

    def trial_count(self, free_dims: int) -> int:
        """`trials`, or by default as many as the free symbolic input dims can make differ (see
        :func:`~.inputs.trial_bindings`): with two or more, 3 trials (all equal, all distinct, all equal again at
        another size), so that a rewrite that confuses two dims, or that is right for one size only, is caught;
        with one, 2 trials (two sizes); with none, every shape is fixed and 1 trial (more random draws of the
        same shapes prove little more)."""
        if self.trials is not None:
            return max(1, self.trials)
        return min(DEFAULT_TRIALS, free_dims + 1)

    def proof_threads(self) -> int:
        """The proof's intra-op threads: `check_threads` when set; else onnxruntime's default (0: one per core)
        when the cores are idle, and fewer when the load average says other processes keep them busy (on a
        shared machine, a parallel section waits for its slowest thread: two threads on one free core run
        slower than one)."""
        if self.check_threads > 0:
            return self.check_threads
        cores = os.cpu_count() or 1
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):  # pragma: no cover - no load average on this platform
            return 0
        # this process is part of the load: count it as not competing with itself
        idle = int(cores - load + 1.0)
        return 0 if idle >= cores else max(1, idle)


@dataclass
class ModelSource:
    """A model as onnxruntime and the loader can take it: a file path, or serialized bytes whose external data
    (if any) lives in `base_dir`."""

    data: bytes | None = None
    path: str | None = None
    base_dir: str | None = None

    @classmethod
    def of_model(cls, model: Model) -> ModelSource:
        """Serialize `model` (external tensors keep their references to files in the model's folder)."""
        from ..ir import serde

        return cls(data=serde.serialize(model), base_dir=model.base_dir)

    def load(self) -> Model:
        """A fresh IR of this model (bisection re-optimizes from it)."""
        from ..ir import serde

        if self.path is not None:
            return serde.load(self.path)
        assert self.data is not None
        return serde.loads(self.data, base_dir=self.base_dir or os.getcwd())

    def describe(self) -> str:
        return self.path if self.path is not None else f"<{len(self.data or b'')} bytes>"


@dataclass
class OutputCheck:
    """One output compared over every trial. `max_abs`/`max_rel` are None when not finite or not comparable;
    `max_rel` is relative to max(|original|, atol)."""

    name: str
    dtype: str | None
    shape: list[int] | None
    max_abs: float | None = 0.0
    max_rel: float | None = 0.0
    rtol: float | None = None
    atol: float | None = None
    ok: bool = True
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: _finite(v) for k, v in asdict(self).items()}


@dataclass
class Trial:
    """One set of inputs: the dim binding used, the seed, and whether the optimized model agreed."""

    index: int
    dims: dict[str, int]
    seed: int | None
    ok: bool = True
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ValidationResult:
    """The outcome of comparing an optimized model with its original.

    `status` is "passed", "failed" or "skipped"; `reason` says why it failed or was skipped. Times are seconds;
    latencies are medians in milliseconds (None when not measured).
    """

    status: str = "skipped"
    reason: str | None = None
    input_source: str = "random"
    seed: int | None = None
    trials: list[Trial] = field(default_factory=list)
    outputs: list[OutputCheck] = field(default_factory=list)
    first_mismatch: str | None = None
    warnings: list[str] = field(default_factory=list)
    ort_level: str = "disable"                         # the proof's sessions
    threads: int = 0                                   # the proof's intra-op threads (0: onnxruntime's default)
    session_seconds_original: float | None = None
    session_seconds_optimized: float | None = None
    latency_ms_original: float | None = None
    latency_ms_optimized: float | None = None
    bench_runs: int = 0                                # timed runs of each model
    bench_level: str = "all"
    bench_threads: int = 1
    bench_budget: float | None = None                  # seconds (None: --bench-runs N, or no benchmark)
    bench_seconds: float | None = None                 # the whole benchmark, its sessions included
    bench_session_seconds_original: float | None = None
    bench_session_seconds_optimized: float | None = None
    bench_note: str | None = None                      # why latency was not measured, when it was not
    bench_dims: dict[str, int] | None = None           # the symbolic dims of the benchmark's input
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    @property
    def skipped(self) -> bool:
        return self.status == "skipped"

    def to_dict(self) -> dict[str, Any]:
        def ratio(a: float | None, b: float | None) -> float | None:
            return _finite(a / b) if a and b else None

        return {
            "status": self.status,
            "reason": self.reason,
            "input_source": self.input_source,
            "seed": self.seed,
            "trials": [t.to_dict() for t in self.trials],
            "outputs": [o.to_dict() for o in self.outputs],
            "first_mismatch": self.first_mismatch,
            "warnings": list(self.warnings),
            "onnxruntime": {"version": _ort_version(), "optimization_level": self.ort_level,
                            "threads": self.threads},
            "session_seconds": {"original": _finite(self.session_seconds_original),
                                "optimized": _finite(self.session_seconds_optimized),
                                "speedup": ratio(self.session_seconds_original, self.session_seconds_optimized)},
            "latency_ms": {"original": _finite(self.latency_ms_original),
                           "optimized": _finite(self.latency_ms_optimized),
                           "runs": self.bench_runs,
                           "speedup": ratio(self.latency_ms_original, self.latency_ms_optimized),
                           "optimization_level": self.bench_level,
                           "threads": self.bench_threads,
                           "budget_seconds": _finite(self.bench_budget),
                           "seconds": _finite(self.bench_seconds),
                           "session_seconds": {"original": _finite(self.bench_session_seconds_original),
                                               "optimized": _finite(self.bench_session_seconds_optimized)},
                           "dims": None if self.bench_dims is None else dict(self.bench_dims),
                           "note": self.bench_note},
            "timings": {k: float(v) for k, v in self.timings.items()},
        }


@dataclass
class BisectStep:
    """One candidate pipeline tried during bisection."""

    passes: list[str]
    status: str
    first_mismatch: str | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Culprit:
    """A pass found to change the outputs: the first output that differed, and what the pass says it rewrote
    (its stats in the failing run)."""

    name: str
    first_output: str | None
    rewrites: dict[str, int] = field(default_factory=dict)
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BisectResult:
    """What bisection found. `resolved` is True when the pipeline without the culprits validates; `model`,
    `record` and `validation` are those of that final pipeline (not serialized into reports)."""

    culprits: list[Culprit] = field(default_factory=list)
    steps: list[BisectStep] = field(default_factory=list)
    resolved: bool = False
    passes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    model: Model | None = field(default=None, repr=False, compare=False)
    record: Any = field(default=None, repr=False, compare=False)
    validation: ValidationResult | None = field(default=None, repr=False, compare=False)
    ctx: Any = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"culprits": [c.to_dict() for c in self.culprits], "steps": [s.to_dict() for s in self.steps],
                "resolved": self.resolved, "passes": list(self.passes), "seconds": float(self.seconds)}

    def __getstate__(self) -> dict[str, Any]:
        # results cross process boundaries (optimize -j N): the model and context stay behind
        d = dict(self.__dict__)
        d["model"] = d["record"] = d["ctx"] = None
        return d


def _finite(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _ort_version() -> str | None:
    try:
        import onnxruntime

        return str(onnxruntime.__version__)
    except ImportError:  # pragma: no cover
        return None
