"""Shared pytest set-up. The --solution switch and the graded fixtures live in src/harness/grading.py."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("KATA_DATA_ROOT", ROOT.parent / "shared" / "data"))
