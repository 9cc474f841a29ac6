"""Level 8's measures of an autoencoder and its loss. Gradients through the student's network or loss cannot cross
from the sandbox's worker, so each measure that takes one runs where the code lives (sandbox.where_it_lives) and
returns plain tensors and numbers, which the graded tests (tests/graded/test_autoencoder.py) judge."""

import torch
import torch.nn.functional as F

from src.harness.grade.sandbox import where_it_lives


class ProbeAutoencoder(torch.nn.Module):
    """A fixed, cheap autoencoder with src/autoencoder.py's contract (1x8x8 images <-> 2x2x2 latents): encode pools
    4x4 patches, decode repeats them through a tanh, each with a learnable weight whose gradient the tests read."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.tensor([0.8, -0.6, 0.9]))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = F.avg_pool2d(x, 4)  # (B, 1, 2, 2)
        mean = torch.cat([pooled, pooled.flip(-1)], 1) * self.weight[0] + 0.3
        logvar = torch.cat([pooled, -pooled], 1) * self.weight[1] - 1.5
        return mean, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.weight[2] * F.interpolate(z.mean(1, keepdim=True), scale_factor=4))


def probe_images(seed: int, count: int = 6) -> torch.Tensor:
    """(count, 1, 8, 8) images in [-1, 1] drawn from `seed`: smooth shapes, not noise."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 1, 3, 3, generator=generator) * 2 - 1
    return F.interpolate(coarse, size=8, mode="bilinear", align_corners=True)


@where_it_lives
def loss_trace(autoencoder_loss, seed: int, kl_weight: float = 0.5) -> dict:
    """autoencoder_loss on ProbeAutoencoder and probe_images(seed), its noise from a generator seeded with seed:
    {"loss": the value, "grad": its gradient with respect to the probe's three weights, "draws": how many random
    numbers it took from the generator}."""
    model, generator = ProbeAutoencoder(), torch.Generator().manual_seed(seed)
    loss = autoencoder_loss(model, probe_images(seed), kl_weight, generator=generator)
    grad = torch.autograd.grad(loss, model.weight, allow_unused=True)[0] if loss.requires_grad else None
    return {"loss": loss.detach().float().reshape(()).clone(),
            "grad": grad.detach().clone() if grad is not None else torch.full((3,), float("nan")),
            "draws": _draws(generator, seed)}


@where_it_lives
def sample_latent_trace(sample_latent, seed: int) -> dict:
    """sample_latent on fixed (mean, logvar) of shape (3, 2, 2, 2), from a generator seeded with seed: {"z",
    "grad_mean", "grad_logvar": the gradients of z.sum(), "draws"}."""
    values = torch.Generator().manual_seed(seed + 1)
    mean = torch.randn(3, 2, 2, 2, generator=values).requires_grad_(True)
    logvar = (torch.rand(3, 2, 2, 2, generator=values) * 4 - 3).requires_grad_(True)
    generator = torch.Generator().manual_seed(seed)
    z = sample_latent(mean, logvar, generator=generator)
    grads = torch.autograd.grad(z.sum(), (mean, logvar), allow_unused=True) if z.requires_grad else (None, None)
    nan = torch.full(mean.shape, float("nan"))
    return {"z": z.detach().clone(), "mean": mean.detach(), "logvar": logvar.detach(),
            "grad_mean": grads[0] if grads[0] is not None else nan,
            "grad_logvar": grads[1] if grads[1] is not None else nan, "draws": _draws(generator, seed)}


def _draws(generator: torch.Generator, seed: int, most: int = 64) -> int:
    """How many float32 normals were drawn from `generator` since it was seeded with `seed` (whole draws of the probe
    shapes only; -1 when its state matches none)."""
    state = generator.get_state()
    for count in range(most + 1):
        fresh = torch.Generator().manual_seed(seed)
        if count:
            torch.randn(count, generator=fresh)
        if torch.equal(fresh.get_state(), state):
            return count
    return -1


@where_it_lives
def network_contract(autoencoder_class, in_channels: int = 1, latent_channels: int = 4, size: int = 28) -> dict:
    """What the contract tests judge of Autoencoder(in_channels, latent_channels), built from seed 0 and given four
    images: the shapes of encode and decode, decode's range on far-out latents, whether encode repeats itself in
    eval mode, which parameters a loss through mean, logvar and decode leaves without a gradient, and the count."""
    torch.manual_seed(0)
    model = autoencoder_class(in_channels, latent_channels)
    images = probe_images(0, 4).repeat(1, in_channels, 1, 1)
    images = F.interpolate(images, size=size, mode="bilinear", align_corners=True)
    encoded = model.encode(images)
    if not (isinstance(encoded, tuple) and len(encoded) == 2):
        return {"encode_returns": type(encoded).__name__}
    mean, logvar = encoded
    decoded = model.decode(mean)
    far = model.decode(10 * torch.randn(mean.shape, generator=torch.Generator().manual_seed(1)))
    loss = (decoded - images).pow(2).mean() + mean.pow(2).mean() + logvar.exp().mean()
    named = dict(model.named_parameters())
    grads = torch.autograd.grad(loss, list(named.values()), allow_unused=True)
    model.eval()
    with torch.no_grad():
        first, again = model.encode(images), model.encode(images)
    return {"encode_returns": "tuple", "mean_shape": tuple(mean.shape), "logvar_shape": tuple(logvar.shape),
            "decode_shape": tuple(decoded.shape), "finite": bool(torch.isfinite(torch.cat(
                [mean.flatten(), logvar.flatten(), decoded.flatten()])).all()),
            "far_range": (far.min().item(), far.max().item()),
            "deterministic": all(torch.equal(a, b) for a, b in zip(first, again)),
            "no_gradient": [name for (name, _), g in zip(named.items(), grads) if g is None or not g.abs().sum() > 0],
            "num_parameters": sum(p.numel() for p in named.values())}
