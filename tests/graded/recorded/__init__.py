"""Recorded reference values: what the graded tests compare with, so they run without src/solution/.

`reference.json` holds the reference model's parameter counts and its short training run's losses;
`sampler_trace.pt` holds every model call of the reference sampler on the fixed RecordingModel (tests/graded/fakes.py)
and seed. `uv run python -m src.harness.record_reference` (instructor repository only) rewrites both, and
tests/harness/test_recorded.py recomputes them from src/solution/ and fails when one is stale.
"""

import json
from functools import lru_cache
from pathlib import Path

import torch

FOLDER = Path(__file__).resolve().parent
REFERENCE_JSON = FOLDER / "reference.json"
SAMPLER_TRACE = FOLDER / "sampler_trace.pt"


@lru_cache(maxsize=1)
def reference() -> dict:
    """{"parameters": {dataset: count}, "short_run": {"before", "after", "precision", ...}}."""
    return json.loads(REFERENCE_JSON.read_text())


def sampler_trace() -> tuple[torch.Tensor, list[tuple[list[int], torch.Tensor]]]:
    """(x_0 returned, [(t as a list, x_t passed in) for every model call]) of the reference sampler."""
    trace = torch.load(SAMPLER_TRACE, weights_only=True)
    calls = [(t.tolist(), x) for t, x in zip(trace["timesteps"], trace["inputs"])]
    return trace["output"], calls


def save_sampler_trace(output: torch.Tensor, calls: list) -> None:
    torch.save({"output": output.clone(), "timesteps": torch.tensor([t for t, _ in calls]),
                "inputs": torch.stack([x for _, x in calls])}, SAMPLER_TRACE)
