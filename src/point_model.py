"""Your denoising network for 2-D points. This is Level 0 of the kata (docs/levels/level0.md).

Everything in DDPM works on points as it does on images, only faster: a "sample" is one point x_0 = (x, y)
of two moons or a spiral, the harness noises it,

    x_t = sqrt(alpha_bar_t) * x_0 + sqrt(1 - alpha_bar_t) * eps,    eps ~ N(0, I),  eps: (2,)

and your network eps_theta(x_t, t) answers which noise eps was added. A run trains in seconds, and its
scatter plots show what the model (or a sampler) gets wrong at a glance.

A good first design: join t / T (one number in [0, 1)) to the two coordinates of x_t and pass the three
numbers through an MLP of three hidden layers of 64 to 128 units with ReLU, SiLU or GELU between them. The
network must be able to bend: without a nonlinearity it can only learn a Gaussian, and with two hidden layers
of SiLU or GELU it draws the moons as a blurred band at this budget. (Joining the 32 numbers of
SinusoidalTimestepEmbedding to the 2 coordinates as they are also works, a little less well.)

Contract (checked by `pytest -m level0`):

- `PointModel(dim)`, no other arguments: dim = 2.
- `forward(x, t)`: x is (B, dim) float32, any B from 1; t is (B,) int64 in [0, T), T = 1000. It returns one
  float32 tensor shaped like x, on x's device; point i's output depends only on point i (no BatchNorm).
- The output is finite (also at t = 0 and T-1), changes with x and with t, and every parameter gets a gradient.

Level 0 then grades the checkpoint `main.py --config configs/moons.yaml` trained from this file at that
config's official budget: its samples must lie on the two moons (Level 0: docs/levels/level0.md).
Comments and docstrings may change afterwards; code may not.
"""

import torch
from torch import nn

from src.utils import SinusoidalTimestepEmbedding  # noqa: F401  (a helper you may want, see above)


class PointModel(nn.Module):
    """eps_theta(x_t, t) for points.

    Args:
        dim: coordinates per point (2).
    """

    def __init__(self, dim: int):
        super().__init__()
        # TODO: Level 0
        raise NotImplementedError(
            "Build the layers of PointModel in src/point_model.py (Level 0: docs/levels/level0.md)."
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x: (B, dim) float noisy points; t: (B,) int64 timesteps in [0, T).

        Returns the predicted noise eps_theta(x, t): (B, dim), the same shape as x.
        """
        # TODO: Level 0
        raise NotImplementedError(
            "Implement PointModel.forward in src/point_model.py (Level 0: docs/levels/level0.md)."
        )
