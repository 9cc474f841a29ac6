"""Recorded reference values: what the graded tests compare with, so that they grade without src/solution/.

A graded file whose tests compare with the reference declares one `RECORDING = Recording(name, compute)`. `compute()`
runs the reference (loading.REFERENCE, instructor repository only) on the file's fixed inputs and returns a dict of
tensors, numbers, strings and lists; `uv run python -m tests.graded.record` writes it to
tests/graded/recorded/<name>.pt, the tests read it back with `RECORDING.values()`, and
tests/harness/test_recorded.py recomputes every recording and fails when one is stale.
"""

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

FOLDER = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Recording:
    name: str  # the file: tests/graded/recorded/<name>.pt
    compute: Callable[[], dict]  # the values, from the reference
    rtol: float = 0.0  # how far a recomputation may drift, beside 1e-5 absolute (strings are notes, not compared)
    slow: bool = False  # computing it trains a model (its staleness check runs in the full suite only)

    @property
    def path(self) -> Path:
        return FOLDER / f"{self.name}.pt"

    def values(self) -> dict:
        return _load(self.path)

    def save(self) -> Path:
        torch.save(self.compute(), self.path)
        _load.cache_clear()
        return self.path


@lru_cache
def _load(path: Path) -> dict:
    return torch.load(path, weights_only=True)
