"""Scores a GitHub Classroom step from the written grade report, not from pytest's exit status.

    uv run python -m src.harness.grade.verdict basics   # runs `pytest -m basics`, reads outputs/grade-basics.json
    uv run python -m src.harness.grade.verdict level1 -k recognisable   # grade-level1-recognisable.json
    uv run python -m src.harness.grade.verdict level7 -k "not fashion_mnist"   # grade-level7-not-fashion_mnist.json

Classroom's command grader gives a step its points when the command exits 0. pytest's own exit status is
not enough: a submission that calls os._exit(0) in the middle of a test ends pytest with status 0 and
no failures reported. This runs pytest, then exits 0 only when the report it wrote lists at least one
test, every one of them passed, and the session reached its end.
"""

import json
import re
import subprocess
import sys
from pathlib import Path


def verdict(report: Path) -> tuple[bool, str]:
    if not report.exists():
        return False, f"no grade report at {report}: the tests did not run"
    grade = json.loads(report.read_text())
    tests = grade.get("tests", [])
    failed = [t["name"] for t in tests if t.get("status") != "passed"]
    if not tests:
        return False, "no graded test ran"
    if failed:
        return False, f"{len(failed)} of {len(tests)} tests did not pass: {', '.join(failed[:5])}"
    if not grade.get("extra_data", {}).get("complete"):
        return False, "the test session did not reach its end (the process was killed or exited early)"
    return True, f"all {len(tests)} tests passed ({grade['score']:g} / {grade['max_score']:g} points)"


def pytest_arguments(part: str, extra: list[str], report: Path) -> list[str]:
    """What pytest runs for a step: the part's tests, narrowed by the step's own arguments, reported to `report`."""
    return ["-m", part, "--grade-json", str(report), *extra]


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print("usage: python -m src.harness.grade.verdict PART [pytest arguments]", file=sys.stderr)
        return 2
    part, extra = argv[0], argv[1:]
    # A step that grades part of a level (`-k WORD`) gets a report of its own, so no step overwrites another's.
    selection = extra[extra.index("-k") + 1] if "-k" in extra[:-1] else None
    name = f"{part}-{re.sub(r'[^A-Za-z0-9_]+', '-', selection)}" if selection else part
    report = Path("outputs") / f"grade-{name}.json"
    report.unlink(missing_ok=True)  # never a stale report from an earlier run
    subprocess.run([sys.executable, "-m", "pytest", *pytest_arguments(part, extra, report)])
    ok, why = verdict(report)
    print(f"{part}: {'PASS' if ok else 'FAIL'}: {why}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
