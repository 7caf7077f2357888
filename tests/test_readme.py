"""README.md stays true: its test command is what CI runs, its exit-code table is the one the code uses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from graphopt.errors import EXIT_CODES

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _commands() -> list[str]:
    return re.findall(r"```sh\n(.*?)\n```", README, flags=re.S)


def test_ci_runs_exactly_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    test_cmd = ci[-1].strip()
    assert test_cmd.startswith("python -m pytest")
    assert test_cmd in _commands(), "the README's test command differs from .ci/run's"
    assert any("pip install -e '.[dev]'" in c for c in ci)


def test_ci_runs_the_readme_commands_in_the_readme_order() -> None:
    ci = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()
          if ln.strip() and not ln.startswith("#")]
    setup, tests = _commands()[0], _commands()[1]
    assert setup in ci and tests in ci
    assert ci.index(setup) < ci.index(tests), "CI must run the sample optimization before the tests, as a user does"


def test_setup_command_installs_and_optimizes_a_sample() -> None:
    setup = _commands()[0]
    assert setup.startswith("pip install -e '.[dev]' && graphopt optimize samples/")
    sample = setup.split("graphopt optimize ", 1)[1].split()[0]
    assert (ROOT / sample).is_file()


def test_exit_code_table_matches_the_code() -> None:
    rows = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", README, flags=re.M))
    assert {int(k) for k in rows} == set(EXIT_CODES)
    for code, text in EXIT_CODES.items():
        assert rows[str(code)] == text, code


def test_python_api_example_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    block = re.search(r"### Python API.*?```python\n(.*?)\n```", README, flags=re.S)
    assert block, "README has no Python API example"
    shutil.copytree(ROOT / "samples", tmp_path / "samples", ignore=shutil.ignore_patterns("*.opt.onnx"))
    monkeypatch.chdir(tmp_path)
    printed: list[str] = []
    exec(compile(block.group(1), "README.md", "exec"), {"print": lambda *a: printed.append(" ".join(map(str, a)))})
    assert (tmp_path / "cnn.small.onnx").is_file()
    assert printed[0] == "0 25 -> 11 passed"
    assert printed[1].startswith("optimizable graphopt would still change the model")
    assert printed[2].endswith(" passed") and int(printed[2].split()[0]) < 85
