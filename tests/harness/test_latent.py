"""Level 8's latent runs end to end: the autoencoder trained first, diffusion on its scaled latents, the checkpoint
that holds both, and the one-line errors of a latent run."""

import json

import pytest
import torch

from src.harness.run.cli import main
from src.harness.run.config import ConfigError, official_config
from tests.harness.helpers import ONE_CONV, SMOKE, kata_copy, one_line_error, run_main

# The smoke config's 16x16 shapes as a latent run: 4x4x4 latents, one autoencoder epoch, a short diffusion run.
LATENT_SMOKE = ["latent.channels=4", "latent.epochs=4", "latent.batch_size=32", "data.hflip=false",
                "training.epochs=4", "output.animation=false"]


def test_a_latent_run_trains_the_autoencoder_then_diffusion_on_its_latents(tmp_path, capsys):
    assert main([*SMOKE, *LATENT_SMOKE, f"output.root={tmp_path}"]) == 0
    trained = capsys.readouterr().out
    out = tmp_path / "smoke-solution"
    assert {"reconstructions.png", "latents.png", "samples.png", "forward_process.png"} <= {
        p.name for p in out.iterdir()}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["autoencoder_steps"] == 4 * 512 // 32 and metrics["reconstruction_rmse"] < 0.5
    assert abs(metrics["latent_std"] - 1) < 0.05, "diffusion trains on latents scaled to unit variance"
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["latent_scale"] == metrics["latent_scale"] and "encoder.0.0.weight" in state["autoencoder"]
    assert state["budget"]["latent.channels"] == 4 and state["budget"]["latent.epochs"] == 4
    assert "Training the autoencoder" in trained and "4x4x4" in trained

    assert main([*SMOKE, *LATENT_SMOKE, f"output.root={tmp_path}", "--evaluate"]) == 0
    evaluated = capsys.readouterr().out
    assert "Training the autoencoder" not in evaluated, "--evaluate reads the autoencoder from the checkpoint"
    again = json.loads((out / "metrics.json").read_text())
    assert again["reconstruction_rmse"] == pytest.approx(metrics["reconstruction_rmse"])
    assert again["val_loss"] == pytest.approx(metrics["val_loss"])


@pytest.mark.parametrize("config, overrides, key", [
    ("moons", ["latent.channels=4"], "latent.channels"),
    ("smoke", ["latent.channels=4", "data.hflip=true"], "data.hflip"),
])
def test_a_latent_run_needs_images_whose_latents_exist(config, overrides, key):
    with pytest.raises(ConfigError, match=key):
        official_config(config, overrides)


def test_a_latent_benchmark_is_one_line(tmp_path, capsys):
    assert main([*SMOKE, *LATENT_SMOKE, f"output.root={tmp_path}", "--benchmark"]) == 1
    assert "one process" in one_line_error(capsys)


@pytest.mark.slow  # a main.py process in a copy of the kata: the full suite's
def test_a_stub_autoencoder_is_one_line_before_any_training(tmp_path):
    kata = kata_copy(tmp_path, model=ONE_CONV)  # the repository's src/autoencoder.py: the stub
    result = run_main(kata, "--config", "configs/smoke.yaml", *LATENT_SMOKE)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "src/autoencoder.py is still a stub" in result.stderr, result.stderr
    assert "Training" not in result.stdout

