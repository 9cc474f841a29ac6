"""main.py end to end: the smoke run, the friendly stub message, resume, and student errors."""

import importlib.util
import json

import pytest
import torch
from PIL import Image

from tests.harness.helpers import ROOT, STUB_MODEL, STUB_SAMPLER, kata_copy, run_main


def test_smoke_run_writes_every_output(tmp_path):
    result = run_main(ROOT, "--config", "configs/smoke.yaml", "--solution", f"output.root={tmp_path}")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "smoke-solution"
    assert {p.name for p in out.iterdir()} >= {"samples.png", "checkpoint.pt", "metrics.json", "config.yaml"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["solution"] is True and metrics["val_loss"] < 0.5 and len(metrics["val_loss_bands"]) == 10
    assert metrics["train_loss"] < 0.5, "the smoke run should learn something"
    width, height = Image.open(out / "samples.png").size
    assert width == height == 4 * 16 + 5 * 2  # 16 samples of 16x16, 4 per row, 2-pixel padding
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["solution"] is True and state["step"] == metrics["steps"]

    gif = Image.open(out / "animation.gif")
    assert gif.n_frames == 40 and gif.size == (2 * width, 2 * height), "40 frames of the grid, shown at 2x"
    assert Image.open(out / "schedule.png").size == (1200, 340)
    assert Image.open(out / "forward_process.png").size[0] > 9 * 50, "nine noise levels side by side"
    assert Image.open(out / "curves.png").size == (1100, 380)
    assert sorted(p.name for p in (out / "previews").iterdir()) == ["step_000064.png", "step_000128.png"]
    history = json.loads((out / "history.json").read_text())
    assert [v["step"] for v in history["val"]] == [32, 64, 96, 128] and len(history["val"][0]["bands"]) == 10

    again = run_main(ROOT, "--config", "configs/smoke.yaml", "--solution", f"output.root={tmp_path}", "--resume")
    assert again.returncode == 0, again.stderr
    assert json.loads((out / "metrics.json").read_text())["val_loss"] == metrics["val_loss"]
    assert json.loads((out / "history.json").read_text()) == history, "a finished run resumed keeps its curves"


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is not None, reason="TensorBoard is installed here")
def test_tensorboard_without_the_extra_says_how_to_install_it(tmp_path):
    result = run_main(ROOT, "--config", "configs/smoke.yaml", "--solution", f"output.root={tmp_path}",
                      "output.tensorboard=true", "training.max_steps=2")
    assert result.returncode == 1 and "uv sync --extra tensorboard" in result.stderr


def test_stub_model_prints_one_friendly_message(tmp_path):
    kata = kata_copy(tmp_path, model=STUB_MODEL)
    result = run_main(kata, "--config", "configs/smoke.yaml")
    assert result.returncode == 1
    assert "implement DiffusionModel" in result.stderr and "--solution" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1


def test_stub_sampler_is_caught_before_training(tmp_path):
    kata = kata_copy(tmp_path, sampler=STUB_SAMPLER)
    result = run_main(kata, "--config", "configs/smoke.yaml", "--solution", "--custom-sampler")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "src/sampler.py" in result.stderr and "--custom-sampler" in result.stderr
    assert "Training" not in result.stdout


def test_syntax_error_in_student_file_names_file_and_line(tmp_path):
    kata = kata_copy(tmp_path, model="import torch\nclass DiffusionModel(torch.nn.Module)\n    pass\n")
    result = run_main(kata, "--config", "configs/smoke.yaml")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "src/model.py, line 2: SyntaxError" in result.stderr


def _model_with_conv(conv: str) -> str:
    """A model whose forward is one convolution; `return self.conv(x)` is line 7."""
    return ("import torch\nclass DiffusionModel(torch.nn.Module):\n    def __init__(self, in_channels, image_size):\n"
            f"        super().__init__()\n        self.conv = {conv}\n    def forward(self, x, t):\n"
            "        return self.conv(x)\n")


def test_error_inside_student_forward_points_at_the_line(tmp_path):
    kata = kata_copy(tmp_path, model=_model_with_conv("torch.nn.Conv2d(in_channels + 1, in_channels, 3, padding=1)"))
    result = run_main(kata, "--config", "configs/smoke.yaml")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "RuntimeError at src/model.py:7" in result.stderr and "--traceback" in result.stderr


def test_wrong_output_shape_is_one_line(tmp_path):
    kata = kata_copy(tmp_path, model=_model_with_conv("torch.nn.Conv2d(in_channels, 3, 3)"))
    result = run_main(kata, "--config", "configs/smoke.yaml")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "returned shape (64, 3, 14, 14) for input (64, 1, 16, 16)" in result.stderr


def test_resume_without_a_checkpoint_says_so(tmp_path):
    result = run_main(ROOT, "--config", "configs/smoke.yaml", "--solution", f"output.root={tmp_path}", "--resume")
    assert result.returncode == 1 and "no checkpoint" in result.stderr and "Traceback" not in result.stderr
