"""Your denoising network. This is Level 1 of the kata (see the README's "Levels").

DDPM trains a network eps_theta to answer one question: given a noisy image

    x_t = sqrt(alpha_bar_t) * x_0 + sqrt(1 - alpha_bar_t) * eps,    eps ~ N(0, I),

and the timestep t that says how noisy it is, which noise eps was added?  The harness (main.py)
does the noising, the loss ||eps - eps_theta(x_t, t)||^2 and the training loop; you build eps_theta.

A good first design is a small UNet: a few convolution + GroupNorm + SiLU blocks that halve the
resolution, the same on the way up with skip connections, and a time embedding (see
SinusoidalTimestepEmbedding in src/utils.py) added to the features of every block.
"""

import torch
from torch import nn

from src.utils import SinusoidalTimestepEmbedding  # noqa: F401  (a helper you will likely want)


class DiffusionModel(nn.Module):
    """eps_theta(x_t, t): predicts the noise in a batch of noisy images.

    Args:
        in_channels: image channels C (1 for Fashion-MNIST, 3 for CIFAR-10).
        image_size: image height = width (28 for Fashion-MNIST, 32 for CIFAR-10).
    """

    def __init__(self, in_channels: int, image_size: int):
        super().__init__()
        # TODO: Level 1
        raise NotImplementedError(
            "Build the layers of DiffusionModel in src/model.py (README: 'Level 1: the denoising network')."
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) float noisy images; t: (B,) int64 timesteps in [0, T).

        Returns the predicted noise eps_theta(x, t): (B, C, H, W), the same shape as x.
        """
        # TODO: Level 1
        raise NotImplementedError(
            "Implement DiffusionModel.forward in src/model.py (README: 'Level 1: the denoising network')."
        )
