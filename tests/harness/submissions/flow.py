"""A correct Level 7 answer written for the release tests (instructor-only: tests/harness/ is not released).

Written unlike the reference on purpose: the time grid comes from torch.linspace and each step is s_next - s, so
float rounding differs from the reference's, as an honest student's would.
"""

import torch


def flow_matching_pair(x0, noise, t, num_timesteps):
    s = (t + 1).to(torch.float32) / num_timesteps
    while s.dim() < x0.dim():
        s = s.unsqueeze(-1)
    x_s = x0 + s * (noise - x0)
    return x_s, noise - x0


@torch.no_grad()
def euler_sample(model, schedule, shape, generator=None, num_steps=50):
    device = schedule.betas.device
    T = schedule.num_timesteps
    x = torch.randn(shape, generator=generator, device=device)
    grid = torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64)
    for s, s_next in zip(grid[:-1].tolist(), grid[1:].tolist()):
        t = torch.full((shape[0],), round(s * T) - 1, dtype=torch.long, device=device)
        x = x + (s_next - s) * model(x, t)
    return torch.clamp(x, -1.0, 1.0)
