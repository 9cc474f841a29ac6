"""Levels graded on a trained checkpoint: L2 (validation loss). L1 and L3 judge samples (see test_quality.py)."""

from functools import lru_cache

import pytest

from src.harness.data import load_data, to_model_range
from src.harness.loading import reference_available
from src.harness.paths import official_config
from src.harness.objective import NoisePrediction
from src.harness.schedule import NoiseSchedule
from tests.graded.runs import checkpoint_path, command, recorded_reference, trained_model


def fashion_mnist_validation_loss(model, run_cfg) -> float:
    official = official_config("fashion_mnist")
    images = to_model_range(load_data(official.data).val)
    objective = NoisePrediction(NoiseSchedule.from_config(run_cfg.diffusion))
    return objective.validation_loss(model, images, official.training.val_batch_size)["loss"]


@lru_cache(maxsize=2)
def checkpoint_validation_loss(model_class, solution: bool) -> float:
    return fashion_mnist_validation_loss(*trained_model("fashion_mnist", model_class, solution))


@pytest.mark.level2
@pytest.mark.points(5)
@pytest.mark.timeout(3600)  # with --solution and no reference run yet, this trains one first
def test_validation_loss_at_most_the_references(model_class, solution, record_property):
    loss = checkpoint_validation_loss(None if solution else model_class, solution)
    record_property("validation_loss", loss)  # Gradescope's leaderboard (src/harness/autograder.py)
    if reference_available() and checkpoint_path("fashion_mnist", solution=True).exists():
        reference = checkpoint_validation_loss(None, solution=True)
        source = "your reference run in outputs/fashion_mnist-solution/"
    else:
        reference = recorded_reference("fashion_mnist")["val_loss"]
        source = "the recorded reference score (src/harness/reference_scores.json)"
    assert loss <= reference, (
        f"validation loss {loss:.4f}, the reference's {reference:.4f} ({source}). Same budget, lower loss: "
        f"improve src/model.py and train again with `{command('fashion_mnist', solution)} --overwrite`")
