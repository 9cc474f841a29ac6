"""Shared pytest set-up: the --solution switch and helpers to run the harness on small settings."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("KATA_DATA_ROOT", ROOT.parent / "shared" / "data"))


def pytest_addoption(parser):
    parser.addoption("--solution", action="store_true",
                     help="grade the reference in src/solution/ instead of your src/model.py and src/sampler.py")


@pytest.fixture
def solution(request) -> bool:
    return request.config.getoption("--solution")
