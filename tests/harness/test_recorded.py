"""The recorded reference values (tests/graded/recorded/) match src/solution/.

The student release grades against these recordings instead of the reference, so a change to the reference,
a config or a graded test that moves one of them must come with `uv run python -m tests.graded.record`.

Each recording is recomputed and compared: tensors and numbers within 1e-5 absolute plus the recording's rtol
(float noise across CPUs and torch builds; the graded tests allow 1e-4 on traces, 1e-5 on the flow pair, and the
student 1.6x the short run's loss), integers and lengths exactly; strings are notes on where it was measured.
The recorded runs and their scores (src/solution/runs/, reference_scores.json): tests/harness/test_reference_runs.py.
"""

from functools import partial

import pytest
import torch

from src.harness.loading import REFERENCE
from tests.graded import test_ddim, test_ddpm, test_flow, test_guidance
from tests.graded.record import recordings
from tests.graded.recorded import FOLDER, FRESH_SEED


def first_difference(got, expected, rtol: float, where: str = "") -> str | None:
    """Where `got` (recomputed) first differs from `expected` (recorded), or None."""
    if isinstance(expected, torch.Tensor):
        if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
            return f"{where}: shape {getattr(got, 'shape', None)}, recorded {tuple(expected.shape)}"
        return None if torch.allclose(got, expected, atol=1e-5, rtol=rtol) else f"{where}: other values"
    if isinstance(expected, dict):
        if not isinstance(got, dict) or set(got) != set(expected):
            return f"{where}: keys {sorted(got) if isinstance(got, dict) else got}, recorded {sorted(expected)}"
        return next(filter(None, (first_difference(got[key], expected[key], rtol, f"{where}[{key!r}]")
                                  for key in expected)), None)
    if isinstance(expected, (list, tuple)):
        if not isinstance(got, (list, tuple)) or len(got) != len(expected):
            return f"{where}: length {len(got) if isinstance(got, (list, tuple)) else got}, recorded {len(expected)}"
        return next(filter(None, (first_difference(g, e, rtol, f"{where}[{i}]")
                                  for i, (g, e) in enumerate(zip(got, expected)))), None)
    if isinstance(expected, str):
        return None
    if isinstance(expected, float):
        return None if got == pytest.approx(expected, rel=rtol, abs=1e-5) else f"{where}: {got}, recorded {expected}"
    return None if got == expected else f"{where}: {got}, recorded {expected}"


RECORDINGS = [pytest.param(recording, id=recording.name, marks=[pytest.mark.slow] * recording.slow)
              for recording in recordings()]


@pytest.mark.parametrize("recording", RECORDINGS)
def test_recording_is_the_references(recording):
    difference = first_difference(recording.compute(), recording.values(), recording.rtol)
    assert difference is None, (f"tests/graded/recorded/{recording.name}.pt is stale ({recording.name}{difference}): "
                                "rerun `uv run python -m tests.graded.record`")


def test_every_recording_has_its_own_file():
    names = [recording.name for recording in recordings()]
    assert len(names) == len(set(names)), f"two graded files record under one name: {sorted(names)}"


def test_first_difference_finds_what_changed():
    recorded = {"trace": (torch.zeros(2), [([3], torch.ones(1))]), "count": 7, "loss": 1.0, "note": "bf16"}
    assert first_difference(recorded, recorded, 0.0) is None
    assert "['trace'][1][0][1]" in first_difference(
        {**recorded, "trace": (torch.zeros(2), [([3], torch.ones(1) * 2)])}, recorded, 0.0)
    assert "['count']: 8" in first_difference({**recorded, "count": 8}, recorded, 0.0)
    assert first_difference({**recorded, "loss": 1.2, "note": "fp32"}, recorded, 0.25) is None
    assert "['loss']" in first_difference({**recorded, "loss": 1.3}, recorded, 0.25)


# ------------------------------------------------------------------------- fresh seeds on the autograder

def replaying_sample(model, schedule, shape, generator=None):
    """A DDPM 'sampler' that replays the shipped recording instead of stepping: it feeds the model the recorded
    inputs and returns the recorded samples, whatever it is asked."""
    recorded_out, recorded_calls = torch.load(FOLDER / "ddpm.pt", weights_only=True)["trace"]
    for t, x in recorded_calls:
        model(x, torch.tensor(t))
    return recorded_out


def test_a_replayed_trace_passes_at_the_recorded_seed_only(monkeypatch):
    """The route of a submission that replays tests/graded/recorded/ (which the student release ships): the
    autograder grades at a seed of its own (KATA_FRESH_SEED), where the reference's values are computed afresh."""
    test_ddpm.test_matches_the_reference_sampler_exactly(replaying_sample)  # the route, at the recorded seed
    monkeypatch.setenv(FRESH_SEED, "1234567")
    with pytest.raises(AssertionError, match="x_T differs from the reference"):
        test_ddpm.test_matches_the_reference_sampler_exactly(replaying_sample)


@pytest.mark.parametrize("graded_test, implementation", [
    (test_ddpm.test_matches_the_reference_sampler_exactly, ("sampler", "sample")),
    (test_ddim.test_matches_the_reference_exactly_with_eta_1, ("sampler", "ddim_sample")),
    (partial(test_guidance.test_matches_the_reference_exactly, scale=3.0), ("sampler", "guided_sample")),
    (test_flow.test_pair_matches_the_reference_on_images, ("flow", "flow_matching_pair")),
    (test_flow.test_euler_matches_the_reference_sampler_exactly, ("flow", "euler_sample")),
], ids=["ddpm", "ddim", "guidance", "flow-pair", "euler"])
def test_the_reference_passes_every_exact_test_at_a_fresh_seed(monkeypatch, graded_test, implementation):
    monkeypatch.setenv(FRESH_SEED, "987654")
    module, function = implementation
    graded_test(getattr(REFERENCE.module(module), function))
