"""main.py end to end: the smoke run, the friendly stub message, resume, and student errors."""

import importlib.util
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy
import pytest
import torch
from PIL import Image

from src.harness.paths import ROOT
from src.harness.run.cli import error_message, main
from src.harness.run.train import load_checkpoint
from tests.harness.helpers import (ONE_CONV, QUICK, SMOKE, STUB_MODEL, STUB_SAMPLER, kata_copy, model_with_conv,
                                   one_line_error, run_main)


def _image(path: Path) -> Image.Image:
    """The image at `path`, checked to be a whole, readable image file."""
    with Image.open(path) as image:
        image.verify()  # a truncated or corrupt file fails here
    return Image.open(path)


def _tiles(grid: Image.Image) -> tuple[int, int]:
    """(rows, columns) of the images in a grid of samples: the white gaps between and around them, less one."""
    white = numpy.asarray(grid.convert("L")) == 255

    def between_gaps(full_lines) -> int:
        return sum(bool(full) and (i == 0 or not full_lines[i - 1]) for i, full in enumerate(full_lines)) - 1

    return between_gaps(white.all(axis=1)), between_gaps(white.all(axis=0))




@pytest.mark.slow
def test_smoke_run_writes_every_output(tmp_path):
    result = run_main(ROOT, "--config", "configs/smoke.yaml", "--solution", f"output.root={tmp_path}")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "smoke-solution"
    assert {p.name for p in out.iterdir()} >= {"samples.png", "checkpoint.pt", "metrics.json", "config.yaml"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["solution"] is True and metrics["val_loss"] < 0.5 and len(metrics["val_loss_bands"]) == 10
    assert metrics["train_loss"] < 0.5, "the smoke run should learn something"
    assert _tiles(_image(out / "samples.png")) == (4, 4), "16 samples, 4 per row"
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["solution"] is True and state["step"] == metrics["steps"]

    gif = _image(out / "animation.gif")
    assert gif.n_frames == 40 and gif.width == gif.height, "40 frames of the square grid"
    schedule, forward, curves = (_image(out / name) for name in ("schedule.png", "forward_process.png", "curves.png"))
    assert schedule.width > 2 * schedule.height, "the schedule's three panels side by side"
    assert forward.width > forward.height, "nine noise levels side by side, for four images one under another"
    assert curves.width > curves.height, "the curves' two panels side by side"
    assert sorted(p.name for p in (out / "previews").iterdir()) == ["step_000064.png", "step_000128.png"]
    history = json.loads((out / "history.json").read_text())
    assert [v["step"] for v in history["val"]] == [32, 64, 96, 128] and len(history["val"][0]["bands"]) == 10

    written = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.is_file()}
    again = run_main(ROOT, "--config", "configs/smoke.yaml", "--solution", f"output.root={tmp_path}", "--resume")
    assert again.returncode == 0 and "nothing to resume" in again.stdout, again.stdout + again.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.is_file()} == written, (
        "--resume of a finished run rewrites nothing")


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is not None, reason="TensorBoard is installed here")
def test_tensorboard_without_the_extra_says_how_to_install_it(tmp_path, capsys):
    assert main([*SMOKE, f"output.root={tmp_path}", "output.tensorboard=true", *QUICK]) == 1
    assert "uv sync --extra tensorboard" in one_line_error(capsys)


def test_a_flow_matching_run_trains_on_the_same_harness(tmp_path):
    assert main([*SMOKE, "diffusion.objective=flow", "sampling.sampler=euler", "training.epochs=4",
                 "output.animation=false", f"output.root={tmp_path}"]) == 0
    out = tmp_path / "smoke-solution"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["sampler"] == "euler" and metrics["val_loss"] < 1.0, "flow matching's loss starts near 1.3"
    assert _tiles(_image(out / "samples.png")) == (4, 4)
    assert torch.load(out / "checkpoint.pt", weights_only=True)["budget"]["diffusion.objective"] == "flow"


@pytest.mark.slow  # a main.py process in a copy of the kata: the full suite's
def test_stub_flow_is_caught_before_training(tmp_path):
    kata = kata_copy(tmp_path)  # the repository's src/flow.py: the stub
    result = run_main(kata, "--config", "configs/moons_flow.yaml", "--solution", "--custom-sampler")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "src/flow.py is still a stub" in result.stderr and "Training" not in result.stdout


def test_stub_model_prints_one_friendly_message(tmp_path):
    kata = kata_copy(tmp_path, model=STUB_MODEL)
    result = run_main(kata, "--config", "configs/smoke.yaml")
    assert result.returncode == 1
    assert "implement DiffusionModel" in result.stderr and "--solution" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow  # a main.py process in a copy of the kata: the full suite's
def test_stub_sampler_is_caught_before_training(tmp_path):
    kata = kata_copy(tmp_path, model=ONE_CONV, sampler=STUB_SAMPLER)
    result = run_main(kata, "--config", "configs/smoke.yaml", "--custom-sampler")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "src/sampler.py" in result.stderr and "--custom-sampler" in result.stderr
    assert "Training" not in result.stdout


@pytest.mark.slow  # a main.py process in a copy of the kata: the full suite's
def test_stub_ddim_is_caught_before_training(tmp_path):
    kata = kata_copy(tmp_path, model=ONE_CONV)  # src/sampler.py: the stub
    result = run_main(kata, "--config", "configs/smoke.yaml", "sampling.sampler=ddim")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "src/sampler.py is still a stub" in result.stderr and "Level 5" in result.stderr
    assert "Training" not in result.stdout


def test_syntax_error_in_student_file_names_file_and_line(tmp_path):
    kata = kata_copy(tmp_path, model="import torch\nclass DiffusionModel(torch.nn.Module)\n    pass\n")
    result = run_main(kata, "--config", "configs/smoke.yaml")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "src/model.py, line 2: SyntaxError" in result.stderr


@pytest.mark.slow  # a main.py process in a copy of the kata: the full suite's
def test_error_inside_student_forward_points_at_the_line(tmp_path):
    kata = kata_copy(tmp_path, model=model_with_conv("torch.nn.Conv2d(in_channels + 1, in_channels, 3, padding=1)"))
    result = run_main(kata, "--config", "configs/smoke.yaml")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "RuntimeError at src/model.py:7" in result.stderr and "--traceback" in result.stderr


@pytest.mark.slow  # a main.py process in a copy of the kata: the full suite's
def test_wrong_output_shape_is_one_line(tmp_path):
    kata = kata_copy(tmp_path, model=model_with_conv("torch.nn.Conv2d(in_channels, 3, 3)"))
    result = run_main(kata, "--config", "configs/smoke.yaml")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "returned shape (64, 3, 14, 14) for input (64, 1, 16, 16)" in result.stderr


def test_resume_without_a_checkpoint_says_so(tmp_path, capsys):
    assert main([*SMOKE, f"output.root={tmp_path}", "--resume"]) == 1
    assert "no checkpoint" in one_line_error(capsys)




@pytest.fixture(autouse=True)
def _no_progress_bar(monkeypatch):
    monkeypatch.setenv("KATA_PROGRESS", "0")


def _contents(folder) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_run_is_replaced_only_with_overwrite_and_evaluate_keeps_its_config(tmp_path, capsys):
    out = tmp_path / "smoke-solution"
    assert main([*SMOKE, f"output.root={tmp_path}", *QUICK, "training.preview_every=2"]) == 0
    assert {"animation.gif", "previews/step_000002.png"} <= set(_contents(out))
    before = _contents(out)

    assert main([*SMOKE, f"output.root={tmp_path}", *QUICK, "training.epochs=1"]) == 1
    err = one_line_error(capsys)
    assert f"{out}/ already holds a run" in err and all(f in err for f in ("--resume", "--evaluate", "--overwrite"))
    for override in ("diffusion.schedule=cosine", "data.num_val=100"):
        assert main([*SMOKE, "--evaluate", f"output.root={tmp_path}", override]) == 1
        err = one_line_error(capsys)
        assert "--evaluate scores the run" in err and f"{override.split('=')[0]}=" in err
    assert _contents(out) == before, "nothing was written"

    assert main([*SMOKE, "--evaluate", f"output.root={tmp_path}", "sampling.steps=3"]) == 0
    after = _contents(out)
    assert after["config.yaml"] == before["config.yaml"] and after["checkpoint.pt"] == before["checkpoint.pt"]
    assert json.loads(after["metrics.json"])["val_loss"] == json.loads(before["metrics.json"])["val_loss"]

    # Overrides may follow the flags.
    assert main(["--config", SMOKE[1], *QUICK, "--solution", f"output.root={tmp_path}", "--overwrite",
                 "output.animation=false"]) == 0
    replaced = _contents(out)
    assert "animation.gif" not in replaced and not any(p.startswith("previews/") for p in replaced), "no stale files"
    assert "animation: false" in replaced["config.yaml"].decode()
def test_traceback_flag_shows_the_full_story_before_the_line(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("data: [\n")
    assert main(["--config", str(path), "--traceback"]) == 1
    err = capsys.readouterr().err.strip()
    assert "Traceback" in err and err.splitlines()[-1].startswith("error: ")


def test_an_output_root_that_is_a_file_is_one_line(tmp_path, capsys):
    root = tmp_path / "outputs"
    root.write_text("not a folder")
    assert main([*SMOKE, f"output.root={root}", *QUICK]) == 1
    assert "output.root to a folder you can write to" in one_line_error(capsys)
    assert root.read_text() == "not a folder"


def test_a_read_only_output_root_is_one_line(tmp_path, capsys, monkeypatch):
    def read_only(self, *args, **kwargs):  # chmod cannot stop root, who runs some CI machines
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    assert main([*SMOKE, f"output.root={tmp_path / 'outputs'}", *QUICK]) == 1
    assert f"cannot write to {tmp_path / 'outputs'}" in one_line_error(capsys)


def test_a_full_disk_is_one_line(tmp_path, capsys, monkeypatch):
    def full(obj, f, *args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full)
    assert main([*SMOKE, f"output.root={tmp_path}", *QUICK]) == 1
    assert "checkpoint.pt" in one_line_error(capsys) and not (tmp_path / "smoke-solution" / "checkpoint.pt").exists()


@pytest.mark.parametrize("flag", ["--resume", "--evaluate"])
def test_a_damaged_checkpoint_is_one_line(tmp_path, capsys, flag):
    out = tmp_path / "smoke-solution"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"PK\x03\x04 half a zip file")
    assert main([*SMOKE, flag, f"output.root={tmp_path}", *QUICK]) == 1
    assert "checkpoint.pt is not a readable checkpoint" in one_line_error(capsys)
    assert _contents(out) == {"checkpoint.pt": b"PK\x03\x04 half a zip file"}


@pytest.mark.slow  # a main.py process in a copy of the kata: the full suite's
def test_a_model_that_returns_a_tuple_is_one_line(tmp_path):
    kata = kata_copy(tmp_path, model=ONE_CONV.replace("return self.conv(x)", "return self.conv(x), t"))
    result = run_main(kata, "--config", "configs/smoke.yaml")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == ("error: the model returned a tuple, not a tensor; DiffusionModel.forward must "
                                     "return only the predicted noise, a tensor shaped like x")


def test_sys_exit_in_student_code_is_an_error(tmp_path):
    sampler = "import sys\ndef sample(model, schedule, shape, generator=None):\n    sys.exit(0)\n"
    kata = kata_copy(tmp_path, model=ONE_CONV, sampler=sampler)
    result = run_main(kata, "--config", "configs/smoke.yaml", "--custom-sampler")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error: your code called sys.exit(0) at src/sampler.py:3")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("timeout") is None, reason="needs coreutils' timeout")
def test_ctrl_c_from_timeout_saves_a_checkpoint_that_loads(tmp_path):
    """timeout sends SIGINT to main.py and to its process group: twice, at once, as it does when time runs out."""
    out = tmp_path / "smoke-solution"
    command = ["timeout", "--preserve-status", "-s", "INT", "600", sys.executable, "main.py", *SMOKE[:3],
               f"output.root={tmp_path}", "training.checkpoint_every=2", "training.preview_every=0"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not (out / "checkpoint.pt").exists() and process.poll() is None:
        time.sleep(0.1)
    process.send_signal(signal.SIGALRM)  # timeout's own timer: "time is up"
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "Traceback" not in stderr, stderr
    step = load_checkpoint(out / "checkpoint.pt")["step"]
    assert stdout.strip().splitlines()[-1] == (f"Stopped; the checkpoint holds step {step}. "
                                               "Continue with the same command plus --resume.")
    assert 2 <= step < 128 and not (out / "checkpoint.pt.tmp").exists()


def test_ctrl_c_outside_training_is_one_line(tmp_path, capsys, monkeypatch):
    def interrupted(cfg):
        raise KeyboardInterrupt

    monkeypatch.setattr("src.harness.run.cli.load_data", interrupted)
    assert main([*SMOKE, f"output.root={tmp_path}", *QUICK]) == 130
    assert "stopped by Ctrl-C before any checkpoint was written" in one_line_error(capsys)


def test_a_write_that_fails_later_names_the_file():
    full = OSError(28, "No space left on device", "outputs/smoke/metrics.json")
    assert error_message(full, None) == ("could not write outputs/smoke/metrics.json (No space left on device): make "
                                         "sure output.root is a folder you can write to, with free space")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_a_device_this_machine_lacks_is_one_line(tmp_path, capsys):
    assert main([*SMOKE, "--device", "cuda", f"output.root={tmp_path}"]) == 1
    assert "PyTorch sees no CUDA GPU" in one_line_error(capsys) and list(tmp_path.iterdir()) == []
