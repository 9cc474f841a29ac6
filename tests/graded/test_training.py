"""Basics: a short, fixed-seed training run on small fixed data makes the loss fall, as far as the reference's."""

import pytest
import torch

from src.harness.data import load_data, to_model_range
from src.harness.paths import official_config
from src.harness.objective import NoisePrediction
from src.harness.policy import SHORT_RUN_MIN_DROP, SHORT_RUN_REFERENCE_MARGIN, SHORT_RUN_STEPS
from src.harness.runtime import Runtime
from src.harness.schedule import NoiseSchedule
from src.harness.train import train
from tests.graded.recorded import reference


def _short_run(model_class, workdir) -> tuple[float, float]:
    """Validation loss before and after SHORT_RUN_STEPS steps on synthetic 1x28x28 shapes (seed 0)."""

    cfg = official_config("smoke", [
        "data.image_size=28", "data.num_train=512", "data.num_val=128", "data.batch_size=32",
        f"training.max_steps={SHORT_RUN_STEPS}", "training.warmup_steps=10", "training.lr=1e-3",
        "training.checkpoint_every=100000", "diffusion.num_timesteps=1000"])
    data = load_data(cfg.data)
    objective = NoisePrediction(NoiseSchedule.from_config(cfg.diffusion))
    val = to_model_range(data.val)
    torch.manual_seed(0)
    model = model_class(1, 28)
    before = objective.validation_loss(model, val, batch_size=128)["loss"]
    train(cfg, model, objective, data.train, Runtime.choose("cpu", cfg.training.precision), workdir / "checkpoint.pt")
    after = objective.validation_loss(model, val, batch_size=128)["loss"]  # raw weights: EMA lags in short runs
    return before, after


@pytest.mark.basics
@pytest.mark.points(4)
@pytest.mark.timeout(600)  # 15 to 40 s on one free core; minutes when other jobs share the CPU
def test_loss_decreases(model_class, tmp_path_factory):
    before, after = _short_run(model_class, tmp_path_factory.getbasetemp())
    reference_after = reference()["short_run"]["after"]  # the reference's _short_run, recorded
    assert after <= SHORT_RUN_MIN_DROP * before, (
        f"after {SHORT_RUN_STEPS} training steps your validation loss went from {before:.3f} to {after:.3f}; it "
        f"should fall below {SHORT_RUN_MIN_DROP:.0%} of the start. Check that forward predicts the noise and that all "
        "layers train")
    assert after <= SHORT_RUN_REFERENCE_MARGIN * reference_after, (
        f"after {SHORT_RUN_STEPS} steps your validation loss is {after:.3f}, the reference's {reference_after:.3f}; "
        f"get within {SHORT_RUN_REFERENCE_MARGIN}x (time conditioning, normalisation and skip connections help)")
