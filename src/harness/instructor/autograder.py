"""The Gradescope autograder: `run_autograder` calls `python -m src.harness.instructor.autograder`.

Layout under AUTOGRADER_ROOT (default /autograder, Gradescope's): source/ holds the unpacked bundle
(kata/, settings.json, hidden_tests/), submission/ what the student uploaded (a whole repository or just
model.py and sampler.py), results/results.json what this writes. Grading steps:

1. find the student's model.py, sampler.py and trained checkpoints in the submission;
2. check statically that they import neither the reference nor (unless allowed) diffusers' ready-made parts;
3. build work/kata: the student release of the kata with the student's files in src/ and checkpoints in outputs/;
4. run the graded tests, then the hidden tests, each in a child pytest process that reports every test's outcome
   on a pipe as it happens (src/harness/grade/grading.py, _Events). The student's code never runs in that child:
   the tests reach it through a sandbox worker the child starts (src/harness/grade/sandbox.py), which runs as an
   unprivileged user where the platform allows it, with the tests and their recorded values unreadable to it. A
   test that hangs past its time limit, or a child that dies, is killed and the child restarted on the tests
   still to run;
5. end every process the grading started (this driver is their subreaper, so one that detached itself is still
   found), then write results.json here from the children's outcomes only.
"""

import ast
import json
import os
import pwd
import selectors
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from src.harness.grade.linux import PR_SET_CHILD_SUBREAPER, is_subreaper, prctl
from src.harness.instructor.manifest import student_files
from src.harness.levels import STUDENT_FILES, parts_grading, trained_runs
from src.harness.paths import ROOT, write_json
from src.harness.policy import AUTOGRADED_PARTS

DEFAULT_SETTINGS = {
    "parts": list(AUTOGRADED_PARTS),  # graded on Gradescope; level3 needs CIFAR-10 data
    "allow_library_models": False,  # True: the student's files may import diffusers (ready-made networks, samplers)
    "retrain": [],  # runs (configs) to train here from the submitted code instead of taking its checkpoint
    "time_budget_s": 540,  # the whole grading, under Gradescope's limit; tests not reached by then score 0
    "grace_s": 30,  # beyond a test's own timeout before the child is killed (a hang in C code)
    "hidden_visibility": "after_published",  # the visibility of a hidden test that sets none
    "unprivileged_user": "nobody",
}
# Each student file, and the parts whose tests grade it: a forbidden import in the file zeroes them.
GRADED_FILES = tuple((file.name, parts_grading(file.name)) for file in STUDENT_FILES)
LIBRARY_MODULES = ("diffusers",)  # ready-made networks and samplers
REFERENCE_MODULES = ("src.solution", "solution")
CONFIGS_WITH_CHECKPOINTS = tuple(trained_runs())  # outputs/<config>/checkpoint.pt in a submission


def paths(root: Path | None = None) -> dict:
    root = Path(root or os.environ.get("AUTOGRADER_ROOT", "/autograder"))
    return {"root": root, "source": root / "source", "submission": root / "submission", "work": root / "work",
            "results": root / "results" / "results.json"}


# ------------------------------------------------------------------------------------------ the submission

def submitted_files(folder: Path) -> list[Path]:
    """The plain files under `folder`, shallowest first: never a symbolic link (to a file or a folder), which could
    point at the bundle's reference or hidden tests, nor anything under .git."""
    files = []
    for directory, subdirectories, names in os.walk(folder):
        here = Path(directory)
        subdirectories[:] = [d for d in subdirectories if d != ".git" and not (here / d).is_symlink()]
        files += [here / name for name in names if (here / name).is_file() and not (here / name).is_symlink()]
    return sorted(files, key=lambda p: (len(p.relative_to(folder).parts), str(p)))


def find_submission(folder: Path) -> dict:
    """{"point_model": path, "model": path, "sampler": path, "flow": path, "checkpoints": {config: path}} of what
    the student uploaded (submitted_files: no symbolic links)."""
    found = {"checkpoints": {}}
    files = submitted_files(folder)
    for name, _ in GRADED_FILES:
        candidates = [p for p in files if p.name == f"{name}.py" and "solution" not in p.parts
                      and "tests" not in p.parts]
        in_src = [p for p in candidates if p.parent.name == "src"]
        if in_src or candidates:
            found[name] = (in_src or candidates)[0]
    for config in CONFIGS_WITH_CHECKPOINTS:
        for p in files:
            if p.name == "checkpoint.pt" and p.parent.name == config and "outputs" in p.parts:
                found["checkpoints"][config] = p
                break
    return found


def forbidden_imports(source: str, library: bool) -> str | None:
    """Why this source may not be graded (it imports the reference, or with library=True diffusers)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None  # the tests report the syntax error with its line
    banned = REFERENCE_MODULES + (LIBRARY_MODULES if library else ())
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ("." * node.level) + (node.module or "")
            names = [base] + [f"{base}.{alias.name}".lstrip(".") for alias in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names = [node.value.replace("/", ".").removesuffix(".py")]
        for name in names:
            clean = name.lstrip(".")
            for module in banned:
                if clean == module or clean.startswith(module + "."):
                    what = ("the reference (src/solution)" if module in REFERENCE_MODULES
                            else f"{module}, a ready-made network or sampler")
                    return f"it imports {what}"
    return None


def integrity(found: dict, settings: dict) -> dict[str, str]:
    """{part: one-line reason} for the parts that score 0 because their file imports what it may not."""
    zeroed = {}
    for name, parts in GRADED_FILES:
        if name not in found:
            continue
        reason = forbidden_imports(found[name].read_text(errors="replace"),
                                   library=not settings["allow_library_models"])
        if reason:
            for part in parts:
                zeroed[part] = f"0 points: your {name}.py is not graded because {reason}"
    return zeroed


# ------------------------------------------------------------------------------------------ the work kata

def build_work_kata(work: Path, found: dict) -> Path:
    kata = work / "kata"
    if work.exists():
        shutil.rmtree(work)
    for relative in student_files(ROOT):
        target = kata / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, target)
    for name, _ in GRADED_FILES:
        if name in found:
            shutil.copy(found[name], kata / "src" / f"{name}.py")
    for config, checkpoint in found["checkpoints"].items():
        (kata / "outputs" / config).mkdir(parents=True, exist_ok=True)
        shutil.copy(checkpoint, kata / "outputs" / config / "checkpoint.pt")
    return kata


# ------------------------------------------------------------------------------------------ the child runs

def unprivileged(settings: dict, python: str, kata: Path = ROOT) -> tuple[int, int] | None:
    """(uid, gid) to run the student's code as (the sandbox's worker), when running as root and that user can run
    the kata's Python on the kata in `kata`."""
    if os.geteuid() != 0:
        return None
    try:
        user = pwd.getpwnam(settings["unprivileged_user"])
    except KeyError:
        return None
    try:  # the user must be able to run this Python on the kata: their files readable by everyone
        probe = subprocess.run([python, "-c", "import torch, omegaconf, src.harness.grade.sandbox"],
                               user=user.pw_uid, group=user.pw_gid, extra_groups=[], capture_output=True,
                               timeout=120, cwd=kata)
    except (OSError, subprocess.SubprocessError):
        return None
    return (user.pw_uid, user.pw_gid) if probe.returncode == 0 else None


class Suite:
    """One graded run (visible or hidden tests), restarted on the remaining tests when its child dies."""

    def __init__(self, kata: Path, work: Path, python: str, selection: list[str], marker: str, settings: dict,
                 deadline: float, drop: tuple[int, int] | None, blocked: list[str], name: str,
                 fresh_seed: int | None = None):
        self.kata, self.work, self.python, self.selection, self.marker = kata, work, python, selection, marker
        self.settings, self.deadline, self.drop, self.blocked, self.name = settings, deadline, drop, blocked, name
        self.fresh_seed = fresh_seed  # the exact traces' seed (tests/graded/recorded), None: the recorded one
        self.tests: dict[str, dict] = {}  # nodeid -> entry, in collection order
        self.log = work / "logs" / f"{name}.log"
        self.peak_rss_kb = 0

    def run(self) -> dict[str, dict]:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(100):
            remaining = [n for n, e in self.tests.items() if e["status"] == "not run"]
            if attempt and not remaining:
                break
            if time.monotonic() >= self.deadline:
                for nodeid in remaining:
                    self.tests[nodeid].update(output="not run: the autograder's time budget ran out")
                break
            self._child(attempt, remaining if attempt else self.selection)
            if not self.tests:  # nothing collected: the suite itself did not start
                break
        return self.tests

    def _child(self, attempt: int, targets: list[str]) -> None:
        scratch = self.work / "tmp" / f"{self.name}-{attempt}"
        scratch.mkdir(parents=True)
        read_fd, write_fd = os.pipe()
        env = {key: value for key, value in os.environ.items() if not key.startswith(("KATA_EXTRA", "AUTOGRADER"))}
        env |= {"KATA_GRADE_EVENTS_FD": str(write_fd), "KATA_PROGRESS": "0", "HOME": str(scratch),
                "KATA_BLOCKED_IMPORTS": ",".join(self.blocked), "PYTHONDONTWRITEBYTECODE": "1"}
        if self.drop:
            env["KATA_DROP_TO"] = f"{self.drop[0]}:{self.drop[1]}"
            os.chown(scratch, *self.drop)
        if self.fresh_seed:
            env["KATA_FRESH_SEED"] = str(self.fresh_seed)
        command = [self.python, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--basetemp", str(scratch / "pytest"),
                   "--grade-json", str(scratch / "grade.json"), "-m", self.marker, *targets]
        with open(self.log, "a") as log:
            log.write(f"\n$ {' '.join(command)}\n")
            log.flush()
            child = subprocess.Popen(command, cwd=self.kata, env=env, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, pass_fds=[write_fd], start_new_session=True)
        os.close(write_fd)
        self._watch(child, os.fdopen(read_fd, "rb"), first=attempt == 0)

    def _watch(self, child, stream, first: bool) -> None:
        """Follow the child's test events until it ends, a test overruns its timeout, or the budget runs out."""
        selector = selectors.DefaultSelector()
        selector.register(stream, selectors.EVENT_READ)
        buffer, watch, killed = b"", _Watch(collected=not first), None
        while True:
            limit = self.deadline
            if watch.current is not None:
                limit = min(limit, watch.started + self.tests[watch.current]["timeout"] + self.settings["grace_s"])
            wait = limit - time.monotonic()
            if wait <= 0:
                killed = "timed out" if watch.current is not None else "the autograder's time budget ran out"
                _kill(child)
                break
            if watch.finished and child.poll() is not None:
                break  # a process the child left behind may hold the pipe open: nothing it writes counts
            if not selector.select(timeout=min(wait, 1.0)):
                if child.poll() is not None:
                    break  # the child has ended, and what it wrote has been read
                continue
            chunk = os.read(stream.fileno(), 65536)
            if not chunk:
                break
            *lines, buffer = (buffer + chunk).split(b"\n")
            for event in _events(lines):
                if not watch.finished:
                    self._record(event, watch)
        selector.close()
        stream.close()
        _kill(child)  # and every process it started in its session
        for worker in watch.workers:  # the sandbox workers, each in a session of its own
            _kill_group(worker)
        if self.drop:
            _kill_processes_of(self.drop[0])  # and any that left the session: the user runs nothing else
        child.wait()
        _end_descendants()
        self._settle(watch, killed, first)

    def _record(self, event: dict, watch: "_Watch") -> None:
        """Apply one event of the child (collected, start, outcome, finish) to the test entries."""
        kind = event.get("event")
        if kind == "collected" and not watch.collected:
            watch.collected = True
            for entry in event.get("tests", []):
                self.tests[entry["nodeid"]] = entry | {"status": "not run", "output": "not run"}
        elif kind == "start" and watch.current is None and self.tests.get(event.get("nodeid"), {}).get(
                "status") == "not run":
            watch.current, watch.started = event["nodeid"], time.monotonic()
            self.tests[watch.current]["status"] = "running"
        elif kind == "outcome" and event.get("nodeid") == watch.current:
            status = "passed" if event.get("status") == "passed" else "failed"
            self.tests[watch.current].update(status=status, output=str(event.get("output", ""))[:20000],
                                             properties=event.get("properties") or {},
                                             seconds=round(time.monotonic() - watch.started, 1))
            watch.current = None
        elif kind == "sandbox" and isinstance(event.get("pid"), int):
            watch.workers.append(event["pid"])
        elif kind == "finish":
            watch.finished = True  # nothing after the session's end counts (an atexit handler, say)

    def _settle(self, watch: "_Watch", killed: str | None, first: bool) -> None:
        """After the child ended: record its memory, fail the test it died in, note a suite that never started."""
        import resource

        self.peak_rss_kb = max(self.peak_rss_kb, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
        if watch.current is not None:
            reason = (f"timed out after {self.tests[watch.current]['timeout']:g} s (killed)" if killed == "timed out"
                      else "did not finish: the process ended or was killed during this test")
            self.tests[watch.current].update(status="failed", output=reason)
        if not watch.collected or (first and not self.tests):
            self.tests.setdefault("<collection>", {
                "nodeid": "<collection>", "name": f"{self.name} tests could not be collected", "part": "other",
                "max_score": 0.0, "visibility": "visible", "status": "failed", "timeout": 0,
                "output": "the graded tests did not start; see the autograder log", "properties": {}})


@dataclass
class _Watch:
    """Where a child's test run stands: the test running now (since `started`), and what has been seen."""

    collected: bool
    current: str | None = None
    started: float = 0.0
    finished: bool = False
    workers: list[int] = field(default_factory=list)  # the pids of the sandbox workers the child started


def _events(lines: list[bytes]):
    """The JSON objects among the lines of the event pipe (anything else is skipped)."""
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            yield event


def _kill(child) -> None:
    _kill_group(child.pid)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _end_descendants() -> None:
    """SIGKILL and reap every child of this driver, again as their orphans are handed to it, until none is left
    (in the driver only: its children are the grading's and nothing else's)."""
    if not is_subreaper():  # main() made it one; not, say, a test calling retrain()
        return
    for _ in range(100):
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == os.getpid():
                    children.append(int(stat.parent.name))
            except (OSError, IndexError, ValueError):
                continue
        if not children:
            return
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass


def _kill_processes_of(uid: int) -> None:
    """SIGKILL every process of user `uid` (Linux's /proc), e.g. one a submission detached with setsid."""
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            owner = next(line.split()[1] for line in status.read_text().splitlines() if line.startswith("Uid:"))
            if int(owner) == uid:
                os.kill(int(status.parent.name), signal.SIGKILL)
        except (OSError, StopIteration, ValueError):
            continue


# ---------------------------------------------------------------------------------------------- grading

def load_settings(source: Path) -> dict:
    path = source / "settings.json"
    return DEFAULT_SETTINGS | (json.loads(path.read_text()) if path.exists() else {})


def hidden_source_lines(hidden: Path) -> set[str]:
    lines = set()
    for path in hidden.rglob("*.py"):
        lines |= {line.strip() for line in path.read_text(errors="replace").splitlines() if len(line.strip()) >= 24}
    return lines


def grade(root: Path | None = None) -> dict:
    where = paths(root)
    settings = load_settings(where["source"])
    begin = time.monotonic()
    deadline = begin + settings["time_budget_s"]
    python = os.environ.get("KATA_CHILD_PYTHON", sys.executable)
    found = find_submission(where["submission"])
    zeroed = integrity(found, settings)
    kata = build_work_kata(where["work"], found)
    drop = unprivileged(settings, python, kata)
    if drop:  # the tests and their recorded values too: the student's code must not read them back
        for private in (where["source"], where["results"].parent, kata / "tests"):
            private.mkdir(parents=True, exist_ok=True)
            os.chmod(private, 0o700)
    notes = [f"submission: {', '.join(sorted(k for k in found if k != 'checkpoints')) or 'no model.py or sampler.py'}"
             f"; checkpoints: {', '.join(found['checkpoints']) or 'none'}",
             "your code ran as an unprivileged user" if drop else "your code ran as the autograder's own user"]
    for config in retrained_configs(settings):
        notes.append(retrain(kata, config, python, drop, deadline, where["work"]))
    fresh_seed = None
    if drop:  # the grader computes the exact traces at a seed of this submission, with a reference only it can read
        shutil.copytree(ROOT / "src" / "solution", kata / "src" / "solution",
                        ignore=shutil.ignore_patterns("runs", "__pycache__"))
        os.chmod(kata / "src" / "solution", 0o700)
        fresh_seed = 1 + int.from_bytes(os.urandom(4), "big") % (2 ** 31 - 1)
    notes.append("exact traces graded at a seed drawn for this submission" if fresh_seed
                 else "exact traces graded at their recorded seed")
    entries, suites, secret = run_suites(kata, where, python, settings, deadline, drop, fresh_seed)
    for entry in entries:
        if entry["part"] in zeroed:
            entry.update(status="failed", output=zeroed[entry["part"]])
        elif entry["status"] == "running":
            entry["status"] = "failed"
        if secret and any(line in entry["output"] for line in secret):
            entry["output"] = "output withheld: it quoted a hidden test"
    return results_json(entries, suites, zeroed, notes, time.monotonic() - begin, drop)


def run_suites(kata: Path, where: dict, python: str, settings: dict, deadline: float, drop, fresh_seed=None):
    """Run the graded tests, then the instructor's hidden tests if the bundle holds some.

    Returns (test entries, the suites run, the hidden tests' source lines that no output may quote).
    """
    blocked = list(REFERENCE_MODULES[:1]) + ([] if settings["allow_library_models"] else list(LIBRARY_MODULES))
    marker = " or ".join(settings["parts"])

    def suite(folder: str, name: str) -> Suite:
        return Suite(kata, where["work"], python, [folder], marker, settings, deadline, drop, blocked, name, fresh_seed)

    suites = [suite("tests/graded", "graded")]
    entries = list(suites[0].run().values())
    hidden_src = where["source"] / "hidden_tests"
    if not (hidden_src.is_dir() and any(hidden_src.rglob("test_*.py"))):
        return entries, suites, set()
    hidden = kata / "tests" / "hidden"
    shutil.copytree(hidden_src, hidden)
    os.chmod(hidden, 0o700)
    suites.append(suite("tests/hidden", "hidden"))
    hidden_entries = list(suites[1].run().values())
    shutil.rmtree(hidden)
    for entry in hidden_entries:
        if not entry.get("visibility_set"):
            entry["visibility"] = settings["hidden_visibility"]
    return entries + hidden_entries, suites, hidden_source_lines(hidden_src)


def results_json(entries: list[dict], suites: list, zeroed: dict, notes: list[str], seconds: float, drop) -> dict:
    """Gradescope's results.json: the tests, a summary with time and memory, and the Level 2 leaderboard."""
    from src.harness.grade.grading import gradescope_results

    results = gradescope_results(entries)
    peak = max(suite.peak_rss_kb for suite in suites) / 1024
    results["output"] += (f" ({seconds:.0f} s, peak memory {peak:.0f} MiB)\n" + "\n".join(notes)
                          + "".join(f"\n{reason} ({part})" for part, reason in sorted(zeroed.items())))
    results["execution_time"] = round(seconds, 1)
    results["extra_data"] = {"seconds": round(seconds, 1), "peak_rss_mib": round(peak, 1), "unprivileged": bool(drop),
                             "test_seconds": {e["nodeid"]: e.get("seconds") for e in entries}}
    loss = next((e["properties"].get("validation_loss") for e in entries
                 if e["part"] == "level2" and e["part"] not in zeroed and e.get("properties")), None)
    if isinstance(loss, (int, float)):
        results["leaderboard"] = [{"name": "Level 2 validation loss", "value": round(loss, 5), "order": "asc"}]
    return results


def retrained_configs(settings: dict) -> list[str]:
    """The runs the settings ask to train here: a list of configs whose checkpoints a level grades (`true`, the
    setting's first form, means Level 1's run, fashion_mnist)."""
    chosen = ["fashion_mnist"] if settings["retrain"] is True else list(settings["retrain"] or [])
    unknown = [config for config in chosen if config not in CONFIGS_WITH_CHECKPOINTS]
    if unknown:
        raise ValueError(f"the setting retrain names {', '.join(unknown)}, which no level grades; choose among "
                         f"{', '.join(CONFIGS_WITH_CHECKPOINTS)}")
    return chosen


def retrain(kata: Path, config: str, python: str, drop, deadline: float, work: Path) -> str:
    """Train the submitted code on configs/<config>.yaml at the official budget here (settings: retrain), replacing
    any submitted checkpoint of that run."""
    shutil.rmtree(kata / "outputs" / config, ignore_errors=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("KATA_EXTRA", "AUTOGRADER"))}
    kwargs = {"user": drop[0], "group": drop[1], "extra_groups": []} if drop else {}
    if drop:
        (kata / "outputs").mkdir(exist_ok=True)
        os.chown(kata / "outputs", *drop)
    (work / "logs").mkdir(parents=True, exist_ok=True)
    with open(work / "logs" / f"retrain-{config}.log", "w") as log:
        try:
            done = subprocess.run([python, "main.py", "--config", f"configs/{config}.yaml"], cwd=kata,
                                  env=env | {"KATA_PROGRESS": "0", "HOME": str(work)}, stdout=log,
                                  stderr=subprocess.STDOUT, timeout=max(1.0, deadline - time.monotonic() - 120),
                                  start_new_session=True, **kwargs)
            return f"retrained configs/{config}.yaml here (exit status {done.returncode})"
        except subprocess.TimeoutExpired:
            return f"retraining configs/{config}.yaml did not finish within the time budget"
        finally:  # nothing the submitted code started may outlive its training and touch the checkpoint
            if drop:
                _kill_processes_of(drop[0])
            _end_descendants()


def main() -> int:
    where = paths()
    prctl(PR_SET_CHILD_SUBREAPER, 1)  # so a process the student's code detached (a double fork) is still found
    try:
        results = grade()
    except Exception as err:  # the autograder's own failure: still a valid results.json
        results = {"score": 0.0, "output": f"the autograder failed ({type(err).__name__}: {err}); tell your "
                                           "instructor", "stdout_visibility": "hidden", "tests": []}
        write_json(where["results"], results)
        raise
    write_json(where["results"], results)
    print(results["output"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
