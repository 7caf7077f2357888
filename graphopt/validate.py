"""Prove that an optimized model computes what the original did, with onnxruntime; find the pass that broke it.

:class:`Validator` creates one onnxruntime session for the original model, draws the inputs of every trial once
(random per dtype and deterministic from a seed, or real inputs from an ``.npz`` file), runs the original once per
trial and keeps its outputs; :meth:`Validator.compare` then needs one session and one run per trial for each
candidate model. That matters on big models, where creating a session costs more than optimizing (tens of
seconds at 300k nodes): bisection compares several candidates against the same original without paying for the
original again.

:func:`bisect` finds the pass that makes the outputs differ by re-running the pipeline from the original with a
prefix of the pass list (halving it each step), disables the culprit, re-optimizes, re-validates, and repeats if
another pass is also at fault.

Everything here returns plain data (dataclasses); nothing prints. onnxruntime errors go through the context's
translators: an original model that onnxruntime cannot load or run makes the validation *skipped* (with the
reason), never a crash and never a pass; an optimized model that onnxruntime cannot load or run while the original
could is a *failure*.
"""

from __future__ import annotations

import logging
import math
import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ResourceError, UsageError
from .ir import serde
from .ir.core import Model

if TYPE_CHECKING:
    from .jit.context import JitContext
    from .jit.translators import TranslatorRegistry
    from .passes.base import Pass, PipelineRecord

log = logging.getLogger(__name__)

# Default tolerances per float dtype (onnxruntime type string -> (rtol, atol)). Rewrites such as BatchNorm folding
# or reassociated constants legitimately change float32 rounding by ~1e-5 relative; a tolerance tighter than the
# arithmetic would blame correct passes.
TOLERANCES: dict[str, tuple[float, float]] = {
    "tensor(double)": (1e-6, 1e-8),
    "tensor(float)": (1e-3, 1e-4),
    "tensor(float16)": (1e-2, 1e-2),
    "tensor(bfloat16)": (2e-2, 2e-2),
}
DEFAULT_TOLERANCE = (1e-3, 1e-4)

ORT_LEVELS = ("disable", "basic", "extended", "all")

_NP_OF_ORT: dict[str, Any] = {
    "tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
    "tensor(int8)": np.int8, "tensor(int16)": np.int16, "tensor(int32)": np.int32, "tensor(int64)": np.int64,
    "tensor(uint8)": np.uint8, "tensor(uint16)": np.uint16, "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64, "tensor(bool)": np.bool_, "tensor(string)": np.object_,
}

# Integer inputs are often ids, indices or sizes: draw them from a small range, and when the original model
# rejects them (an index out of range), retry with a smaller one before giving up.
INT_RANGES = (4, 2, 1)


# ================================================================================================================
# Options and results (plain data)
# ================================================================================================================
@dataclass(frozen=True)
class ValidateOptions:
    """How to validate. `dims` binds symbolic dims by name in every trial; unbound ones get small sizes that
    change from trial to trial (see :func:`trial_bindings`)."""

    seed: int = 0
    trials: int = 3
    dims: Mapping[str, int] = field(default_factory=dict)
    inputs: str | None = None          # an .npz file with real inputs (one trial)
    rtol: float | None = None          # overrides the per-dtype defaults for every float output
    atol: float | None = None
    bench_runs: int = 10               # timed runs per model after a warm-up; 0 skips the benchmark
    threads: int = 1                   # onnxruntime intra-op threads
    ort_level: str = "all"             # onnxruntime graph optimization level: disable, basic, extended, all


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
        return cls(data=serde.serialize(model), base_dir=model.base_dir)

    def load(self) -> Model:
        """A fresh IR of this model (bisection re-optimizes from it)."""
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
    ort_level: str = "all"
    threads: int = 1
    session_seconds_original: float | None = None
    session_seconds_optimized: float | None = None
    latency_ms_original: float | None = None
    latency_ms_optimized: float | None = None
    bench_runs: int = 0
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
                           "speedup": ratio(self.latency_ms_original, self.latency_ms_optimized)},
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


# ================================================================================================================
# Inputs
# ================================================================================================================
@dataclass(frozen=True)
class InputSpec:
    name: str
    type: str                           # onnxruntime type string, e.g. "tensor(float)"
    shape: tuple[int | str | None, ...] | None


def symbols_of(specs: Sequence[InputSpec]) -> list[str]:
    """The symbolic dims of the inputs, in order of first appearance; an unnamed dynamic dim is named
    ``<input>:<axis>``."""
    out: dict[str, None] = {}
    for s in specs:
        for i, d in enumerate(s.shape or ()):
            if isinstance(d, str) and d:
                out[d] = None
            elif d is None or (isinstance(d, int) and d < 0) or d == "":
                out[f"{s.name}:{i}"] = None
    return list(out)


def trial_bindings(symbols: Sequence[str], dims: Mapping[str, int], trials: int) -> list[dict[str, int]]:
    """Dim bindings for `trials` trials. Symbols in `dims` keep their size; the others get, in trial t: all the
    same size 2 + t when t is even, distinct sizes 2 + t, 3 + t, ... when t is odd, so that a rewrite that is only
    right for one shape, or that confuses two dims, is caught."""
    out = []
    free = [s for s in symbols if s not in dims]
    for t in range(max(1, trials)):
        b = {s: int(dims[s]) for s in symbols if s in dims}
        for k, s in enumerate(free):
            b[s] = 2 + t + (k if t % 2 == 1 else 0)
        out.append(b)
    return out


def _shape_for(spec: InputSpec, binding: Mapping[str, int]) -> list[int]:
    shape = []
    for i, d in enumerate(spec.shape or ()):
        if isinstance(d, int) and d >= 0:
            shape.append(d)
        elif isinstance(d, str) and d:
            shape.append(int(binding.get(d, 2)))
        else:
            shape.append(int(binding.get(f"{spec.name}:{i}", 2)))
    return shape


def random_feeds(specs: Sequence[InputSpec], binding: Mapping[str, int], seed: int, *,
                 int_high: int = INT_RANGES[0]) -> dict[str, np.ndarray]:
    """Deterministic random inputs: floats uniform in [-1, 1), integers in [0, int_high), booleans, short
    strings. Raises UsageError for input types that cannot be drawn (sequences, maps, bfloat16, ...)."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for s in specs:
        np_t = _NP_OF_ORT.get(s.type)
        if np_t is None:
            raise UsageError(f"input {s.name!r} has type {s.type}, for which graphopt cannot draw random values",
                             hint="give real inputs with --inputs FILE.npz, or --no-validate")
        shape = _shape_for(s, binding)
        dt = np.dtype(np_t)
        if dt.kind == "f":
            arr = rng.uniform(-1.0, 1.0, size=shape).astype(dt)
        elif dt.kind in "iu":
            arr = rng.integers(0, max(1, int_high), size=shape).astype(dt)
        elif dt.kind == "b":
            arr = rng.random(shape) < 0.5
        else:  # strings
            arr = np.array(rng.choice(["a", "b", "c"], size=shape), dtype=object)
        feeds[s.name] = arr
    return feeds


def load_npz(path: str, specs: Sequence[InputSpec]) -> dict[str, np.ndarray]:
    """Real inputs from an .npz file; names must match the model's inputs. Values are cast to the input's dtype
    when that loses no kind (float64 -> float32 is fine, float -> int is not)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError as e:
        raise UsageError(f"--inputs {path}: no such file") from e
    except (OSError, ValueError) as e:
        raise UsageError(f"--inputs {path}: not a readable .npz file ({e})",
                         hint="write it with numpy.savez(path, input_name=array, ...)") from e
    names = [s.name for s in specs]
    missing = [n for n in names if n not in arrays]
    extra = [k for k in arrays if k not in names]
    if missing or extra:
        from .jit.registry import did_you_mean

        what = f"lacks input {missing[0]!r}" if missing else f"has {extra[0]!r}, which is not a model input"
        raise UsageError(f"--inputs {path}: {what}",
                         hint=(did_you_mean(extra[0], names) if extra else "") or
                         f"the model's inputs are: {', '.join(names)}")
    out: dict[str, np.ndarray] = {}
    for s in specs:
        a = arrays[s.name]
        np_t = _NP_OF_ORT.get(s.type)
        if np_t is not None and a.dtype != np.dtype(np_t):
            if not np.can_cast(a.dtype, np_t, casting="same_kind"):
                raise UsageError(f"--inputs {path}: {s.name!r} is {a.dtype}, the model wants {s.type}")
            a = a.astype(np_t)
        out[s.name] = a
    return out


# ================================================================================================================
# Comparison
# ================================================================================================================
def tolerance(ort_type: str | None, rtol: float | None, atol: float | None) -> tuple[float, float]:
    r, a = TOLERANCES.get(ort_type or "", DEFAULT_TOLERANCE)
    return (r if rtol is None else rtol), (a if atol is None else atol)


def _compare_arrays(x: Any, y: Any, rtol: float, atol: float) -> tuple[bool, float | None, float | None, str | None]:
    """(ok, max_abs, max_rel, reason) for one output value of one trial."""
    if isinstance(x, list) or isinstance(y, list):  # sequences
        if not (isinstance(x, list) and isinstance(y, list)) or len(x) != len(y):
            return False, None, None, "sequence lengths differ"
        ok, ma, mr, why = True, 0.0, 0.0, None
        for a, b in zip(x, y):
            o, m1, m2, w = _compare_arrays(a, b, rtol, atol)
            ok = ok and o
            why = why or w
            ma = None if m1 is None or ma is None else max(ma, m1)
            mr = None if m2 is None or mr is None else max(mr, m2)
        return ok, ma, mr, why
    x = np.asarray(x)
    y = np.asarray(y)
    if x.dtype != y.dtype:
        return False, None, None, f"dtype {y.dtype} instead of {x.dtype}"
    if x.shape != y.shape:
        return False, None, None, f"shape {list(y.shape)} instead of {list(x.shape)}"
    if x.size == 0:
        return True, 0.0, 0.0, None
    if x.dtype.kind in "OUS":
        same = bool(np.array_equal(x, y))
        return same, (0.0 if same else None), (0.0 if same else None), None if same else "string values differ"
    if x.dtype.kind == "b":
        n = int(np.count_nonzero(x != y))
        return n == 0, float(n > 0), float(n > 0), None if n == 0 else f"{n} booleans differ"
    xf = x.astype(np.float64)
    yf = y.astype(np.float64)
    if x.dtype.kind in "iu":
        d = np.abs(xf - yf)
        ma = float(d.max())
        mr = float((d / np.maximum(np.abs(xf), 1.0)).max())
        return ma == 0.0, ma, mr, None if ma == 0.0 else "integer values differ"
    nan_x, nan_y = np.isnan(xf), np.isnan(yf)
    if not np.array_equal(nan_x, nan_y):
        return False, None, None, "NaN in different places"
    inf_x, inf_y = np.isinf(xf), np.isinf(yf)
    if not np.array_equal(xf[inf_x], yf[inf_y]) or not np.array_equal(inf_x, inf_y):
        return False, None, None, "infinities differ"
    fin = ~(nan_x | inf_x)
    if not fin.any():
        return True, 0.0, 0.0, None
    a, b = xf[fin], yf[fin]
    d = np.abs(a - b)
    ma = float(d.max())
    mr = float((d / np.maximum(np.abs(a), atol if atol > 0 else np.finfo(np.float64).tiny)).max())
    ok = bool(np.all(d <= atol + rtol * np.abs(a)))
    return ok, ma, mr, None if ok else f"values differ beyond rtol={rtol:g}, atol={atol:g}"


# ================================================================================================================
# The validator
# ================================================================================================================
StepCallback = Callable[[str], None]


class Validator:
    """Compares candidate models with one original. The original's session, the trial inputs and the original's
    outputs are made once, on first use, and reused for every candidate."""

    def __init__(self, original: ModelSource, options: ValidateOptions | None = None, *,
                 translators: TranslatorRegistry | None = None, on_step: StepCallback | None = None):
        if translators is None:
            from .jit.translators import TranslatorRegistry, install_defaults

            translators = TranslatorRegistry()
            install_defaults(translators)
        self.original = original
        self.options = options or ValidateOptions()
        if self.options.ort_level not in ORT_LEVELS:
            raise UsageError(f"unknown onnxruntime optimization level {self.options.ort_level!r}",
                             hint="use one of: " + ", ".join(ORT_LEVELS))
        self.translators = translators
        self.on_step = on_step
        self.sessions_created = 0
        self.seconds = 0.0                  # every second spent validating, for the report
        self._prepared = False
        self.skip_reason: str | None = None
        self.original_error: BaseException | None = None   # the foreign error behind skip_reason, if any
        self.warnings: list[str] = []
        self._sess: Any = None
        self._specs: list[InputSpec] = []
        self._out_names: list[str] = []
        self._out_types: dict[str, str] = {}
        self._trials: list[Trial] = []
        self._feeds: list[dict[str, np.ndarray]] = []
        self._expected: list[list[Any]] = []
        self._session_seconds = 0.0
        self._last_sess: Any = None
        self._input_source = "random" if self.options.inputs is None else f"npz:{self.options.inputs}"

    # -- sessions ----------------------------------------------------------------------------------------------
    def _step(self, msg: str) -> None:
        log.debug("validate: %s", msg)
        if self.on_step is not None:
            self.on_step(msg)

    def _session(self, src: ModelSource) -> Any:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[self.options.ort_level]
        so.intra_op_num_threads = max(1, self.options.threads)
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.sessions_created += 1
        if src.path is not None:
            return ort.InferenceSession(src.path, so, providers=["CPUExecutionProvider"])
        if src.base_dir:
            # a model given as bytes names its external data files relative to the folder it came from
            so.add_session_config_entry("session.model_external_initializers_file_folder_path",
                                        os.path.abspath(src.base_dir))
        return ort.InferenceSession(src.data, so, providers=["CPUExecutionProvider"])

    def _ort_error(self, e: BaseException, what: str) -> str:
        """A one-line reason for an onnxruntime failure; out-of-memory is not a reason but an error."""
        if isinstance(e, MemoryError):
            raise ResourceError(f"out of memory while {what}") from e
        err = self.translators.translate(e, stage="validate")
        if isinstance(err, ResourceError):
            raise err from e
        msg = " ".join(err.message.split())
        return f"{what}: {msg}"

    # -- the original ------------------------------------------------------------------------------------------
    def prepare(self) -> str | None:
        """Create the original's session, draw the inputs and run the original once per trial. Returns the
        reason validation must be skipped, or None."""
        if self._prepared:
            return self.skip_reason
        self._prepared = True
        t0 = time.perf_counter()
        try:
            self.skip_reason = self._prepare()
        finally:
            self.seconds += time.perf_counter() - t0
        if self.skip_reason:
            log.warning("validation skipped: %s", self.skip_reason)
        return self.skip_reason

    def _prepare(self) -> str | None:
        opts = self.options
        self._step("creating the onnxruntime session of the original model")
        t = time.perf_counter()
        try:
            sess = self._session(self.original)
        except Exception as e:  # noqa: BLE001 - any onnxruntime failure means: cannot validate, say why
            self.original_error = e
            return self._ort_error(e, "onnxruntime cannot load the original model")
        self._session_seconds = time.perf_counter() - t
        self._sess = sess
        self._specs = [InputSpec(i.name, i.type, tuple(i.shape) if i.shape is not None else None)
                       for i in sess.get_inputs()]
        self._out_names = [o.name for o in sess.get_outputs()]
        self._out_types = {o.name: o.type for o in sess.get_outputs()}
        if opts.inputs is not None:
            feeds = load_npz(opts.inputs, self._specs)
            self._step("running the original model on the --inputs")
            try:
                out = sess.run(None, feeds)
            except Exception as e:  # noqa: BLE001
                self.original_error = e
                return self._ort_error(e, "the original model fails on the --inputs")
            self._trials = [Trial(0, {}, None)]
            self._feeds = [feeds]
            self._expected = [out]
            return None
        syms = symbols_of(self._specs)
        unknown = [d for d in opts.dims if d not in syms]
        if unknown:
            self.warnings.append(f"--dim {unknown[0]}: the model has no input dim of that name"
                                 + (f" (its symbols: {', '.join(syms)})" if syms else ""))
        bindings = trial_bindings(syms, opts.dims, opts.trials)
        last_err: str | None = None
        for t_i, binding in enumerate(bindings):
            seed = opts.seed + t_i
            self._step(f"running the original model, trial {t_i + 1}/{len(bindings)}")
            # fall back: distinct sizes -> equal sizes (the model may require two symbols to agree), and
            # integer inputs in smaller and smaller ranges (they may be indices)
            candidates = [binding]
            free = [s for s in syms if s not in opts.dims]
            if len({binding[s] for s in free}) > 1:
                candidates.append({s: (binding[s] if s in opts.dims else 2 + t_i) for s in syms})
            done = False
            for b in candidates:
                for high in INT_RANGES:
                    try:
                        feeds = random_feeds(self._specs, b, seed, int_high=high)
                    except UsageError as e:
                        return f"{e.message}; {e.hint}" if e.hint else e.message
                    try:
                        out = sess.run(None, feeds)
                    except Exception as e:  # noqa: BLE001
                        self.original_error = e
                        last_err = self._ort_error(e, "the original model fails on random inputs")
                        continue
                    note = None
                    if b is not binding:
                        note = "symbols bound to equal sizes (the model rejects distinct ones)"
                    if high != INT_RANGES[0]:
                        note = (note + "; " if note else "") + f"integer inputs in [0, {high})"
                    self._trials.append(Trial(t_i, dict(b), seed, note=note))
                    self._feeds.append(feeds)
                    self._expected.append(out)
                    done = True
                    break
                if done:
                    break
            if not done:
                self.warnings.append(f"trial {t_i + 1} dropped: {last_err}")
        if not self._trials:
            return (f"{last_err}; give real inputs with --inputs FILE.npz" if last_err
                    else "no trial could run")
        self.original_error = None
        return None

    # -- candidates --------------------------------------------------------------------------------------------
    def compare(self, optimized: ModelSource | Model) -> ValidationResult:
        """Run the candidate on every trial's inputs and compare each output with the original's."""
        t0 = time.perf_counter()
        res = ValidationResult(input_source=self._input_source, ort_level=self.options.ort_level,
                               threads=self.options.threads,
                               seed=None if self.options.inputs is not None else self.options.seed)
        reason = self.prepare()
        t1 = time.perf_counter()
        res.warnings = list(self.warnings)
        if reason is not None:
            res.status = "skipped"
            res.reason = reason
            res.timings = {"total": time.perf_counter() - t0}
            return res
        res.session_seconds_original = self._session_seconds
        t_ser = 0.0
        if isinstance(optimized, Model):
            self._step("serializing the optimized model")
            ts = time.perf_counter()
            with self.translators.guard("validate"):
                optimized = ModelSource.of_model(optimized)
            t_ser = time.perf_counter() - ts
        try:
            self._compare(optimized, res)
        finally:
            dt = time.perf_counter() - t1
            self.seconds += dt
            res.timings = {"serialize": t_ser, "session_original": self._session_seconds,
                           "session_optimized": res.session_seconds_optimized or 0.0,
                           "runs": res.timings.get("runs", 0.0), "total": time.perf_counter() - t0}
        return res

    def _compare(self, src: ModelSource, res: ValidationResult) -> None:
        opts = self.options
        res.trials = [Trial(t.index, dict(t.dims), t.seed, note=t.note) for t in self._trials]
        res.outputs = []
        for name, first in zip(self._out_names, self._expected[0]):
            ty = self._out_types[name]
            # integers, booleans and strings compare exactly; tolerances apply to floats only
            is_float = ty in TOLERANCES or (not ty.startswith("tensor(") and "float" in ty) or ty == "unknown"
            r, a = tolerance(ty, opts.rtol, opts.atol) if is_float else (None, None)
            shape = None if isinstance(first, list) else list(np.asarray(first).shape)
            res.outputs.append(OutputCheck(name, _dtype_str(ty), shape, rtol=r, atol=a))
        self._step("creating the onnxruntime session of the optimized model")
        t = time.perf_counter()
        try:
            sess = self._session(src)
        except Exception as e:  # noqa: BLE001 - the original loads, so this is graphopt's fault
            res.session_seconds_optimized = time.perf_counter() - t
            self._fail(res, self._ort_error(e, "onnxruntime cannot load the optimized model"),
                       self._out_names[0] if self._out_names else None)
            return
        res.session_seconds_optimized = time.perf_counter() - t
        self._last_sess = sess
        names = [o.name for o in sess.get_outputs()]
        if names != self._out_names:
            diff = next((a for a, b in zip(self._out_names, names) if a != b),
                        self._out_names[len(names)] if len(names) < len(self._out_names) else names[-1])
            self._fail(res, f"the optimized model's outputs are {names}, the original's {self._out_names}", diff)
            return
        in_spec = {i.name: i.type for i in sess.get_inputs()}
        want = {s.name: s.type for s in self._specs}
        if in_spec != want:
            self._fail(res, f"the optimized model's inputs {sorted(in_spec.items())} differ from the original's "
                       f"{sorted(want.items())}", self._out_names[0] if self._out_names else None)
            return
        t_runs = time.perf_counter()
        for k, (trial, feeds, expected) in enumerate(zip(res.trials, self._feeds, self._expected)):
            self._step(f"running the optimized model, trial {k + 1}/{len(res.trials)}")
            try:
                got = sess.run(None, feeds)
            except Exception as e:  # noqa: BLE001
                trial.ok = False
                trial.note = self._ort_error(e, "the optimized model fails where the original runs")
                self._fail(res, trial.note, self._out_names[0] if self._out_names else None)
                res.timings["runs"] = time.perf_counter() - t_runs
                return
            for oc, x, y in zip(res.outputs, expected, got):
                r, a = tolerance(self._out_types[oc.name], opts.rtol, opts.atol)
                ok, ma, mr, why = _compare_arrays(x, y, r, a)
                oc.max_abs = None if ma is None or oc.max_abs is None else max(oc.max_abs, ma)
                oc.max_rel = None if mr is None or oc.max_rel is None else max(oc.max_rel, mr)
                if not ok:
                    trial.ok = False
                    if oc.ok:
                        oc.ok = False
                        oc.reason = f"{why} (trial {k + 1}" + (f", dims {_fmt_dims(trial.dims)})" if trial.dims
                                                                 else ")")
        res.timings["runs"] = time.perf_counter() - t_runs
        bad = [o for o in res.outputs if not o.ok]
        if bad:
            res.status = "failed"
            res.first_mismatch = bad[0].name
            res.reason = f"output {bad[0].name!r}: {bad[0].reason}" + (
                f" (and {len(bad) - 1} more output(s))" if len(bad) > 1 else "")
        else:
            res.status = "passed"

    def _fail(self, res: ValidationResult, reason: str, first: str | None) -> None:
        res.status = "failed"
        res.reason = reason
        res.first_mismatch = first
        for o in res.outputs:
            o.ok = False
            o.max_abs = o.max_rel = None
            o.reason = o.reason or "not compared"

    # -- timing ------------------------------------------------------------------------------------------------
    def benchmark(self, res: ValidationResult) -> None:
        """Median latency of the original and of the last compared model on the first trial's inputs: one
        warm-up run each, then `bench_runs` runs alternating between the two (so drift hits both alike)."""
        n = self.options.bench_runs
        if n <= 0 or not res.passed or self._sess is None or self._last_sess is None or not self._feeds:
            return
        t0 = time.perf_counter()
        feeds = self._feeds[0]
        a, b = self._sess, self._last_sess
        self._step(f"timing both models ({n} runs each)")
        try:
            a.run(None, feeds)
            b.run(None, feeds)
            ta: list[float] = []
            tb: list[float] = []
            for _ in range(n):
                t = time.perf_counter()
                a.run(None, feeds)
                ta.append(time.perf_counter() - t)
                t = time.perf_counter()
                b.run(None, feeds)
                tb.append(time.perf_counter() - t)
        except Exception as e:  # noqa: BLE001 - both ran moments ago; a failure now is worth a warning only
            res.warnings.append(self._ort_error(e, "benchmark failed"))
            return
        finally:
            dt = time.perf_counter() - t0
            self.seconds += dt
            res.timings["bench"] = dt
            res.timings["total"] = res.timings.get("total", 0.0) + dt
        res.latency_ms_original = statistics.median(ta) * 1e3
        res.latency_ms_optimized = statistics.median(tb) * 1e3
        res.bench_runs = n

    def close(self) -> None:
        """Drop the sessions (their memory can be large)."""
        self._sess = self._last_sess = None


def _dtype_str(ort_type: str) -> str:
    if ort_type.startswith("tensor(") and ort_type.endswith(")"):
        return ort_type[7:-1]
    return ort_type


def _fmt_dims(d: Mapping[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in d.items())


def check_model(src: ModelSource, translators: TranslatorRegistry | None = None) -> None:
    """onnx.checker's full check (with strict shape inference) of a model file or bytes; raises the graphopt
    error for what is wrong (exit code 3)."""
    import onnx
    import onnx.checker

    if translators is None:
        from .jit.translators import TranslatorRegistry, install_defaults

        translators = TranslatorRegistry()
        install_defaults(translators)
    with translators.guard("check", path=src.path):
        if src.path is not None:
            # by path: the checker then finds external data beside the file and handles models over 2 GB
            onnx.checker.check_model(src.path, full_check=True)
        else:
            mp = onnx.ModelProto()
            mp.ParseFromString(src.data or b"")
            onnx.checker.check_model(mp, full_check=True)


# ================================================================================================================
# Bisection
# ================================================================================================================
def fresh_context(ctx: JitContext, model: Model) -> JitContext:
    """A context for another model with `ctx`'s registries, translators, configuration and pipeline. Symbols
    are per model, so they are seeded and inferred anew; the rest is shared, not rebuilt (plugins are not loaded
    again, and passes registered by hand, as tests do, stay)."""
    from .jit.context import JitContext

    new = JitContext()
    new.passes = ctx.passes
    new.rules = ctx.rules
    new.translators = ctx.translators
    new.config = ctx.config
    new.pipeline = list(ctx.pipeline)
    new.plugins = list(ctx.plugins)
    with new.translators.guard("infer"):
        new.symbols.seed(model)
        new.symbols.infer(model)
    return new


def optimize_with(ctx: JitContext, model: Model, passes: Sequence[Pass] | None = None,
                  on_pass: Callable[[str, int], None] | None = None) -> PipelineRecord:
    """Run `passes` (default: the context's pipeline) on `model` and annotate shapes, as `graphopt optimize`
    does."""
    record = ctx.run_pipeline(model, passes=None if passes is None else list(passes), on_pass=on_pass)
    if hasattr(ctx.symbols, "annotate"):
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
