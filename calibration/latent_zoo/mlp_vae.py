"""An independently written student solution of src/autoencoder.py (Level 8), used by the kata's tests/calibration.

Design: a small strided conv stem, then fully connected layers to the (c, 7, 7) latent (reshaped with view); the
decoder goes back through a fully connected layer and upsamples with nn.Upsample + Conv2d (no transposed
convolutions), with GELU throughout. Being fully connected, it handles only image_size x image_size images.
"""

import torch
from torch import nn


class Autoencoder(nn.Module):
    def __init__(self, in_channels: int = 1, latent_channels: int = 4, image_size: int = 28, hidden: int = 256):
        super().__init__()
        self.c, self.s = latent_channels, image_size // 4
        flat = 16 * self.s * self.s
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, 2, 1), nn.GELU(),   # 28 -> 14
            nn.Conv2d(16, 16, 3, 2, 1), nn.GELU(),            # 14 -> 7
            nn.Flatten(),
            nn.Linear(flat, hidden), nn.GELU(),
            nn.Linear(hidden, 2 * latent_channels * self.s * self.s),
        )
        self.fc = nn.Sequential(
            nn.Linear(latent_channels * self.s * self.s, hidden), nn.GELU(),
            nn.Linear(hidden, flat), nn.GELU(),
        )
        self.up = nn.Sequential(
            nn.Upsample(scale_factor=2), nn.Conv2d(16, 32, 3, padding=1), nn.GELU(),   # 7 -> 14
            nn.Upsample(scale_factor=2), nn.Conv2d(32, 16, 3, padding=1), nn.GELU(),   # 14 -> 28
            nn.Conv2d(16, in_channels, 3, padding=1), nn.Tanh(),
        )

    def encode(self, x):
        h = self.stem(x).view(x.shape[0], 2 * self.c, self.s, self.s)
        return h[:, :self.c], h[:, self.c:]

    def decode(self, z):
        h = self.fc(z.flatten(1)).view(z.shape[0], 16, self.s, self.s)
        return self.up(h)


def sample_latent(mean, logvar, generator=None):
    noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    return mean + (logvar / 2).exp() * noise


def autoencoder_loss(autoencoder, x, kl_weight, generator=None):
    mean, logvar = autoencoder.encode(x)
    z = sample_latent(mean, logvar, generator)
    reconstruction = (autoencoder.decode(z) - x).pow(2).flatten(1).sum(1)
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).flatten(1).sum(1)
    return (reconstruction + kl_weight * kl).mean()


def latent_scale(latents):
    return float(1 / latents.std())
