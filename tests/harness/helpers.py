"""Small settings and a scratch copy of the kata for the harness's own tests."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from src.harness.loading import REFERENCE
from src.harness.paths import ROOT, SHARED_DATA
from src.harness.run.config import official_config


# Untouched stubs, as a student first sees them (the real files may already hold the student's work).
STUB_MODEL = """
import torch
class DiffusionModel(torch.nn.Module):
    def __init__(self, in_channels, image_size):
        super().__init__()
        raise NotImplementedError("Build the layers of DiffusionModel in src/model.py")
    def forward(self, x, t):
        raise NotImplementedError("Implement DiffusionModel.forward in src/model.py")
"""
STUB_SAMPLER = """
def sample(model, schedule, shape, generator=None):
    raise NotImplementedError("Implement DDPM sampling in src/sampler.py")
"""


SMOKE = ["--config", str(ROOT / "configs" / "smoke.yaml"), "--solution"]  # main.py's arguments for a smoke run
QUICK = ["training.max_steps=2", "training.eval_every=0", "training.preview_every=0", "sampling.steps=2",
         "sampling.animation_frames=2"]  # ... that takes seconds


def one_line_error(capsys) -> str:
    """What main() wrote to stderr, checked to be one line that starts with "error: " and holds no traceback."""
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def smoke_config(tmp_path: Path, *overrides: str):
    """configs/smoke.yaml with outputs under tmp_path, plus overrides."""
    return official_config("smoke", [f"output.root={tmp_path / 'outputs'}", *overrides])


def smoke_training(tmp_path: Path, *overrides: str):
    """(config, reference model, objective, training images (N, C, H, W) uint8) for a short training run on the
    smoke config, checkpointing only at its end."""
    import torch

    from src.harness.run.data import load_data
    from src.harness.run.kinds import build_model
    from src.harness.run.objective import NoisePrediction
    from src.harness.run.schedule import NoiseSchedule

    cfg = smoke_config(tmp_path, "training.checkpoint_every=1000", *overrides)
    data = load_data(cfg.data)
    torch.manual_seed(cfg.seed)
    return cfg, build_model(cfg, REFERENCE), NoisePrediction(NoiseSchedule.from_config(cfg.diffusion)), data.train


def cpu(cfg):
    """The CPU, at the precision `cfg.training.precision` resolves to here."""
    from src.harness.run.runtime import Runtime

    return Runtime.choose("cpu", cfg.training.precision)


SHARED_FOLDERS = {"fashion_mnist": "FashionMNIST", "cifar10": "cifar-10-batches-py"}  # dataset -> its folder


def shared_data(dataset: str):
    """The offline copy of `dataset` under SHARED_DATA (no download, no checksum); skips the test if there is none."""
    import pytest
    from omegaconf import OmegaConf

    from src.harness.run.config import DataConfig
    from src.harness.run.data import load_data

    if not (SHARED_DATA / SHARED_FOLDERS[dataset]).exists():
        pytest.skip(f"no offline copy of {dataset} under {SHARED_DATA}")
    return load_data(OmegaConf.merge(OmegaConf.structured(DataConfig), {"name": dataset, "root": str(SHARED_DATA),
                                                                        "download": False, "verify_md5": False}))


def model_with_conv(conv: str) -> str:
    """A student's src/model.py whose forward is one convolution; `return self.conv(x)` is line 7."""
    return ("import torch\nclass DiffusionModel(torch.nn.Module):\n    def __init__(self, in_channels, image_size):\n"
            f"        super().__init__()\n        self.conv = {conv}\n    def forward(self, x, t):\n"
            "        return self.conv(x)\n")


# A student model that works and starts fast (the reference imports diffusers, seconds per process).
ONE_CONV = model_with_conv("torch.nn.Conv2d(in_channels, in_channels, 3, padding=1)")


def kata_copy(tmp_path: Path, **student_files: str) -> Path:
    """A copy of the kata under tmp_path (no outputs, nor the reference's recorded runs), with src/<name>.py replaced
    by the given sources."""
    copy = tmp_path / "kata"
    for folder in ("src", "configs", "tests"):
        shutil.copytree(ROOT / folder, copy / folder, ignore=shutil.ignore_patterns("__pycache__", "runs"))
    for file in ("main.py", "pyproject.toml"):
        shutil.copy(ROOT / file, copy / file)
    for name, source in student_files.items():
        (copy / "src" / f"{name}.py").write_text(source)
    return copy


def run_main(cwd: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python main.py ARGS` in `cwd`, progress bar off, output captured."""
    return _run([sys.executable, "main.py", *args], cwd, timeout, {})


def run_pytest(cwd: Path, *args: str, timeout: int = 300, **env: str) -> subprocess.CompletedProcess:
    """`python -m pytest ARGS` in `cwd` (a kata copy), with extra environment variables."""
    return _run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd, timeout, env)


def _run(command: list[str], cwd: Path, timeout: int, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "KATA_PROGRESS": "0", **env})


class BackgroundRun:
    """`main.py --config configs/CONFIG.yaml --solution` training in a child process of one thread, so that it
    trains on one core while the other tests run on the other; `metrics()` waits for it."""

    def __init__(self, config: str):
        self.config = config
        self.folder = Path(tempfile.mkdtemp(prefix=f"kata-{config}-"))
        self._log = open(self.folder / "log.txt", "w")
        self.process = subprocess.Popen(
            [sys.executable, "main.py", "--config", f"configs/{config}.yaml", "--solution",
             f"output.root={self.folder}", "output.animation=false", "training.preview_every=0"],
            cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "KATA_PROGRESS": "0", "OMP_NUM_THREADS": "1"})

    def metrics(self, timeout: float) -> dict:
        """The run's metrics.json, once it has finished; fails with the end of its log if it did not."""
        self.process.wait(timeout)
        self._log.close()
        log = (self.folder / "log.txt").read_text()
        assert self.process.returncode == 0, f"the {self.config} reference run failed:\n{log[-3000:]}"
        return json.loads((self.folder / f"{self.config}-solution" / "metrics.json").read_text())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def submission(name: str):
    """tests/harness/submissions/<name>.py, a student's file written unlike the reference, loaded as a module."""
    spec = importlib.util.spec_from_file_location(f"submitted_{name}", ROOT / "tests" / "harness" / "submissions"
                                                  / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
