"""Loads the student's files (or, with --solution, the reference) and turns their errors into one line."""

import importlib
import traceback
from pathlib import Path

STUDENT_FILES = {"model": "src/model.py", "sampler": "src/sampler.py", "utils": "src/utils.py"}
_ROOT = Path(__file__).resolve().parents[2]


class StudentCodeError(Exception):
    """Student code could not be used; the message says in one sentence what to do."""


class NoReferenceError(StudentCodeError):
    """--solution in a copy of the kata without src/solution/ (the student release)."""


NO_REFERENCE = ("this copy of the kata has no reference solution (src/solution/ is not part of the student "
                "release): run without --solution to use your own src/model.py and src/sampler.py")


def reference_available() -> bool:
    """Whether src/solution/ (the reference model and sampler) is part of this copy: the instructor's, not a student's."""
    return (_ROOT / "src" / "solution" / "model.py").is_file() and (_ROOT / "src" / "solution" / "sampler.py").is_file()


def import_implementation(name: str, solution: bool = False):
    """The module `src.<name>` (student) or `src.solution.<name>` (reference), e.g. name="model"."""
    if solution and not reference_available():
        raise NoReferenceError(NO_REFERENCE)
    module = f"src.solution.{name}" if solution else f"src.{name}"
    try:
        return importlib.import_module(module)
    except SyntaxError as err:
        where = _relative(err.filename) if err.filename else module
        raise StudentCodeError(f"{where}, line {err.lineno}: SyntaxError: {err.msg}. Fix it and run again.") from None
    except Exception as err:
        raise StudentCodeError(f"importing {module} failed: {describe_exception(err)}") from None


def stub_message(err: NotImplementedError) -> str:
    """The friendly message for an unimplemented stub, naming the file it sits in."""
    where = student_location(err)
    if where and where[0] == STUDENT_FILES["sampler"]:
        return ("src/sampler.py is still a stub: implement `sample` there (Level 4), "
                "or run without --custom-sampler to draw the final samples with the harness's DDIM sampler.")
    if not reference_available():
        return "src/model.py is still a stub: implement DiffusionModel there (Level 1, see the README)."
    return ("src/model.py is still a stub: implement DiffusionModel there (Level 1), "
            "or run with --solution to train the reference model.")


def student_location(err: BaseException) -> tuple[str, int] | None:
    """(file, line) of the deepest traceback frame inside a student file, if any."""
    found = None
    for frame in traceback.extract_tb(err.__traceback__):
        path = _relative(frame.filename)
        if path in STUDENT_FILES.values():
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
        return Path(filename).resolve().relative_to(_ROOT).as_posix()
    except ValueError:
        return filename


def build_model(model_cfg, channels: int, image_size: int, solution: bool):
    """DiffusionModel(channels, image_size); the reference also takes the `model` config's architecture."""
    module = import_implementation("model", solution)
    kwargs = dict(model_cfg) if solution else {}
    return module.DiffusionModel(channels, image_size, **kwargs)
