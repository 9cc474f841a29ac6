"""GitHub Classroom's workflow, written from the levels' steps (src/harness/levels.py):

    uv run python -m src.harness.instructor.classroom    # rewrites .github/workflows/classroom.yml

Each ClassroomStep becomes a command-grader step, in the order of LEVELS, scored by src.harness.grade.verdict and worth
the points of the graded tests it selects (collected here, so a point changed on a test changes the workflow). The
first step that grades a trained run trains it as its setup command, and its timeout grows by that training.
tests/harness/test_grading.py fails when the workflow is not what this writes.
"""

import contextlib
import io
import json
import math
import shlex
import tempfile
from pathlib import Path

import pytest

from src.harness.grade.verdict import pytest_arguments
from src.harness.levels import LEVELS, ClassroomStep, Level, trained_runs
from src.harness.paths import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "classroom.yml"
# Minutes of a step's timeout per minute of float32 training on the 2-core CPU of the levels' costs: Classroom's
# runners have no fast bfloat16, and a slower CPU must not time an honest run out.
TRAINING_MARGIN = 5

HEADER = """\
# GitHub Classroom autograding: one step per graded part (all or nothing per step, as Classroom scores
# commands by exit code). Each step scores from the grade report pytest writes (src/harness/grade/verdict.py),
# not from pytest's exit status, which an os._exit(0) in student code would turn into a pass. Works in the
# student release: nothing here needs src/solution/. The per-test reports are uploaded as the artifact "grade".
# Written from src/harness/levels.py by `uv run python -m src.harness.instructor.classroom`: edit the levels.
name: Autograding Tests
"on":
  - push
  - repository_dispatch
  - workflow_dispatch
permissions:
  checks: write
  actions: read
  contents: read
jobs:
  run-autograding-tests:
    runs-on: ubuntu-latest
    if: github.actor != 'github-classroom[bot]'
    env:
      KATA_PROGRESS: "0"
    steps:
      - name: Checkout code
        uses: actions/checkout@v4
      - name: Install uv
        uses: astral-sh/setup-uv@v6
      - name: Install the kata's dependencies
        run: uv sync
"""
FOOTER = """\
      - name: Upload the per-test grade reports
        if: always()
        uses: actions/upload-artifact@v4
        with:
          name: grade
          path: outputs/grade-*.json
"""


def step_id(level: Level, step: ClassroomStep) -> str:
    """level1, or level1-as-good-as for a step that selects part of its level's tests."""
    words = [w for w in step.select.replace("_", "-").split() if w != "not"]
    if step is level.steps[0] or not words:
        return level.part
    return f"{level.part}-{'-'.join(words)}"


def step_arguments(step: ClassroomStep) -> list[str]:
    """The pytest arguments a step adds to `-m PART`."""
    return ["-k", step.select] if step.select else []


class _Collected:
    """A pytest plugin that keeps the items a session collected."""

    def __init__(self):
        self.items = []

    def pytest_collection_finish(self, session):
        self.items = list(session.items)


def graded_points(*args: str) -> dict[str, float]:
    """{test: points} of the graded tests under tests/graded that `pytest ARGS` selects (collected, not run)."""
    collected = _Collected()
    with contextlib.redirect_stdout(io.StringIO()):  # the collection's listing and grade table
        code = pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", "--rootdir", str(ROOT),
                            "-c", str(ROOT / "pyproject.toml"), *args, str(ROOT / "tests" / "graded")],
                           plugins=[collected])
    if code != pytest.ExitCode.OK:
        raise RuntimeError(f"collecting the graded tests with {args} failed (exit status {code})")
    return {item.nodeid: float(item.get_closest_marker("points").args[0])
            for item in collected.items if item.get_closest_marker("points")}


def steps_points(scratch: Path) -> dict[str, dict[str, float]]:
    """{step id: {test: points}} of every Classroom step; `scratch`: a folder for the grade reports collection names."""
    return {step_id(level, step): graded_points(*pytest_arguments(level.part, step_arguments(step),
                                                                  scratch / f"{step_id(level, step)}.json"))
            for level in LEVELS for step in level.steps}


def workflow(points: dict[str, dict[str, float]]) -> str:
    """The text of classroom.yml, given each step's graded tests and their points (steps_points)."""
    runs, trained, lines, ids = trained_runs(), set(), [HEADER], []
    for level in LEVELS:
        for step in level.steps:
            ident = step_id(level, step)
            configs = [run.config for run in level.runs] if step.runs is None else list(step.runs)
            train = [config for config in configs if config not in trained]
            trained.update(train)
            minutes = step.minutes + math.ceil(TRAINING_MARGIN * sum(runs[c].fp32_minutes for c in train) / 10) * 10
            command = shlex.join(["uv", "run", "python", "-m", "src.harness.grade.verdict", level.part,
                                  *step_arguments(step)])
            name = json.dumps(step.name) if ": " in step.name else step.name  # YAML reads "a: b" as a mapping
            lines += [f"      - name: {name}\n", f"        id: {ident}\n",
                      "        uses: classroom-resources/autograding-command-grader@v1\n", "        with:\n",
                      f"          test-name: {ident}\n"]
            if train:
                setup = " && ".join(f"uv run python main.py --config configs/{config}.yaml" for config in train)
                lines.append(f"          setup-command: {setup}\n")
            lines += [f"          command: {command}\n", f"          timeout: {minutes}\n",
                      f"          max-score: {sum(points[ident].values()):g}\n"]
            ids.append(ident)
    lines += ["      - name: Autograding Reporter\n",
              "        uses: classroom-resources/autograding-grading-reporter@v1\n", "        env:\n"]
    lines += [f'          {ident.upper()}_RESULTS: "${{{{ steps.{ident}.outputs.result }}}}"\n' for ident in ids]
    lines += ["        with:\n", f"          runners: {','.join(ids)}\n", FOOTER]
    return "".join(lines)


def main() -> int:
    with tempfile.TemporaryDirectory() as scratch:
        text = workflow(steps_points(Path(scratch)))
    WORKFLOW.write_text(text)
    print(f"wrote {WORKFLOW.relative_to(ROOT)}: {text.count('autograding-command-grader')} steps")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
