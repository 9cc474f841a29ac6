"""main.py's bad inputs, each ending in one line and a non-zero status (or working as the user meant): damaged
checkpoints and histories, a --resume under other settings, memory, student files without the stub's class or
signature, unreadable data, SIGTERM and Ctrl-C while starting. Bad config values: tests/harness/test_config.py."""

import os
import shutil
import signal
import subprocess
import sys
import time
import types

import pytest
import torch

from src.harness.loading import CodeSource
from src.harness.paths import ROOT
from src.harness.run import data
from src.harness.run.cli import main
from src.harness.run.data import DataError
from src.harness.run.train import load_checkpoint, save_checkpoint
from tests.harness.helpers import QUICK, SMOKE, one_line_error

STUDENT_SMOKE = ["--config", SMOKE[1]]  # the smoke run with the student's code


@pytest.fixture(scope="module")
def unfinished(tmp_path_factory):
    """A smoke run folder whose checkpoint holds step 2 of 4: a run to --resume."""
    root = tmp_path_factory.mktemp("unfinished")
    assert main([*SMOKE, f"output.root={root}", *QUICK, "training.max_steps=4", "training.checkpoint_every=2"]) == 0
    out = root / "smoke-solution"
    state = load_checkpoint(out / "checkpoint.pt")
    torch.save(state | {"step": 2, "images_seen": 2 * 64}, out / "checkpoint.pt")
    (out / "metrics.json").unlink()
    return out


def _copy(run, tmp_path):
    root = tmp_path / "outputs"
    shutil.copytree(run, root / run.name)
    return root, root / run.name


def _resume(root, *overrides):
    return main([*SMOKE, "--resume", f"output.root={root}", *QUICK, "training.max_steps=4",
                 "training.checkpoint_every=2", *overrides])


@pytest.mark.parametrize("flag", ["--resume", "--evaluate"])
@pytest.mark.parametrize("damage, expected", [
    (lambda path: path.write_bytes(path.read_bytes()[:5000]), "is not a readable checkpoint, it is truncated"),
    (lambda path: torch.save(torch.zeros(3), path), "is not a checkpoint written by main.py (it holds a Tensor"),
    (lambda path: (path.unlink(), path.mkdir()), "is a folder, not a checkpoint"),
], ids=["cut-at-5000-bytes", "bare-tensor", "folder"])
def test_a_damaged_checkpoint_is_one_line(unfinished, tmp_path, capsys, flag, damage, expected):
    root, out = _copy(unfinished, tmp_path)
    damage(out / "checkpoint.pt")
    assert main([*SMOKE, flag, f"output.root={root}", *QUICK, "training.max_steps=4"]) == 1
    assert expected in one_line_error(capsys)


@pytest.mark.parametrize("history", ["{not json", "[1, 2]", '{"train": [["a"]]}'])
def test_a_damaged_history_only_restarts_the_curves(unfinished, tmp_path, capsys, history):
    root, out = _copy(unfinished, tmp_path)
    (out / "history.json").write_text(history)
    assert _resume(root) == 0
    assert "history.json is damaged, so curves.png starts again at step 2" in capsys.readouterr().out
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 4


@pytest.mark.parametrize("override, expected", [
    ("training.lr=0.1", "trained with training.lr=0.002, but this command asks for training.lr=0.1"),
    ("seed=5", "trained with seed=0, but this command asks for seed=5"),
    ("diffusion.schedule=cosine", "diffusion.schedule=linear"),
    ("training.max_steps=6", "training.max_steps=4"),
])
def test_resume_refuses_settings_that_change_the_rest_of_the_run(unfinished, tmp_path, capsys, override, expected):
    root, out = _copy(unfinished, tmp_path)
    before = (out / "checkpoint.pt").read_bytes()
    assert _resume(root, override) == 1
    err = one_line_error(capsys)
    assert expected in err and "--overwrite" in err
    assert (out / "checkpoint.pt").read_bytes() == before


def test_resume_takes_settings_that_only_change_the_reporting(unfinished, tmp_path):
    root, out = _copy(unfinished, tmp_path)
    assert _resume(root, "sampling.steps=3", "training.log_every=1", "output.animation=false") == 0
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 4


def test_running_out_of_memory_is_one_line(tmp_path, capsys):
    assert main([*SMOKE, f"output.root={tmp_path}", *QUICK, f"sampling.num_samples={10 ** 11}"]) == 1
    err = one_line_error(capsys)
    assert "needs more memory than this machine has" in err and "sampling.num_samples" in err


@pytest.mark.parametrize("module, expected", [
    (types.SimpleNamespace(Model=torch.nn.Module), "src/model.py defines no class DiffusionModel"),
    (types.SimpleNamespace(DiffusionModel=type("DiffusionModel", (torch.nn.Module,), {
        "__init__": lambda self, channels: torch.nn.Module.__init__(self)})),
     "src/model.py: DiffusionModel(in_channels, image_size) cannot be called"),
], ids=["no-class", "other-signature"])
def test_a_model_file_without_the_stubs_class_or_signature_is_one_line(tmp_path, capsys, monkeypatch, module,
                                                                          expected):
    monkeypatch.setattr(CodeSource, "module", lambda self, name: module)
    assert main([*STUDENT_SMOKE, f"output.root={tmp_path}", *QUICK]) == 1
    err = one_line_error(capsys)
    assert expected in err and "stub" in err


@pytest.mark.parametrize("read", [data._read_idx, data._read_cifar_file], ids=["fashion-mnist", "cifar10"])
def test_unreadable_data_is_not_called_damaged(tmp_path, read):
    folder = tmp_path / "train-images-idx3-ubyte"
    folder.mkdir()
    with pytest.raises(DataError, match="cannot read .*train-images-idx3-ubyte"):
        read(folder)


def test_sigterm_outside_training_is_one_line(tmp_path, capsys, monkeypatch):
    def terminated(cfg):
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr("src.harness.run.cli.load_data", terminated)
    assert main([*SMOKE, f"output.root={tmp_path}", *QUICK]) == 130
    assert "stopped by Ctrl-C before any checkpoint was written" in one_line_error(capsys)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, "main() gives the handler back"


def test_sigterm_during_training_saves_a_checkpoint(tmp_path, capsys, monkeypatch):
    """`kill` (or a scheduler) sends SIGTERM just after the first checkpoint: the run stops as Ctrl-C stops it."""
    def save_then_terminate(path, state):
        save_checkpoint(path, state)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr("src.harness.run.train.save_checkpoint", save_then_terminate)
    assert main([*SMOKE, f"output.root={tmp_path}", "training.checkpoint_every=2", "training.preview_every=0",
                 "training.eval_every=0"]) == 130
    stdout = capsys.readouterr().out
    step = load_checkpoint(tmp_path / "smoke-solution" / "checkpoint.pt")["step"]
    assert "SIGTERM: finishing this step and saving a checkpoint" in stdout and step < 128
    assert stdout.strip().splitlines()[-1] == (f"Stopped; the checkpoint holds step {step}. "
                                               "Continue with the same command plus --resume.")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_ctrl_c_while_starting_is_one_line(tmp_path):
    """Python is still importing torch a tenth of a second in; an interrupt then ends in one line, too."""
    # A shell that starts the suite in the background makes its children ignore Ctrl-C; a terminal's does not.
    process = subprocess.Popen([sys.executable, "main.py", *SMOKE, f"output.root={tmp_path}"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and stderr.startswith("error: stopped by Ctrl-C"), stderr
    assert "\n" not in stderr.strip() and not any(tmp_path.iterdir())
