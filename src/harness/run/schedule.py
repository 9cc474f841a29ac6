"""The noise schedule of DDPM (Ho et al. 2020): the betas and the forward process q(x_t | x_0)."""

import math
import torch


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
        """x_t = sqrt(alpha-bar_t) x_0 + sqrt(1 - alpha-bar_t) eps  (eq. 4).  x0, noise: (B, ...); t: (B,)."""
        abar = self.alphas_cumprod[t].view(-1, *[1] * (x0.dim() - 1))
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise


def _cosine_betas(num_timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal 2021, eq. 17: alpha-bar(t) = cos^2(((t/T + s) / (1 + s)) pi/2)."""
    steps = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    abar = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - abar[1:] / abar[:-1]).clamp(max=max_beta)
