"""Shared fixtures. One seeded rng; no unseeded randomness anywhere."""

from __future__ import annotations

import numpy as np
import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="Rewrite the golden text snapshots in tests/golden/ instead of comparing.")
    parser.addoption("--update-screenshot", action="store_true", default=False,
                     help="Rewrite docs/report-html.png (the README's picture) from the browser test's screenshot.")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261126)


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))
