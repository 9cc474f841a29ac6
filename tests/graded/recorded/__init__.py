"""Recorded reference values: what the graded tests compare with, so that they grade without src/solution/.

A graded file whose tests compare with the reference declares one `RECORDING = Recording(name, compute)`. `compute()`
runs the reference (loading.REFERENCE, instructor repository only) on the file's fixed inputs and returns a dict of
tensors, numbers, strings and lists; `uv run python -m tests.graded.record` writes it to
tests/graded/recorded/<name>.pt, the tests read it back with `RECORDING.values()`, and
tests/harness/test_recorded.py recomputes every recording and fails when one is stale.

A `seeded` recording is the reference's trace of inputs drawn from a seed, `compute(seed)`, recorded at seed 0. The
Gradescope autograder grades at a seed it draws for each submission (trace_seed(), env KATA_FRESH_SEED) and
computes the reference's values there with its hidden reference, so a submission cannot replay the recorded traces
that the student release ships.
"""

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

FOLDER = Path(__file__).resolve().parent
FRESH_SEED = "KATA_FRESH_SEED"


def trace_seed() -> int:
    """The seed the exact-trace tests draw their inputs from: 0, whose reference values are recorded, or on the
    autograder the seed it drew for this submission."""
    return int(os.environ.get(FRESH_SEED, "0"))


@dataclass(frozen=True)
class Recording:
    name: str  # the file: tests/graded/recorded/<name>.pt
    compute: Callable[[], dict]  # the values, from the reference
    rtol: float = 0.0  # how far a recomputation may drift, beside 1e-5 absolute (strings are notes, not compared)
    slow: bool = False  # computing it trains a model (its staleness check runs in the full suite only)
    seeded: bool = False  # compute(seed) draws its inputs from seed (compute() from 0, the recorded one)

    @property
    def path(self) -> Path:
        return FOLDER / f"{self.name}.pt"

    def values(self) -> dict:
        """The reference's values at trace_seed(): recorded at 0, computed with the reference at any other."""
        seed = trace_seed()
        return _computed(self, seed) if self.seeded and seed else _load(self.path)

    def save(self) -> Path:
        torch.save(self.compute(), self.path)
        _load.cache_clear()
        return self.path


@lru_cache
def _load(path: Path) -> dict:
    return torch.load(path, weights_only=True)


@lru_cache
def _computed(recording: Recording, seed: int) -> dict:
    return recording.compute(seed)
