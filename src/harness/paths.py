"""Where things are: the kata's root, its official configs' folder, and the shared data folder beside a checkout;
and how a file there is replaced whole."""

import json
import os
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
# The reference's recorded trained runs (instructor repository only; see src/harness/levels.py).
REFERENCE_RUNS = ROOT / "src" / "solution" / "runs"
# The offline data root: KATA_DATA_ROOT, else ../shared/data beside the checkout (as in CI).
SHARED_DATA = Path(os.environ.get("KATA_DATA_ROOT", ROOT.parent / "shared" / "data"))



def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """write(scratch) to a scratch file beside `path`, then rename it to `path`: a crash or a kill mid-write never
    leaves a half-written file (a reader sees the old one or the new one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(path.name + ".tmp")
    try:
        write(scratch)
        os.replace(scratch, path)
    finally:
        scratch.unlink(missing_ok=True)


def write_json(path: Path, data) -> None:
    """`data` as indented JSON at `path`, written atomically."""
    write_atomically(path, lambda scratch: scratch.write_text(json.dumps(data, indent=2) + "\n"))
