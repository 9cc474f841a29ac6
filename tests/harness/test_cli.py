"""main.py end to end: the smoke run, the friendly stub message, resume, and student errors."""

import json

import torch
from PIL import Image

from tests.harness.helpers import ROOT, kata_copy, run_main

STUB_MODEL = '''
import torch
class DiffusionModel(torch.nn.Module):
    def __init__(self, in_channels, image_size):
        super().__init__()
        raise NotImplementedError("Build the layers of DiffusionModel in src/model.py")
'''

STUB_SAMPLER = '''
def sample(model, schedule, shape, generator=None):
    raise NotImplementedError("Implement DDPM sampling in src/sampler.py")
'''


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

    again = run_main(ROOT, "--config", "configs/smoke.yaml", "--solution", f"output.root={tmp_path}", "--resume")
    assert again.returncode == 0, again.stderr
    assert json.loads((out / "metrics.json").read_text())["val_loss"] == metrics["val_loss"]


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
    """A model whose forward is one convolution, written into the stub."""
    body = STUB_MODEL.replace('raise NotImplementedError("Build the layers of DiffusionModel in src/model.py")',
                              f"self.conv = {conv}")
    return body + "    def forward(self, x, t):\n        return self.conv(x)\n"


def test_error_inside_student_forward_points_at_the_line(tmp_path):
    kata = kata_copy(tmp_path, model=_model_with_conv("torch.nn.Conv2d(in_channels + 1, in_channels, 3, padding=1)"))
    result = run_main(kata, "--config", "configs/smoke.yaml")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "RuntimeError at src/model.py:8" in result.stderr and "--traceback" in result.stderr


def test_wrong_output_shape_is_one_line(tmp_path):
    kata = kata_copy(tmp_path, model=_model_with_conv("torch.nn.Conv2d(in_channels, 3, 3)"))
    result = run_main(kata, "--config", "configs/smoke.yaml")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "returned shape (64, 3, 14, 14) for input (64, 1, 16, 16)" in result.stderr


def test_resume_without_a_checkpoint_says_so(tmp_path):
    result = run_main(ROOT, "--config", "configs/smoke.yaml", "--solution", f"output.root={tmp_path}", "--resume")
    assert result.returncode == 1 and "no checkpoint" in result.stderr and "Traceback" not in result.stderr
