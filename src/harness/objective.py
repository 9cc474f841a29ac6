"""Training objectives: what the network is asked to predict, the loss that teaches it, and its validation score.

An objective draws the random inputs of a training step, computes the loss on them, and scores a model on
held-out images deterministically. The training loop knows nothing else about it, so another objective
(flow matching, say) is a sibling class, not a branch in the loop.
"""

from contextlib import nullcontext

import torch
import torch.nn.functional as F

from src.harness.loading import check_prediction
from src.harness.schedule import NoiseSchedule


def predict_noise(model, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """model(x, t), checked to be a tensor shaped like x, so a wrong return value is named, not a crash later."""
    prediction = model(x, t)
    check_prediction(prediction, x)
    return prediction


class NoisePrediction:
    """DDPM's objective (Ho et al. 2020, Algorithm 1): the network predicts the noise eps mixed into x_0 at step t."""

    def __init__(self, schedule: NoiseSchedule):
        self.schedule = schedule

    def draw(self, x0: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(t, noise) for the batch x0: (B, C, H, W) or (B, 2); t: (B,) uniform in [0, T), drawn before the noise."""
        t = torch.randint(0, self.schedule.num_timesteps, (len(x0),), generator=generator, device=x0.device)
        return t, torch.randn(x0.shape, generator=generator, device=x0.device)

    def loss(self, model, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """L_simple = || eps - eps_theta(x_t, t) ||^2, averaged over pixels and batch (eq. 14)."""
        return F.mse_loss(predict_noise(model, self.schedule.q_sample(x0, t, noise), t).float(), noise)

    @torch.no_grad()
    def validation_loss(self, model, images: torch.Tensor, batch_size: int = 500, num_bands: int = 10,
                        autocast=nullcontext) -> dict:
        """Deterministic epsilon-MSE on held-out images, overall and per timestep band.

        Image i is noised at t_i = floor(i * T / N), so the timesteps cover [0, T) evenly, with noise drawn
        from a generator seeded 0; two models scored on the same images see exactly the same x_t.
        `autocast` makes the context each forward pass runs in (e.g. bfloat16 autocast).
        images: (N, C, H, W) in [-1, 1] (or points (N, 2)).  Returns {"loss": float, "bands": {"0-99": float, ...}}.
        """
        n, T = len(images), self.schedule.num_timesteps
        device = self.schedule.betas.device
        timesteps = torch.arange(n, dtype=torch.float64).mul(T / n).floor().long()
        noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(0))
        was_training = model.training
        model.eval()
        per_image = []
        for start in range(0, n, batch_size):
            x0 = images[start:start + batch_size].to(device)
            t = timesteps[start:start + batch_size].to(device)
            eps = noise[start:start + batch_size].to(device)
            with autocast():
                prediction = predict_noise(model, self.schedule.q_sample(x0, t, eps), t)
            per_image.append((prediction.float() - eps).pow(2).flatten(1).mean(dim=1).cpu())
        model.train(was_training)
        per_image = torch.cat(per_image).double()
        return {"loss": per_image.mean().item(), "bands": _band_means(per_image, timesteps, T, min(num_bands, T))}


def _band_means(per_image: torch.Tensor, timesteps: torch.Tensor, T: int, num_bands: int) -> dict[str, float]:
    """{"lo-hi": mean of per_image over the images noised at a timestep in [lo, hi]} for num_bands equal bands."""
    band_of = timesteps * num_bands // T
    bands = {}
    for b in range(num_bands):
        in_band = band_of == b
        if in_band.any():
            lo, hi = b * T // num_bands, (b + 1) * T // num_bands - 1
            bands[f"{lo}-{hi}"] = per_image[in_band].mean().item()
    return bands
