"""Bad input never ends in a traceback, a half-written file or a lost model (real `graphopt` processes).

Each kind of bad input gives a one-line error naming the file and what is wrong, exit code 3, no traceback, and no
output file; the input is never touched.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "cnn.onnx"


def graphopt(*args: str, stdin: bytes | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "graphopt.cli.main", *args], input=stdin, capture_output=True,
                          cwd=cwd, env=env, timeout=300)


def _invalid_models(tmp: Path) -> dict[str, Path]:
    """Models that decode but are invalid, one per class the validity gate refuses (and onnxruntime too)."""
    from onnx import TensorProto as T
    from onnx import helper as h

    x = h.make_tensor_value_info("x", T.FLOAT, [2, 3])
    y = h.make_tensor_value_info("y", T.FLOAT, [2, 3])
    w = onnx.numpy_helper.from_array(np.ones((5, 5), np.float32), "w")
    short = onnx.TensorProto(name="w", data_type=T.FLOAT, dims=[2, 3], raw_data=b"\0" * 20)

    def ext(location: str) -> onnx.TensorProto:
        t = onnx.TensorProto(name="w", data_type=T.FLOAT, dims=[2, 3], data_location=T.EXTERNAL)
        e = t.external_data.add()
        e.key, e.value = "location", location
        return t

    (tmp / "secret.bin").write_bytes(b"\0" * 24)
    (tmp / "sub").mkdir(exist_ok=True)
    graphs = {
        "cycle": ([h.make_node("Add", ["x", "b"], ["a"]), h.make_node("Relu", ["a"], ["b"]),
                   h.make_node("Relu", ["b"], ["y"])], [y], []),
        "dangling read": ([h.make_node("Add", ["x", "ghost"], ["a"]), h.make_node("Relu", ["x"], ["y"])], [y], []),
        "unproduced output": ([h.make_node("Relu", ["x"], ["a"])], [y], []),
        "contradicting shapes": ([h.make_node("MatMul", ["x", "w"], ["y"])],
                                 [h.make_tensor_value_info("y", T.FLOAT, [2, 5])], [w]),
        "two producers": ([h.make_node("Relu", ["x"], ["y"]), h.make_node("Neg", ["x"], ["y"])], [y], []),
        "short tensor": ([h.make_node("Add", ["x", "w"], ["y"])], [y], [short]),
        "data outside": ([h.make_node("Add", ["x", "w"], ["y"])], [y], [ext("../secret.bin")]),
        "absolute data": ([h.make_node("Add", ["x", "w"], ["y"])], [y], [ext(str(tmp / "secret.bin"))]),
        "missing data": ([h.make_node("Add", ["x", "w"], ["y"])], [y], [ext("missing.bin")]),
    }
    out = {}
    for kind, (nodes, outputs, inits) in graphs.items():
        mp = h.make_model(h.make_graph(nodes, "g", [x], outputs, inits), opset_imports=[h.make_opsetid("", 17)],
                          ir_version=8)
        p = tmp / "sub" / (kind.replace(" ", "_") + ".onnx")
        p.write_bytes(mp.SerializeToString())
        out[kind] = p
    return out


INVALID = ["cycle", "dangling read", "unproduced output", "contradicting shapes", "two producers", "short tensor",
           "data outside", "absolute data", "missing data"]


def _bad_inputs(tmp: Path) -> dict[str, Path]:
    good = SAMPLE.read_bytes()
    (tmp / "empty.onnx").write_bytes(b"")
    (tmp / "random.onnx").write_bytes(bytes((i * 7919 + 13) % 251 for i in range(4096)))
    (tmp / "truncated.onnx").write_bytes(good[: len(good) // 3])
    (tmp / "text.onnx").write_text("this is a README, not a model\n")
    (tmp / "a_dir.onnx").mkdir()
    return {"missing": tmp / "missing.onnx", "directory": tmp / "a_dir.onnx", "empty": tmp / "empty.onnx",
            "random bytes": tmp / "random.onnx", "truncated": tmp / "truncated.onnx", "text": tmp / "text.onnx",
            **_invalid_models(tmp)}


@pytest.mark.parametrize("kind", ["missing", "directory", "empty", "random bytes", "truncated", "text", *INVALID])
@pytest.mark.parametrize("command", ["optimize", "inspect", "check"])
def test_bad_input_is_one_clean_line(kind: str, command: str, tmp_path: Path) -> None:
    path = _bad_inputs(tmp_path)[kind]
    before = path.read_bytes() if path.is_file() else None
    r = graphopt(command, str(path))
    err, out = r.stderr.decode(), r.stdout.decode()
    assert r.returncode == 3, err + out
    assert "Traceback" not in err + out
    if command == "check":  # a CI report: one line per model on stdout, then the summary table
        first = out.splitlines()[0]
        assert first.startswith("✗ ") and str(path) in first and "invalid" in first, out
    else:
        first = [ln for ln in err.splitlines() if ln.strip()][0]
        assert first.startswith(f"error: {path}: "), err
        assert len([ln for ln in err.splitlines() if ln.startswith("error:")]) == 1
        assert [ln for ln in err.splitlines() if ln.startswith("hint: ")], err
        if command == "optimize":
            assert out == ""  # no report table follows an error: the report is for models that were processed
    if before is not None:
        assert path.read_bytes() == before
    for folder in (tmp_path, tmp_path / "sub"):
        if folder.is_dir():
            assert not list(folder.glob("*.opt.onnx")) and not list(folder.glob(".graphopt-*"))


@pytest.mark.parametrize("kind", INVALID)
def test_onnxruntime_refuses_every_invalid_class_too(kind: str, tmp_path: Path) -> None:
    # the gate refuses nothing onnxruntime would run: each of these classes is one onnxruntime refuses as well
    import onnxruntime as ort

    path = _invalid_models(tmp_path)[kind]
    with pytest.raises(Exception):  # noqa: B017 - any onnxruntime refusal
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_no_check_skips_onnx_checker_but_never_the_structure(tmp_path: Path) -> None:
    models = _invalid_models(tmp_path)
    r = graphopt("optimize", str(models["contradicting shapes"]), "--no-check", "--no-validate", "-o",
                 str(tmp_path / "out.onnx"))
    assert r.returncode == 0 and (tmp_path / "out.onnx").is_file(), r.stderr.decode()
    r = graphopt("optimize", str(models["dangling read"]), "--no-check", "-o", str(tmp_path / "out2.onnx"))
    assert r.returncode == 3 and not (tmp_path / "out2.onnx").exists()


def test_bad_stdin_is_one_clean_line() -> None:
    r = graphopt("optimize", "-", "-o", "-", stdin=b"\x08\x96\x01garbage")
    assert r.returncode == 3 and r.stdout == b""
    assert "Traceback" not in r.stderr.decode() and r.stderr.decode().startswith("error: <stdin>")


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    p = tmp_path / "t.onnx"
    p.write_bytes(SAMPLE.read_bytes()[:100])
    r = graphopt("optimize", str(p), "--debug")
    assert r.returncode == 3 and "Traceback" in r.stderr.decode()


def test_stdin_to_stdout_pipeline(tmp_path: Path) -> None:
    r = graphopt("optimize", "-", "-o", "-", stdin=SAMPLE.read_bytes())
    assert r.returncode == 0, r.stderr.decode()
    m = onnx.load_from_string(r.stdout)  # stdout carries the model and nothing else
    onnx.checker.check_model(m, full_check=True)
    assert len(m.graph.node) < len(onnx.load(str(SAMPLE)).graph.node)
    assert b"nodes" in r.stderr  # the human report went to stderr


def test_default_output_beside_the_input_and_input_never_overwritten(tmp_path: Path) -> None:
    src = tmp_path / "model.onnx"
    src.write_bytes(SAMPLE.read_bytes())
    r = graphopt("optimize", str(src), "-q")
    assert r.returncode == 0 and (tmp_path / "model.opt.onnx").is_file()
    assert src.read_bytes() == SAMPLE.read_bytes()
    r = graphopt("optimize", str(src), "-o", str(src))
    assert r.returncode == 2 and b"--in-place" in r.stderr
    assert src.read_bytes() == SAMPLE.read_bytes()
    r = graphopt("optimize", str(src), "--in-place", "-q")
    assert r.returncode == 0 and src.read_bytes() != SAMPLE.read_bytes()
    onnx.checker.check_model(onnx.load(str(src)), full_check=True)
    assert not list(tmp_path.glob(".graphopt-*"))


def test_disk_full_on_stdout_is_an_output_error() -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    with open("/dev/full", "wb") as full:
        r = subprocess.run([sys.executable, "-m", "graphopt.cli.main", "optimize", str(SAMPLE), "-o", "-",
                            "--no-validate"], stdout=full, stderr=subprocess.PIPE, timeout=300)
    assert r.returncode == 6, r.stderr.decode()
    assert "Traceback" not in r.stderr.decode() and "space" in r.stderr.decode()


def test_validation_that_cannot_run_an_invalid_original_is_an_error_not_a_skip(tmp_path: Path) -> None:
    # with onnx's checker off, onnxruntime is the one to find the contradicting shapes: still exit 3, not "skipped"
    models = _invalid_models(tmp_path)
    out = tmp_path / "out.onnx"
    r = graphopt("optimize", str(models["contradicting shapes"]), "--no-check", "-o", str(out))
    err = r.stderr.decode()
    assert r.returncode == 3 and not out.exists(), err
    assert "onnxruntime refuses the model" in err and "Incompatible dimensions" in err
    # a model onnxruntime lacks an op for is not invalid: validation is skipped, with a warning, and it is written
    from onnx import TensorProto as T
    from onnx import helper as h

    x = h.make_tensor_value_info("x", T.FLOAT, [2])
    mp = h.make_model(h.make_graph([h.make_node("Frob", ["x"], ["y"], domain="com.example")], "g", [x],
                                   [h.make_tensor_value_info("y", T.FLOAT, [2])]),
                      opset_imports=[h.make_opsetid("", 17), h.make_opsetid("com.example", 1)], ir_version=8)
    custom = tmp_path / "custom.onnx"
    onnx.save(mp, str(custom))
    r = graphopt("optimize", str(custom), "-o", str(out))
    assert r.returncode == 0 and out.exists(), r.stderr.decode()
    assert "validation skipped" in r.stderr.decode()
