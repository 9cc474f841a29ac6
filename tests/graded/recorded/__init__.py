"""Recorded reference values: what the graded tests compare with, so they run without src/solution/.

`reference.json` holds the reference model's parameter counts and its short training run's losses;
`sampler_trace.pt` holds every model call of the reference sampler on the fixed RecordingModel (tests/graded/fakes.py)
and seed; `flow.pt` the reference flow_matching_pair on fixed inputs and the model calls of its Euler sampler
(Level 7); `ddim.pt` the model calls of its DDIM sampler at eta = 0 and 1 (Level 5); `guided.pt` those of its guided
sampler on the fixed ConditionalRecordingModel at three guidance scales (Level 6). `uv run python -m tests.graded.record` (instructor repository only) rewrites them, and
tests/harness/test_recorded.py recomputes them from src/solution/ and fails when one is stale.
"""

import json
from functools import lru_cache
from pathlib import Path

import torch

FOLDER = Path(__file__).resolve().parent
REFERENCE_JSON = FOLDER / "reference.json"
SAMPLER_TRACE = FOLDER / "sampler_trace.pt"
FLOW = FOLDER / "flow.pt"
DDIM = FOLDER / "ddim.pt"
DDIM_ETAS = (0.0, 1.0)
GUIDED = FOLDER / "guided.pt"
GUIDANCE_SCALES = (0.0, 1.0, 3.0)  # the scales whose guided traces are recorded


@lru_cache(maxsize=1)
def reference() -> dict:
    """{"parameters": {dataset: count}, "short_run": {"before", "after", "precision", ...}}."""
    return json.loads(REFERENCE_JSON.read_text())


def _trace(output: torch.Tensor, calls: list) -> dict:
    return {"output": output.clone(), "timesteps": torch.tensor([t for t, _ in calls]),
            "inputs": torch.stack([x for _, x in calls])}


def _calls(trace: dict) -> list[tuple[list[int], torch.Tensor]]:
    return [(t.tolist(), x) for t, x in zip(trace["timesteps"], trace["inputs"])]


def sampler_trace() -> tuple[torch.Tensor, list[tuple[list[int], torch.Tensor]]]:
    """(x_0 returned, [(t as a list, x_t passed in) for every model call]) of the reference sampler."""
    trace = torch.load(SAMPLER_TRACE, weights_only=True)
    return trace["output"], _calls(trace)


def save_sampler_trace(output: torch.Tensor, calls: list) -> None:
    torch.save(_trace(output, calls), SAMPLER_TRACE)


def flow_pairs() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{"images": (x_s, v), "points": (x_s, v)}: the reference flow_matching_pair on fakes.flow_pair_inputs()."""
    return {kind: tuple(pair) for kind, pair in torch.load(FLOW, weights_only=True)["pairs"].items()}


def flow_trace() -> tuple[torch.Tensor, list[tuple[list[int], torch.Tensor]]]:
    """(x returned, [(t as a list, x passed in) for every model call]) of the reference euler_sample."""
    trace = torch.load(FLOW, weights_only=True)["trace"]
    return trace["output"], _calls(trace)


def save_flow(pairs: dict, output: torch.Tensor, calls: list) -> None:
    torch.save({"pairs": {kind: list(pair) for kind, pair in pairs.items()}, "trace": _trace(output, calls)}, FLOW)


def ddim_trace(eta: float) -> tuple[torch.Tensor, list[tuple[list[int], torch.Tensor]]]:
    """(x returned, [(t as a list, x passed in) for every model call]) of the reference ddim_sample at `eta`."""
    trace = torch.load(DDIM, weights_only=True)[str(eta)]
    return trace["output"], _calls(trace)


def save_ddim(traces: dict) -> None:
    """traces: {eta: (output, calls)} for every eta in DDIM_ETAS."""
    torch.save({str(eta): _trace(*trace) for eta, trace in traces.items()}, DDIM)


def guided_trace(scale: float) -> tuple[torch.Tensor, list[tuple[list[int], list[int], torch.Tensor]]]:
    """(x returned, [(t, y as lists, x passed in) for every model call]) of the reference guided_sample at `scale`."""
    trace = torch.load(GUIDED, weights_only=True)[str(scale)]
    return trace["output"], [(t.tolist(), y.tolist(), x) for t, y, x in
                             zip(trace["timesteps"], trace["labels"], trace["inputs"])]


def save_guided(traces: dict) -> None:
    """traces: {scale: (output, calls as (t, y, x))} for every scale in GUIDANCE_SCALES."""
    torch.save({str(scale): {"output": out.clone(), "timesteps": torch.tensor([t for t, _, _ in calls]),
                             "labels": torch.tensor([y for _, y, _ in calls]),
                             "inputs": torch.stack([x for _, _, x in calls])}
                for scale, (out, calls) in traces.items()}, GUIDED)
