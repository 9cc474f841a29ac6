"""Your autoencoder (Level 8, docs/levels/level8.md): latent diffusion, as in Stable Diffusion.

Diffusion on pixels spends most of its work on detail a person hardly sees. Latent diffusion (Rombach et al. 2022)
first trains an autoencoder that squeezes each image x into a small latent z and back, then trains diffusion on the
latents. Here a 1x28x28 Fashion-MNIST image becomes a 4x7x7 latent: 196 numbers instead of 784.

The autoencoder is a variational one (a VAE, Kingma & Welling 2014) with a small KL weight. The encoder gives,
for each latent number, a Gaussian q(z | x) = N(mean, exp(logvar)); training decodes a sample of it:

    z    = mean + exp(logvar / 2) * noise,   noise ~ N(0, I)            (the reparameterisation trick)
    loss = sum over pixels (decode(z) - x)^2                            (reconstruction)
         + kl_weight * 1/2 * sum over latents (mean^2 + exp(logvar) - 1 - logvar)   (KL(q(z | x) || N(0, I)))

averaged over the batch. The KL term keeps the latents near N(0, I): a smooth space with no far-flung codes, which
is what diffusion needs. Diffusion then trains on the *means* times latent_scale(...), which rescales them to unit
variance, as the noise schedule assumes (Stable Diffusion's 0.18215 is this scale for its autoencoder).
"""

import torch
from torch import nn


class Autoencoder(nn.Module):
    """Encoder and decoder between images and latents a quarter of their height and width.

    Args:
        in_channels: image channels C (1 for Fashion-MNIST).
        latent_channels: latent channels c (4 here).

    encode(x): x (B, C, H, W) in [-1, 1] -> (mean, logvar), each (B, c, H / 4, W / 4). The same x gives the same
        result every time (no randomness in encode; the sampling is sample_latent's).
    decode(z): z (B, c, H / 4, W / 4) -> images (B, C, H, W), always inside [-1, 1] (end with a tanh), whatever z.

    Two stride-2 convolutions (28 -> 14 -> 7) down and two stride-2 transposed convolutions (7 -> 14 -> 28) up, with
    3x3 convolution + GroupNorm + SiLU blocks of 32 to 64 channels between them (a few hundred thousand parameters in
    all), are enough; the encoder's last layer gives 2c channels, split into mean and logvar. Keep the decoder that
    wide: a narrow one without normalisation still reconstructs images, but turns the latents diffusion draws into
    dim, soft ones (docs/levels/level8.md).
    """

    def __init__(self, in_channels: int = 1, latent_channels: int = 4):
        super().__init__()
        # TODO: Level 8
        raise NotImplementedError("Implement Autoencoder in src/autoencoder.py (Level 8: docs/levels/level8.md).")

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # TODO: Level 8
        raise NotImplementedError("Implement Autoencoder.encode in src/autoencoder.py (Level 8: docs/levels/level8.md)")

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        # TODO: Level 8
        raise NotImplementedError("Implement Autoencoder.decode in src/autoencoder.py (Level 8: docs/levels/level8.md)")


def sample_latent(mean: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A sample z of q(z | x) = N(mean, exp(logvar)), differentiable in mean and logvar:

        z = mean + exp(logvar / 2) * noise

    Random numbers: exactly one draw, noise = torch.randn(mean.shape, generator=generator, device=mean.device,
    dtype=mean.dtype).

    Args:
        mean, logvar: (B, c, h, w), the encoder's output.
        generator: a torch.Generator on mean's device, or None for the global one.

    Returns:
        z: (B, c, h, w).
    """
    # TODO: Level 8
    raise NotImplementedError("Implement sample_latent in src/autoencoder.py (Level 8: docs/levels/level8.md).")


def autoencoder_loss(autoencoder, x: torch.Tensor, kl_weight: float, generator: torch.Generator | None = None
                     ) -> torch.Tensor:
    """The VAE's training loss on a batch (the negative evidence lower bound, with the KL term weighted):

        mean, logvar = autoencoder.encode(x)
        z            = sample_latent(mean, logvar, generator)        # the only random draw
        reconstruction = sum over (C, H, W) of (autoencoder.decode(z) - x)^2
        kl             = 1/2 * sum over (c, h, w) of (mean^2 + exp(logvar) - 1 - logvar)
        loss           = mean over the batch of (reconstruction + kl_weight * kl)

    Args:
        autoencoder: has encode(x) -> (mean, logvar) and decode(z), as Autoencoder above.
        x: (B, C, H, W) images in [-1, 1].
        kl_weight: beta >= 0, the weight of the KL term (1e-3 in configs/fashion_mnist_latent.yaml).
        generator: passed to sample_latent.

    Returns:
        A scalar tensor with gradients to the autoencoder's parameters.
    """
    # TODO: Level 8
    raise NotImplementedError("Implement autoencoder_loss in src/autoencoder.py (Level 8: docs/levels/level8.md).")


def latent_scale(latents: torch.Tensor) -> float:
    """The factor that gives the latents unit variance: 1 / latents.std(), over all their numbers.

    The harness encodes the training images (the encoder's means), calls this once, and trains diffusion on
    latents * scale; samples are divided by it before decoding.

    Args:
        latents: (N, c, h, w), the means of many encoded images.

    Returns:
        The scale, a Python float.
    """
    # TODO: Level 8
    raise NotImplementedError("Implement latent_scale in src/autoencoder.py (Level 8: docs/levels/level8.md).")
