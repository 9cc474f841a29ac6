"""An independently written student solution of src/autoencoder.py (Level 8) for the kata's calibration zoo: the
smallest plain convolutional VAE, no normalisation, narrow. It follows the stub's hint literally: a 3x3 convolution,
two 4x4 stride-2 convolutions (28 -> 14 -> 7) and a 3x3 convolution to 2c channels down; a 3x3 convolution, two 4x4
stride-2 transposed convolutions (7 -> 14 -> 28) and a 3x3 convolution up, ending in tanh; SiLU between layers,
widths 16 and 32, and no normalisation layers at all.
"""

import torch
from torch import nn


class Autoencoder(nn.Module):
    """Encoder and decoder between images (B, C, H, W) and latents (B, c, H / 4, W / 4)."""

    def __init__(self, in_channels: int = 1, latent_channels: int = 4):
        super().__init__()
        self.in_channels = in_channels
        self.latent_channels = latent_channels
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, padding=1), nn.SiLU(),
            nn.Conv2d(16, 32, 4, stride=2, padding=1), nn.SiLU(),       # H -> H / 2
            nn.Conv2d(32, 32, 4, stride=2, padding=1), nn.SiLU(),       # H / 2 -> H / 4
            nn.Conv2d(32, 2 * latent_channels, 3, padding=1),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(latent_channels, 32, 3, padding=1), nn.SiLU(),
            nn.ConvTranspose2d(32, 32, 4, stride=2, padding=1), nn.SiLU(),  # H / 4 -> H / 2
            nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1), nn.SiLU(),  # H / 2 -> H
            nn.Conv2d(16, in_channels, 3, padding=1),
            nn.Tanh(),
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        mean, logvar = h.chunk(2, dim=1)
        return mean, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)


def sample_latent(mean: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """z = mean + exp(logvar / 2) * noise, with exactly one torch.randn draw."""
    noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    return mean + torch.exp(logvar / 2) * noise


def autoencoder_loss(autoencoder, x: torch.Tensor, kl_weight: float, generator: torch.Generator | None = None
                     ) -> torch.Tensor:
    """Batch mean of (sum of squared reconstruction error + kl_weight * KL(q(z | x) || N(0, I)))."""
    mean, logvar = autoencoder.encode(x)
    z = sample_latent(mean, logvar, generator)
    reconstruction = (autoencoder.decode(z) - x).pow(2).flatten(1).sum(dim=1)
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).flatten(1).sum(dim=1)
    return (reconstruction + kl_weight * kl).mean()


def latent_scale(latents: torch.Tensor) -> float:
    """1 / latents.std() over all their numbers, as a Python float."""
    return float(1.0 / latents.std())
