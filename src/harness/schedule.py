"""The noise schedule of DDPM (Ho et al. 2020): betas, the forward process and the training loss."""

import math
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from src.harness.loading import check_prediction


class NoiseSchedule:
    """Variances beta_1..beta_T and the quantities derived from them, indexed 0..T-1.

    `betas`, `alphas` (1 - beta_t) and `alphas_cumprod` (alpha-bar_t, the product of alphas up to t)
    are float32 tensors of length T on `device`.
    """

    def __init__(self, num_timesteps: int = 1000, kind: str = "linear", beta_start: float = 1e-4,
                 beta_end: float = 0.02, device: torch.device | str = "cpu"):
        if kind == "linear":
            betas = torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)
        elif kind == "cosine":
            betas = _cosine_betas(num_timesteps)
        else:
            raise ValueError(f"unknown noise schedule {kind!r}; use 'linear' or 'cosine'")
        self.num_timesteps = num_timesteps
        self.kind = kind
        self.betas = betas.float().to(device)
        self.alphas = (1 - betas).float().to(device)
        self.alphas_cumprod = torch.cumprod(1 - betas, dim=0).float().to(device)

    @classmethod
    def from_config(cls, diffusion_cfg, device="cpu") -> "NoiseSchedule":
        d = diffusion_cfg
        return cls(d.num_timesteps, d.schedule, d.beta_start, d.beta_end, device)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(alpha-bar_t) x_0 + sqrt(1 - alpha-bar_t) eps  (eq. 4).  x0, noise: (B, C, H, W); t: (B,)."""
        abar = self.alphas_cumprod[t].view(-1, 1, 1, 1)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    def loss(self, model, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """L_simple = || eps - eps_theta(x_t, t) ||^2, averaged over pixels and batch (eq. 14, Algorithm 1)."""
        return F.mse_loss(predict_noise(model, self.q_sample(x0, t, noise), t).float(), noise)


def predict_noise(model, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """model(x, t), checked to be a tensor shaped like x, so a wrong return value is named, not a crash later."""
    prediction = model(x, t)
    check_prediction(prediction, x)
    return prediction


def _cosine_betas(num_timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal 2021, eq. 17: alpha-bar(t) = cos^2(((t/T + s) / (1 + s)) pi/2)."""
    steps = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    abar = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - abar[1:] / abar[:-1]).clamp(max=max_beta)


@torch.no_grad()
def validation_loss(model, schedule: NoiseSchedule, images: torch.Tensor, batch_size: int = 500,
                    num_bands: int = 10, autocast=nullcontext) -> dict:
    """Deterministic epsilon-MSE on held-out images, overall and per timestep band.

    Image i is noised at t_i = floor(i * T / N), so the timesteps cover [0, T) evenly, with noise drawn
    from a generator seeded 0; two models scored on the same images see exactly the same x_t.
    `autocast` makes the context each forward pass runs in (e.g. bfloat16 autocast).
    images: (N, C, H, W) in [-1, 1].  Returns {"loss": float, "bands": {"0-99": float, ...}}.
    """
    n, T = len(images), schedule.num_timesteps
    device = schedule.betas.device
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
            prediction = predict_noise(model, schedule.q_sample(x0, t, eps), t)
        per_image.append((prediction.float() - eps).pow(2).mean(dim=(1, 2, 3)).cpu())
    model.train(was_training)
    per_image = torch.cat(per_image).double()
    num_bands = min(num_bands, T)  # a band holds at least one timestep
    band_of = timesteps * num_bands // T
    bands = {}
    for b in range(num_bands):
        in_band = band_of == b
        if in_band.any():
            lo, hi = b * T // num_bands, (b + 1) * T // num_bands - 1
            bands[f"{lo}-{hi}"] = per_image[in_band].mean().item()
    return {"loss": per_image.mean().item(), "bands": bands}

