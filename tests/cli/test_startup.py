"""Start-up: the commands that evaluate nothing import neither onnx nor onnxruntime (numpy and rich neither, for
--version and --help). Measured as Python itself records it (`python -X importtime`), in a fresh process; the time
figures belong to benchmarks/default_run.py, this test checks the behaviour."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = {"onnx", "onnxruntime", "numpy", "ml_dtypes"}


def _imported(*code_or_args: str, module: bool = True) -> tuple[set[str], str]:
    cmd = [sys.executable, "-X", "importtime"]
    cmd += (["-m", "graphopt.cli.main", *code_or_args] if module else ["-c", code_or_args[0]])
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    names = set()
    for line in p.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                names.add(name)
    assert "graphopt" in names or not module, "importtime recorded nothing: the test would prove nothing"
    return names, p.stdout


@pytest.mark.parametrize("args", [("--version",), ("--help",), ("optimize", "--help"), ("check", "--help")],
                         ids=["version", "help", "optimize-help", "check-help"])
def test_version_and_help_import_no_onnx_onnxruntime_or_numpy(args: tuple[str, ...]) -> None:
    names, out = _imported(*args)
    assert "graphopt" in out
    assert not (names & (HEAVY | {"rich"})), sorted(names & (HEAVY | {"rich"}))


def test_passes_lists_every_pass_without_onnx_or_onnxruntime() -> None:
    names, out = _imported("passes", "--json")
    assert "fold-constants" in out and "dce" in out
    assert not (names & {"onnx", "onnxruntime"}), sorted(names & {"onnx", "onnxruntime"})


def test_the_check_sees_onnx_when_a_command_needs_it(tmp_path) -> None:
    # the test can fail: `inspect` reads a model, so onnx is imported, and the parser sees it
    from graphopt.testing import from_text, snapshot

    p = tmp_path / "m.onnx"
    p.write_bytes(snapshot(from_text("<ir_version: 8, opset_import: [\"\" : 17]> g (float[N] x) => (float[N] y) "
                                     "{ y = Relu(x) }")))
    names, _ = _imported("inspect", str(p), "--no-symbols")
    assert "onnx" in names


def test_import_graphopt_is_lazy_and_complete() -> None:
    code = ("import sys, graphopt\n"
            "assert 'onnx' not in sys.modules and 'numpy' not in sys.modules, 'eager import'\n"
            "names = set(graphopt.__all__)\n"
            "assert names <= set(dir(graphopt))\n"
            "for n in sorted(names): getattr(graphopt, n)\n"
            "assert callable(graphopt.optimize_file) and graphopt.Model.__name__ == 'Model'\n"
            "from graphopt import ir, validate\n"
            "assert callable(ir.verify) and callable(validate.bisect)\n"
            "print('ok')\n")
    names, out = _imported(code, module=False)
    assert out.strip() == "ok"


def test_unknown_public_name_is_an_attribute_error() -> None:
    import graphopt

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        graphopt.nope  # noqa: B018
