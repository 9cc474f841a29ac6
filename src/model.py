"""Your denoising network. This is Level 1 of the kata (docs/levels/level1.md).

DDPM trains a network eps_theta to answer one question: given a noisy image

    x_t = sqrt(alpha_bar_t) * x_0 + sqrt(1 - alpha_bar_t) * eps,    eps ~ N(0, I),

and the timestep t that says how noisy it is, which noise eps was added?  The harness (main.py)
does the noising, the loss ||eps - eps_theta(x_t, t)||^2 and the training loop; you build eps_theta.

A good first design is a small UNet: a few convolution + GroupNorm + SiLU blocks that halve the
resolution, the same on the way up with skip connections, and a time embedding (see
SinusoidalTimestepEmbedding in src/utils.py) added to the features of every block.

Contract (checked by `pytest -m basics`):

- `DiffusionModel(in_channels, image_size)`, no other arguments: (1, 28) for Fashion-MNIST, (3, 32) for CIFAR-10.
- `forward(x, t)`: x is (B, C, H, W) float32, any B from 1; t is (B,) int64 in [0, T), T = 1000. It returns
  one tensor (not a tuple) shaped like x, on x's device, float32 (the tests call it outside autocast).
- The output is finite, also at t = 0 and T-1 and for x scaled by 0 or 4, in train and eval mode and under
  torch.no_grad(). It changes with x and with t (checked after nudging every weight, so zero-initialised
  layers are fine).
- After a backward pass every trainable parameter has a finite gradient (no unused layers), not all zero.
- At most 4x the reference's parameters (PARAMETER_BUDGET in tests/graded/test_model.py): about 5.6 M at
  (1, 28), 16.5 M at (3, 32). Beyond 50 M every model test fails at once: too large to grade.
- Training 40 steps on small synthetic 1x28x28 images (tests/graded/test_training.py) brings the validation
  loss below half its start and within 1.6x of the reference's.

Levels 1 and 2 then grade the checkpoint `main.py --config configs/fashion_mnist.yaml` trained from this
file at that config's official budget (1 epoch in batches of 32, every step; Level 3 likewise on
configs/cifar10.yaml). Comments and docstrings may change afterwards; code may not.

Level 6 (class conditioning, checked by `pytest -m level6`) adds labels, and keeps everything above:

- `DiffusionModel(in_channels, image_size, num_classes=K)` with K > 0 also learns the class of each image:
  `forward(x, t, y)` with y: (B,) int64 in [0, K]. y = K is the null label, "no class" (the harness gives it
  to 10% of the training images, so the same network also learns the unconditional model that guidance needs),
  and y = None means the null label for every image. With num_classes = 0 (the default, Levels 1 to 5 and 7)
  y is always None. A common design: nn.Embedding(K + 1, dim), added to the time embedding.
- The output changes with y, the null label's differs from every class's, y = None gives exactly the null
  label's, and each image's output depends on its own label only (checked after nudging every weight).
"""

import torch
from torch import nn

from src.utils import SinusoidalTimestepEmbedding  # noqa: F401  (a helper you will likely want)


class DiffusionModel(nn.Module):
    """eps_theta(x_t, t): predicts the noise in a batch of noisy images.

    Args:
        in_channels: image channels C (1 for Fashion-MNIST, 3 for CIFAR-10).
        image_size: image height = width (28 for Fashion-MNIST, 32 for CIFAR-10).
        num_classes: K > 0 for a class-conditional model (Level 6), 0 for none.
    """

    def __init__(self, in_channels: int, image_size: int, num_classes: int = 0):
        super().__init__()
        # TODO: Level 1
        # TODO: Level 6 (later): an embedding of the K classes and the null label K when num_classes > 0
        raise NotImplementedError(
            "Build the layers of DiffusionModel in src/model.py (Level 1: docs/levels/level1.md)."
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, C, H, W) float noisy images; t: (B,) int64 timesteps in [0, T); y: (B,) int64 labels in [0, K]
        of a class-conditional model (Level 6), None for the null label K (and always None when num_classes = 0).

        Returns the predicted noise eps_theta(x, t, y): (B, C, H, W), the same shape as x.
        """
        # TODO: Level 1
        # TODO: Level 6 (later): condition on y, with y = None meaning the null label
        raise NotImplementedError(
            "Implement DiffusionModel.forward in src/model.py (Level 1: docs/levels/level1.md)."
        )
