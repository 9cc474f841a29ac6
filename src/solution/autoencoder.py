"""Reference autoencoder for latent diffusion, with exactly the contract of src/autoencoder.py."""

import torch
from torch import nn


def _block(channels_in: int, channels_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels_in, channels_out, 3, padding=1), nn.GroupNorm(8, channels_out), nn.SiLU())


class Autoencoder(nn.Module):
    """A small convolutional VAE: (B, C, 28, 28) in [-1, 1] <-> latents (B, latent_channels, 7, 7)."""

    def __init__(self, in_channels: int = 1, latent_channels: int = 4, width: int = 32):
        super().__init__()
        self.encoder = nn.Sequential(
            _block(in_channels, width),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.SiLU(),  # 28 -> 14
            _block(2 * width, 2 * width),
            nn.Conv2d(2 * width, 2 * width, 4, stride=2, padding=1), nn.SiLU(),  # 14 -> 7
            _block(2 * width, 2 * width),
            nn.Conv2d(2 * width, 2 * latent_channels, 1),
        )
        self.decoder = nn.Sequential(
            _block(latent_channels, 2 * width),
            _block(2 * width, 2 * width),
            nn.ConvTranspose2d(2 * width, 2 * width, 4, stride=2, padding=1), nn.SiLU(),  # 7 -> 14
            _block(2 * width, width),
            nn.ConvTranspose2d(width, width, 4, stride=2, padding=1), nn.SiLU(),  # 14 -> 28
            _block(width, width),
            nn.Conv2d(width, in_channels, 3, padding=1),
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, C, H, W) -> (mean, logvar) of q(z | x), each (B, latent_channels, H / 4, W / 4)."""
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z: (B, latent_channels, h, w) -> images (B, C, 4h, 4w) in [-1, 1]."""
        return torch.tanh(self.decoder(z))


def sample_latent(mean: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """z = mean + exp(logvar / 2) * noise: the reparameterisation trick (Kingma & Welling 2014, sec. 2.4)."""
    noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    return mean + (0.5 * logvar).exp() * noise


def autoencoder_loss(autoencoder, x: torch.Tensor, kl_weight: float, generator: torch.Generator | None = None
                     ) -> torch.Tensor:
    """The negative ELBO with a weighted KL term (Kingma & Welling 2014, eq. 10; Rombach et al. 2022, sec. 3)."""
    mean, logvar = autoencoder.encode(x)
    reconstruction = autoencoder.decode(sample_latent(mean, logvar, generator))
    squared_error = (reconstruction - x).pow(2).flatten(1).sum(1)
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).flatten(1).sum(1)
    return (squared_error + kl_weight * kl).mean()


def latent_scale(latents: torch.Tensor) -> float:
    """1 / std of the latents, so that scaled latents have unit variance (Rombach et al. 2022, sec. G)."""
    return 1.0 / latents.float().std().item()
