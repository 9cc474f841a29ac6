"""Reference noise-prediction network for 2-D points: Fourier features of the point and of t, a residual MLP."""

import torch
from torch import nn

from src.utils import SinusoidalTimestepEmbedding


class PointModel(nn.Module):
    """eps_theta(x_t, t): sines and cosines of each coordinate (times `scale`, so the network can draw sharp shapes,
    as in tiny-diffusion) and of t, then three residual SiLU blocks; the time embedding enters every block."""

    def __init__(self, dim: int, width: int = 128, num_blocks: int = 3, scale: float = 25.0):
        super().__init__()
        self.scale = scale
        self.coordinates = SinusoidalTimestepEmbedding(32)
        self.time = nn.Sequential(SinusoidalTimestepEmbedding(32), nn.Linear(32, width), nn.SiLU())
        self.inp = nn.Linear(dim * 32, width)
        self.blocks = nn.ModuleList(nn.Sequential(nn.SiLU(), nn.Linear(width, width)) for _ in range(num_blocks))
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(width, dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x: (B, dim) noisy points; t: (B,) int64 timesteps in [0, T). Returns eps: (B, dim)."""
        features = torch.cat([self.coordinates(self.scale * x[:, i]) for i in range(x.shape[1])], dim=1)
        h, emb = self.inp(features), self.time(t)
        for block in self.blocks:
            h = h + block(h + emb)
        return self.out(h)
