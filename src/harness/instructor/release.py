"""Two builds from the instructor repository (see docs/instructors.md):

    uv run python -m src.harness.instructor.release student OUT_DIR      # the repository students receive
    uv run python -m src.harness.instructor.release gradescope OUT.zip   # the Gradescope autograder bundle

Both first run the graded suite (and the hidden tests) on the reference, and refuse to build unless it is
green. The student build leaves out everything that gives an answer away (manifest.INSTRUCTOR_ONLY), rewrites the
README, docs/performance.md and the levels' chapters for students (STUDENT_REWRITTEN), and checks that no file it
wrote contains a line of the reference implementation.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from src.harness.instructor.autograder import DEFAULT_SETTINGS, retrained_configs
from src.harness.instructor.manifest import bundle_files, student_files
from src.harness.paths import ROOT
from src.harness.run.config import official_config
from src.harness.run.data import DataNotFoundError, load_data


# Documents shipped to students with their instructor blocks dropped and their student blocks shown (a folder ends
# with "/": every Markdown file in it, such as each level's chapter).
STUDENT_REWRITTEN = ("README.md", "docs/performance.md", "docs/levels/")
INSTRUCTOR_BLOCK = re.compile(r"<!-- instructor -->\n?.*?<!-- /instructor -->\n?", re.S)
STUDENT_BLOCK = re.compile(r"<!-- student\n(.*?)-->\n?", re.S)


class ReleaseError(Exception):
    """The release cannot be built; the message says why."""


def rewritten_for_students(relative: str) -> bool:
    """Whether the file at `relative` is one of the STUDENT_REWRITTEN documents."""
    return any(relative.startswith(p) and relative.endswith(".md") if p.endswith("/") else relative == p
               for p in STUDENT_REWRITTEN)


def student_documents(root: Path = ROOT) -> list[str]:
    """The STUDENT_REWRITTEN documents the student release holds."""
    return [relative for relative in student_files(root) if rewritten_for_students(relative)]


def student_readme(text: str) -> str:
    """A STUDENT_REWRITTEN document (README.md, ...) for students: instructor blocks dropped, student blocks
    (HTML comments) shown."""
    return STUDENT_BLOCK.sub(lambda m: m.group(1), INSTRUCTOR_BLOCK.sub("", text))


def reference_lines(root: Path = ROOT) -> dict[str, set[str]]:
    """{reference file: its code lines of 30 characters or more that its student stub lacks}, to recognise a copy
    of it. Lines the stub shows too (signatures, the contract in its docstring) are no answer."""
    found = {}
    for path in (root / "src" / "solution").glob("*.py"):
        stub = root / "src" / path.name
        shown = stub.read_text() if stub.is_file() else ""
        lines = {line.split("#")[0].strip() for line in path.read_text().splitlines()}
        lines = {code for code in lines if len(code) >= 30 and not code.startswith(('"""', "from ", "import "))
                 and code not in shown}
        if lines:
            found[path.relative_to(root).as_posix()] = lines
    return found


LEAK_SHARE = 0.6  # a file holding this share of a reference file's lines holds its implementation


def leaked_reference(text: str, reference: dict[str, set[str]]) -> str | None:
    """The reference file whose implementation `text` contains (most of its lines), if any; where several do (the
    steered sampler shares DDIM's lines with the guided one), the one it holds the largest share of."""
    shares = {name: sum(line in text for line in lines) / len(lines) for name, lines in reference.items() if lines}
    name = max(shares, key=shares.get, default=None)
    return name if name is not None and shares[name] >= LEAK_SHARE else None


def check_reference(root: Path = ROOT, hidden: Path | None = None, markers: str | None = None) -> None:
    """Otter's rule: the graded suite (and the hidden tests) must pass on the reference, or nothing is built. Stops
    at the first failure and names it."""
    _check_data_reachable()
    with tempfile.TemporaryDirectory() as scratch:
        grade = Path(scratch) / "grade.json"
        command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-x", "--solution", "tests/graded",
                   "--grade-json", str(grade)] + (["-m", markers] if markers else [])
        env = {**os.environ, "KATA_PROGRESS": "0"}
        env.pop("KATA_EXTRA_TESTS", None)
        if hidden is not None and hidden.is_dir():
            command.append(str(hidden))
        print(f"checking the reference: {' '.join(command[1:])}", flush=True)
        result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
        report = json.loads(grade.read_text()) if grade.exists() else {"tests": []}
        # A skip is no failure: Level 3 skips where no CIFAR-10 reference run was made (an hour on a CPU).
        failed = [t for t in report["tests"] if t["status"] != "passed" and not t["output"].startswith("skipped")]
        if failed:
            first = failed[0]
            reason = next((line for line in first["output"].splitlines() if line.strip()), first["status"])
            raise ReleaseError(f"the reference does not pass the graded suite: {first['name']} {first['status']} "
                               f"({reason.strip()}); nothing was built")
        if result.returncode != 0 or not report["tests"] or not report.get("extra_data", {}).get("complete", False):
            tail = "\n".join(result.stdout.splitlines()[-15:])
            raise ReleaseError(f"the reference does not pass the graded suite (see below); nothing was built\n{tail}")


def _check_data_reachable() -> None:
    """The graded Fashion-MNIST levels need the dataset: say so in one line, before minutes of tests fail on it."""
    try:
        load_data(official_config("fashion_mnist").data)
    except DataNotFoundError as err:
        raise ReleaseError(f"the reference check needs Fashion-MNIST: {err}; nothing was built") from None


def build_student(out: Path, root: Path = ROOT) -> list[str]:
    """Write the student repository to `out` (which must not exist or be empty); returns the files written."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ReleaseError(f"{out} exists and is not empty; give a new folder")
    files = student_files(root)
    forbidden = reference_lines(root)
    for relative in files:
        target = out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if rewritten_for_students(relative):
            target.write_text(student_readme((root / relative).read_text()))
        else:
            shutil.copy2(root / relative, target)
        if target.suffix in {".py", ".md", ".yml", ".yaml", ".json", ".toml", ".txt", ".sh", ""}:
            leaked = leaked_reference(target.read_text(errors="replace"), forbidden)
            if leaked:
                shutil.rmtree(out)
                raise ReleaseError(f"{relative} contains the reference implementation ({leaked}); nothing built")
    (out / "outputs").mkdir(exist_ok=True)
    (out / "outputs" / ".gitkeep").touch()
    return files


SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, as root, when the autograder image is built (network allowed here only).
set -euo pipefail
cd "$(dirname "$0")"
export UV_INSTALL_DIR=/usr/local/bin UV_PYTHON_INSTALL_DIR=/opt/kata/python UV_CACHE_DIR=/opt/kata/uv-cache
export UV_PROJECT_ENVIRONMENT=/opt/kata/venv UV_PYTHON_PREFERENCE=only-managed
command -v uv >/dev/null || curl -LsSf https://astral.sh/uv/install.sh | sh
(cd kata && uv sync --frozen)
mkdir -p /opt/kata/data
if [ -d data/FashionMNIST ]; then
    cp -r data/FashionMNIST /opt/kata/data/
else
    (cd kata && uv run --frozen python -c "from torchvision.datasets import FashionMNIST as F; \\
F('/opt/kata/data', train=True, download=True); F('/opt/kata/data', train=False, download=True)")
fi
# The unprivileged user the tests run as must be able to run this Python and read the data.
chmod -R a+rX /opt/kata
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for each submission. AUTOGRADER_ROOT (default /autograder) moves the whole layout,
# for the kata's own end-to-end test. results.json is always written, by the driver or, if it fails, here.
ROOT="${AUTOGRADER_ROOT:-/autograder}"
export AUTOGRADER_ROOT="$ROOT" KATA_PROGRESS=0
export UV_PYTHON_INSTALL_DIR=/opt/kata/python UV_CACHE_DIR=/opt/kata/uv-cache UV_PROJECT_ENVIRONMENT=/opt/kata/venv
export KATA_DATA_ROOT="${KATA_DATA_ROOT:-/opt/kata/data}"
RESULTS="$ROOT/results/results.json"
mkdir -p "$ROOT/results"
rm -f "$RESULTS"
cd "$ROOT/source/kata" || exit 1
if [ -n "${KATA_PYTHON:-}" ]; then python=("$KATA_PYTHON"); else python=(uv run --frozen --offline python); fi
if ! "${python[@]}" -m src.harness.instructor.autograder; then
    echo '{"score": 0, "output": "The autograder itself failed; please tell your instructor.", "tests": []}' > "$RESULTS"
fi
"""


def build_gradescope(out_zip: Path, root: Path = ROOT, hidden: Path | None = None, settings: dict | None = None,
                     data_root: Path | None = None) -> list[str]:
    """Write the Gradescope bundle: setup.sh, run_autograder, settings.json, kata/ (with the reference),
    hidden_tests/ and, when a data folder holds it, Fashion-MNIST."""
    unknown = set(settings or {}) - set(DEFAULT_SETTINGS)
    if unknown:
        raise ReleaseError(f"unknown autograder settings {sorted(unknown)}; known: {sorted(DEFAULT_SETTINGS)}")
    try:
        retrained_configs(DEFAULT_SETTINGS | (settings or {}))
    except ValueError as err:
        raise ReleaseError(str(err)) from None
    names = []
    out_zip = Path(out_zip)
    out_zip.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out_zip, "w", zipfile.ZIP_DEFLATED) as bundle:
        def text(name, content, mode=0o644):
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            bundle.writestr(info, content)
            names.append(name)

        text("setup.sh", SETUP_SH, 0o755)
        text("run_autograder", RUN_AUTOGRADER, 0o755)
        text("settings.json", json.dumps(DEFAULT_SETTINGS | (settings or {}), indent=2) + "\n")
        for relative in bundle_files(root):
            bundle.write(root / relative, f"kata/{relative}")
            names.append(f"kata/{relative}")
        if hidden is not None and hidden.is_dir():
            for path in sorted(hidden.rglob("*.py")):
                name = f"hidden_tests/{path.relative_to(hidden).as_posix()}"
                bundle.write(path, name)
                names.append(name)
        raw = Path(data_root) / "FashionMNIST" / "raw" if data_root else None
        if raw is not None and raw.is_dir():
            for path in sorted(raw.iterdir()):
                if path.name.endswith(".gz") or not (raw / f"{path.name}.gz").exists():
                    bundle.write(path, f"data/FashionMNIST/raw/{path.name}")
                    names.append(f"data/FashionMNIST/raw/{path.name}")
    return names


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Build the student repository or the Gradescope autograder zip.")
    sub = parser.add_subparsers(dest="build", required=True)
    student = sub.add_parser("student", help="write the student repository to OUT_DIR")
    student.add_argument("out", type=Path, metavar="OUT_DIR")
    gradescope = sub.add_parser("gradescope", help="write the Gradescope autograder zip")
    gradescope.add_argument("out", type=Path, metavar="OUT.zip")
    gradescope.add_argument("--hidden-tests", type=Path, default=ROOT / "tests" / "hidden",
                            help="a folder of hidden graded tests (default tests/hidden/)")
    gradescope.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                            help="an autograder setting, e.g. --set retrain=true --set 'parts=[\"basics\",\"level4\"]'")
    gradescope.add_argument("--data-root", type=Path, default=os.environ.get("KATA_DATA_ROOT", ROOT / "data"),
                            help="bundle Fashion-MNIST from here when it is there (else setup.sh downloads it)")
    args = parser.parse_args(argv)
    try:
        if args.build == "student":
            if args.out.exists() and any(args.out.iterdir()):
                raise ReleaseError(f"{args.out} exists and is not empty; give a new folder")
            check_reference()
            files = build_student(args.out)
            print(f"wrote the student repository ({len(files)} files) to {args.out}")
        else:
            settings = {}
            for item in args.set:
                key, _, value = item.partition("=")
                try:
                    settings[key] = json.loads(value)
                except ValueError:
                    raise ReleaseError(f"--set {item}: the value must be JSON (true, 600, \"nobody\", [...])")
            hidden = args.hidden_tests if args.hidden_tests.is_dir() else None
            check_reference(hidden=hidden)
            names = build_gradescope(args.out, hidden=hidden, settings=settings, data_root=args.data_root)
            print(f"wrote {args.out}: {len(names)} files, {sum(n.startswith('hidden_tests/') for n in names)} hidden")
    except ReleaseError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
