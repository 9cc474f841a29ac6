"""Where things are: the kata's root, its official configs' folder, and the shared data folder beside a checkout."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
# The offline data root: KATA_DATA_ROOT, else ../shared/data beside the checkout (as in CI).
SHARED_DATA = Path(os.environ.get("KATA_DATA_ROOT", ROOT.parent / "shared" / "data"))

