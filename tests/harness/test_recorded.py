"""The recorded reference values (tests/graded/recorded/, src/harness/reference_scores.json) match src/solution/.

The student release grades against these recordings instead of the reference, so a change to the reference,
a config or a graded test that moves one of them must come with `uv run python -m tests.graded.record`.

Tolerances, for float noise across CPUs and torch builds:
- parameter counts: exact;
- the sampler trace, the flow pair, the Euler and DDIM traces: 1e-5 absolute (float32 elementwise arithmetic on a fixed
  model; the graded tests allow 1e-4 on traces, 1e-5 on the pair);
- the short run's losses: 10% relative on the same precision (bf16 autocast or fp32, chosen by the CPU), 25%
  across precisions; the graded test allows the student 1.6x the recorded loss;
The recorded runs and their scores (src/solution/runs/, reference_scores.json): tests/harness/test_reference_runs.py.
"""

import json

import pytest
import torch

from tests.graded import record as record_reference
from src.harness.run.runtime import Runtime
from tests.graded import recorded


def test_recorded_parameter_counts_are_the_references():
    assert recorded.reference()["parameters"] == record_reference.reference_parameters(), (
        "stale: run `uv run python -m tests.graded.record`")


def _assert_same_trace(trace, recording, what: str) -> None:
    (out, calls), (expected_out, expected_calls) = trace, recording
    assert [t for t, _ in calls] == [t for t, _ in expected_calls], f"stale {what} timesteps: rerun record_reference"
    for (_, x), (_, expected) in zip(calls, expected_calls):
        assert torch.allclose(x, expected, atol=1e-5), f"stale {what} trace: rerun record_reference"
    assert torch.allclose(out, expected_out, atol=1e-5)


def test_recorded_sampler_trace_is_the_references():
    _assert_same_trace(record_reference.reference_sampler_trace(), recorded.sampler_trace(), "sampler")


def test_recorded_flow_is_the_references():
    for kind, pair in record_reference.reference_flow_pairs().items():
        for got, expected in zip(pair, recorded.flow_pairs()[kind]):
            assert torch.allclose(got, expected, atol=1e-5), f"stale flow pair ({kind}): rerun record_reference"
    _assert_same_trace(record_reference.reference_flow_trace(), recorded.flow_trace(), "Euler")


def test_recorded_guided_traces_are_the_references():
    for scale, (out, calls) in record_reference.reference_guided_traces().items():
        expected_out, expected_calls = recorded.guided_trace(scale)
        assert [(t, y) for t, y, _ in calls] == [(t, y) for t, y, _ in expected_calls], (
            f"stale guided trace (w = {scale}): rerun record_reference")
        for (_, _, x), (_, _, expected) in zip(calls, expected_calls):
            assert torch.allclose(x, expected, atol=1e-5), f"stale guided trace (w = {scale}): rerun record_reference"
        assert torch.allclose(out, expected_out, atol=1e-5)


def test_recorded_ddim_traces_are_the_references():
    for eta, trace in record_reference.reference_ddim_traces().items():
        _assert_same_trace(trace, recorded.ddim_trace(eta), f"DDIM (eta = {eta})")


@pytest.mark.slow
def test_recorded_short_run_is_the_references():
    short = record_reference.reference_short_run()
    expected = recorded.reference()["short_run"]
    tolerance = 0.10 if short["precision"] == expected["precision"] else 0.25
    for key in ("before", "after"):
        assert short[key] == pytest.approx(expected[key], rel=tolerance), (
            f"the reference's short-run loss '{key}' is {short[key]:.4f}, recorded {expected[key]:.4f} "
            f"({expected['precision']}; here {Runtime.choose('cpu').precision}): "
            "rerun `uv run python -m tests.graded.record`")


def test_recordings_are_valid_json_and_tensors():
    json.loads(recorded.REFERENCE_JSON.read_text())
    out, calls = recorded.sampler_trace()
    assert out.shape == (4, 1, 6, 6) and len(calls) == 50
    out, calls = recorded.flow_trace()
    assert out.shape == (4, 1, 6, 6) and len(calls) == 20
    for eta in recorded.DDIM_ETAS:
        out, calls = recorded.ddim_trace(eta)
        assert out.shape == (4, 1, 6, 6) and len(calls) == 20
