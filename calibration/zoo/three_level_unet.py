"""A student's plain UNet: three resolutions (28 -> 14 -> 7, or 32 -> 16 -> 8), channels 32/64/128,
GroupNorm + SiLU conv blocks with the time embedding added, concatenated skips, no attention.
Optional class label y (num_classes = K > 0, label K = "null label"): embedded, passed through
Linear + SiLU and added to the time embedding after the time MLP; num_classes = 0 is unconditional."""

import torch
from torch import nn

from src.utils import SinusoidalTimestepEmbedding


class Block(nn.Module):
    """Two 3x3 convs with GroupNorm + SiLU; the time embedding is added after the first.

    (B, in_ch, H, W), (B, time_dim) -> (B, out_ch, H, W)
    """

    def __init__(self, in_ch: int, out_ch: int, time_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm1 = nn.GroupNorm(8, out_ch)
        self.time = nn.Linear(time_dim, out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.norm2 = nn.GroupNorm(8, out_ch)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor, t_emb: torch.Tensor) -> torch.Tensor:
        h = self.act(self.norm1(self.conv1(x)))
        h = h + self.time(t_emb)[:, :, None, None]
        return self.act(self.norm2(self.conv2(h)))


class DiffusionModel(nn.Module):
    """eps_theta(x_t, t): predicts the noise in a batch of noisy images."""

    def __init__(self, in_channels: int, image_size: int, num_classes: int = 0):
        super().__init__()
        time_dim = 128
        self.num_classes = num_classes
        self.time_mlp = nn.Sequential(
            SinusoidalTimestepEmbedding(32),
            nn.Linear(32, time_dim),
            nn.SiLU(),
            nn.Linear(time_dim, time_dim),
        )
        if num_classes > 0:
            # K + 1 rows: the last one is the null label used for classifier-free guidance
            self.label_mlp = nn.Sequential(
                nn.Embedding(num_classes + 1, time_dim),
                nn.Linear(time_dim, time_dim),
                nn.SiLU(),
            )
        self.inc = nn.Conv2d(in_channels, 32, 3, padding=1)
        self.down1 = Block(32, 32, time_dim)                 # full resolution
        self.pool1 = nn.Conv2d(32, 32, 3, stride=2, padding=1)
        self.down2 = Block(32, 64, time_dim)                 # 1/2
        self.pool2 = nn.Conv2d(64, 64, 3, stride=2, padding=1)
        self.mid = Block(64, 128, time_dim)                  # 1/4
        self.up2 = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(128, 64, 3, padding=1))
        self.dec2 = Block(64 + 64, 64, time_dim)
        self.up1 = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(64, 32, 3, padding=1))
        self.dec1 = Block(32 + 32, 32, time_dim)
        self.out = nn.Conv2d(32, in_channels, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor = None) -> torch.Tensor:
        """x: (B, C, H, W) noisy images; t: (B,) int timesteps; y: (B,) int labels in [0, K] or None
        (= null label K). Returns (B, C, H, W) predicted noise."""
        t_emb = self.time_mlp(t)                                   # (B, 128)
        if self.num_classes > 0:
            if y is None:
                y = torch.full((x.shape[0],), self.num_classes, dtype=torch.long, device=x.device)
            t_emb = t_emb + self.label_mlp(y)                      # (B, 128)
        s1 = self.down1(self.inc(x), t_emb)                        # (B, 32, H, W)
        s2 = self.down2(self.pool1(s1), t_emb)                     # (B, 64, H/2, W/2)
        h = self.mid(self.pool2(s2), t_emb)                        # (B, 128, H/4, W/4)
        h = self.dec2(torch.cat([self.up2(h), s2], dim=1), t_emb)  # (B, 64, H/2, W/2)
        h = self.dec1(torch.cat([self.up1(h), s1], dim=1), t_emb)  # (B, 32, H, W)
        return self.out(h)
