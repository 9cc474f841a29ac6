"""The objectives (DDPM's noise prediction, flow matching): deterministic validation loss, a wrong model output
named, and flow matching built on the student's src/flow.py."""

import pytest
import torch

from src.harness.loading import REFERENCE, StudentCodeError
from src.harness.run.config import load_config
from src.harness.run.objective import FlowMatching, NoisePrediction, make_objective
from src.harness.run.schedule import NoiseSchedule


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


def test_flow_matching_trains_on_the_straight_line_with_the_velocity_as_target():
    objective = FlowMatching(NoiseSchedule(1000), source=REFERENCE)
    x0, noise, t = torch.rand(3, 2) * 2 - 1, torch.randn(3, 2), torch.tensor([0, 499, 999])
    network_input, target = objective.pair(x0, t, noise)
    s = torch.tensor([[0.001], [0.5], [1.0]])
    assert torch.allclose(network_input, (1 - s) * x0 + s * noise) and torch.allclose(target, noise - x0)
    exact = lambda x, t: target  # noqa: E731  (knows the answer for exactly these inputs)
    assert objective.loss(exact, x0, t, noise).item() == 0


def test_flow_validation_loss_is_deterministic_and_covers_every_band():
    points = torch.rand(300, 2) * 2 - 1
    objective = FlowMatching(NoiseSchedule(100), source=REFERENCE)
    first = objective.validation_loss(ZeroNoise(), points, batch_size=64)
    assert first == objective.validation_loss(ZeroNoise(), points, batch_size=300)
    assert len(first["bands"]) == 10
    # Predicting zero velocity scores E||eps - x_0||^2 = 1 + E[x_0^2] per coordinate: about 1.33 for U(-1, 1).
    assert first["loss"] == pytest.approx(1 + points.pow(2).mean().item(), rel=0.15)


def test_the_config_picks_the_objective_and_flow_matching_uses_the_students_file():
    assert isinstance(make_objective(load_config(None).diffusion), NoisePrediction)
    flow = load_config(None, ["diffusion.objective=flow", "sampling.sampler=heun"]).diffusion
    assert isinstance(make_objective(flow, source=REFERENCE), FlowMatching)
    with pytest.raises(NotImplementedError, match="src/flow.py"):  # the stub in this repository
        make_objective(flow).loss(ZeroNoise(), torch.zeros(2, 2), torch.tensor([0, 1]), torch.zeros(2, 2))
