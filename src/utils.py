"""Helpers you may use in src/model.py."""

import math

import torch
from torch import nn


class SinusoidalTimestepEmbedding(nn.Module):
    """Embeds integer timesteps as sines and cosines of geometric frequencies (Vaswani et al. 2017, sec. 3.5).

    emb(t)[i] = sin(t * w_i) and emb(t)[half + i] = cos(t * w_i), with w_i = max_period^(-i / half) and
    half = dim // 2; an odd `dim` gets one trailing zero. Nearby t give similar vectors, distant t
    differ, which lets a network tell noise levels apart. Follow it with a small MLP to learn from it.
    """

    def __init__(self, dim: int, max_period: float = 10_000.0):
        super().__init__()
        half = dim // 2
        self.dim = dim
        self.register_buffer("frequencies", torch.exp(-math.log(max_period) * torch.arange(half) / half),
                             persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """t: (B,) int or float timesteps. Returns (B, dim) float32."""
        angles = t.float()[:, None] * self.frequencies[None]
        emb = torch.cat([angles.sin(), angles.cos()], dim=-1)
        return nn.functional.pad(emb, (0, self.dim - emb.shape[-1]))
