"""graphopt in other people's CI and clusters, run for real where this machine can: the pre-commit hooks (through
`pre-commit try-repo`, which builds the hook's own environment and installs this repository into it), the composite
GitHub Action's shell step (with the files and variables a GitHub runner gives it), and the Dask example of
docs/distributed.md. GitHub itself cannot run here: the action's `uses:` steps are checked as data."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
BIN = Path(sys.executable).parent


def _invalid_model(path: Path) -> Path:
    import onnx
    import onnx.helper as oh

    x = oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])
    y = oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])
    g = oh.make_graph([oh.make_node("Add", ["x", "ghost"], ["y"])], "g", [x], [y])
    m = oh.make_model(g, opset_imports=[oh.make_opsetid("", 17)], ir_version=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(m.SerializeToString())
    return path


def _optimized_sample(tmp: Path) -> bytes:
    import graphopt

    rep = graphopt.optimize_file(SAMPLES / "cnn.onnx", tmp / "cnn.opt.onnx", validate=False)
    assert rep.exit_code == 0
    return (tmp / "cnn.opt.onnx").read_bytes()


# ================================================================================================================
# pre-commit
# ================================================================================================================
def _git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", "-c", "user.name=graphopt-test", "-c", "user.email=test@graphopt", "-c",
                    "commit.gpgsign=false", "-c", "init.defaultBranch=main", *args], cwd=cwd, check=True,
                   capture_output=True)


def _hook_repo(dest: Path) -> Path:
    """This project's files as they are now (committed or not) in a throwaway git repository: what a user's
    pre-commit clones at a tag."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    dest.mkdir()
    for name in ("pyproject.toml", "README.md", ".pre-commit-hooks.yaml"):
        shutil.copy2(ROOT / name, dest / name)
    for name in ("graphopt", "cli"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    _git("init", "-q", cwd=dest)
    _git("add", "-A", cwd=dest)
    _git("commit", "-q", "-m", "graphopt at test time", cwd=dest)
    return dest


def test_hooks_file_declares_both_hooks() -> None:
    yaml = pytest.importorskip("yaml")
    hooks = {h["id"]: h for h in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}
    assert set(hooks) == {"graphopt-check", "graphopt-check-optimized"}
    for h in hooks.values():
        assert h["language"] == "python" and re.search(h["files"], "models/a.onnx")
        assert not re.search(h["files"], "models/a.onnx.data") and not re.search(h["files"], "notes.txt")
        assert h.get("pass_filenames", True)
    assert hooks["graphopt-check"]["entry"] == "graphopt check"
    assert hooks["graphopt-check-optimized"]["entry"] == "graphopt check --fail-if-optimizable"


@pytest.mark.slow
def test_pre_commit_runs_the_hooks_on_the_staged_models(tmp_path: Path) -> None:
    pytest.importorskip("pre_commit")
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    hook = _hook_repo(tmp_path / "hook")
    work = tmp_path / "work"
    work.mkdir()
    _git("init", "-q", cwd=work)
    (work / "models").mkdir()
    shutil.copy2(SAMPLES / "cnn.onnx", work / "models" / "raw.onnx")           # valid, graphopt would change it
    (work / "models" / "done.onnx").write_bytes(_optimized_sample(tmp_path))    # valid, already optimized
    (work / "notes.txt").write_text("not a model\n")
    _git("add", "models/raw.onnx", "models/done.onnx", "notes.txt", cwd=work)
    _invalid_model(work / "models" / "scratch.onnx")                           # not staged: must not be checked
    env = dict(os.environ, PRE_COMMIT_HOME=str(tmp_path / "pre-commit-home"), PRE_COMMIT_COLOR="never",
               GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t",
               # the hook's own virtualenv sees the packages already installed here (onnx, onnxruntime, numpy), so
               # that its pip install of this repository downloads next to nothing; graphopt itself is installed
               # into the hook's environment from the hook repository, as for any user
               VIRTUALENV_SYSTEM_SITE_PACKAGES="1")
    r = subprocess.run([sys.executable, "-m", "pre_commit", "try-repo", str(hook), "--verbose"], cwd=work,
                       env=env, capture_output=True, text=True, timeout=600)
    out = r.stdout + r.stderr
    assert re.search(r"^graphopt check\.+Passed$", out, flags=re.M), out
    assert re.search(r"^graphopt check --fail-if-optimizable\.+Failed$", out, flags=re.M), out
    assert r.returncode == 1, out
    assert "exit code: 8" in out  # pre-commit shows the hook's exit code
    assert re.search(r"✗ models/raw\.onnx: optimizable: .*would still change the model", out), out
    assert "✓ models/done.onnx: valid" in out and "already optimized" in out
    assert "scratch.onnx" not in out and "notes.txt" not in out


# ================================================================================================================
# The GitHub Action
# ================================================================================================================
def _action() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load((ROOT / "action.yml").read_text())


def test_action_is_a_composite_action_with_the_documented_inputs() -> None:
    a = _action()
    assert a["name"] and a["description"] and a["runs"]["using"] == "composite"
    assert {"models", "preset", "args", "python-version", "upload-html", "shard", "junit-xml"} <= set(a["inputs"])
    assert all("description" in v and "default" in v for v in a["inputs"].values())
    assert set(a["outputs"]) == {"exit-code", "report-html"}
    setup, install, check, upload = a["runs"]["steps"]
    assert setup["uses"].startswith("actions/setup-python@") and "inputs.python-version" in setup["if"]
    assert install["shell"] == "bash" and 'pip install --disable-pip-version-check "$GITHUB_ACTION_PATH"' in \
        install["run"]
    assert check["id"] == "check" and check["shell"] == "bash"
    assert "${{" not in check["run"], "inputs must reach the script through env, never pasted into its text"
    assert upload["uses"].startswith("actions/upload-artifact@") and upload["if"].startswith("always()")
    assert upload["with"]["path"] == "${{ steps.check.outputs.report-html }}"
    for step in a["runs"]["steps"]:  # every `uses:` is pinned to a major version
        assert "uses" not in step or re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", step["uses"])


def _has_report_html() -> bool:
    from graphopt.cli.check import check_cmd

    return any("--report-html" in p.opts for p in check_cmd.params)


def _run_check_step(tmp_path: Path, **inputs: str) -> tuple[subprocess.CompletedProcess[str], dict[str, str], Path]:
    """Run the action's `graphopt check` step as a GitHub runner does: its env with the inputs substituted, bash
    with GitHub's flags, the runner's files (GITHUB_OUTPUT, GITHUB_STEP_SUMMARY, RUNNER_TEMP), in the workspace."""
    a = _action()
    step = next(s for s in a["runs"]["steps"] if s.get("id") == "check")
    values = {k: str(v["default"]) for k, v in a["inputs"].items()}
    values.update({k.replace("_", "-"): v for k, v in inputs.items()})
    env = dict(os.environ)
    for k, v in step["env"].items():
        env[k] = re.sub(r"\$\{\{\s*inputs\.([\w-]+)\s*\}\}", lambda m: values[m.group(1)], str(v))
    runner = tmp_path / "runner"
    runner.mkdir(exist_ok=True)
    for f in ("output", "summary.md"):
        (runner / f).write_text("")
    env.update(GITHUB_OUTPUT=str(runner / "output"), GITHUB_STEP_SUMMARY=str(runner / "summary.md"),
               RUNNER_TEMP=str(runner), GITHUB_ACTIONS="true", PATH=str(BIN) + os.pathsep + env["PATH"],
               COLUMNS="200")
    script = runner / "step.sh"
    script.write_text(step["run"])
    r = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=tmp_path / "ws",
                       env=env, capture_output=True, text=True, timeout=600)
    outputs = dict(ln.split("=", 1) for ln in (runner / "output").read_text().splitlines() if "=" in ln)
    return r, outputs, runner


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    (ws / "models" / "nested").mkdir(parents=True)
    (ws / "models" / "done.onnx").write_bytes(_optimized_sample(tmp_path))
    shutil.copy2(SAMPLES / "if_model.onnx", ws / "models" / "nested" / "if model.onnx")  # a space in the name
    return ws


def test_action_step_checks_the_glob_and_writes_the_summary(tmp_path: Path, workspace: Path) -> None:
    r, outputs, runner = _run_check_step(tmp_path, upload_html="false", junit_xml="junit.xml",
                                         args="--bench-runs 0 --trials 1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert outputs["exit-code"] == "0" and outputs["artifact-name"] == "graphopt-report"
    assert "report-html" not in outputs
    summary = (runner / "summary.md").read_text()
    assert summary.startswith("### graphopt check") and "`models/done.onnx`" in summary
    assert "`models/nested/if model.onnx`" in summary
    assert (workspace / "junit.xml").read_text().count("<testcase ") == 2
    assert "::error" not in r.stdout


def test_action_step_fails_with_the_exit_code_and_annotates_the_model(tmp_path: Path, workspace: Path) -> None:
    _invalid_model(workspace / "models" / "bad.onnx")
    r, outputs, _runner = _run_check_step(tmp_path, upload_html="false", args="--bench-runs 0 --trials 1",
                                          preset="O1")
    assert r.returncode == 3 and outputs["exit-code"] == "3", r.stdout + r.stderr
    assert "graphopt check -O1 " in r.stdout
    notes = [ln for ln in r.stdout.splitlines() if ln.startswith("::error ")]
    assert len(notes) == 1 and notes[0].startswith("::error file=models/bad.onnx,title=graphopt%3A invalid::")


def test_action_step_shards_and_names_the_artifact_per_shard(tmp_path: Path, workspace: Path) -> None:
    shutil.copy2(SAMPLES / "cnn.onnx", workspace / "models" / "cnn.onnx")
    seen = 0
    for k in (1, 2):
        r, outputs, runner = _run_check_step(tmp_path, upload_html="false", shard=f"{k}/2",
                                             args="--bench-runs 0 --trials 1")
        assert r.returncode == 0, r.stdout + r.stderr
        assert outputs["artifact-name"] == f"graphopt-report-shard-{k}-of-2"
        m = re.search(rf"shard {k}/2: (\d) of 3 model", (runner / "summary.md").read_text())
        assert m, (runner / "summary.md").read_text()
        seen += int(m.group(1))
    assert seen == 3


def test_action_step_refuses_a_glob_that_matches_nothing_and_a_bad_preset(tmp_path: Path, workspace: Path) -> None:
    r, outputs, _ = _run_check_step(tmp_path, models="nothing/**/*.onnx")
    assert r.returncode == 2 and outputs["exit-code"] == "2" and "::error title=graphopt::no model matches" in r.stdout
    r, outputs, _ = _run_check_step(tmp_path, preset="O9")
    assert r.returncode == 2 and "preset 'O9'" in r.stdout


def test_action_step_writes_the_html_report_for_upload(tmp_path: Path, workspace: Path) -> None:
    if not _has_report_html():
        pytest.skip("graphopt check has no --report-html in this tree (it comes with the HTML report branch)")
    r, outputs, runner = _run_check_step(tmp_path, args="--bench-runs 0 --trials 1")
    assert r.returncode == 0, r.stdout + r.stderr
    html = Path(outputs["report-html"])
    assert html.parent == runner / "graphopt" and html.name == "graphopt-report.html" and html.stat().st_size > 0


# ================================================================================================================
# docs/distributed.md: graphopt.optimize_file over a Dask cluster
# ================================================================================================================
@pytest.mark.slow
def test_the_dask_example_runs_as_written(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    doc = (ROOT / "docs" / "distributed.md").read_text()
    block = re.search(r"## Dask.*?```python\n(.*?)```", doc, flags=re.S)
    assert block, "docs/distributed.md has no Dask example"
    (tmp_path / "models" / "sub").mkdir(parents=True)
    shutil.copy2(SAMPLES / "cnn.onnx", tmp_path / "models" / "cnn.onnx")
    shutil.copy2(SAMPLES / "if_model.onnx", tmp_path / "models" / "sub" / "if_model.onnx")
    (tmp_path / "example.py").write_text(block.group(1))
    r = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    # the cluster's reports are those of the same calls made here, one by one
    import graphopt

    want = [graphopt.optimize_file(SAMPLES / name, tmp_path / f"local{i}.onnx", validate=False)
            for i, name in enumerate(("cnn.onnx", "if_model.onnx"))]
    assert r.stdout.splitlines() == [
        f"ok models/cnn.onnx -> models/cnn.opt.onnx 25 -> {want[0].nodes_after} nodes",
        f"ok models/sub/if_model.onnx -> models/sub/if_model.opt.onnx 19 -> {want[1].nodes_after} nodes"]
    assert (tmp_path / "models" / "sub" / "if_model.opt.onnx").is_file()


# ================================================================================================================
# The README's CI snippets name what exists
# ================================================================================================================
def test_readme_ci_snippets_use_the_real_hooks_inputs_and_flags() -> None:
    yaml = pytest.importorskip("yaml")
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### CI everywhere", 1)[1].split("\n### ", 1)[0]
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", section, flags=re.S)]
    hook_ids = {h["id"] for h in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}
    precommit = next(b for b in blocks if isinstance(b, dict) and "repos" in b)
    assert {h["id"] for h in precommit["repos"][0]["hooks"]} <= hook_ids
    assert "graphopt-check-optimized" in section
    inputs = set(_action()["inputs"])
    uses = [s for b in blocks if isinstance(b, dict) and "jobs" in b for job in b["jobs"].values()
            for s in job["steps"] if "graphopt@" in s.get("uses", "")]
    assert len(uses) == 2 and all(set(s.get("with", {})) <= inputs for s in uses)
    matrix = next(b for b in blocks if isinstance(b, dict) and "jobs" in b and "strategy" in b["jobs"]["models"])
    shards = matrix["jobs"]["models"]["strategy"]["matrix"]["shard"]
    step = next(s for s in matrix["jobs"]["models"]["steps"] if "graphopt@" in s.get("uses", ""))
    assert step["with"]["shard"] == "${{ matrix.shard }}/" + str(len(shards)) and shards == list(
        range(1, len(shards) + 1))
    gitlab = next(b for b in blocks if isinstance(b, dict) and "graphopt" in b)["graphopt"]
    assert "--junit-xml graphopt.xml" in gitlab["script"] and gitlab["artifacts"]["reports"]["junit"] == "graphopt.xml"
