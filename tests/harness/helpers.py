"""Small settings and a scratch copy of the kata for the harness's own tests."""

import shutil
import subprocess
import sys
from pathlib import Path

from src.harness.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def smoke_config(tmp_path: Path, *overrides: str):
    """configs/smoke.yaml with outputs under tmp_path, plus overrides."""
    return load_config(ROOT / "configs" / "smoke.yaml", [f"output.root={tmp_path / 'outputs'}", *overrides])


def kata_copy(tmp_path: Path, **student_files: str) -> Path:
    """A copy of main.py, configs/ and src/ under tmp_path, with src/<name>.py replaced by the given sources."""
    copy = tmp_path / "kata"
    shutil.copytree(ROOT / "src", copy / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "configs", copy / "configs")
    shutil.copy(ROOT / "main.py", copy / "main.py")
    for name, source in student_files.items():
        (copy / "src" / f"{name}.py").write_text(source)
    return copy


def run_main(cwd: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python main.py ARGS` in `cwd`, progress bar off, output captured."""
    return subprocess.run([sys.executable, "main.py", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**__import__("os").environ, "KATA_PROGRESS": "0"})
