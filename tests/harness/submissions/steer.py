"""Independently written student submission for Level 9 (steered DDIM sampling), written from the `src/steer.py`
stub alone, without seeing any reference answer. It differs in style from a plain transcription: the goal's
gradient comes from `loss.backward(inputs=[leaf])` on a fresh leaf (read back as `leaf.grad`, so no gradient
lands on the model's parameters) instead of `torch.autograd.grad`, the schedule is turned into per-step tensors
of square roots up front, and the steps run in an index-based `while` loop.
"""

import torch


def steered_sample(model, schedule, shape, goal, scale=1.0, generator=None, num_steps=50):
    device = schedule.betas.device
    cur = torch.randn(shape, generator=generator, device=device)  # the one and only random draw
    n_img = shape[0]
    T = schedule.num_timesteps
    taus = torch.linspace(T - 1, 0, num_steps).round().long().to(device)
    ab = schedule.alphas_cumprod.to(device)
    ab_now = ab[taus]
    ab_after = torch.cat([ab_now[1:], ab_now.new_ones(1)])  # abar_next = 1 after the last step
    keep_now, noise_now = ab_now.sqrt(), (1.0 - ab_now).sqrt()
    keep_after, noise_after = ab_after.sqrt(), (1.0 - ab_after).sqrt()

    k = 0
    clean = cur
    while k < num_steps:
        a, s = keep_now[k], noise_now[k]
        leaf = cur.detach().requires_grad_(True)
        with torch.enable_grad():
            eps_pred = model(leaf, taus[k].repeat(n_img))
            guess = (leaf - s * eps_pred) / a  # unclipped, so the gradient survives
            objective = goal(guess).sum()
            objective.backward(inputs=[leaf])
        pull = leaf.grad.detach()
        x_t = leaf.detach()
        eps_pred = eps_pred.detach() - scale * s * pull
        clean = ((x_t - s * eps_pred) / a).clamp(-1.0, 1.0)
        eps_implied = (x_t - a * clean) / s
        cur = keep_after[k] * clean + noise_after[k] * eps_implied
        k += 1
    return clean.detach()
