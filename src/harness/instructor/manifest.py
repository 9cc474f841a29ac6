"""Which of the instructor repository's files each audience gets: students (the student release, and the work copy
of the kata the Gradescope autograder grades in) and the Gradescope bundle."""

import subprocess
from pathlib import Path

from src.harness.paths import ROOT

# Paths (a folder ends with "/") that stay in the instructor repository.
INSTRUCTOR_ONLY = (
    "src/solution/",  # the answers
    "calibration/",  # correct Level 1 models and their samples
    "tests/harness/",  # the harness's own tests: the mutant switchboard holds a complete DDPM sampler
    "tests/hidden/",  # the instructor's hidden tests
    "src/harness/instructor/",  # the release, the Gradescope bundle's driver, the Classroom workflow's writer
    "tests/graded/record.py",
    "docs/instructors.md", "docs/calibration/", ".ci/",
)
NEVER = (".git/", ".venv/", "outputs/", "data/", ".pytest_cache/")
# Instructor files the Gradescope bundle leaves out: the calibration zoo, CI, and the hidden tests (the bundle
# carries those apart, as hidden_tests/).
NOT_IN_BUNDLE = ("calibration/", ".ci/", "tests/hidden/")


def _listed(root: Path) -> list[str]:
    """The repository's files: git's tracked and untracked-but-not-ignored ones, or every file outside NEVER."""
    if (root / ".git").exists():
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=root,
                             capture_output=True, check=True).stdout.decode()
        return sorted(p for p in out.split("\0") if p and (root / p).is_file())
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith(".pyc"))


def _excluded(relative: str, patterns) -> bool:
    return any(relative.startswith(p) if p.endswith("/") else relative == p for p in patterns)


def instructor_files(root: Path = ROOT) -> list[str]:
    return [p for p in _listed(root) if not _excluded(p, NEVER) and "__pycache__" not in p]


def student_files(root: Path = ROOT) -> list[str]:
    return [p for p in instructor_files(root) if not _excluded(p, INSTRUCTOR_ONLY)]


def bundle_files(root: Path = ROOT) -> list[str]:
    return [p for p in instructor_files(root) if not _excluded(p, NOT_IN_BUNDLE)]
