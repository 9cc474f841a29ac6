"""The DDPM noise-prediction objective: its deterministic validation loss, and a wrong model output named."""

import pytest
import torch

from src.harness.loading import StudentCodeError
from src.harness.objective import NoisePrediction
from src.harness.schedule import NoiseSchedule


class ZeroNoise(torch.nn.Module):
    def forward(self, x, t):
        return torch.zeros_like(x)


def test_validation_loss_is_deterministic_and_covers_every_band():
    images = torch.rand(200, 1, 8, 8) * 2 - 1
    s = NoiseSchedule(100)
    first = NoisePrediction(s).validation_loss(ZeroNoise(), images, batch_size=64)
    assert first == NoisePrediction(s).validation_loss(ZeroNoise(), images, batch_size=200), "batching must not change the result"
    assert first["loss"] == pytest.approx(1.0, abs=0.05), "predicting zeros leaves E[eps^2] = 1"
    assert list(first["bands"]) == [f"{10 * b}-{10 * b + 9}" for b in range(10)]


class Returns(torch.nn.Module):
    """A model whose forward returns `output(x)`."""

    def __init__(self, output):
        super().__init__()
        self.output = output

    def forward(self, x, t):
        return self.output(x)


@pytest.mark.parametrize("num_timesteps, labels", [(1, ["0-0"]), (5, ["0-0", "1-1", "2-2", "3-3", "4-4"])])
def test_band_labels_stay_well_formed_for_fewer_timesteps_than_bands(num_timesteps, labels):
    objective = NoisePrediction(NoiseSchedule(num_timesteps))
    bands = objective.validation_loss(Returns(torch.zeros_like), torch.zeros(10, 1, 4, 4))["bands"]
    assert list(bands) == labels


def test_a_model_that_returns_a_tuple_is_named():
    model = Returns(lambda x: (x, x))
    objective, x = NoisePrediction(NoiseSchedule(10)), torch.zeros(2, 1, 4, 4)
    for score in (lambda: objective.loss(model, x, torch.zeros(2, dtype=torch.long), x),
                  lambda: objective.validation_loss(model, x)):
        with pytest.raises(StudentCodeError, match="returned a tuple, not a tensor; DiffusionModel.forward"):
            score()
