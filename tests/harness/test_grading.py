"""The grader itself, run on scratch copies of the kata: zero for stubs, robust to broken student code; and the
grading policy's copies (Classroom's max-scores) agree with the points on the tests."""

import json
import os
import subprocess
import sys
import time

import pytest
import yaml

from src.harness import policy

from src.harness.instructor import classroom
from src.harness.levels import LEVELS
from src.harness.paths import ROOT
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
    result = run_pytest(kata, "tests/graded/test_model.py", "tests/graded/test_ddpm.py",
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


def test_os_exit_in_student_code_fails_that_test_and_the_run_goes_on(tmp_path):
    """The code under test runs in the sandbox's worker: os._exit ends the worker, not the grading."""
    from src.harness.grade.verdict import verdict

    kata = kata_copy(tmp_path, sampler=EXITS_IN_SAMPLE)
    result = run_pytest(kata, "tests/graded/test_ddpm.py", "--grade-json", "grade.json",
                        "-k", "exactly or shape_range")
    assert result.returncode != 0
    grade, tests = _grade(kata)
    assert grade["score"] == 0 and grade["extra_data"]["complete"]
    for name in ("test_matches_the_reference_sampler_exactly", "test_output_shape_range_and_device"):
        assert "the process running your code ended" in tests[name]["output"], tests[name]
    assert verdict(kata / "grade.json")[0] is False


@pytest.mark.slow  # 18 s; the Gradescope emulation's test_gradescope_a_test_whose_process_dies_fails_alone too
def test_a_hang_in_a_c_call_fails_that_test_only(tmp_path):
    """pytest-timeout's signal cannot interrupt a long C call, but the call runs in the sandbox's worker: the
    grader's wait is interrupted, the worker killed, and the next test gets a fresh one."""
    kata = kata_copy(tmp_path, sampler=HANGS_IN_C_AT_T_20)
    run_pytest(kata, "tests/graded/test_ddpm.py", "--grade-json", "grade.json", "-k", "exactly or shape_range",
               KATA_GRADED_TIMEOUT="5")
    grade, tests = _grade(kata)
    assert tests["test_output_shape_range_and_device"]["status"] == "failed"
    assert "Timeout" in tests["test_output_shape_range_and_device"]["output"]
    assert grade["score"] == tests["test_matches_the_reference_sampler_exactly"]["max_score"] > 0


@pytest.mark.slow
def test_a_run_killed_from_outside_keeps_every_finished_tests_points(tmp_path):
    """As a CI job's or Gradescope's outer limit would kill it, during a test that hangs: the report says which
    tests finished and which one was running, and scores no pass that did not happen."""
    kata = kata_copy(tmp_path, sampler=HANGS_IN_C_AT_T_20)
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "tests/graded/test_ddpm.py",
               "--grade-json", "grade.json", "-k", "exactly or shape_range"]
    env = {**os.environ, "KATA_PROGRESS": "0", "KATA_GRADED_TIMEOUT": "300"}
    with subprocess.Popen(command, cwd=kata, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as run:
        hung_since, deadline = None, time.monotonic() + 300
        while run.poll() is None and time.monotonic() < deadline:
            if hung_since is None and _started(kata, "test_output_shape_range_and_device"):
                hung_since = time.monotonic()
            if hung_since is not None and time.monotonic() - hung_since > 3:
                break
            time.sleep(0.2)
        assert run.poll() is None, "the run ended before it could be killed"
        run.kill()
    grade, tests = _grade(kata)
    finished = tests["test_matches_the_reference_sampler_exactly"]
    assert finished["status"] == "passed" and grade["score"] == finished["max_score"]
    hung = tests["test_output_shape_range_and_device"]
    assert hung["status"] == "running" and hung["score"] == 0 and "timed out or was killed" in hung["output"]


def _started(kata, name: str) -> bool:
    """Whether the report says test `name` has begun (it is written as "running" before it runs)."""
    try:
        tests = {t["name"]: t for t in json.loads((kata / "grade.json").read_text())["tests"]}
    except (OSError, ValueError):  # not written yet
        return False
    return name in tests and tests[name]["status"] == "running"


# ------------------------------------------------------------------------------------ the grading policy

def test_the_policy_imports_without_torch():
    """The pytest plugin imports it before any test runs: it must not make every pytest run pay for torch."""
    probe = "import sys; import src.harness.policy; print(sorted({'torch', 'omegaconf'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


@pytest.fixture(scope="module")
def steps_points(tmp_path_factory) -> dict[str, dict[str, float]]:
    """{Classroom step: {graded test: points}}, as the workflow's generator collects them (no hidden tests)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("KATA_EXTRA_TESTS", raising=False)  # Classroom runs no hidden tests
        return classroom.steps_points(tmp_path_factory.mktemp("steps"))


def test_the_classroom_workflow_is_written_from_the_levels(steps_points):
    """Points live on the tests and the steps in src/harness/levels.py; .github/workflows/classroom.yml is written
    from both, so a point changed on a test, or a step changed in the levels, fails here until it is rewritten."""
    assert classroom.WORKFLOW.read_text() == classroom.workflow(steps_points), (
        "classroom.yml is not what src/harness/levels.py and the tests' points make: rewrite it with "
        "`uv run python -m src.harness.instructor.classroom`")
    steps = yaml.safe_load(classroom.WORKFLOW.read_text())["jobs"]["run-autograding-tests"]["steps"]
    assert sum(1 for step in steps if "command-grader" in step.get("uses", "")) == len(steps_points)


def test_each_online_graded_test_is_run_by_exactly_one_classroom_step(steps_points, tmp_path, monkeypatch):
    monkeypatch.delenv("KATA_EXTRA_TESTS", raising=False)
    graded_by = {}
    for step, points in steps_points.items():
        assert points, f"the Classroom step {step} grades no test"
        for test in points:
            assert test not in graded_by, f"{test} is graded by both the steps {graded_by[test]} and {step}"
            graded_by[test] = step
    online = classroom.graded_points("-m", " or ".join(policy.AUTOGRADED_PARTS), "--grade-json",
                                     str(tmp_path / "all.json"))
    assert sorted(graded_by) == sorted(online), (
        f"no Classroom step runs {sorted(set(online) - set(graded_by))} (parts: policy.AUTOGRADED_PARTS)")


def test_each_classroom_step_grades_runs_of_its_own_level():
    for level in LEVELS:
        own = {run.config for run in level.runs}
        for step in level.steps:
            assert step.runs is None or set(step.runs) <= own, (
                f"the step '{step.name}' grades {step.runs}, runs that {level.part} does not declare")
