"""README.md stays true: its test command is what CI runs, its exit-code table is the one the code uses."""

from __future__ import annotations

import re
from pathlib import Path

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


def test_setup_command_installs_and_optimizes_a_sample() -> None:
    setup = _commands()[0]
    assert setup.startswith("pip install -e '.[dev]' && graphopt optimize samples/")
    sample = setup.split("graphopt optimize ", 1)[1].split()[0]
    assert (ROOT / sample).is_file()


def test_exit_code_table_matches_the_code() -> None:
    rows = dict(re.findall(r"^\| (\d) \| (.+?) \|$", README, flags=re.M))
    assert {int(k) for k in rows} == set(EXIT_CODES)
    for code, text in EXIT_CODES.items():
        assert rows[str(code)] == text, code
