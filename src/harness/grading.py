"""The pytest plugin that grades: fixtures for the code under test, points, a grade table and grade.json.

Loaded for every pytest run (`-p src.harness.grading` in pyproject.toml). A graded test carries
`@pytest.mark.points(N)` and one part marker (basics, level1 ... level4). It receives the code under
test through the fixtures `model_class` and `sample`: the student's files, or with --solution the
reference. Graded test functions take only those values, so the harness's own tests can call them
with deliberately broken implementations and check that they fail.
"""

import json
import os
from pathlib import Path

import pytest

PARTS = {
    "basics": "the model's contract and a short training run",
    "level1": "recognisable Fashion-MNIST samples",
    "level2": "validation loss at most the reference's",
    "level3": "recognisable CIFAR-10 samples",
    "level4": "your own DDPM sampler",
}
# Seconds per graded test (env KATA_GRADED_TIMEOUT): an endless loop fails its test and the rest still run.
DEFAULT_TIMEOUT = int(os.environ.get("KATA_GRADED_TIMEOUT", "120"))

_results_key = pytest.StashKey[dict]()


def pytest_addoption(parser):
    group = parser.getgroup("diffusion kata")
    group.addoption("--solution", action="store_true",
                    help="grade the reference in src/solution/ instead of your src/model.py and src/sampler.py")
    group.addoption("--grade-json", default="outputs/grade.json",
                    help="where to write the Gradescope results.json (default: outputs/grade.json)")
    group.addoption("--extra-tests", default=os.environ.get("KATA_EXTRA_TESTS"),
                    help="a folder of extra graded tests (an instructor's hidden tests); env KATA_EXTRA_TESTS")


def pytest_configure(config):
    config.addinivalue_line("markers", "points(n): a graded test worth n points")
    config.addinivalue_line("markers", "visibility(v): Gradescope visibility (visible, hidden, after_due_date, "
                                       "after_published); default visible")
    for part, what in PARTS.items():
        config.addinivalue_line("markers", f"{part}: graded, {what}")
    extra = config.getoption("--extra-tests")
    if extra and extra not in config.args:
        config.args.append(extra)
    config.stash[_results_key] = {}


def pytest_collection_modifyitems(items):
    for item in items:
        if item.get_closest_marker("points") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(DEFAULT_TIMEOUT))


# ----------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def solution(request) -> bool:
    return request.config.getoption("--solution")


def _implementation(name: str, solution: bool):
    from src.harness.loading import StudentCodeError, import_implementation

    try:
        return import_implementation(name, solution)
    except StudentCodeError as err:
        pytest.fail(str(err), pytrace=False)


# A network beyond this cannot be graded in a test's time (the budget test says what the limit really is: a few M).
MAX_PARAMETERS = 50_000_000


@pytest.fixture
def model_class(solution):
    """DiffusionModel from src/model.py, or from src/solution/model.py with --solution, checked to be gradable:
    not too large to build, and its forward returns one tensor shaped like x on x's device."""
    return gradable(_implementation("model", solution).DiffusionModel)


def gradable(cls):
    """`cls`, failing the test at once if it is too large to grade, with forward's output checked by
    loading.check_prediction (a tuple or a tensor on another device gets a one-line message)."""
    count = _parameters_on_meta_device(cls)
    if count is not None and count > MAX_PARAMETERS:
        pytest.fail(f"your model has {count / 1e6:.0f} M parameters, far beyond the budget (a few M, see "
                    "test_parameter_budget); it is too large to grade: make it smaller", pytrace=False)
    from src.harness.loading import check_prediction

    def forward(self, x, t):
        prediction = cls.forward(self, x, t)
        check_prediction(prediction, x)
        return prediction

    return type(cls.__name__, (cls,), {"forward": forward, "__module__": cls.__module__})


def _parameters_on_meta_device(cls) -> int | None:
    """The parameter count of cls(1, 28), built without allocating memory; None if it cannot be built so."""
    import torch

    try:
        with torch.device("meta"):
            return sum(p.numel() for p in cls(1, 28).parameters())
    except Exception:  # the real construction in the test reports any error properly
        return None


@pytest.fixture
def sample(solution):
    """sample() from src/sampler.py, or from src/solution/sampler.py with --solution."""
    return _implementation("sampler", solution).sample


# ---------------------------------------------------------------------------------------------- reporting

def _part(item) -> str:
    return next((part for part in PARTS if item.get_closest_marker(part)), "other")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    points = item.get_closest_marker("points")
    if points is None:
        return report
    if call.excinfo is not None and report.failed:
        report.longrepr = _short_failure(call.excinfo, item.config)
    results = item.config.stash[_results_key]
    entry = results.setdefault(item.nodeid, {
        "name": item.nodeid.split("::", 1)[-1], "part": _part(item), "max_score": float(points.args[0]),
        "passed": True, "output": "",
        "visibility": (item.get_closest_marker("visibility") or pytest.mark.visibility("visible")).args[0],
    })
    if report.failed or report.skipped:
        entry["passed"] = False
        entry["output"] = entry["output"] or _text(report)
    return report


def _short_failure(excinfo, config) -> str:
    """A student-oriented message instead of a traceback through the harness (unless --tb asks for one)."""
    if config.getoption("tbstyle") not in ("auto", "short"):
        return excinfo.getrepr(style=config.getoption("tbstyle"))
    from src.harness.loading import StudentCodeError, describe_exception, student_location

    err = excinfo.value
    if isinstance(err, StudentCodeError):
        return str(err)
    if isinstance(err, SystemExit):
        return f"your code called sys.exit({err.code}) ({describe_exception(err)}): return a value instead"
    if isinstance(err, NotImplementedError):
        return f"not implemented yet: {err}"
    if student_location(err) is not None:
        return f"your code raised {describe_exception(err)}"
    if isinstance(err, AssertionError):
        return str(err).split("\nassert ")[0].strip() or "assertion failed"
    return excinfo.exconly()


def _text(report) -> str:
    if report.skipped and isinstance(report.longrepr, tuple):
        return f"skipped: {report.longrepr[2]}"
    return str(report.longrepr)


def _grade(results: dict) -> tuple[list[dict], float, float]:
    tests = [{"name": r["name"], "score": r["max_score"] if r["passed"] else 0.0, "max_score": r["max_score"],
              "status": "passed" if r["passed"] else "failed", "output": r["output"], "visibility": r["visibility"],
              "tags": [r["part"]]} for r in results.values()]
    return tests, sum(t["score"] for t in tests), sum(t["max_score"] for t in tests)


def pytest_terminal_summary(terminalreporter, config):
    results = config.stash[_results_key]
    if not results:
        return
    tests, score, max_score = _grade(results)
    write = terminalreporter.write_line
    terminalreporter.section("grade")
    write(f"{'part':<8}  {'what':<46}  {'tests':>7}  {'points':>11}")
    for part in [*PARTS, "other"]:
        rows = [t for t in tests if t["tags"] == [part]]
        if rows:
            passed = sum(t["status"] == "passed" for t in rows)
            earned, available = sum(t["score"] for t in rows), sum(t["max_score"] for t in rows)
            write(f"{part:<8}  {PARTS.get(part, 'extra tests'):<46}  {passed:>3}/{len(rows):<3}  "
                  f"{earned:>5g}/{available:<5g}")
    write(f"{'total':<8}  {'':<46}  {'':>7}  {score:>5g}/{max_score:<5g}")
    write(f"grade report: {config.rootpath / config.getoption('grade_json')}")


def pytest_sessionfinish(session):
    results = session.config.stash.get(_results_key, {})
    if not results:
        return
    tests, score, max_score = _grade(results)
    path = session.config.rootpath / session.config.getoption("grade_json")  # an absolute path stays as it is
    path.parent.mkdir(parents=True, exist_ok=True)
    grade = {"score": score, "max_score": max_score, "visibility": "visible", "stdout_visibility": "visible",
             "output": f"{score:g} / {max_score:g} points", "tests": tests}
    path.write_text(json.dumps(grade, indent=2) + "\n")
