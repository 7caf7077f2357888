"""Third-party passes plug in through the `graphopt.passes` entry-point group.

The test package is made in a temporary folder exactly as an installer lays one out in site-packages: the module
and a `<name>.dist-info` folder with METADATA and entry_points.txt. The CLI runs in a subprocess with that folder
on PYTHONPATH, so discovery goes through importlib.metadata like for any installed plugin.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import onnx
import pytest

from graphopt.jit import init
from graphopt.pipeline import PipelineConfig

PLUGIN_SRC = '''
from dataclasses import dataclass
from graphopt.passes.base import Pass, PassResult, option


@dataclass(frozen=True)
class TagPass(Pass):
    """Tag the model's metadata (a visible, harmless change)."""

    name = "tag-model"
    kind = "analysis"
    summary = "write a tag into the model's metadata_props"
    presets = frozenset({"O3"})
    value: str = option("yes", "the tag's value")

    def run(self, model, ctx):
        if model.metadata_props.get("tagged") == self.value:
            return PassResult()
        model.metadata_props["tagged"] = self.value
        model.mutations += 1
        return PassResult.of(tagged=1)
'''

ENTRY_POINTS = """
[graphopt.passes]
tag = graphopt_testplugin:TagPass
broken = graphopt_testplugin_missing:Nope
"""


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    (site / "graphopt_testplugin").mkdir(parents=True)
    (site / "graphopt_testplugin" / "__init__.py").write_text(PLUGIN_SRC)
    di = site / "graphopt_testplugin-0.1.dist-info"
    di.mkdir()
    (di / "METADATA").write_text("Metadata-Version: 2.1\nName: graphopt-testplugin\nVersion: 0.1\n")
    (di / "entry_points.txt").write_text(textwrap.dedent(ENTRY_POINTS))
    (di / "RECORD").write_text("")
    return site


def _run(args: list[str], site: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(site) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "graphopt.cli.main", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120)


def test_plugin_is_listed_and_broken_plugin_warns(plugin_dir: Path, tmp_path: Path) -> None:
    r = _run(["passes", "--json"], plugin_dir, tmp_path)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    tag = [p for p in data["passes"] if p["name"] == "tag-model"]
    assert tag and tag[0]["origin"] == "plugin:tag" and tag[0]["presets"] == ["O3"]
    assert tag[0]["options"][0]["name"] == "value"
    assert any("broken" in w and "failed to load" in w for w in data["warnings"])
    r = _run(["passes"], plugin_dir, tmp_path)
    assert r.returncode == 0 and "tag-model" in r.stdout and "broken" in r.stderr


def test_plugin_pass_runs(plugin_dir: Path, tmp_path: Path) -> None:
    src = Path(__file__).resolve().parents[2] / "samples" / "cnn.onnx"
    out = tmp_path / "out.onnx"
    r = _run(["optimize", str(src), "-o", str(out), "--passes", "tag-model", "--set", "tag-model.value=hello",
              "--no-validate"], plugin_dir, tmp_path)
    if r.returncode == 2 and "--no-validate" in r.stderr:  # before validation exists
        r = _run(["optimize", str(src), "-o", str(out), "--passes", "tag-model", "--set", "tag-model.value=hello"],
                 plugin_dir, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "broken" in r.stderr  # the broken plugin is reported, and the run went on
    m = onnx.load(str(out))
    assert {p.key: p.value for p in m.metadata_props}.get("tagged") == "hello"


def test_in_process_entry_points_and_context_isolation(plugin_dir: Path) -> None:
    from importlib.metadata import distributions

    sys.path.insert(0, str(plugin_dir))
    try:
        dist = next(d for d in distributions(path=[str(plugin_dir)]) if d.metadata["Name"] == "graphopt-testplugin")
        eps = [ep for ep in dist.entry_points if ep.group == "graphopt.passes"]
        with_plugins = init(None, PipelineConfig(passes=[]), entry_points=eps)
        without = init(None, PipelineConfig(passes=[]), plugins=False)
        assert "tag-model" in with_plugins.passes and "tag-model" not in without.passes
        assert with_plugins.plugins == ["tag"]
        assert any("broken" in w for w in with_plugins.warnings)
        assert "1 plugin" in with_plugins.step("submodule").summary
    finally:
        sys.path.remove(str(plugin_dir))
        sys.modules.pop("graphopt_testplugin", None)
