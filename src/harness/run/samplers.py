"""The harness's own sampler, and the samplers under test, by name.

Each entry of SAMPLERS builds, from the `sampling` config, a function sample(model, schedule, shape, generator)
-> x_0 in [-1, 1]; each objective (objective.OBJECTIVES) says which fit it. The harness's samplers for previews and
sample scores, DPM-Solver++(2M) for noise prediction and Heun's method for flow matching, are second-order ODE solvers
that no level asks for, so the release can hold them.
"""

import math
from functools import partial

import torch

from src.harness.loading import STUDENT, CodeSource


@torch.no_grad()
def dpmpp_2m(model, schedule, shape: tuple[int, ...], generator: torch.Generator | None = None,
             num_steps: int = 50) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2): a second-order multistep solver of the probability-flow ODE.

    On the timesteps round(linspace(T - 1, 0, num_steps)), one model call each, with alpha_t = sqrt(abar_t),
    sigma_t = sqrt(1 - abar_t) and lambda_t = log(alpha_t / sigma_t), h_i = lambda_{i+1} - lambda_i:
        x0_i = clip((x_i - sigma_i * eps_theta(x_i, t_i)) / alpha_i, -1, 1)
        D_i = (1 + 1 / (2 r_i)) x0_i - x0_{i-1} / (2 r_i),  r_i = h_{i-1} / h_i  (D_0 = x0_0: first order)
        x_{i+1} = (sigma_{i+1} / sigma_i) x_i - alpha_{i+1} (exp(-h_i) - 1) D_i
    and the last prediction x0 is the sample.
    """
    device = schedule.betas.device
    abar = schedule.alphas_cumprod.double()
    num_steps = min(num_steps, schedule.num_timesteps)  # distinct timesteps: each step must lower the noise
    timesteps = torch.linspace(schedule.num_timesteps - 1, 0, num_steps).round().long().tolist()
    alpha, sigma = abar[timesteps].sqrt().tolist(), (1 - abar[timesteps]).sqrt().tolist()
    lam = [math.log(a / s) for a, s in zip(alpha, sigma)]
    x = torch.randn(shape, generator=generator, device=device)
    x0_before = None
    for i, t in enumerate(timesteps):
        eps = model(x, torch.full((shape[0],), t, device=device)).float()
        x0 = ((x - sigma[i] * eps) / alpha[i]).clamp(-1, 1)
        if i + 1 == len(timesteps):
            break
        h = lam[i + 1] - lam[i]
        d = x0 if x0_before is None else x0 + (x0 - x0_before) * h / (2 * (lam[i] - lam[i - 1]))
        x = sigma[i + 1] / sigma[i] * x - alpha[i + 1] * math.expm1(-h) * d
        x0_before = x0
    return x0


@torch.no_grad()
def heun(model, schedule, shape: tuple[int, ...], generator: torch.Generator | None = None,
         num_steps: int = 25) -> torch.Tensor:
    """Heun's second-order method (Karras et al. 2022, Algorithm 1) on a flow-matching model's ODE, from s = 1 to 0.

    The velocity model is called as model(x, t) with t = T * s - 1 (src/flow.py's convention) at s = 1, 1 - 1/N, ...;
    every step but the last, to s = 0, corrects its Euler estimate with the velocity at the step's end:
    2 * num_steps - 1 model calls.
    """
    device = schedule.betas.device
    T = schedule.num_timesteps

    def velocity(x, i):
        return model(x, torch.full((shape[0],), round(T * (num_steps - i) / num_steps) - 1, device=device)).float()

    x = torch.randn(shape, generator=generator, device=device)
    for i in range(num_steps):
        d = velocity(x, i)
        x_next = x - d / num_steps
        if i + 1 < num_steps:
            x_next = x - (d + velocity(x_next, i + 1)) / (2 * num_steps)
        x = x_next
    return x.clamp(-1, 1)


def heun_steps(model_calls: int) -> int:
    """Heun's steps that take about `model_calls` model calls (2 * steps - 1)."""
    return (model_calls + 1) // 2


# The harness holds no level's answer: "ddpm" and "ddim" are the samplers under test of Levels 4 and 5
# (src/sampler.py), "euler" the flow sampler of Level 7 (src/flow.py): the student's, or with --solution the
# reference's, loaded only when asked for. "dpmpp_2m" and "heun" are the harness's own. Each entry builds, from
# the sampling config and the code source (loading.CodeSource), sample(model, schedule, shape, generator).
SAMPLERS = {
    "ddpm": lambda cfg, source: source.module("sampler").sample,  # T model calls
    "ddim": lambda cfg, source: partial(source.module("sampler").ddim_sample,
                                        num_steps=cfg.steps, eta=cfg.eta),  # cfg.steps model calls
    "dpmpp_2m": lambda cfg, source: partial(dpmpp_2m, num_steps=cfg.steps),  # cfg.steps model calls
    "euler": lambda cfg, source: partial(source.module("flow").euler_sample, num_steps=cfg.steps),  # cfg.steps calls
    "heun": lambda cfg, source: partial(heun, num_steps=heun_steps(cfg.steps)),  # about cfg.steps calls
}
UNDER_TEST = ("ddpm", "ddim", "euler")  # the samplers a student writes


def get_sampler(sampling_cfg, objective, source: CodeSource = STUDENT, custom: bool = False):
    """The sampler `sampling_cfg.sampler`, or with custom=True the student's for `objective` (a class of
    objective.OBJECTIVES; its first sampler): src/sampler.py (DDPM) or src/flow.py's euler_sample.

    `sampling.sampler=ddpm`, `ddim` or `euler` is a sampler under test as well, taken from `source` (the student's
    files, or src/solution/ with --solution) unless custom asks for the student's.
    """
    if custom:
        return SAMPLERS[objective.samplers[0]](sampling_cfg, STUDENT)
    return SAMPLERS[sampling_cfg.sampler](sampling_cfg, source)
