"""A level costs only itself: a throw-away Level 99 (a stub, a reference, one graded test with its recorded
reference values, a config, its chapter and one entry of each registry in src/harness/levels.py) added to a copy of
the kata is recorded, graded, released to students, bundled for Gradescope and given a Classroom step, with no
other file changed by hand."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from src.harness.instructor.manifest import instructor_files
from src.harness.paths import ROOT
from tests.harness.helpers import run_pytest

STUB = '''"""Level 99: a throw-away level (tests/harness/test_new_level.py)."""


def double(x):
    """2 x for a tensor x of any shape.

    # TODO: Level 99
    """
    raise NotImplementedError("Level 99: implement double (see the README, Level 99).")
'''
REFERENCE = "def double(x):\n    return x + x\n"
STUDENT_CHAPTER = "# Level 99: double\n\n`double(x)` returns 2 x.\n"
CHAPTER = STUDENT_CHAPTER + "<!-- instructor -->\nThe reference adds x to x.\n<!-- /instructor -->\n"
GRADED_TEST = '''import pytest
import torch

from src.harness.loading import REFERENCE
from tests.graded.recorded import Recording

RECORDING = Recording("toy", lambda: {"doubled": REFERENCE.module("toy").double(torch.arange(3.0))})


@pytest.mark.level99
@pytest.mark.points(2)
def test_double_doubles(double):
    assert torch.equal(double(torch.arange(3.0)), RECORDING.values()["doubled"]), "double(x) must return 2 x"
'''
STUDENT_FILE_ENTRY = '    StudentFile("toy", "implement double (docs/levels/level99.md)", functions=("double",)),\n'
LEVEL_ENTRY = '''    Level("level99", "a throw-away level", ("toy",),
          (TrainedRun("toy", fp32_minutes=0.6, bf16_minutes=0.6, recorded=False),),
          steps=(ClassroomStep("Level 99 (train on the toy config, then double)"),)),
'''


def _add_entry(text: str, registry: str, entry: str) -> str:
    """`text` with `entry` added as the last item of the tuple `registry = (...)`."""
    start = text.index(f"\n{registry} = (\n")
    end = text.index("\n)\n", start)
    return text[:end + 1] + entry + text[end + 1:]


@pytest.fixture(scope="module")
def kata(tmp_path_factory) -> Path:
    """A copy of the instructor repository (without the recorded runs) with Level 99 added."""
    copy = tmp_path_factory.mktemp("new-level") / "kata"
    for relative in instructor_files(ROOT):
        if not relative.startswith("src/solution/runs/"):
            (copy / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / relative, copy / relative)
    (copy / "src" / "toy.py").write_text(STUB)
    (copy / "src" / "solution" / "toy.py").write_text(REFERENCE)
    (copy / "tests" / "graded" / "test_toy.py").write_text(GRADED_TEST)
    shutil.copy(ROOT / "configs" / "moons.yaml", copy / "configs" / "toy.yaml")
    (copy / "docs" / "levels" / "level99.md").write_text(CHAPTER)
    registry = copy / "src" / "harness" / "levels.py"
    text = _add_entry(registry.read_text(), "STUDENT_FILES", STUDENT_FILE_ENTRY)
    registry.write_text(_add_entry(text, "LEVELS", LEVEL_ENTRY))
    _python(copy, "-c", "from tests.graded.record import recordings; "
                        "[recording.save() for recording in recordings() if recording.name == 'toy']")
    return copy


def _python(kata: Path, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, *args], cwd=kata, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_the_graded_suite_grades_the_new_level(kata):
    run_pytest(kata, "--solution", "-m", "level99", "--grade-json", "reference.json", "tests/graded/test_toy.py")
    run_pytest(kata, "-m", "level99", "--grade-json", "stub.json", "tests/graded/test_toy.py")
    reference, stub = (json.loads((kata / name).read_text()) for name in ("reference.json", "stub.json"))
    assert (reference["score"], reference["max_score"]) == (2, 2), reference
    assert stub["score"] == 0 and "Level 99: implement double" in stub["tests"][0]["output"], stub


@pytest.mark.slow
def test_classroom_gets_a_step_that_trains_its_run(kata):
    _python(kata, "-m", "src.harness.instructor.classroom")
    workflow = (kata / ".github" / "workflows" / "classroom.yml").read_text()
    step = workflow[workflow.index("id: level99"):]
    assert "setup-command: uv run python main.py --config configs/toy.yaml" in step.split("- name:")[0]
    assert "src.harness.grade.verdict level99" in step and "max-score: 2\n" in step.split("- name:")[0]


@pytest.mark.slow
def test_the_student_release_ships_the_stub_and_the_test_but_not_the_answer(kata, tmp_path):
    _python(kata, "-c", f"from pathlib import Path; from src.harness.instructor.release import build_student; "
                        f"build_student(Path({str(tmp_path / 'student')!r}))")
    student = tmp_path / "student"
    assert (student / "src" / "toy.py").read_text() == STUB
    assert (student / "tests" / "graded" / "test_toy.py").is_file() and (student / "configs" / "toy.yaml").is_file()
    assert (student / "tests" / "graded" / "recorded" / "toy.pt").is_file()
    assert not (student / "src" / "solution").exists()
    assert (student / "docs" / "levels" / "level99.md").read_text() == STUDENT_CHAPTER


@pytest.mark.slow
def test_gradescope_grades_the_new_file_and_its_checkpoint(kata, tmp_path):
    done = _python(kata, "-c", "from src.harness.instructor import autograder as a; "
                               "print(dict(a.GRADED_FILES)['toy'], 'toy' in a.CONFIGS_WITH_CHECKPOINTS, "
                               "a.DEFAULT_SETTINGS['parts'][-1])")
    assert done.stdout.split() == ["{'level99'}", "True", "level99"]
    _python(kata, "-c", f"from pathlib import Path; from src.harness.instructor.release import build_gradescope; "
                        f"build_gradescope(Path({str(tmp_path / 'bundle.zip')!r}), "
                        f"settings={{'parts': ['level99'], 'grace_s': 3}})")
    root = tmp_path / "root"
    with zipfile.ZipFile(tmp_path / "bundle.zip") as bundle:
        bundle.extractall(root / "source")
    (root / "submission").mkdir()
    (root / "submission" / "toy.py").write_text(REFERENCE)
    subprocess.run(["bash", str(root / "source" / "run_autograder")], capture_output=True, text=True, timeout=300,
                   env={**os.environ, "AUTOGRADER_ROOT": str(root), "KATA_PYTHON": sys.executable,
                        "KATA_PROGRESS": "0"})
    results = json.loads((root / "results" / "results.json").read_text())
    assert results["score"] == 2 and [t["name"] for t in results["tests"]] == ["test_double_doubles"], results
