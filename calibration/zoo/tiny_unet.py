"""A student's tiny UNet, written to train fast: two resolutions (32 and 64 channels), GroupNorm + SiLU
conv blocks with the time embedding added, and one skip connection by addition. With num_classes = K > 0 it
also takes a class label y (K is the null label, "no class"): a learned label embedding is added to the time
embedding."""

import torch
from torch import nn

from src.utils import SinusoidalTimestepEmbedding


class Block(nn.Module):
    """conv -> GroupNorm -> SiLU, plus the time embedding, then conv -> GroupNorm -> SiLU.

    (B, ch, H, W), (B, time_dim) -> (B, ch, H, W)
    """

    def __init__(self, ch: int, time_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.norm1 = nn.GroupNorm(8, ch)
        self.time = nn.Linear(time_dim, ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)
        self.norm2 = nn.GroupNorm(8, ch)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor, t_emb: torch.Tensor) -> torch.Tensor:
        h = self.act(self.norm1(self.conv1(x))) + self.time(t_emb)[:, :, None, None]
        return self.act(self.norm2(self.conv2(h)))


class DiffusionModel(nn.Module):
    """eps_theta(x_t, t): predicts the noise in a batch of noisy images."""

    def __init__(self, in_channels: int, image_size: int, num_classes: int = 0):
        super().__init__()
        time_dim = 64
        self.num_classes = num_classes
        self.time_mlp = nn.Sequential(
            SinusoidalTimestepEmbedding(32), nn.Linear(32, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim)
        )
        self.inc = nn.Conv2d(in_channels, 32, 3, padding=1)
        self.enc = Block(32, time_dim)
        self.down = nn.Conv2d(32, 64, 3, stride=2, padding=1)
        self.mid = Block(64, time_dim)
        self.up = nn.ConvTranspose2d(64, 32, 2, stride=2)
        self.dec = Block(32, time_dim)
        self.out = nn.Conv2d(32, in_channels, 1)
        if num_classes > 0:
            self.label_emb = nn.Embedding(num_classes + 1, time_dim)  # row num_classes = null label

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor = None) -> torch.Tensor:
        """x: (B, C, H, W) noisy images; t: (B,) int timesteps; y: (B,) int labels in [0, num_classes]
        (None = the null label for every image; ignored when num_classes = 0). Returns (B, C, H, W) predicted noise."""
        t_emb = self.time_mlp(t)                    # (B, 64)
        if self.num_classes > 0:
            if y is None:
                y = torch.full((x.shape[0],), self.num_classes, dtype=torch.long, device=x.device)
            t_emb = t_emb + self.label_emb(y)       # (B, 64)
        skip = self.enc(self.inc(x), t_emb)         # (B, 32, H, W)
        h = self.down(skip)                         # (B, 64, H/2, W/2)
        h = self.mid(h, t_emb)
        h = self.dec(self.up(h) + skip, t_emb)      # (B, 32, H, W)
        return self.out(h)
