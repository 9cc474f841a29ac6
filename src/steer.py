"""Your steered sampler (Level 9, docs/levels/level9.md): steer a trained model's samples towards a goal at inference
time, with no retraining.

A goal is a differentiable function of a clean image that is high where the image is what you want: the
log-probability of a class under a classifier, or minus the error of an image on the pixels you know (inpainting).
In the score view of diffusion, the model's noise prediction is a score, the direction towards more likely images:

    score(x_t) = -eps_theta(x_t, t) / sqrt(1 - abar_t)

Steering adds the goal's gradient to it (Dhariwal & Nichol 2021, Algorithm 2, where the goal is a noisy
classifier's log p(y | x_t)):

    score_steered = score + scale * grad_{x_t} goal(x0_hat(x_t))

The goal is evaluated on x0_hat, the clean image the model predicts from x_t, so a goal written for clean images
works at every noise level (Chung et al. 2023, "Diffusion Posterior Sampling"); its gradient with respect to x_t
flows back through the model. In terms of eps, the shift is

    eps_steered = eps - scale * sqrt(1 - abar_t) * grad_{x_t} goal(x0_hat(x_t))
"""

import torch


def steered_sample(model, schedule, shape: tuple[int, ...], goal, scale: float = 1.0,
                   generator: torch.Generator | None = None, num_steps: int = 50) -> torch.Tensor:
    """Deterministic DDIM steps (Song et al. 2021, eq. 12) on a score steered by the gradient of goal(x0_hat).

    The timesteps are ddim_sample's (src/sampler.py): tau = torch.linspace(T - 1, 0, N).round().long(), N =
    num_steps. At step i = 0, ..., N-1, with abar = alphas_cumprod[tau_i] and abar_next = alphas_cumprod[tau_{i+1}]
    (abar_next = 1 at the last step):

        x       = x.detach().requires_grad_(True)           # a fresh leaf: each step's graph is its own
        eps     = model(x, tau_i)                            # with autograd on (torch.enable_grad())
        x0_hat  = (x - sqrt(1 - abar) * eps) / sqrt(abar)    # not clipped: clipping would zero the gradient
        grad    = d goal(x0_hat).sum() / d x                 # torch.autograd.grad; (B, C, H, W), each image's own
        eps     = eps - scale * sqrt(1 - abar) * grad        # the steered score, in terms of eps
        x0_hat  = clip((x - sqrt(1 - abar) * eps) / sqrt(abar), -1, 1)
        eps_hat = (x - sqrt(abar) * x0_hat) / sqrt(1 - abar)  # the noise that the clipped x0_hat implies
        x       = sqrt(abar_next) * x0_hat + sqrt(1 - abar_next) * eps_hat

    From `grad` on, work with detached tensors (eps.detach(), x.detach()): the next step starts a new graph, so
    memory does not grow with the number of steps. The last step returns x0_hat. scale = 0 is plain deterministic
    DDIM (with Level 6's eps_hat step); a larger scale pushes harder towards the goal.

    Args:
        model: eps_theta, called as model(x, t) with x: (B, C, H, W) and t: (B,) int64.
        schedule: the noise schedule: `num_timesteps` (T) and `alphas_cumprod` (abar), a 1-D tensor of length T.
        shape: (B, C, H, W) of the images to draw.
        goal: called as goal(x0_hat) with x0_hat: (B, C, H, W); returns (B,), one differentiable score per image,
            higher where the image is closer to what is wanted.
        scale: how hard to steer, >= 0.
        generator: a torch.Generator on the schedule's device, or None for the global one.
        num_steps: N, the number of model calls.

    Random numbers: exactly one draw, first: x = torch.randn(shape, generator=generator, device=device), with
    device = schedule.betas.device; one model call per step.

    Returns:
        x_0: (B, C, H, W), clipped to [-1, 1], without autograd history. Work even when the caller has turned
        autograd off (torch.no_grad()): take the gradient inside `with torch.enable_grad():`.
    """
    # TODO: Level 9
    raise NotImplementedError("Implement steered_sample in src/steer.py (Level 9: docs/levels/level9.md).")
