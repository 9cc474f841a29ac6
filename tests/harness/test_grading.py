"""The grader itself, run on scratch copies of the kata: zero for stubs, robust to broken student code."""

import json
import subprocess

import pytest

from tests.harness.helpers import STUB_MODEL, STUB_SAMPLER, kata_copy, run_pytest

GRADESCOPE_TEST_FIELDS = {"name", "score", "max_score", "output", "visibility"}

ENDLESS_SAMPLER = '''
def sample(model, schedule, shape, generator=None):
    while True:
        pass
'''
HIDDEN_TEST = '''
import pytest

@pytest.mark.level4
@pytest.mark.points(3)
@pytest.mark.visibility("after_published")
def test_instructors_hidden_check(sample):
    assert callable(sample)
'''


def _grade(kata):
    grade = json.loads((kata / "grade.json").read_text())
    assert set(grade) >= {"score", "tests"} and grade["tests"]
    for test in grade["tests"]:
        assert GRADESCOPE_TEST_FIELDS <= set(test)
        assert test["visibility"] in {"visible", "hidden", "after_due_date", "after_published"}
        assert 0 <= test["score"] <= test["max_score"]
    return grade, {t["name"]: t for t in grade["tests"]}


def test_untouched_stubs_score_zero_with_a_readable_table(tmp_path):
    kata = kata_copy(tmp_path, model=STUB_MODEL, sampler=STUB_SAMPLER)
    result = run_pytest(kata, "tests/graded", "--grade-json", "grade.json")
    assert result.returncode != 0
    grade, tests = _grade(kata)
    assert grade["score"] == 0 and grade["max_score"] > 0
    assert all(t["status"] == "failed" for t in grade["tests"])
    assert "not implemented yet" in tests["test_output_is_float32"]["output"]
    assert "uv run python main.py --config configs/fashion_mnist.yaml" in (
        tests["test_validation_loss_at_most_the_references"]["output"])
    for line in ("basics ", "level2 ", "level4 ", "total "):
        assert line in result.stdout, f"the grade table lacks a '{line.strip()}' row"
    assert "Traceback" not in result.stdout


def test_broken_student_code_is_contained_and_extra_tests_are_graded(tmp_path):
    kata = kata_copy(tmp_path, model="import torch\nclass DiffusionModel(torch.nn.Module)\n", sampler=ENDLESS_SAMPLER)
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / "test_hidden.py").write_text(HIDDEN_TEST)
    result = run_pytest(kata, "tests/graded/test_model.py", "tests/graded/test_sampler.py",
                        "--grade-json", "grade.json", "-k", "float32 or exactly or hidden",
                        KATA_GRADED_TIMEOUT="3", KATA_EXTRA_TESTS=str(hidden))
    assert result.returncode != 0
    grade, tests = _grade(kata)
    assert "src/model.py, line 2: SyntaxError" in tests["test_output_is_float32"]["output"]
    assert "Timeout" in tests["test_matches_the_reference_sampler_exactly"]["output"]
    assert tests["test_instructors_hidden_check"]["score"] == 3
    assert tests["test_instructors_hidden_check"]["visibility"] == "after_published"
    assert grade["score"] == 3


EXITS_IN_SAMPLE = '''
import os

def sample(model, schedule, shape, generator=None):
    os._exit(0)
'''
HANGS_IN_C_AT_T_20 = '''
import torch

@torch.no_grad()
def sample(model, schedule, shape, generator=None):
    if schedule.num_timesteps == 20:
        sum(range(10**12))  # one long C call: pytest-timeout's signal cannot interrupt it
    device = schedule.betas.device
    x = torch.randn(shape, generator=generator, device=device)
    for t in reversed(range(schedule.num_timesteps)):
        eps = model(x, torch.full((shape[0],), t, dtype=torch.long, device=device)).float()
        x = (x - schedule.betas[t] / (1 - schedule.alphas_cumprod[t]).sqrt() * eps) / schedule.alphas[t].sqrt()
        if t > 0:
            x = x + schedule.betas[t].sqrt() * torch.randn(shape, generator=generator, device=device)
    return x.clamp(-1, 1)
'''


def test_os_exit_in_student_code_leaves_a_failing_report_not_a_pass(tmp_path):
    from src.harness.verdict import verdict

    kata = kata_copy(tmp_path, sampler=EXITS_IN_SAMPLE)
    result = run_pytest(kata, "tests/graded/test_sampler.py", "--grade-json", "grade.json",
                        "-k", "exactly or shape_range")
    assert result.returncode == 0, "pytest itself reports success here: that is why nothing may score by it"
    grade, tests = _grade(kata)
    assert grade["score"] == 0 and not grade["extra_data"]["complete"]
    assert "did not finish" in tests["test_matches_the_reference_sampler_exactly"]["output"]
    assert tests["test_output_shape_range_and_device"]["output"] == "not run"
    assert verdict(kata / "grade.json")[0] is False


def test_a_run_killed_in_a_c_call_keeps_every_finished_tests_points(tmp_path):
    kata = kata_copy(tmp_path, sampler=HANGS_IN_C_AT_T_20)
    try:
        run_pytest(kata, "tests/graded/test_sampler.py", "--grade-json", "grade.json", "-k",
                   "exactly or shape_range", timeout=90, KATA_GRADED_TIMEOUT="2")
        pytest.fail("pytest-timeout interrupted the C call after all; this test no longer tests a hard kill")
    except subprocess.TimeoutExpired:
        pass  # the outer limit killed pytest, as a CI job's or Gradescope's would
    grade, tests = _grade(kata)
    assert tests["test_matches_the_reference_sampler_exactly"]["status"] == "passed"
    assert grade["score"] == 4
    hung = tests["test_output_shape_range_and_device"]
    assert hung["status"] == "failed" and "did not finish" in hung["output"]
