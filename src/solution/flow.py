"""Reference flow matching: the straight-line training pair and the Euler sampler (see src/flow.py)."""

import torch


def flow_matching_pair(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor,
                       num_timesteps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x_s = (1 - s) x_0 + s eps and v = eps - x_0 with s = (t + 1) / T (Lipman et al. 2023, eq. 20 and 23)."""
    s = ((t.float() + 1) / num_timesteps).view(-1, *[1] * (x0.dim() - 1))
    return (1 - s) * x0 + s * noise, noise - x0


@torch.no_grad()
def euler_sample(model, schedule, shape: tuple[int, ...], generator: torch.Generator | None = None,
                 num_steps: int = 50) -> torch.Tensor:
    """Euler integration of the learned flow from s = 1 to s = 0 in num_steps equal steps."""
    device = schedule.betas.device
    T = schedule.num_timesteps
    x = torch.randn(shape, generator=generator, device=device)
    for i in range(num_steps):
        t = torch.full((shape[0],), round(T * (num_steps - i) / num_steps) - 1, dtype=torch.long, device=device)
        x = x - model(x, t).float() / num_steps
    return x.clamp(-1, 1)
