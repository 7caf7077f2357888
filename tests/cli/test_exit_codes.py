"""One test per row of the exit-code table in graphopt/errors.py (codes 0-8), each a real run of the CLI on a real
model with real onnxruntime. Bugs (wrong passes, a crashing pass, a pass that corrupts the model) come from the test
plugin (tests/cli/clitest_plugin_src.py), installed as a real plugin package."""

from __future__ import annotations

import json
from pathlib import Path

import onnx

from graphopt.errors import (
    EXIT_CODES,
    EXIT_INTERNAL,
    EXIT_INVALID_MODEL,
    EXIT_MISMATCH,
    EXIT_OK,
    EXIT_OOM,
    EXIT_OPTIMIZABLE,
    EXIT_OUTPUT,
    EXIT_PASS_FAILED,
    EXIT_USAGE,
)


def test_the_table_has_nine_rows_and_the_two_signals() -> None:
    assert sorted(EXIT_CODES) == [*range(9), 130, 143]


def test_exit_0_success(cli, add_model: Path, tmp_path: Path) -> None:
    r = cli("optimize", str(add_model), "-o", "out.onnx", "--passes", "test-drop-identity", "--report-json",
            "r.json")
    assert r.exit_code == EXIT_OK, r.stderr
    out = onnx.load(str(tmp_path / "out.onnx"))
    assert [n.op_type for n in out.graph.node] == ["Add", "Relu", "Mul"]
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["exit_code"] == 0 and rep["models"][0]["status"] == "ok"
    assert rep["models"][0]["validation"]["status"] == "passed"


def test_exit_1_validation_mismatch(cli, add_model: Path, tmp_path: Path) -> None:
    r = cli("optimize", str(add_model), "-o", "out.onnx", "--passes", "test-drop-identity,test-break-add",
            "--strict")
    assert r.exit_code == EXIT_MISMATCH, r.stderr
    assert not (tmp_path / "out.onnx").exists()  # --strict: nothing written
    assert "different outputs" in r.stderr and "test-break-add" in r.stderr
    # check: the same mismatch fails the CI step
    r = cli("check", str(add_model), "--passes", "test-break-add")
    assert r.exit_code == EXIT_MISMATCH
    assert "mismatch" in r.stdout


def test_exit_2_usage_error(cli, add_model: Path) -> None:
    r = cli("optimize", str(add_model), "-o", "-", "--report-json", "-")
    assert r.exit_code == EXIT_USAGE
    assert "stdout carries the model" in r.stderr and r.stdout == ""
    r = cli("optimize", str(add_model), "--passes", "test-break-ad")
    assert r.exit_code == EXIT_USAGE and "did you mean 'test-break-add'" in r.stderr
    r = cli("optimize", str(add_model), "--dim", "N")
    assert r.exit_code == EXIT_USAGE and "NAME=SIZE" in r.stderr


def test_exit_3_invalid_input_model(cli, invalid_model: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\xff\xfe this is not protobuf")
    r = cli("optimize", str(junk))
    assert r.exit_code == EXIT_INVALID_MODEL, r.stderr
    assert "not a valid ONNX model" in r.stderr
    r = cli("check", str(invalid_model))
    assert r.exit_code == EXIT_INVALID_MODEL
    assert "no node produces" in r.stdout and "invalid" in r.stdout


def test_exit_4_pass_failed_with_strict(cli, add_model: Path, tmp_path: Path) -> None:
    r = cli("optimize", str(add_model), "-o", "out.onnx", "--passes", "test-explode", "--strict")
    assert r.exit_code == EXIT_PASS_FAILED, r.stderr
    assert "test-explode" in r.stderr and "boom" in r.stderr
    assert not (tmp_path / "out.onnx").exists()
    # without --strict the pass is rolled back and reported; the run succeeds
    r = cli("optimize", str(add_model), "-o", "out.onnx", "--passes", "test-explode")
    assert r.exit_code == EXIT_OK and "rolled back" in r.stdout


def test_exit_5_internal_error(cli, add_model: Path, tmp_path: Path) -> None:
    r = cli("optimize", str(add_model), "-o", "out.onnx", "--passes", "test-corrupt", "--no-validate")
    assert r.exit_code == EXIT_INTERNAL, r.stderr
    assert "internal" in r.stderr.lower() or "unexpected" in r.stderr
    assert "--debug" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out.onnx").exists()
    r = cli("optimize", str(add_model), "-o", "out.onnx", "--passes", "test-corrupt", "--debug")
    assert r.exit_code == EXIT_INTERNAL and "Traceback" in r.stderr


def test_exit_6_output_error(cli, add_model: Path) -> None:
    r = cli("optimize", str(add_model), "-o", "no/such/folder/out.onnx")
    assert r.exit_code == EXIT_OUTPUT, r.stderr
    assert "output folder does not exist" in r.stderr
    # the report says the model was optimized and validated but not written
    r = cli("optimize", str(add_model), "-o", "no/such/folder/out.onnx", "-q", "--report-json", "r.json")
    rep = json.loads(Path("r.json").read_text())["models"][0]
    assert rep["exit_code"] == EXIT_OUTPUT and not rep["written"] and rep["validation"]["status"] == "passed"


OOM_PRELUDE = """
import resource
import onnxruntime, onnx, numpy, rich.console, graphopt.cli.main, graphopt.validate, graphopt.report  # noqa
# everything is imported: cap the address space at a little above what this process already uses
vm = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmSize')) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + 256 * 2**20, resource.RLIM_INFINITY))
"""


def test_exit_7_out_of_memory(gsub, tmp_path: Path) -> None:
    big = tmp_path / "big.onnx"
    with open(big, "wb") as f:  # a 1 GiB model file (sparse: costs no disk) against a 256 MiB memory headroom
        f.truncate(2**30)
    r = gsub("optimize", str(big), prelude=OOM_PRELUDE, plugin=False)
    assert r.returncode == EXIT_OOM, r.stderr.decode()
    assert b"out of memory" in r.stderr
    assert b"Traceback" not in r.stderr


def test_exit_8_check_fail_if_optimizable(cli, add_model: Path, clean_model: Path) -> None:
    r = cli("check", str(add_model), "--passes", "test-drop-identity", "--fail-if-optimizable")
    assert r.exit_code == EXIT_OPTIMIZABLE, r.stdout + r.stderr
    assert "would still change" in r.stdout and "remove 1 of 4 nodes" in r.stdout
    # without the flag, an optimizable model passes; a model graphopt leaves alone passes with it
    assert cli("check", str(add_model), "--passes", "test-drop-identity").exit_code == EXIT_OK
    assert cli("check", str(clean_model), "--passes", "test-drop-identity",
               "--fail-if-optimizable").exit_code == EXIT_OK
