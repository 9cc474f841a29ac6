"""The pytest plugin that grades: fixtures for the code under test, points, a grade table and grade.json.

Loaded for every pytest run (`-p src.harness.grade.grading` in pyproject.toml). A graded test carries
`@pytest.mark.points(N)` and one part marker (level0, basics, level1 ... level7). It receives the code under
test through the fixtures `model_class` and `point_model_class` (the networks, checked to be gradable) and one per
graded function of a student file (`sample`, `ddim_sample`, ..., from `functions` in src/harness/levels.py): the
student's files, or with --solution the reference. Graded test functions take only those values, so the harness's
own tests can call them with deliberately broken implementations and check that they fail.
"""

import json
import os

import pytest

from src.harness.levels import STUDENT_FILES
from src.harness.paths import write_json
from src.harness.policy import DEFAULT_TIMEOUT, MAX_PARAMETERS, PARTS  # the grading policy, with its reasons

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
    if config.getoption("--solution"):
        from src.harness.loading import NO_REFERENCE, reference_available

        if not reference_available():
            raise pytest.UsageError(NO_REFERENCE)
    config.addinivalue_line("markers", "points(n): a graded test worth n points")
    config.addinivalue_line("markers", "visibility(v): Gradescope visibility (visible, hidden, after_due_date, "
                                       "after_published); default visible")
    for part, what in PARTS.items():
        config.addinivalue_line("markers", f"{part}: graded, {what}")
    extra = config.getoption("--extra-tests")
    if extra and extra not in config.args:
        config.args.append(extra)
    config.stash[_results_key] = {}
    events = os.environ.pop(EVENTS_FD, None)
    if events is not None:  # run by the Gradescope autograder (src/harness/instructor/autograder.py)
        config.pluginmanager.register(_Events(int(events)), "kata-grade-events")


def pytest_collection_modifyitems(items):
    for item in items:
        if item.get_closest_marker("points") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(DEFAULT_TIMEOUT))


# ----------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def source(request):
    """Whose code the tests grade: the student's, or the reference's with --solution; a sandbox.Sandboxed
    CodeSource, whose code runs in a worker process of its own, so that nothing it does reaches the outcomes."""
    from src.harness.grade.sandbox import Sandboxed

    sandbox = _sandbox(request.config)
    return Sandboxed(reference=sandbox.reference, sandbox=sandbox)


def _sandbox(config):
    """The session's sandbox (grade/sandbox.py), made on first use and closed at the session's end."""
    from src.harness.grade.sandbox import Sandbox

    if _sandbox_key not in config.stash:
        events = config.pluginmanager.get_plugin("kata-grade-events")
        sandbox = Sandbox(reference=config.getoption("--solution"), on_start=events.worker_started if events else None)
        config.stash[_sandbox_key] = sandbox
        config.add_cleanup(sandbox.close)
    return config.stash[_sandbox_key]


_sandbox_key = pytest.StashKey[object]()


def _implementation(name: str, source):
    from src.harness.loading import StudentCodeError

    try:
        return source.module(name)
    except StudentCodeError as err:
        pytest.fail(str(err), pytrace=False)


@pytest.fixture
def model_class(source):
    """DiffusionModel from src/model.py, or from src/solution/model.py with --solution, checked to be gradable:
    not too large to build, and its forward returns one tensor shaped like x on x's device."""
    return gradable(_implementation("model", source).DiffusionModel)


@pytest.fixture
def point_model_class(source):
    """PointModel from src/point_model.py, or from src/solution/point_model.py with --solution, checked like
    model_class."""
    return gradable(_implementation("point_model", source).PointModel, example=(2,))


@pytest.fixture
def autoencoder_class(source):
    """Autoencoder from src/autoencoder.py, or from src/solution/autoencoder.py with --solution (Level 8)."""
    return _implementation("autoencoder", source).Autoencoder


def gradable(cls, example: tuple = (1, 28)):
    """`cls`, failing the test at once if it is too large to grade (built as cls(*example)), with forward's output
    checked by loading.check_prediction (a tuple or a tensor on another device gets a one-line message)."""
    from src.harness.grade.probes import checked, parameters_on_meta_device

    count = parameters_on_meta_device(cls, example)
    if count is not None and count > MAX_PARAMETERS:
        pytest.fail(f"your model has {count / 1e6:.0f} M parameters, far beyond the budget (a few M, see "
                    "test_parameter_budget); it is too large to grade: make it smaller", pytrace=False)
    return checked(cls)


def _function_fixture(file: str, function: str):
    def fixture(source):
        return getattr(_implementation(file, source), function)

    fixture.__doc__ = f"{function}() from src/{file}.py, or from src/solution/{file}.py with --solution."
    return pytest.fixture(name=function)(fixture)


# One fixture per graded function of a student file (levels.STUDENT_FILES): `sample`, `ddim_sample`, ...
for _file in STUDENT_FILES:
    for _function in _file.functions:
        globals()[f"_{_function}_fixture"] = _function_fixture(_file.name, _function)


# ---------------------------------------------------------------------------------------------- reporting
#
# The report survives everything: every collected graded test is in it from the start (0 points, "not run"),
# the test about to run is written as failed ("did not finish") before it runs, and the file is rewritten after
# each test. A hang in a C call that pytest-timeout cannot interrupt, or an os._exit() in student code, kills
# the run but leaves every finished test's points and no pass that did not happen.

UNFINISHED = "running when this report was written: if the run has ended, this test timed out or was killed"
NOT_RUN = "not run"
MAX_OUTPUT = 8000  # characters of a test's output kept in the report (head and tail)
EVENTS_FD = "KATA_GRADE_EVENTS_FD"  # set by the autograder: a pipe it reads each test's outcome from


def _part(item) -> str:
    return next((part for part in PARTS if item.get_closest_marker(part)), "other")


def _truncate(text: str, limit: int = MAX_OUTPUT) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n... [{len(text) - limit} characters cut] ...\n{text[-half:]}"


def graded_entry(item) -> dict:
    """What the report records of a graded test before it has run."""
    timeout = item.get_closest_marker("timeout")
    return {"nodeid": item.nodeid, "name": item.nodeid.split("::", 1)[-1], "part": _part(item),
            "max_score": float(item.get_closest_marker("points").args[0]), "status": "not run", "output": NOT_RUN,
            "visibility": (item.get_closest_marker("visibility") or pytest.mark.visibility("visible")).args[0],
            "visibility_set": item.get_closest_marker("visibility") is not None,
            "timeout": float(timeout.args[0]) if timeout and timeout.args else float(DEFAULT_TIMEOUT),
            "properties": {}}


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session):
    results = session.config.stash[_results_key]
    for item in session.items:
        if item.get_closest_marker("points"):
            results[item.nodeid] = graded_entry(item)
    _write_report(session.config)
    if not session.config.option.collectonly and any("source" in getattr(item, "fixturenames", ())
                                                     for item in session.items):
        try:
            _sandbox(session.config).prepare()  # before the first test, outside every test's time limit
        except Exception:  # noqa: S110  (the first test that needs the worker reports why it did not start)
            pass


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    entry = item.config.stash[_results_key].get(item.nodeid)
    if entry is not None:  # written before the test runs: a killed run leaves it failed, never passed
        entry.update(status="running", output=UNFINISHED, failures=[], call_passed=False)
        _write_report(item.config)
    try:
        return (yield)
    finally:
        if entry is not None:
            failures = entry.pop("failures")
            passed = entry.pop("call_passed") and not failures
            entry["status"] = "passed" if passed else "failed"
            entry["output"] = "" if passed else _truncate(failures[0])
            entry["properties"] = _properties(item)
            _write_report(item.config)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    entry = item.config.stash[_results_key].get(item.nodeid)
    if entry is None:
        return report
    if call.excinfo is not None and report.failed:
        report.longrepr = _short_failure(call.excinfo, item.config)
    if report.failed or report.skipped:
        entry["failures"].append(_text(report))
    elif report.when == "call":
        entry["call_passed"] = True
    return report


def _properties(item) -> dict:
    """Numbers a graded test recorded with `record_property` (e.g. Level 2's loss, for the leaderboard)."""
    return {key: value for key, value in item.user_properties if isinstance(value, (int, float, str))}


def _short_failure(excinfo, config) -> str:
    """A student-oriented message instead of a traceback through the harness (unless --tb asks for one)."""
    if config.getoption("tbstyle") not in ("auto", "short"):
        remote = getattr(excinfo.value, "remote_traceback", "")  # raised in the sandbox's worker
        return f"{excinfo.getrepr(style=config.getoption('tbstyle'))}" + (
            f"\n\nin the process that ran the code under test:\n{remote}" if remote else "")
    from src.harness.loading import StudentCodeError, describe_exception, student_location

    err = excinfo.value
    if isinstance(err, StudentCodeError):
        return str(err)
    if isinstance(err, SystemExit):
        return f"your code called sys.exit({err.code}) ({describe_exception(err)}): return a value instead"
    if isinstance(err, NotImplementedError):
        return f"not implemented yet: {err}"
    if getattr(err, "student_description", ""):  # raised in the sandbox's worker (grade/sandbox.py)
        return f"your code raised {err.student_description}"
    if student_location(err) is not None:
        return f"your code raised {describe_exception(err)}"
    if isinstance(err, AssertionError):
        return str(err).split("\nassert ")[0].strip() or "assertion failed"
    return excinfo.exconly()


def _text(report) -> str:
    if report.skipped and isinstance(report.longrepr, tuple):
        return f"skipped: {report.longrepr[2]}"
    return str(report.longrepr)


def gradescope_results(entries) -> dict:
    """Gradescope's results.json from report entries (status passed, failed, running or not run); a test still
    running stays "running" (0 points), every other one not passed is "failed"."""
    tests = [{"name": e["name"], "score": e["max_score"] if e["status"] == "passed" else 0.0,
              "max_score": e["max_score"], "status": e["status"] if e["status"] in ("passed", "running") else "failed",
              "output": _truncate(e["output"]), "visibility": e["visibility"], "tags": [e["part"]]}
             for e in entries]
    score, max_score = sum(t["score"] for t in tests), sum(t["max_score"] for t in tests)
    return {"score": score, "max_score": max_score, "visibility": "visible", "stdout_visibility": "hidden",
            "output": f"{score:g} / {max_score:g} points", "tests": tests}


def _write_report(config) -> None:
    results = config.stash.get(_results_key, {})
    if not results:
        return
    grade = gradescope_results(results.values())
    grade["extra_data"] = {"complete": config.stash.get(_complete_key, False)}
    write_json(config.rootpath / config.getoption("grade_json"), grade)  # an absolute path stays as it is


_complete_key = pytest.StashKey[bool]()


def pytest_terminal_summary(terminalreporter, config):
    results = config.stash[_results_key]
    if not results:
        return
    tests = gradescope_results(results.values())["tests"]
    score, max_score = sum(t["score"] for t in tests), sum(t["max_score"] for t in tests)
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
    session.config.stash[_complete_key] = True
    _write_report(session.config)


class _Events:
    """Each graded test's outcome, as it happens, on a pipe the autograder reads (one JSON object a line).

    The autograder (a separate process) builds results.json from these lines alone, so a submission that
    rewrites report files, or rebinds this module's functions after it is imported, changes nothing: the
    hooks below were registered, and their writer bound, before any student code was imported.
    """

    def __init__(self, fd: int):
        from src.harness.grade.linux import PR_SET_DUMPABLE, prctl

        # Other processes of this user (the sandbox's worker, where the autograder cannot drop its privileges)
        # may not trace this one, read its memory or reopen its files (the event pipe) through /proc/<pid>/fd.
        prctl(PR_SET_DUMPABLE, 0)
        stream = os.fdopen(fd, "w", buffering=1)
        dumps = json.dumps

        def emit(event: dict, _write=stream.write, _flush=stream.flush, _dumps=dumps) -> None:
            _write(_dumps(event) + "\n")
            _flush()

        self.emit, self.reports = emit, []
        self.text, self.truncate, self.properties = _text, _truncate, _properties  # bound now, not looked up later

    def worker_started(self, pid: int) -> None:
        """The sandbox started a worker for the code under test: the autograder ends its process group at the end."""
        self.emit({"event": "sandbox", "pid": pid})

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session):
        entries = [graded_entry(item) for item in session.items if item.get_closest_marker("points")]
        self.emit({"event": "collected", "tests": entries})

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_protocol(self, item, nextitem):
        graded = item.get_closest_marker("points") is not None
        if graded:
            self.reports = []
            self.emit({"event": "start", "nodeid": item.nodeid})
        try:
            return (yield)
        finally:
            if graded:
                failures = [text for when, outcome, text in self.reports if outcome != "passed"]
                passed = not failures and ("call", "passed", "") in self.reports
                self.emit({"event": "outcome", "nodeid": item.nodeid, "status": "passed" if passed else "failed",
                           "output": "" if passed else self.truncate(failures[0] if failures else "did not finish"),
                           "properties": self.properties(item)})

    def pytest_runtest_logreport(self, report):
        if report.passed:
            self.reports.append((report.when, "passed", ""))
        else:
            self.reports.append((report.when, report.outcome, self.text(report)))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session):
        self.emit({"event": "finish"})

