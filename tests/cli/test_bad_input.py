"""Bad input never ends in a traceback, a half-written file or a lost model (real `graphopt` processes).

Each kind of bad input gives a one-line error naming the file and what is wrong, exit code 3, no traceback, and no
output file; the input is never touched.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "cnn.onnx"


def graphopt(*args: str, stdin: bytes | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "graphopt.cli.main", *args], input=stdin, capture_output=True,
                          cwd=cwd, env=env, timeout=300)


def _bad_inputs(tmp: Path) -> dict[str, Path]:
    good = SAMPLE.read_bytes()
    (tmp / "empty.onnx").write_bytes(b"")
    (tmp / "random.onnx").write_bytes(bytes((i * 7919 + 13) % 251 for i in range(4096)))
    (tmp / "truncated.onnx").write_bytes(good[: len(good) // 3])
    (tmp / "text.onnx").write_text("this is a README, not a model\n")
    (tmp / "a_dir.onnx").mkdir()
    return {"missing": tmp / "missing.onnx", "directory": tmp / "a_dir.onnx", "empty": tmp / "empty.onnx",
            "random bytes": tmp / "random.onnx", "truncated": tmp / "truncated.onnx", "text": tmp / "text.onnx"}


@pytest.mark.parametrize("kind", ["missing", "directory", "empty", "random bytes", "truncated", "text"])
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
        assert first.startswith("error: ") and str(path) in first, err
        assert len([ln for ln in err.splitlines() if ln.startswith("error:")]) == 1
    if before is not None:
        assert path.read_bytes() == before
    assert not list(tmp_path.glob("*.opt.onnx")) and not list(tmp_path.glob(".graphopt-*"))


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
