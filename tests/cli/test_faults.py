"""Faults: a graphopt process stopped by SIGINT or SIGTERM at any step, or whose write fails midway, leaves no
partial output and no temporary file, never touches the input, keeps the previous output, and exits with the
documented code. A bug that makes an invalid model is caught before writing. Real processes, real signals."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

from graphopt.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OUTPUT, EXIT_TERMINATED

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "transformer.onnx"


def _external_model(folder: Path) -> Path:
    """A model whose weights live in an external data file beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 64])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 64])
    w = onnx.numpy_helper.from_array(rng.standard_normal((64, 64)).astype(np.float32), "w")
    b = onnx.numpy_helper.from_array(rng.standard_normal(64).astype(np.float32), "b")
    g = onnx.helper.make_graph([onnx.helper.make_node("MatMul", ["x", "w"], ["m"]),
                                onnx.helper.make_node("Add", ["m", "b"], ["a"]),
                                onnx.helper.make_node("Identity", ["a"], ["i"]),
                                onnx.helper.make_node("Relu", ["i"], ["y"])], "g", [x], [y], [w, b])
    mp = onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", 17)], ir_version=8)
    p = folder / "model.onnx"
    onnx.save(mp, str(p), save_as_external_data=True, location="model.data", size_threshold=0)
    return p


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


KILL_IN_PASS = """
import os, signal
import graphopt.passes.cse as _m
_orig = _m.CommonSubexpressionElimination.run
def _run(self, model, ctx):
    os.kill(os.getpid(), signal.{sig})
    return _orig(self, model, ctx)
_m.CommonSubexpressionElimination.run = _run
"""

KILL_AFTER_DATA = """
import os, signal
import graphopt.ir.serde.write as _w
_orig = _w._write_external
def _we(*a, **k):
    plan = _orig(*a, **k)          # the data file is written, under a temporary name
    os.kill(os.getpid(), signal.{sig})
    return plan
_w._write_external = _we
"""

KILL_IN_COMMIT = """
import os, signal
import graphopt.ir.serde.write as _w
_orig = _w.os.replace
def _replace(a, b):
    _orig(a, b)
    os.kill(os.getpid(), signal.{sig})   # between the data file's rename and the model's
_w.os.replace = _replace
"""


@pytest.mark.parametrize("sig, code", [("SIGINT", EXIT_INTERRUPTED), ("SIGTERM", EXIT_TERMINATED)])
@pytest.mark.parametrize("where", ["pass", "after data", "in commit"])
def test_a_signal_at_any_step_leaves_nothing_partial(gsub, tmp_path: Path, sig: str, code: int, where: str) -> None:
    src = _external_model(tmp_path / "in")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "model.onnx").write_bytes(b"previous output")
    before_in, before_out = _snapshot(tmp_path / "in"), _snapshot(out_dir)
    prelude = {"pass": KILL_IN_PASS, "after data": KILL_AFTER_DATA, "in commit": KILL_IN_COMMIT}[where]
    r = gsub("optimize", str(src), "-o", str(out_dir / "model.onnx"), prelude=prelude.format(sig=sig))
    err = r.stderr.decode()
    assert r.returncode == code, err
    assert "Traceback" not in err and err.count("error:") == 1
    assert ("terminated" if sig == "SIGTERM" else "interrupted") in err
    assert _snapshot(tmp_path / "in") == before_in
    after = _snapshot(out_dir)
    assert not [f for f in after if ".graphopt" in f or f.endswith(".tmp")], after
    if where == "in commit":
        # the signal waited for the commit: the new model and its data are complete and agree
        assert sorted(after) == ["model.data", "model.onnx"]
        m = onnx.load(str(out_dir / "model.onnx"))
        onnx.checker.check_model(str(out_dir / "model.onnx"), full_check=True)
        assert m.graph.initializer
    else:
        assert after == before_out  # the previous output is intact, no data file appeared


def test_sigterm_stops_every_worker_and_leaves_nothing(tmp_path: Path, plugin_site: Path) -> None:
    models = []
    for i in range(2):
        p = tmp_path / f"m{i}.onnx"
        shutil.copy(SAMPLE, p)
        models.append(str(p))
    markers = tmp_path / "markers"
    markers.mkdir()
    out_dir = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(plugin_site), GRAPHOPT_TEST_MARKERS=str(markers))
    proc = subprocess.Popen([sys.executable, "-m", "graphopt.cli.main", "optimize", *models, "--out-dir",
                             str(out_dir), "-j", "2", "--passes", "test-sleep", "--no-validate"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(list(markers.iterdir())) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert len(list(markers.iterdir())) == 2, proc.communicate()[1].decode()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_TERMINATED, err.decode()
    assert "Traceback" not in err.decode()
    assert not out_dir.exists() or not list(out_dir.iterdir())
    for m in markers.iterdir():  # every worker is gone
        pid = int(m.name.split("-")[1])
        with pytest.raises(ProcessLookupError):
            for _ in range(50):
                os.kill(pid, 0)
                time.sleep(0.1)


def test_a_write_that_fails_midway_keeps_the_previous_output(gsub, tmp_path: Path) -> None:
    src = tmp_path / "model.onnx"
    shutil.copy(SAMPLE, src)
    out = tmp_path / "out.onnx"
    out.write_bytes(b"previous output")
    # the file size limit lets graphopt start writing and stops it partway
    limit = "import resource\nresource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
    r = gsub("optimize", str(src), "-o", str(out), "--no-validate", prelude=limit)
    err = r.stderr.decode()
    assert r.returncode == EXIT_OUTPUT, err
    assert "Traceback" not in err and "error:" in err
    assert out.read_bytes() == b"previous output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "out.onnx"]


def _read_only(folder: Path) -> list[str]:
    """A command prefix that makes `folder` read-only for the command (root ignores permissions: a private
    read-only bind mount then), or skips."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return []
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "true"]).returncode != 0:
        pytest.skip("running as root without mount namespaces: no way to make a read-only folder")
    return ["unshare", "-m", "sh", "-c", f'mount --bind "{folder}" "{folder}" && '
            f'mount -o remount,bind,ro "{folder}" && exec "$0" "$@"']


def test_a_read_only_output_folder_is_an_output_error(tmp_path: Path) -> None:
    src = tmp_path / "model.onnx"
    shutil.copy(SAMPLE, src)
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "out.onnx").write_bytes(b"previous output")
    prefix = _read_only(ro)
    r = subprocess.run([*prefix, sys.executable, "-m", "graphopt.cli.main", "optimize", str(src), "-o",
                        str(ro / "out.onnx"), "--no-validate"], capture_output=True, timeout=300)
    ro.chmod(0o755)
    err = r.stderr.decode()
    assert r.returncode == EXIT_OUTPUT, err
    assert "Traceback" not in err and f"error: {ro / 'out.onnx'}" in err
    assert (ro / "out.onnx").read_bytes() == b"previous output" and os.listdir(ro) == ["out.onnx"]


def test_a_run_in_an_empty_folder_leaves_only_the_output(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    r = subprocess.run([sys.executable, "-m", "graphopt.cli.main", "optimize", "-", "-o", "out.onnx"],
                       input=SAMPLE.read_bytes(), capture_output=True, cwd=work, timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    assert os.listdir(work) == ["out.onnx"]


@pytest.mark.parametrize("bug, needle", [("test-rename-output", "graph outputs changed"),
                                         ("test-bad-attr", "Unrecognized attribute"),
                                         ("test-dangle", "'ghost'")])
def test_a_pass_that_breaks_the_model_is_named_and_nothing_is_written(gsub, tmp_path: Path, bug: str,
                                                                      needle: str) -> None:
    src = tmp_path / "model.onnx"
    shutil.copy(ROOT / "samples" / "cnn.onnx", src)  # it has Relu nodes for test-bad-attr
    before = src.read_bytes()
    for extra in ([], ["--no-validate"]):
        r = gsub("optimize", str(src), "-o", "out.onnx", "--passes", f"dce,{bug},cse", *extra)
        err = r.stderr.decode()
        assert r.returncode == EXIT_INTERNAL, err
        assert f"pass {bug!r} made it" in err and needle in err and f"--skip {bug}" in err
        assert "Traceback" not in err and r.stdout == b""
        assert not (tmp_path / "out.onnx").exists() and src.read_bytes() == before


BACKGROUND = ("import graphopt.runner as _r\n"
              "_r.BACKGROUND_CHECK_NODES = 0  # every model: onnx's checker in a child while the passes run\n"
              "_r.BACKGROUND_CHECK_BYTES = 0  # ... started on the file before it is loaded\n")


def test_the_background_checker_gives_the_same_verdicts(gsub, tmp_path: Path) -> None:
    # big models have onnx's checker run in a forked child while graphopt works; forced here for small ones
    from onnx import TensorProto as T
    from onnx import helper as h

    src = tmp_path / "model.onnx"
    shutil.copy(ROOT / "samples" / "cnn.onnx", src)
    r = gsub("optimize", str(src), "-o", "ok.onnx", prelude=BACKGROUND)
    assert r.returncode == 0 and (tmp_path / "ok.onnx").is_file(), r.stderr.decode()
    x = h.make_tensor_value_info("x", T.FLOAT, [2, 3])
    w = onnx.numpy_helper.from_array(np.ones((5, 5), np.float32), "w")
    bad = h.make_model(h.make_graph([h.make_node("MatMul", ["x", "w"], ["y"])], "g", [x],
                                    [h.make_tensor_value_info("y", T.FLOAT, [2, 5])], [w]),
                       opset_imports=[h.make_opsetid("", 17)], ir_version=8)
    onnx.save(bad, str(tmp_path / "bad.onnx"))
    r = gsub("optimize", str(tmp_path / "bad.onnx"), "-o", "bad.out.onnx", prelude=BACKGROUND)
    err = r.stderr.decode()
    assert r.returncode == 3 and "incompatible dimensions" in err and r.stdout == b"", err
    assert not (tmp_path / "bad.out.onnx").exists()
    for extra in ([], ["--no-validate"]):
        r = gsub("optimize", str(src), "-o", "broken.onnx", "--passes", "dce,test-bad-attr", *extra,
                 prelude=BACKGROUND)
        err = r.stderr.decode()
        assert r.returncode == EXIT_INTERNAL and "pass 'test-bad-attr' made it" in err, err
        assert r.stdout == b"" and not (tmp_path / "broken.onnx").exists()
    # the checker started before the load is cancelled when graphopt's own checks refuse the model first ...
    dangling = h.make_model(h.make_graph([h.make_node("Relu", ["nowhere"], ["y"])], "g", [x],
                                         [h.make_tensor_value_info("y", T.FLOAT, [2, 3])]),
                            opset_imports=[h.make_opsetid("", 17)], ir_version=8)
    onnx.save(dangling, str(tmp_path / "dangling.onnx"))
    r = gsub("optimize", str(tmp_path / "dangling.onnx"), "-o", "d.out.onnx", prelude=BACKGROUND)
    err = r.stderr.decode()
    assert r.returncode == 3 and "'nowhere'" in err and "Traceback" not in err, err
    # ... and finds a model's external data beside the file, as graphopt does
    ext = onnx.load(str(src))
    onnx.save(ext, str(tmp_path / "ext.onnx"), save_as_external_data=True, location="ext.data", size_threshold=64)
    r = gsub("optimize", str(tmp_path / "ext.onnx"), "-o", "ext.out.onnx", prelude=BACKGROUND)
    assert r.returncode == 0 and (tmp_path / "ext.out.onnx").is_file(), r.stderr.decode()
    # a shape stored out there is unreadable to onnx and onnxruntime alike: refused, in words that say so
    onnx.save(ext, str(tmp_path / "ext0.onnx"), save_as_external_data=True, location="ext0.data", size_threshold=0)
    r = gsub("optimize", str(tmp_path / "ext0.onnx"), "-o", "ext0.out.onnx", prelude=BACKGROUND)
    err = r.stderr.decode()
    assert r.returncode == 3 and "is stored as external data" in err and "store it inline" in err, err
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".graphopt")]
