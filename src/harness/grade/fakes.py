"""Fakes that must live beside the code under test, in the sandbox's worker: there a steered sampler (Level 9) takes
gradients through them, which a callback into the grading process could not pass on. The other fakes of the graded
tests are in tests/graded/fakes.py, which uses these too."""

import torch


class GaussianDataDenoiser(torch.nn.Module):
    """The exact eps-prediction for data x_0 ~ N(mean, std^2), pixel by pixel.

    x_t ~ N(sqrt(abar) mean, abar std^2 + 1 - abar), and E[eps | x_t] = sqrt(1 - abar) (x_t - sqrt(abar) mean) / var.
    """

    def __init__(self, schedule, mean: float, std: float):
        super().__init__()
        self.abar, self.mean, self.std = schedule.alphas_cumprod, mean, std

    def forward(self, x, t):
        return gaussian_data_eps(self.abar[t].view(-1, 1, 1, 1), x, self.mean, self.std)


def gaussian_data_eps(abar: torch.Tensor, x: torch.Tensor, mean, std: float) -> torch.Tensor:
    """E[eps | x_t] for data N(mean, std^2) at alpha-bar `abar` (both broadcast over x)."""
    return (1 - abar).sqrt() * (x - abar.sqrt() * mean) / (abar * std ** 2 + 1 - abar)
