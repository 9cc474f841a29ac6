"""The grader itself, run on scratch copies of the kata: zero for stubs, robust to broken student code; and the
grading policy's copies (Classroom's max-scores) agree with the points on the tests."""

import json
import os
import shlex
import subprocess
import sys
import time

import pytest
import yaml

from src.harness import policy, verdict
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
    unfinished = tests["test_matches_the_reference_sampler_exactly"]
    assert unfinished["status"] == "running" and "timed out or was killed" in unfinished["output"]
    assert tests["test_output_shape_range_and_device"]["output"] == "not run"
    assert verdict(kata / "grade.json")[0] is False


@pytest.mark.slow
def test_a_run_killed_in_a_c_call_keeps_every_finished_tests_points(tmp_path):
    kata = kata_copy(tmp_path, sampler=HANGS_IN_C_AT_T_20)
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "tests/graded/test_sampler.py",
               "--grade-json", "grade.json", "-k", "exactly or shape_range"]
    env = {**os.environ, "KATA_PROGRESS": "0", "KATA_GRADED_TIMEOUT": "2"}
    with subprocess.Popen(command, cwd=kata, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as run:
        hung_since, deadline = None, time.monotonic() + 300
        # Killed, as a CI job's or Gradescope's outer limit would, once the hung test has outlived its own 2-second
        # limit by 5 seconds: pytest-timeout's signal had its chance and could not interrupt the C call.
        while run.poll() is None and time.monotonic() < deadline:
            if hung_since is None and _started(kata, "test_output_shape_range_and_device"):
                hung_since = time.monotonic()
            if hung_since is not None and time.monotonic() - hung_since > 7:
                break
            time.sleep(0.2)
        if run.poll() is not None:
            pytest.fail("pytest-timeout interrupted the C call after all; this test no longer tests a hard kill")
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


CLASSROOM = ROOT / ".github" / "workflows" / "classroom.yml"


def classroom_steps() -> list[dict]:
    """The workflow's grading steps: {"name", "part", "pytest" (the step's own pytest arguments), "max_score"}."""
    steps = []
    for job in yaml.safe_load(CLASSROOM.read_text())["jobs"].values():
        for step in job["steps"]:
            if not step.get("uses", "").startswith("classroom-resources/autograding-command-grader"):
                continue
            command = shlex.split(step["with"]["command"])
            assert command[:4] == ["uv", "run", "python", "-m"] and command[4] == "src.harness.verdict", (
                f"{step['name']}: a grading step scores through src.harness.verdict, not `{step['with']['command']}`")
            steps.append({"name": step["name"], "part": command[5], "pytest": command[6:],
                          "max_score": step["with"]["max-score"]})
    return steps


class _Collected:
    """A pytest plugin that keeps the items a session collected."""

    def __init__(self):
        self.items = []

    def pytest_collection_finish(self, session):
        self.items = list(session.items)


def graded_points(*args: str) -> dict[str, float]:
    """{test: points} of the graded tests under tests/graded that `pytest ARGS` selects (collected, not run)."""
    collected = _Collected()
    code = pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", "--rootdir", str(ROOT),
                        "-c", str(ROOT / "pyproject.toml"), *args, str(ROOT / "tests" / "graded")], plugins=[collected])
    assert code == pytest.ExitCode.OK, f"collecting the graded tests with {args} failed (exit status {code})"
    return {item.nodeid: float(item.get_closest_marker("points").args[0])
            for item in collected.items if item.get_closest_marker("points")}


def test_classroom_max_scores_are_the_points_of_the_tests_each_step_runs(tmp_path, monkeypatch):
    """Points live on the tests and the workflow copies their sums: a point changed on a test and not in
    .github/workflows/classroom.yml fails here, and so does a graded test that no step, or two steps, run."""
    monkeypatch.delenv("KATA_EXTRA_TESTS", raising=False)  # Classroom runs no hidden tests
    steps, graded_by = classroom_steps(), {}
    for i, step in enumerate(steps):
        points = graded_points(*verdict.pytest_arguments(step["part"], step["pytest"], tmp_path / f"step{i}.json"))
        assert points, f"the step '{step['name']}' grades no test"
        assert step["max_score"] == sum(points.values()), (
            f"the step '{step['name']}' has max-score {step['max_score']} in classroom.yml, but its tests are worth "
            f"{sum(points.values()):g} points: copy the new sum there")
        for test in points:
            assert test not in graded_by, f"{test} is graded by both '{graded_by[test]}' and '{step['name']}'"
            graded_by[test] = step["name"]
    online = graded_points("-m", " or ".join(policy.AUTOGRADED_PARTS), "--grade-json", str(tmp_path / "all.json"))
    assert sorted(graded_by) == sorted(online), (
        f"no Classroom step runs {sorted(set(online) - set(graded_by))} (parts: policy.AUTOGRADED_PARTS)")
    total = sum(step["max_score"] for step in steps)
    assert total == sum(online.values()), (
        f"classroom.yml's max-scores add up to {total}, the graded tests of {policy.AUTOGRADED_PARTS} to "
        f"{sum(online.values()):g}")
