"""The classroom release: the student build, the Gradescope bundle and its autograder, end to end.

The correct submission is the calibration zoo's plain UNet (written independently of the reference) and
tests/harness/submissions/sampler.py (a sampler written for these tests).
"""

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import pytest
import torch

from src.harness.instructor import autograder, release
from src.harness.levels import LEVELS
from src.harness.loading import STUDENT
from src.harness.paths import ROOT
from src.harness.policy import PARTS
from src.harness.run.train import load_checkpoint
from tests.graded.recorded import FOLDER
from tests.harness.helpers import kata_copy

SUBMISSIONS = ROOT / "tests" / "harness" / "submissions"
CORRECT_MODEL = (ROOT / "calibration" / "zoo" / "plain_unet.py").read_text()
CORRECT_SAMPLER = (SUBMISSIONS / "sampler.py").read_text()
CORRECT_POINT_MODEL = (ROOT / "calibration" / "point_zoo" / "mlp_concat.py").read_text()
CORRECT_FLOW = (SUBMISSIONS / "flow.py").read_text()
SECRET = "SECRET-HIDDEN-CHECK-4711"
HIDDEN_TEST = f'''
import pytest
import torch

from src.harness.run.schedule import NoiseSchedule


@pytest.mark.level4
@pytest.mark.points(3)
def test_hidden_batch_of_seven(sample):
    marker = "{SECRET}: the hidden test's source must never reach a student"
    out = sample(lambda x, t: torch.zeros_like(x), NoiseSchedule(5), (7, 1, 3, 3), generator=torch.Generator())
    assert out.shape == (7, 1, 3, 3), marker
'''


def _env(**extra):
    return {**os.environ, "KATA_PROGRESS": "0", **extra}


# ------------------------------------------------------------------------------------------- the student build

@pytest.fixture(scope="module")
def student(tmp_path_factory):
    out = tmp_path_factory.mktemp("release") / "kata-student"
    release.build_student(out)
    return out


def test_student_build_holds_no_reference(student):
    files = {p.relative_to(student).as_posix() for p in student.rglob("*") if p.is_file()}
    for gone in ("src/solution/", "tests/harness/", "calibration/", "src/harness/instructor/", "docs/calibration/",
                 "tests/graded/record.py", "docs/instructors.md"):
        assert not any(f.startswith(gone) for f in files), f"{gone} is in the student build"
    assert {"src/model.py", "src/sampler.py", "src/point_model.py", "src/flow.py", "configs/moons.yaml",
            "configs/moons_flow.yaml", "tests/graded/recorded/flow.pt",
            "tests/graded/recorded/ddpm.pt", "main.py",
            ".github/workflows/classroom.yml", "uv.lock"} <= files
    reference = release.reference_lines()
    update = "x = (x - betas[t] / (1 - alphas_cumprod[t]).sqrt() * eps) / alphas[t].sqrt()"
    assert update in reference["src/solution/sampler.py"], "the leak check must know the reference's update line"
    for name in files:
        text = (student / name).read_text(errors="replace")
        assert release.leaked_reference(text, reference) is None, f"{name} holds the reference"
        assert update not in text and "UNet2DModel(" not in text, f"{name} holds a line of the reference"
    assert "src.solution" not in (student / ".github/workflows/classroom.yml").read_text()


def test_leak_check_recognises_a_copied_reference():
    reference = release.reference_lines()
    for name in reference:
        assert release.leaked_reference((ROOT / name).read_text(), reference) == name
    assert release.leaked_reference((ROOT / "src" / "harness" / "run" / "samplers.py").read_text(), reference) is None


def _links(text: str) -> list[str]:
    """The local files a markdown text links to (images included), without #anchors."""
    return [link for link in re.findall(r"\]\(([^)#\s]+)[^)]*\)", text) if "://" not in link]


@pytest.mark.parametrize("name", release.student_documents())
def test_student_docs_commands_and_files_work_there(student, name):
    text = (student / name).read_text()
    assert "<!--" not in text, f"a marker of the instructor/student blocks survived in {name}"
    commands = [line.strip() for block in re.findall(r"```bash\n(.*?)```", text, re.S)
                for line in block.splitlines() if line.strip()]
    commands += re.findall(r"`(uv run [^`]+)`", text)
    assert commands or name != "README.md", "the student README shows no commands"
    for command in commands:
        assert "--solution" not in command, f"the student {name} runs the reference: {command}"
        for path in re.findall(r"configs/\w+\.yaml", command):
            assert (student / path).exists(), f"{command}: {path} is not in the student build"
        for module in re.findall(r"python -m ([\w.]+)", command):
            assert (student / (module.replace(".", "/") + ".py")).exists(), f"{command}: no module {module}"
        for marker in re.findall(r"pytest -m (\w+)", command):
            assert marker in PARTS, command
    for path in re.findall(r"`((?:src|tests|configs|docs|calibration)/[\w./-]+)`", text):
        assert (student / path.rstrip("/")).exists() or "*" in path, f"the student {name} names {path}"
    for link in _links(text):
        assert (student / name).parent.joinpath(link).exists(), f"the student {name} links to {link}"


def test_each_level_has_a_chapter_that_the_readme_links():
    readme_links = set(_links((ROOT / "README.md").read_text()))
    for level in LEVELS:
        assert (ROOT / level.chapter_path).is_file(), f"{level.part} has no chapter at {level.chapter_path}"
        assert level.chapter_path in readme_links, f"the README's table of levels does not link {level.chapter_path}"


def test_instructor_docs_link_to_files_that_exist():
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for link in _links(doc.read_text()):
            assert doc.parent.joinpath(link).exists(), f"{doc.relative_to(ROOT)} links to {link}"


@pytest.mark.slow
def test_student_build_runs_without_the_reference(student):
    stub = subprocess.run([sys.executable, "main.py", "--config", "configs/smoke.yaml"], cwd=student,
                          capture_output=True, text=True, env=_env(), timeout=300)
    assert stub.returncode == 1 and "src/model.py is still a stub" in stub.stderr
    assert "--solution" not in stub.stderr and "Traceback" not in stub.stderr
    for command in (["main.py", "--config", "configs/smoke.yaml", "--solution"], ["-m", "pytest", "--solution"]):
        result = subprocess.run([sys.executable, *command], cwd=student, capture_output=True, text=True, env=_env(),
                                timeout=300)
        assert result.returncode != 0 and "has no reference solution" in result.stdout + result.stderr
        assert "Traceback" not in result.stdout + result.stderr
        assert len((result.stdout + result.stderr).strip().splitlines()) == 1, "one line, nothing else"
    graded = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--grade-json", "g.json"],
                            cwd=student, capture_output=True, text=True, env=_env(), timeout=600)
    grade = json.loads((student / "g.json").read_text())
    assert graded.returncode != 0 and grade["score"] == 0 and grade["max_score"] >= 40
    assert "total" in graded.stdout and "level4" in graded.stdout


@pytest.mark.slow
def test_a_correct_student_earns_every_level4_point_and_runs_main(student, tmp_path):
    """In the student build, without the reference. (The basics, whose short run takes seconds, are graded on the
    same student files by test_gradescope_two_files_and_the_whole_basics.)"""
    kata = tmp_path / "kata"
    shutil.copytree(student, kata)
    (kata / "src" / "model.py").write_text(CORRECT_MODEL)
    (kata / "src" / "sampler.py").write_text(CORRECT_SAMPLER)
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-m", "level4",
                             "--grade-json", "g.json"], cwd=kata, capture_output=True, text=True, env=_env(),
                            timeout=900)
    grade = json.loads((kata / "g.json").read_text())
    assert result.returncode == 0, result.stdout[-3000:]
    assert grade["score"] == grade["max_score"] == 12 and grade["extra_data"]["complete"]
    run = subprocess.run([sys.executable, "main.py", "--config", "configs/smoke.yaml", "--custom-sampler",
                          "training.max_steps=20", "training.preview_every=10"], cwd=kata, capture_output=True,
                         text=True, env=_env(), timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    out = kata / "outputs" / "smoke"
    assert {"samples.png", "animation.gif", "curves.png", "schedule.png", "forward_process.png", "metrics.json",
            "checkpoint.pt"} <= {p.name for p in out.iterdir()}
    assert sorted(p.name for p in (out / "previews").iterdir()) == ["step_000010.png", "step_000020.png"]
    assert json.loads((out / "metrics.json").read_text())["sampler"] == "your src/sampler.py"


# --------------------------------------------------------------------------------- the reference is checked

@pytest.mark.slow
def test_the_build_refuses_a_reference_that_fails(tmp_path):
    release.check_reference(ROOT, markers="level4")  # green: no error
    kata = kata_copy(tmp_path)
    (kata / "src" / "solution" / "sampler.py").write_text(
        "def sample(model, schedule, shape, generator=None):\n    raise RuntimeError('broken reference')\n")
    with pytest.raises(release.ReleaseError, match="does not pass the graded suite"):
        release.check_reference(kata, markers="level4")


def test_the_build_without_the_data_stops_at_once_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KATA_DATA_ROOT", str(tmp_path / "no-data"))
    monkeypatch.setattr("src.harness.run.data._try_download", lambda folder, download: None)  # offline
    assert release.main(["student", str(tmp_path / "student")]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "needs Fashion-MNIST" in error and "no-data" in error, error
    assert not (tmp_path / "student").exists()


# ------------------------------------------------------------------------------------------------ integrity

@pytest.mark.parametrize("source, library, banned", [
    ("from src.solution.sampler import sample\n", False, True),
    ("from src.solution import model\n", False, True),
    ("from .solution.sampler import sample\n", False, True),
    ("import importlib\nsample = importlib.import_module('src.solution.sampler').sample\n", False, True),
    ("from diffusers import UNet2DModel\n", True, True),
    ("import diffusers.models\n", True, True),
    ("from diffusers import UNet2DModel\n", False, False),  # an instructor setting allows ready-made networks
    ("import torch\n'''Unlike diffusers' UNet2DModel, this is mine; the solution is below.'''\n", True, False),
    (CORRECT_MODEL, True, False),
    (CORRECT_SAMPLER, False, False),
])
def test_forbidden_imports(source, library, banned):
    assert (autograder.forbidden_imports(source, library) is not None) == banned


def test_submission_found_in_a_repository_or_as_two_files(tmp_path):
    repo = tmp_path / "repo"
    for path in ("src/model.py", "src/sampler.py", "src/solution/model.py", "tests/graded/model.py",
                 "outputs/fashion_mnist/checkpoint.pt", "outputs/smoke/checkpoint.pt"):
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text("x")
    found = autograder.find_submission(repo)
    assert found["model"] == repo / "src/model.py" and found["sampler"] == repo / "src/sampler.py"
    assert found["checkpoints"] == {"fashion_mnist": repo / "outputs/fashion_mnist/checkpoint.pt"}
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "model.py").write_text("x")
    assert autograder.find_submission(flat) == {"model": flat / "model.py", "checkpoints": {}}


def test_a_symbolic_link_in_the_submission_is_never_taken(tmp_path):
    """Route: links that make the autograder copy the bundle's reference (or any root-only file) into the work copy."""
    secret = tmp_path / "source" / "kata" / "src" / "solution"
    secret.mkdir(parents=True)
    (secret / "model.py").write_text("the reference")
    submission = tmp_path / "submission"
    (submission / "src").mkdir(parents=True)
    (submission / "src" / "model.py").symlink_to(secret / "model.py")
    (submission / "linked").symlink_to(secret, target_is_directory=True)
    (submission / "sampler.py").write_text("mine")
    assert autograder.find_submission(submission) == {"sampler": submission / "sampler.py", "checkpoints": {}}


def test_the_work_copy_takes_the_graded_files_and_nothing_else(tmp_path):
    """A submitted conftest.py, pytest.ini, graded test or harness module never reaches the work copy."""
    submission = tmp_path / "submission"
    planted = {"conftest.py": "raise SystemExit", "pytest.ini": "[pytest]\naddopts = -p no:grading\n",
               "tests/graded/test_ddpm.py": "def test_free(): pass\n", "src/harness/grade/grading.py": "",
               "src/sampler.py": "mine"}
    for name, text in planted.items():
        (submission / name).parent.mkdir(parents=True, exist_ok=True)
        (submission / name).write_text(text)
    kata = autograder.build_work_kata(tmp_path / "work", autograder.find_submission(submission))
    assert (kata / "src" / "sampler.py").read_text() == "mine"
    for name in ("tests/graded/test_ddpm.py", "src/harness/grade/grading.py"):
        assert (kata / name).read_text() == (ROOT / name).read_text(), name
    assert not (kata / "conftest.py").exists() and not (kata / "pytest.ini").exists()


@pytest.mark.slow
def test_retrain_replaces_the_submitted_checkpoint_with_a_run_of_the_submitted_model(tmp_path):
    """The "retrain" setting; the official config is swapped for a short one here, so it takes seconds."""
    kata = kata_copy(tmp_path, model=CORRECT_MODEL)
    short = (kata / "configs" / "smoke.yaml").read_text().replace("epochs: 16", "epochs: 1")
    (kata / "configs" / "fashion_mnist.yaml").write_text(short + "output:\n  name: fashion_mnist\n  animation: false\n")
    submitted = kata / "outputs" / "fashion_mnist" / "checkpoint.pt"
    submitted.parent.mkdir(parents=True)
    submitted.write_bytes(b"weights trained elsewhere")
    with subprocess.Popen(["sleep", "120"]) as bystander:  # a child of this process that is not the grading's
        note = autograder.retrain(kata, "fashion_mnist", sys.executable, None, time.monotonic() + 600,
                                  tmp_path / "work")
        assert bystander.poll() is None, "retrain() ended a process it did not start (only the driver reaps)"
        bystander.kill()
    assert "exit status 0" in note, (tmp_path / "work" / "logs" / "retrain-fashion_mnist.log").read_text()
    state = load_checkpoint(submitted)
    assert state["step"] == state["total_steps"] and state["model_fingerprint"] == STUDENT.fingerprint(root=kata)


def test_retrain_takes_the_runs_a_level_grades(tmp_path):
    assert autograder.retrained_configs(autograder.DEFAULT_SETTINGS) == []
    assert autograder.retrained_configs({"retrain": True}) == ["fashion_mnist"]
    assert autograder.retrained_configs({"retrain": ["moons", "moons_flow"]}) == ["moons", "moons_flow"]
    with pytest.raises(release.ReleaseError, match="retrain names smoke, which no level grades; choose among moons"):
        release.build_gradescope(tmp_path / "bundle.zip", settings={"retrain": ["smoke"]})


# -------------------------------------------------------------------------------------- Gradescope, end to end

FORGER = '''
import atexit, json, os
from pathlib import Path

import src.harness.grade.grading as grading

FORGED = {"score": 999, "tests": [{"name": "forged", "score": 999, "max_score": 1}]}
results = Path.cwd().parents[1] / "results" / "results.json"  # the autograder root, guessed from the working dir


def forge():
    for path in (results, Path("/autograder/results/results.json")):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(FORGED))
        except OSError:
            pass


forge()
atexit.register(forge)
grading.gradescope_results = lambda entries: FORGED
grading._write_report = lambda config: forge()
grading._Events.pytest_runtest_protocol = lambda self, item, nextitem: None


def sample(model, schedule, shape, generator=None):
    raise NotImplementedError("this one only forges")
'''
# At import, writes a pass for each visible Level 4 test into every file it can reach (the autograder's event pipe
# was the target: one line per event) and makes pytest's test calls no-ops; then only forges.
EVENT_FORGER = '''
import json, os
from pathlib import Path

NAMES = ["test_matches_the_reference_sampler_exactly", "test_reproduces_the_mean_and_variance_of_gaussian_data",
         "test_output_shape_range_and_device", "test_returns_no_autograd_history",
         "test_calls_the_model_once_per_step_from_T_minus_1_down_to_0", "test_hidden_batch_of_seven"]
LINES = "".join(json.dumps(event) + "\\n" for name in NAMES for event in (
    {"event": "start", "nodeid": f"tests/graded/test_ddpm.py::{name}"},
    {"event": "outcome", "nodeid": f"tests/graded/test_ddpm.py::{name}", "status": "passed", "output": ""})).encode()
for fd in range(3, 64):
    try:
        os.write(fd, LINES)
    except OSError:
        pass
for path in Path(f"/proc/{os.getppid()}/fd").glob("*") if os.access(f"/proc/{os.getppid()}/fd", os.R_OK) else []:
    try:
        os.write(os.open(path, os.O_WRONLY | os.O_NONBLOCK), LINES)
    except OSError:
        pass
try:
    import _pytest.python
    _pytest.python.Function.runtest = lambda self: None
except ImportError:
    pass


def sample(model, schedule, shape, generator=None):
    raise NotImplementedError("this one only forges")
'''
# Runs the reference, read by path from the work copy or the bundle, where it can; the path is put together at run
# time, past the static check of imports and strings.
REFERENCE_BY_PATH = '''
from pathlib import Path

HIDDEN = "sol" + "ution"


def sample(model, schedule, shape, generator=None):
    for path in (Path.cwd() / "src" / HIDDEN / "sampler.py",
                 Path.cwd().parents[1] / "source" / "kata" / "src" / HIDDEN / "sampler.py"):
        try:
            code = path.read_text()
        except OSError:
            continue
        found = {}
        exec(code, found)
        return found["sample"](model, schedule, shape, generator=generator)
    raise NotImplementedError("no reference within reach")
'''


def replayer() -> str:
    """A sampler that replays the recorded DDPM trace the student release ships, embedded in its source."""
    buffer = io.BytesIO()
    torch.save(torch.load(FOLDER / "ddpm.pt", weights_only=True)["trace"], buffer)
    return (f"import base64, io, torch\nTRACE = torch.load(io.BytesIO(base64.b64decode("
            f"'{base64.b64encode(buffer.getvalue()).decode()}')), weights_only=True)\n\n\n"
            "def sample(model, schedule, shape, generator=None):\n    out, calls = TRACE\n"
            "    for t, x in calls:\n        model(x, torch.tensor(t))\n    return out\n")


LEAKER = '''
import os, sys
from pathlib import Path


def sample(model, schedule, shape, generator=None):
    found = []
    for where in [os.environ.get("KATA_EXTRA_TESTS", ""), *sys.argv, "tests/hidden", "../../source/hidden_tests"]:
        for path in (Path(where).rglob("*.py") if where and Path(where).is_dir() else []):
            found.append(path.read_text())
    raise RuntimeError("LEAK " + " ".join(found))
'''


# CORRECT_SAMPLER, but it leaves with os._exit(0) in test_output_shape_range_and_device (the one test that gives
# sample() T = 20) and hangs in one long C call, which pytest-timeout's signal cannot interrupt, in
# test_calls_the_model_once_per_step_from_T_minus_1_down_to_0 (T = 30).
DIES_IN_TWO_TESTS = "import os\n" + CORRECT_SAMPLER.replace(
    "def sample(model, schedule, shape, generator=None):\n",
    "def sample(model, schedule, shape, generator=None):\n    if schedule.num_timesteps == 20:\n        os._exit(0)\n"
    "    if schedule.num_timesteps == 30:\n        sum(range(10**12))\n", 1)
POINT_MODEL_PRINTS_MEGABYTES = '''
import torch


class PointModel(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        print("x" * 5_000_000)
        raise RuntimeError("y" * 1_000_000)
'''
# CORRECT_SAMPLER, which at import leaves a process behind in a session of its own, holding every open file for
# five minutes, its pid written to DETACHED_PID.
DETACHED_PID = Path(tempfile.gettempdir()) / "kata-detached-process.pid"
HOLDS_THE_PIPE = f"""import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        open({str(DETACHED_PID)!r}, "a").write(f"{{os.getpid()}}\\n")
        time.sleep(300)
    os._exit(0)
""" + CORRECT_SAMPLER
FLOW_IMPORTS_REFERENCE = "from src.solution.flow import euler_sample, flow_matching_pair  # noqa: F401\n"
SYNTAX_ERROR = "def sample(model, schedule, shape generator=None):\n    pass\n"


@pytest.fixture(scope="module")
def gradescope_root(tmp_path_factory):
    base = tmp_path_factory.mktemp("gradescope")
    hidden = base / "hidden"
    hidden.mkdir()
    (hidden / "test_hidden_sampler.py").write_text(HIDDEN_TEST)
    names = release.build_gradescope(base / "autograder.zip", hidden=hidden,
                                     settings={"parts": ["level4"], "grace_s": 3, "time_budget_s": 400})
    assert {"setup.sh", "run_autograder", "settings.json", "kata/src/solution/sampler.py",
            "hidden_tests/test_hidden_sampler.py"} <= set(names)
    root = base / "root"
    with zipfile.ZipFile(base / "autograder.zip") as bundle:
        bundle.extractall(root / "source")
    return root


def _grade(root: Path, files: dict[str, str], settings: dict | None = None, timeout: str = "5") -> dict:
    """results.json of run_autograder on `files` ({path: text or bytes}); graded tests time out after `timeout`
    seconds."""
    submission = root / "submission"
    shutil.rmtree(submission, ignore_errors=True)
    for name, source in files.items():
        (submission / name).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(source, bytes):
            (submission / name).write_bytes(source)
        else:
            (submission / name).write_text(source)
    if settings:
        path = root / "source" / "settings.json"
        path.write_text(json.dumps(json.loads(path.read_text()) | settings))
    done = subprocess.run(["bash", str(root / "source" / "run_autograder")], capture_output=True, text=True,
                          timeout=900, env=_env(AUTOGRADER_ROOT=str(root), KATA_PYTHON=sys.executable,
                                                KATA_GRADED_TIMEOUT=timeout))
    results = json.loads((root / "results" / "results.json").read_text())
    assert results["tests"], done.stdout + done.stderr
    for test in results["tests"]:
        assert {"name", "score", "max_score", "status", "output", "visibility"} <= set(test)
        assert 0 <= test["score"] <= test["max_score"]
    assert results["score"] == sum(t["score"] for t in results["tests"]) and "stdout_visibility" in results
    return results


def _by_name(results):
    return {t["name"]: t for t in results["tests"]}


@pytest.mark.slow
def test_gradescope_correct_sampler_earns_every_level4_point_and_nothing_it_leaves_stalls_grading(gradescope_root):
    """Also the route of a process detached by a double fork into a session of its own, which once held the event
    pipe open so that the driver waited out its budget: it cannot stall grading, and it does not outlive it (the
    driver is the subreaper of every process the grading starts)."""
    DETACHED_PID.unlink(missing_ok=True)
    begin = time.monotonic()
    results = _grade(gradescope_root, {"src/model.py": CORRECT_MODEL, "src/sampler.py": HOLDS_THE_PIPE,
                                       "README.md": "a whole repository"})
    assert time.monotonic() - begin < 200, "the driver waited for the detached process"
    detached = [int(pid) for pid in DETACHED_PID.read_text().split()]
    DETACHED_PID.unlink()
    assert detached and not [pid for pid in detached if Path(f"/proc/{pid}").exists()], "a detached process lives on"
    assert results["score"] == results["max_score"] == 12 + 3, results["tests"]
    hidden = _by_name(results)["test_hidden_batch_of_seven"]
    assert hidden["visibility"] == "after_published" and hidden["score"] == 3


@pytest.mark.slow
def test_gradescope_a_test_whose_process_dies_fails_alone(gradescope_root):
    """A test whose sampler ends its process (os._exit) or hangs in C code fails with the reason, and the tests after
    it run in a fresh sandbox worker."""
    assert DIES_IN_TWO_TESTS.count("if schedule.num_timesteps") == 2
    results = _grade(gradescope_root, {"sampler.py": DIES_IN_TWO_TESTS, "model.py": CORRECT_MODEL}, timeout="10")
    tests = _by_name(results)
    for name, reason in (("test_output_shape_range_and_device", "the process running your code ended"),
                         ("test_calls_the_model_once_per_step_from_T_minus_1_down_to_0", "Timeout|timed out")):
        died = tests.pop(name)  # a timeout: pytest-timeout's, or the driver's if restarting the worker overran
        assert died["score"] == 0 and re.search(reason, died["output"]), died
    assert all(t["score"] == t["max_score"] > 0 for t in tests.values()), tests


@pytest.mark.slow
def test_gradescope_a_sampler_that_forges_the_report_scores_zero(gradescope_root):
    results = _grade(gradescope_root, {"sampler.py": FORGER, "model.py": CORRECT_MODEL}, timeout="5")
    assert results["score"] == 0 and results["max_score"] == 15, results["tests"]
    visible = [t for t in results["tests"] if t["visibility"] == "visible"]
    assert len(visible) == 5 and all("not implemented" in t["output"] for t in visible), visible
    assert "999" not in json.dumps(results)


@pytest.fixture(scope="module")
def open_gradescope_root(gradescope_root):
    """gradescope_root, copied where the unprivileged user can reach the bundle (pytest's folders are private), so
    the autograder really drops to it; skips where it cannot (not root, or that user cannot run this Python)."""
    if os.geteuid() != 0 or autograder.unprivileged(autograder.DEFAULT_SETTINGS, sys.executable) is None:
        pytest.skip("the drop to an unprivileged user needs root, and a Python that user can run")
    base = Path(tempfile.mkdtemp(prefix="gradescope-"))
    os.chmod(base, 0o755)
    shutil.copytree(gradescope_root / "source", base / "source")
    yield base
    shutil.rmtree(base)


@pytest.mark.slow
def test_gradescope_a_sampler_that_forges_outcomes_from_inside_scores_zero(open_gradescope_root):
    """The route of a sampler that, imported, writes passes into the event pipe and turns pytest's test calls into
    no-ops: it runs in the sandbox's worker, an unprivileged process that holds no pipe of the grader's, cannot
    reopen the grader's files and has no pytest in it."""
    results = _grade(open_gradescope_root, {"sampler.py": EVENT_FORGER, "model.py": CORRECT_MODEL}, timeout="5")
    assert "your code ran as an unprivileged user" in results["output"]
    assert results["score"] == 0 and results["max_score"] == 15, results["tests"]


@pytest.mark.slow
def test_gradescope_neither_the_reference_nor_the_recorded_traces_are_within_reach(open_gradescope_root):
    """A sampler that runs the reference read by path (from the work copy, where the grader keeps one, or from the
    bundle) scores 0; one that replays the recorded trace, which passes at the recorded seed, fails the exact test
    at the seed the autograder drew."""
    results = _grade(open_gradescope_root, {"sampler.py": REFERENCE_BY_PATH, "model.py": CORRECT_MODEL})
    assert results["score"] == 0 and all("no reference within reach" in t["output"] for t in results["tests"]), (
        results["tests"])
    results = _grade(open_gradescope_root, {"sampler.py": replayer(), "model.py": CORRECT_MODEL})
    assert "seed drawn for this submission" in results["output"]
    exact = _by_name(results)["test_matches_the_reference_sampler_exactly"]
    assert exact["score"] == 0 and "x_T differs from the reference" in exact["output"], exact


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() == 0, reason="as root without the drop, the submitted code runs as root too, and "
                                              "nothing can be sealed from it (docs/instructors.md)")
def test_gradescope_the_forger_scores_zero_without_the_drop_too(gradescope_root):
    """Without the drop (an autograder that does not run as root), the grader's process is not dumpable: the
    worker, the same user, cannot reopen the event pipe through /proc."""
    results = _grade(gradescope_root, {"sampler.py": EVENT_FORGER, "model.py": CORRECT_MODEL}, timeout="5")
    assert results["score"] == 0 and results["max_score"] == 15, results["tests"]


@pytest.mark.slow
def test_gradescope_hidden_tests_stay_hidden(gradescope_root):
    results = _grade(gradescope_root, {"sampler.py": LEAKER})
    assert results["score"] == 0
    assert SECRET not in json.dumps(results), "a hidden test's source reached the results"
    assert "LEAK" in _by_name(results)["test_output_shape_range_and_device"]["output"]


@pytest.mark.slow
def test_gradescope_broken_files_score_zero_each_with_its_reason(gradescope_root):
    """Three broken files in one submission, each failing the parts that grade it with its own reason: a syntax error
    in sampler.py (Level 4), a flow.py that imports the reference (Level 7, zeroed before it runs) and a point model
    that prints megabytes (Level 0, whose outputs are cut)."""
    results = _grade(gradescope_root, {"sampler.py": SYNTAX_ERROR, "flow.py": FLOW_IMPORTS_REFERENCE,
                                       "point_model.py": POINT_MODEL_PRINTS_MEGABYTES, "model.py": CORRECT_MODEL},
                     settings={"parts": ["level0", "level4", "level7"]}, timeout="5")
    assert results["score"] == 0 and len(json.dumps(results)) < 200_000, "no points, and outputs are truncated"
    for part, reason, every in (("level4", "SyntaxError", True), ("level7", "imports the reference", True),
                                ("level0", "characters cut", False)):
        visible = [t for t in results["tests"] if t["tags"] == [part] and t["visibility"] == "visible"]
        found = [reason in t["output"] for t in visible]
        assert visible and (all(found) if every else any(found)), (part, visible)


@pytest.mark.slow
def test_gradescope_two_files_and_the_whole_basics(gradescope_root):
    results = _grade(gradescope_root, {"model.py": CORRECT_MODEL, "sampler.py": CORRECT_SAMPLER},
                     settings={"parts": ["basics", "level4"]}, timeout="120")
    by_part = {}
    for test in results["tests"]:
        by_part.setdefault(test["tags"][0], []).append(test)
    assert sum(t["score"] for t in by_part["basics"]) == 21 and sum(t["score"] for t in by_part["level4"]) == 15
    assert re.search(r"\(\d+ s, peak memory \d+ MiB\)", results["output"])
    assert "your code ran as" in results["output"]


# ------------------------------------------------------------------------------------- the unprivileged child

# A src/model.py that, once imported in the sandbox's worker, reports who it runs as and what it can reach.
REACH_PROBE = """
import os

UID = (os.getuid(), os.getgid())
FDS = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
try:
    open(os.environ["SECRET"]).read()
    SECRET = "readable"
except PermissionError:
    SECRET = "unreadable"
try:
    os.listdir(f"/proc/{os.getppid()}/fd")
    PARENT = "the grader's files are listable"
except PermissionError:
    PARENT = "the grader's files are out of reach"
try:
    import diffusers  # noqa: F401
    DIFFUSERS = "imported"
except ImportError as err:
    DIFFUSERS = str(err)
"""
REACH_SCRIPT = """
import os
from src.harness.grade.sandbox import Sandbox
model = Sandbox().module("model")
print(model.UID, model.SECRET, model.PARENT, model.DIFFUSERS, len(model.FDS), sep="\\n")
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="the privilege drop needs root")
def test_the_sandbox_worker_runs_unprivileged_and_reaches_nothing_of_the_grader(tmp_path):
    if autograder.unprivileged(autograder.DEFAULT_SETTINGS, sys.executable) is None:
        pytest.skip("the unprivileged user cannot run this Python")
    kata = Path(tempfile.mkdtemp(prefix="reach-"))  # readable by the unprivileged user, unlike tmp_path
    try:
        os.chmod(kata, 0o755)
        shutil.copytree(ROOT / "src" / "harness", kata / "src" / "harness")
        (kata / "src" / "__init__.py").write_text("")
        (kata / "src" / "model.py").write_text(REACH_PROBE)
        secret = tmp_path / "private" / "secret"
        secret.parent.mkdir(mode=0o700)
        secret.write_text("hidden")
        done = subprocess.run([sys.executable, "-c", REACH_SCRIPT], cwd=kata, capture_output=True, text=True,
                              timeout=300, env=_env(KATA_DROP_TO="65534:65534", SECRET=str(secret),
                                                    KATA_BLOCKED_IMPORTS="diffusers,src.solution"))
    finally:
        shutil.rmtree(kata)
    assert done.stdout.splitlines() == [
        "(65534, 65534)", "unreadable", "the grader's files are out of reach",
        "the autograder does not allow importing diffusers in your code",
        "6"], done.stderr  # descriptors 0-2, its 2 pipes, and the listing's own


def test_the_drop_is_skipped_where_the_user_cannot_run_python(tmp_path):
    settings = autograder.DEFAULT_SETTINGS | {"unprivileged_user": "no-such-user-here"}
    assert autograder.unprivileged(settings, sys.executable) is None
    folders = [*Path(sys.executable).resolve().parents, ROOT, *ROOT.parents]
    readable = all(os.stat(folder).st_mode & 0o001 for folder in folders)  # o+x on the way to Python and the kata
    expected = None if os.geteuid() != 0 or not readable else (65534, 65534)
    assert autograder.unprivileged(autograder.DEFAULT_SETTINGS, sys.executable) == expected


@pytest.fixture(scope="module")
def student_moons_run(student, tmp_path_factory):
    """The checkpoint of a student's point model trained by main.py in their copy (seconds), its final samples
    drawn with the student's DDIM (Level 5)."""
    kata = tmp_path_factory.mktemp("moons") / "kata"
    shutil.copytree(student, kata)
    (kata / "src" / "point_model.py").write_text(CORRECT_POINT_MODEL)
    (kata / "src" / "sampler.py").write_text(CORRECT_SAMPLER)
    run = subprocess.run([sys.executable, "main.py", "--config", "configs/moons.yaml", "sampling.sampler=ddim",
                          "sampling.eta=1", "output.animation=false"],
                         cwd=kata, capture_output=True, text=True, env=_env(), timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "samples (ddim)" in run.stdout
    return (kata / "outputs" / "moons" / "checkpoint.pt").read_bytes()


@pytest.mark.slow
def test_gradescope_levels_0_and_5_grade_a_point_model_ddim_and_their_moons_run(gradescope_root, student_moons_run):
    """A student's point model and its moons run, with a DDIM sampler written unlike the reference that samples it,
    earn every Level 0 and Level 5 point on Gradescope."""
    results = _grade(gradescope_root, {"src/point_model.py": CORRECT_POINT_MODEL, "src/sampler.py": CORRECT_SAMPLER,
                                       "outputs/moons/checkpoint.pt": student_moons_run},
                     settings={"parts": ["level0", "level5"]}, timeout="120")
    by_part = {part: [t for t in results["tests"] if t["tags"] == [part]] for part in ("level0", "level5")}
    assert [sum(t["score"] for t in tests) for tests in by_part.values()] == [12, 23], results["tests"]
    assert results["score"] == results["max_score"] == 35, results["tests"]


@pytest.mark.slow
def test_gradescope_level7_grades_flow_matching_and_its_moons_run(gradescope_root, student, tmp_path):
    """A student's flow matching and point model, trained by main.py in their copy (seconds, drawing its samples
    with the student's Euler sampler), earn every Level 7 point on Gradescope but the Fashion-MNIST run's 4, which
    need its checkpoint (minutes of training)."""
    kata = tmp_path / "kata"
    shutil.copytree(student, kata)
    (kata / "src" / "point_model.py").write_text(CORRECT_POINT_MODEL)
    (kata / "src" / "flow.py").write_text(CORRECT_FLOW)
    run = subprocess.run([sys.executable, "main.py", "--config", "configs/moons_flow.yaml", "--custom-sampler",
                          "output.animation=false"], cwd=kata, capture_output=True, text=True, env=_env(), timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "your src/flow.py's euler_sample" in run.stdout
    checkpoint = (kata / "outputs" / "moons_flow" / "checkpoint.pt").read_bytes()
    results = _grade(gradescope_root, {"src/point_model.py": CORRECT_POINT_MODEL, "src/flow.py": CORRECT_FLOW,
                                       "outputs/moons_flow/checkpoint.pt": checkpoint},
                     settings={"parts": ["level7"]}, timeout="120")
    assert results["max_score"] == 24 and results["score"] == 20, results["tests"]
    fashion = _by_name(results)["test_fashion_mnist_flow_samples_are_recognisable"]
    assert fashion["score"] == 0 and "no trained model yet" in fashion["output"], fashion


@pytest.mark.slow
def test_gradescope_level6_grades_the_contract_and_the_guided_sampler(gradescope_root):
    """A zoo network written to take labels and a guided sampler written unlike the reference earn Level 6's 16
    points of code on Gradescope; without a checkpoint of configs/fashion_mnist_cfg.yaml the trained run's 6 do not."""
    results = _grade(gradescope_root, {"src/model.py": CORRECT_MODEL, "src/sampler.py": CORRECT_SAMPLER},
                     settings={"parts": ["level6"]}, timeout="120")
    tests = _by_name(results)
    assert results["max_score"] == 22 and results["score"] == 16, results["tests"]
    for name in ("test_trained_run_shows_the_class_asked_for", "test_trained_run_draws_no_class_at_w_0"):
        assert tests[name]["score"] == 0 and "no trained model yet" in tests[name]["output"], tests[name]
