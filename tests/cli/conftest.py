"""Fixtures for the command-line tests: tiny models on disk, a real plugin package with test-only passes
(tests/cli/clitest_plugin_src.py), and two ways to run the CLI: in-process with click's runner (fast; the plugin
folder is put on sys.path, which spawned workers inherit), and in a subprocess (for a resource limit, or a real
binary stdout)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx.helper as oh
import onnx.parser
import pytest
from click.testing import CliRunner, Result

from graphopt.cli.main import main

HERE = Path(__file__).resolve().parent


def _plugin_module() -> Any:
    spec = importlib.util.spec_from_file_location("clitest_plugin_src", HERE / "clitest_plugin_src.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("clitest_plugin_src", mod)  # dataclasses look their module up while defining
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the installed test plugin (test-break-add, test-drop-identity, test-explode,
    test-corrupt)."""
    return _plugin_module().install(tmp_path_factory.mktemp("site"))


@pytest.fixture
def plugin(plugin_site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The test plugin, discoverable in this process (and in worker processes spawned from it)."""
    monkeypatch.syspath_prepend(str(plugin_site))
    yield plugin_site
    sys.modules.pop("graphopt_clitest_plugin", None)


def run_subprocess(args: list[str], *, cwd: Path, site: Path | None = None, stdin: bytes | None = None,
                   prelude: str | None = None, timeout: int = 180) -> subprocess.CompletedProcess[bytes]:
    """`graphopt ARGS` in a fresh interpreter (with the test plugin installed when `site` is given). `prelude` is
    Python run before the CLI's main (e.g. to set a resource limit)."""
    env = dict(os.environ)
    if site is not None:
        env["PYTHONPATH"] = str(site) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("COLUMNS", None)
    code = (prelude or "") + "\nimport sys\nfrom graphopt.cli.main import main\nsys.argv = ['graphopt'] + " \
        + repr(list(args)) + "\nmain()\n"
    return subprocess.run([sys.executable, "-c", code], input=stdin, capture_output=True, env=env, cwd=cwd,
                          timeout=timeout)


@pytest.fixture
def gsub(tmp_path: Path, plugin_site: Path) -> Callable[..., subprocess.CompletedProcess[bytes]]:
    """Run graphopt in a subprocess, with the test plugin installed, in tmp_path."""

    def run(*args: str, stdin: bytes | None = None, prelude: str | None = None,
            plugin: bool = True) -> subprocess.CompletedProcess[bytes]:
        return run_subprocess(list(args), cwd=tmp_path, site=plugin_site if plugin else None, stdin=stdin,
                              prelude=prelude)

    return run


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plugin: Path) -> Callable[..., Result]:
    """Run graphopt in-process (click's runner) in tmp_path, with the test plugin installed. stdout and stderr
    are kept apart (result.stdout, result.stderr)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("GRAPHOPT_DEBUG", raising=False)

    def run(*args: str, input: bytes | None = None) -> Result:
        return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)

    return run


# -- models ------------------------------------------------------------------------------------------------------
def save_text_model(path: Path, text: str, inits: dict[str, np.ndarray] | None = None) -> Path:
    mp = onnx.parser.parse_model(text)
    for name, arr in (inits or {}).items():
        mp.graph.initializer.append(onnx.numpy_helper.from_array(np.asarray(arr), name))
    onnx.checker.check_model(mp, full_check=True)
    onnx.save(mp, str(path))
    return path


ADD_MODEL = """
<ir_version: 8, opset_import: ["": 17]>
g (float[N,4] x) => (float[N,4] y, float[N,4] z) <float[4] w = {1.0, 2.0, 3.0, 4.0}> {
    a = Add(x, w)
    y = Relu(a)
    t = Identity(a)
    z = Mul(t, x)
}
"""

CLEAN_MODEL = """
<ir_version: 8, opset_import: ["": 17]>
g (float[N,4] x) => (float[N,4] y) {
    y = Relu(x)
}
"""

CUSTOM_OP_MODEL = """
<ir_version: 8, opset_import: ["": 17, "com.example": 1]>
g (float[N,4] x) => (float[N,4] y) {
    t = com.example.Frobnicate(x)
    y = Identity(t)
}
"""


@pytest.fixture
def write_text_model() -> Callable[..., Path]:
    """save_text_model(path, onnx_text, inits=None): a checked model file from ONNX text."""
    return save_text_model


@pytest.fixture
def add_model(tmp_path: Path) -> Path:
    """Add feeding two outputs, with an Identity in between: test-break-add breaks y and z, test-drop-identity
    (correct) removes one node."""
    return save_text_model(tmp_path / "add.onnx", ADD_MODEL)


@pytest.fixture
def clean_model(tmp_path: Path) -> Path:
    """Nothing for any pass to do."""
    return save_text_model(tmp_path / "clean.onnx", CLEAN_MODEL)


@pytest.fixture
def custom_op_model(tmp_path: Path) -> Path:
    """A custom-domain op onnxruntime does not know (the ONNX checker accepts unknown domains)."""
    mp = onnx.parser.parse_model(CUSTOM_OP_MODEL)
    onnx.save(mp, str(tmp_path / "custom.onnx"))
    return tmp_path / "custom.onnx"


@pytest.fixture
def invalid_model(tmp_path: Path) -> Path:
    """Decodes, but the checker rejects it: a node reads a value nothing defines."""
    x = oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])
    y = oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])
    g = oh.make_graph([oh.make_node("Add", ["x", "ghost"], ["y"])], "g", [x], [y])
    m = oh.make_model(g, opset_imports=[oh.make_opsetid("", 17)])
    m.ir_version = 8
    p = tmp_path / "invalid.onnx"
    onnx.save(m, str(p))
    return p


def load_report(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())
