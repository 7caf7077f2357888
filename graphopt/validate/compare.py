"""Compare candidate models with one original in onnxruntime: sessions, per-output comparison, tolerances.

:class:`Validator` creates one onnxruntime session for the original model, draws the inputs of every trial once
(random per dtype and deterministic from a seed, or real inputs from an ``.npz`` file), runs the original once per
trial and keeps its outputs; :meth:`Validator.compare` then needs one session and one run per trial for each
candidate model. That matters on big models, where creating a session costs more than optimizing (tens of
seconds at 300k nodes): bisection compares several candidates against the same original without paying for the
original again.

These are the proof's sessions: graph optimizations off by default (the models run as written), on the idle cores
(:meth:`~.results.ValidateOptions.proof_threads`); the latency benchmark (:mod:`.bench`) makes its own pair at the
level and thread count a user runs with, only once the proof has passed.

onnxruntime's own log lines are silenced (session and run log levels at FATAL): its errors come back as
exceptions, which graphopt reports as its own findings (a skipped validation, a dropped trial, a fallback noted in
the trial) instead of red lines on the terminal.

onnxruntime errors go through the context's translators: an original model that onnxruntime cannot load or run
makes the validation *skipped* (with the reason), never a crash and never a pass; an optimized model that
onnxruntime cannot load or run while the original could is a *failure*.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ResourceError, UsageError
from ..ir.core import Model
from .inputs import INT_RANGES, InputSpec, load_npz, random_feeds, symbols_of, trial_bindings
from .results import ORT_LEVELS, ModelSource, OutputCheck, Trial, ValidateOptions, ValidationResult

if TYPE_CHECKING:
    from ..jit.translators import TranslatorRegistry

log = logging.getLogger("graphopt.validate")

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
                 translators: TranslatorRegistry | None = None, on_step: StepCallback | None = None,
                 int_bounds: Mapping[str, int] | None = None):
        """`int_bounds`: integer inputs that index a table and the table's size (:func:`.inputs.index_ranges`
        of the original, computed before the passes change it); they are drawn from [0, size)."""
        if translators is None:
            from ..jit.translators import TranslatorRegistry, install_defaults

            translators = TranslatorRegistry()
            install_defaults(translators)
        self.original = original
        self.options = options or ValidateOptions()
        for lvl in (self.options.ort_level, self.options.bench_level):
            if lvl not in ORT_LEVELS:
                raise UsageError(f"unknown onnxruntime optimization level {lvl!r}",
                                 hint="use one of: " + ", ".join(ORT_LEVELS))
        self.int_bounds = dict(int_bounds or {})
        self._proof_threads = self.options.proof_threads()
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
        self._bench_binding: dict[str, int] | None = None  # dims of the benchmark's inputs (None: trial 0's)
        self._expected: list[list[Any]] = []
        self._session_seconds = 0.0
        self._original_runs_seconds = 0.0
        self._last_sess: Any = None
        self._last_src: ModelSource | None = None
        self._run_options: Any = None
        self._input_source = "random" if self.options.inputs is None else f"npz:{self.options.inputs}"

    # -- sessions ----------------------------------------------------------------------------------------------
    def _step(self, msg: str) -> None:
        log.debug("validate: %s", msg)
        if self.on_step is not None:
            self.on_step(msg)

    def _session(self, src: ModelSource, *, level: str | None = None, threads: int | None = None) -> Any:
        """An onnxruntime session of `src` at `level` (default: the proof's) with `threads` intra-op threads
        (default: the proof's; 0 lets onnxruntime choose)."""
        import onnxruntime as ort

        proof = level is None and threads is None
        so = ort.SessionOptions()
        so.log_severity_level = 4  # FATAL only: failures come back as exceptions, reported by graphopt
        so.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[level or self.options.ort_level]
        if threads is None:
            threads = self._proof_threads
        so.intra_op_num_threads = max(0, threads)
        so.inter_op_num_threads = 1
        if proof and threads != 1:
            # the proof's pool threads must not spin between runs: on a machine with few cores they would take
            # the CPU from the next session's creation and from the single-threaded benchmark that follows
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.sessions_created += 1
        if src.path is not None:
            return ort.InferenceSession(src.path, so, providers=["CPUExecutionProvider"])
        if src.base_dir:
            # a model given as bytes names its external data files relative to the folder it came from
            so.add_session_config_entry("session.model_external_initializers_file_folder_path",
                                        os.path.abspath(src.base_dir))
        return ort.InferenceSession(src.data, so, providers=["CPUExecutionProvider"])

    def run(self, sess: Any, feeds: Mapping[str, Any]) -> Any:
        """`sess.run` with onnxruntime's run-time log lines (a kernel's error, before it is raised) silenced."""
        if self._run_options is None:
            import onnxruntime as ort

            ro = ort.RunOptions()
            ro.log_severity_level = 4
            self._run_options = ro
        return sess.run(None, dict(feeds), self._run_options)

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
        self._step("creating the onnxruntime session of the original model")
        t = time.perf_counter()
        try:
            sess = self._session(self.original)
        except Exception as e:  # noqa: BLE001 - any onnxruntime failure means: cannot validate, say why
            self.original_error = e
            return self._ort_error(e, "onnxruntime cannot load the original model")
        self._session_seconds = time.perf_counter() - t
        self._sess = sess
        t_runs = time.perf_counter()
        try:
            return self._draw_and_run(sess)
        finally:
            self._original_runs_seconds = time.perf_counter() - t_runs

    def _draw_and_run(self, sess: Any) -> str | None:
        opts = self.options
        self._specs = [InputSpec(i.name, i.type, tuple(i.shape) if i.shape is not None else None)
                       for i in sess.get_inputs()]
        self._out_names = [o.name for o in sess.get_outputs()]
        self._out_types = {o.name: o.type for o in sess.get_outputs()}
        if opts.inputs is not None:
            feeds = load_npz(opts.inputs, self._specs)
            self._step("running the original model on the --inputs")
            try:
                out = self.run(sess, feeds)
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
        free = [s for s in syms if s not in opts.dims]
        bindings = trial_bindings(syms, opts.dims, opts.trial_count(len(free)))
        bounds = {k: v for k, v in self.int_bounds.items() if any(s.name == k for s in self._specs)}
        if free:
            # latency is measured on one input: every free dim 1 (e.g. batch 1), bound dims as given
            self._bench_binding = {s: (int(opts.dims[s]) if s in opts.dims else 1) for s in syms}
        last_err: str | None = None
        for t_i, binding in enumerate(bindings):
            seed = opts.seed + t_i
            self._step(f"running the original model, trial {t_i + 1}/{len(bindings)}")
            # fall back: distinct sizes -> equal sizes (the model may require two symbols to agree), and
            # integer inputs in smaller and smaller ranges (they may be indices)
            candidates = [binding]
            if len({binding[s] for s in free}) > 1:
                candidates.append({s: (binding[s] if s in opts.dims else 2 + t_i) for s in syms})
            done = False
            # smaller integer ranges are worth a retry only when there are integer inputs
            ladder = INT_RANGES if any(_is_int_type(sp.type) for sp in self._specs) else INT_RANGES[:1]
            for b in candidates:
                for k, high in enumerate(ladder):
                    try:
                        # the first draw takes table ids from the whole table; fallbacks shrink every range
                        feeds = random_feeds(self._specs, b, seed, int_high=high, int_bounds=bounds,
                                             bounded_high=None if k == 0 else high)
                    except UsageError as e:
                        return f"{e.message}; {e.hint}" if e.hint else e.message
                    try:
                        out = self.run(sess, feeds)
                    except Exception as e:  # noqa: BLE001
                        self.original_error = e
                        last_err = self._ort_error(e, "the original model fails on random inputs")
                        continue
                    note = None
                    if b is not binding:
                        note = "symbols bound to equal sizes (the model rejects distinct ones)"
                    if k > 0:
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
                               threads=self._proof_threads, bench_level=self.options.bench_level,
                               bench_threads=self.options.threads,
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
                           "runs_original": self._original_runs_seconds,
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
        self._last_src = src
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
                got = self.run(sess, feeds)
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
    def bench_feeds(self) -> list[tuple[dict[str, int], dict[str, Any]]]:
        """Candidate inputs of the latency benchmark, best first: every free dim 1 (when the inputs have free
        dims), then the first trial's inputs (which the original is known to accept)."""
        out: list[tuple[dict[str, int], dict[str, Any]]] = []
        if self._bench_binding is not None:
            bounds = {k: v for k, v in self.int_bounds.items() if any(s.name == k for s in self._specs)}
            try:
                out.append((dict(self._bench_binding),
                            random_feeds(self._specs, self._bench_binding, self.options.seed, int_bounds=bounds)))
            except UsageError:
                pass
        if self._feeds:
            out.append((dict(self._trials[0].dims), self._feeds[0]))
        return out

    def benchmark(self, res: ValidationResult) -> None:
        """Median latency of the original and of the last compared model (see :func:`.bench.benchmark`)."""
        from .bench import benchmark

        benchmark(self, res)

    def close(self) -> None:
        """Drop the sessions (their memory can be large)."""
        self._sess = self._last_sess = self._last_src = None


def _is_int_type(ort_type: str) -> bool:
    return ort_type.startswith("tensor(") and ("int" in ort_type)


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
        from ..jit.translators import TranslatorRegistry, install_defaults

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
