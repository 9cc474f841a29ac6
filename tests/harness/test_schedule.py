"""Noise schedule invariants, q_sample statistics, and the deterministic validation loss."""

import pytest
import torch

from src.harness.loading import StudentCodeError
from src.harness.schedule import NoiseSchedule, validation_loss


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_alpha_bar_decreases_from_one_towards_zero(kind):
    s = NoiseSchedule(1000, kind)
    abar = s.alphas_cumprod
    assert s.betas.shape == s.alphas.shape == abar.shape == (1000,)
    assert torch.all(abar[1:] < abar[:-1]), "alpha_bar must strictly decrease"
    assert abar[0] > 0.99 and abar[-1] < 1e-3
    assert torch.allclose(s.alphas, 1 - s.betas)
    assert torch.all((s.betas > 0) & (s.betas < 1))


def test_linear_betas_match_ho_et_al():
    s = NoiseSchedule(1000, "linear", 1e-4, 0.02)
    assert s.betas[0].item() == pytest.approx(1e-4) and s.betas[-1].item() == pytest.approx(0.02)


@pytest.mark.parametrize("t", [0, 250, 999])
def test_q_sample_has_the_forward_process_statistics(t):
    s = NoiseSchedule(1000, "linear")
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((20000, 1, 1, 1), 0.7)
    tt = torch.full((20000,), t)
    xt = s.q_sample(x0, tt, torch.randn(x0.shape, generator=g))
    abar = s.alphas_cumprod[t].item()
    assert xt.mean().item() == pytest.approx(abar ** 0.5 * 0.7, abs=0.03)
    assert xt.var().item() == pytest.approx(1 - abar, abs=0.03)


class ZeroNoise(torch.nn.Module):
    def forward(self, x, t):
        return torch.zeros_like(x)


def test_validation_loss_is_deterministic_and_covers_every_band():
    images = torch.rand(200, 1, 8, 8) * 2 - 1
    s = NoiseSchedule(100)
    first = validation_loss(ZeroNoise(), s, images, batch_size=64)
    assert first == validation_loss(ZeroNoise(), s, images, batch_size=200), "batching must not change the result"
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
    bands = validation_loss(Returns(torch.zeros_like), NoiseSchedule(num_timesteps), torch.zeros(10, 1, 4, 4))["bands"]
    assert list(bands) == labels


def test_a_model_that_returns_a_tuple_is_named():
    model = Returns(lambda x: (x, x))
    schedule, x = NoiseSchedule(10), torch.zeros(2, 1, 4, 4)
    for score in (lambda: schedule.loss(model, x, torch.zeros(2, dtype=torch.long), x),
                  lambda: validation_loss(model, schedule, x)):
        with pytest.raises(StudentCodeError, match="returned a tuple, not a tensor; DiffusionModel.forward"):
            score()
