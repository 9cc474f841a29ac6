"""Flow matching: the training pair and the Euler sampler. This is Level 7 of the kata (docs/levels/level7.md).

Flow matching (Lipman et al. 2023; rectified flow, Liu et al. 2023) joins data and noise by a straight line

    x_s = (1 - s) * x_0 + s * eps,    eps ~ N(0, I),   s in [0, 1]    (s = 0: the data, s = 1: pure noise)

and trains the network to predict the velocity along that line, the derivative of x_s in s:

    v = d x_s / d s = eps - x_0,      loss = || v - v_theta(x_s, t) ||^2   (the harness computes this MSE)

To sample, start at pure noise (s = 1) and follow the learned velocity back to s = 0 with Euler's method.
(Lipman et al. run time the other way, s = 1 at the data; here s grows with the noise, like DDPM's t.)

The network keeps the contract of Levels 0 and 1: it takes integer timesteps t in [0, T), T = 1000. Flow time
and timestep are tied by

    s = (t + 1) / T        (t = T-1 is pure noise, s = 1; t = 0 is s = 1 / T, one step from the data)

so your PointModel and DiffusionModel train with flow matching unchanged (`diffusion.objective: flow`).
"""

import torch


def flow_matching_pair(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor,
                       num_timesteps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The network's input x_s and its target v for a batch (the harness draws t, then noise, as for DDPM).

    Args:
        x0: (B, ...) clean data: images (B, C, H, W) or points (B, 2).
        noise: eps, shaped like x0.
        t: (B,) int64 timesteps in [0, T); sample i sits at flow time s_i = (t_i + 1) / T.
        num_timesteps: T.

    Returns:
        (x_s, v): x_s = (1 - s) * x0 + s * noise and v = noise - x0, both shaped like x0, float32.
    """
    # TODO: Level 7
    raise NotImplementedError(
        "Implement flow_matching_pair in src/flow.py (Level 7: docs/levels/level7.md)."
    )


@torch.no_grad()
def euler_sample(model, schedule, shape: tuple[int, ...], generator: torch.Generator | None = None,
                 num_steps: int = 50) -> torch.Tensor:
    """Euler's method on dx/ds = v_theta(x, s) from s = 1 (noise) to s = 0 (data) in `num_steps` equal steps.

    Args:
        model: v_theta, called as model(x, t) with x: shaped like `shape` and t: (B,) int64.
        schedule: only its `num_timesteps` (T) and its device (`schedule.betas.device`) are used here.
        shape: (B, C, H, W) of images, or (B, 2) of points.
        generator: a torch.Generator on the schedule's device, or None for the global one.
        num_steps: N, the number of model calls (best a divisor of T, as 50 is of 1000).

    The steps, for i = 0, ..., N-1:
        s_i = (N - i) / N                       (1, 1 - 1/N, ..., 1/N)
        t_i = round(T * s_i) - 1                (the timestep for s_i: T-1 first)
        x <- x - (1 / N) * model(x, t_i)        (from s_i to s_{i+1} = s_i - 1/N, so the step in s is -1/N)

    Random numbers: exactly one draw, first: x = torch.randn(shape, generator=generator, device=device), with
    device = schedule.betas.device. Every tensor lives on that device.

    Returns:
        x at s = 0: shaped like `shape`, clipped to [-1, 1], without autograd history.
    """
    # TODO: Level 7
    raise NotImplementedError(
        "Implement euler_sample in src/flow.py (Level 7: docs/levels/level7.md)."
    )
