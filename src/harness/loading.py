"""Loads the student's files (or, with --solution, the reference) and turns their errors into one line."""

import ast
import hashlib
import importlib
import traceback
from dataclasses import dataclass
from pathlib import Path

from src.harness import levels
from src.harness.paths import ROOT

# {name: path} of the files a student writes (levels.STUDENT_FILES), and src/utils.py which they may share.
STUDENT_PATHS = {file.name: f"src/{file.name}.py" for file in levels.STUDENT_FILES} | {"utils": "src/utils.py"}


class StudentCodeError(Exception):
    """Student code could not be used; the message says in one sentence what to do."""


class NoReferenceError(StudentCodeError):
    """--solution in a copy of the kata without src/solution/ (the student release)."""


NO_REFERENCE = ("this copy of the kata has no reference solution (src/solution/ is not part of the student "
                "release): run without --solution to use your own src/model.py and src/sampler.py")


def reference_available() -> bool:
    """Whether src/solution/ (the reference model and sampler) is part of this copy: the instructor's, not a student's."""
    try:
        return all((ROOT / "src" / "solution" / f"{name}.py").is_file() for name in ("model", "sampler"))
    except PermissionError:  # the autograder's copy, readable by the grader only
        return False


@dataclass(frozen=True)
class CodeSource:
    """Whose code a run or a test uses, chosen once (by --solution): the student's files at the top of src/, or the
    reference's in src/solution/. The harness reaches either only through this object; src/utils.py is shared."""

    reference: bool = False

    @property
    def run_suffix(self) -> str:
        """What a run folder's name adds for this code: outputs/<config>-solution/ holds the reference's runs."""
        return "-solution" if self.reference else ""

    def path(self, name: str) -> str:
        """The file of `name` (a key of STUDENT_PATHS) from the root: src/<name>.py or src/solution/<name>.py."""
        return f"src/solution/{name}.py" if self.reference and name != "utils" else STUDENT_PATHS[name]

    def module(self, name: str):
        """The module src.<name> (student) or src.solution.<name> (reference), e.g. name="model"."""
        if self.reference and not reference_available():
            raise NoReferenceError(NO_REFERENCE)
        module = f"src.solution.{name}" if self.reference else f"src.{name}"
        try:
            return importlib.import_module(module)
        except SyntaxError as err:
            where = _relative(err.filename) if err.filename else module
            raise StudentCodeError(f"{where}, line {err.lineno}: SyntaxError: {err.msg}. Fix it and run again.") \
                from None
        except Exception as err:
            raise StudentCodeError(f"importing {module} failed: {describe_exception(err)}") from None

    def fingerprint(self, modules: tuple[str, ...] = ("model",), root: Path = ROOT) -> str:
        """A hash of the code of each of `modules` (see kinds.trained_code) and src/utils.py, blind to comments,
        docstrings and formatting.

        main.py records it in a run's checkpoint and the level tests compare it with the files being graded, so a
        checkpoint counts only for the code that trained it (editing a comment is fine).
        """
        digest = hashlib.sha256()
        for name in (*modules, "utils"):
            try:
                tree = ast.parse((root / self.path(name)).read_text(encoding="utf-8"))
            except (OSError, SyntaxError, ValueError):
                digest.update(b"unreadable")
                continue
            for node in ast.walk(tree):
                body = getattr(node, "body", None)
                if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                        and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                    node.body = body[1:] or [ast.Pass()]
            digest.update(ast.dump(tree).encode())
        return digest.hexdigest()


STUDENT = CodeSource()
REFERENCE = CodeSource(reference=True)


def stub_message(err: NotImplementedError) -> str:
    """The friendly message for an unimplemented stub, naming the file it sits in and what it asks."""
    where = student_location(err)
    file = next((f for f in levels.STUDENT_FILES if where and where[0] == STUDENT_PATHS[f.name]),
                next(f for f in levels.STUDENT_FILES if f.name == "model"))
    asks = file.asks or (str(err).rstrip(".") or "implement it")
    otherwise = file.otherwise or ("run with --solution to use the reference's" if reference_available() else "")
    return (f"{STUDENT_PATHS[file.name]} is still a stub: {asks[0].lower()}{asks[1:]}"
            + (f", or {otherwise}." if otherwise else "."))


def student_location(err: BaseException) -> tuple[str, int] | None:
    """(file, line) of the deepest traceback frame inside a student file, if any."""
    found = None
    for frame in traceback.extract_tb(err.__traceback__):
        path = _relative(frame.filename)
        if path in STUDENT_PATHS.values():
            found = (path, frame.lineno)
    return found


def describe_exception(err: BaseException) -> str:
    """'ValueError at src/model.py:42: <message>' (location only when it is in a student file)."""
    where = student_location(err)
    at = f" at {where[0]}:{where[1]}" if where else ""
    message = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}{at}: {message}"


def _relative(filename: str) -> str:
    try:
        return Path(filename).resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return filename


def check_prediction(prediction, x) -> None:
    """Raise StudentCodeError unless the model's output for x: (B, C, H, W) is one tensor like x, on x's device."""
    import torch

    if not isinstance(prediction, torch.Tensor):
        raise StudentCodeError(f"the model returned a {type(prediction).__name__}, not a tensor; "
                               "DiffusionModel.forward must return only the predicted noise, a tensor shaped like x")
    if prediction.shape != x.shape:
        raise StudentCodeError(f"the model returned shape {tuple(prediction.shape)} for input {tuple(x.shape)}; "
                               "DiffusionModel.forward must return noise of the same shape as x")
    if prediction.device != x.device:
        raise StudentCodeError(f"the model returned a tensor on {prediction.device} for input on {x.device}; "
                               "do not move tensors to a device yourself: the harness moves the whole model")
