"""Level 9: broken steered samplers each fail a named graded test, with a message that names the mistake."""

from functools import partial

import pytest
import torch

from tests.graded import test_steer
from tests.harness.helpers import submission


def steered(model, schedule, shape, goal, scale=1.0, generator=None, num_steps=50, *, sign_flipped=False,
            no_sqrt_factor=False, wrt_x0_hat=False, not_through_model=False, goal_on_x_t=False, clip=True,
            keeps_eps=False, shifts_x=False, scale_twice=False, ignores_scale=False, keeps_graph=False,
            batch_mean=False, batch_normalised=False, batch_shared=False, no_enable_grad=False, keeps_history=False,
            every_timestep=False):
    """The reference steered sampler, written out, with one optional mistake switched on."""
    device, T = schedule.betas.device, schedule.num_timesteps
    s = 1.0 if ignores_scale else 2 * scale if scale_twice else scale
    timesteps = torch.linspace(T - 1, 0, T if every_timestep else num_steps).round().long().tolist()
    x = torch.randn(shape, generator=generator, device=device)
    for i, t in enumerate(timesteps):
        abar = schedule.alphas_cumprod[t]
        abar_next = schedule.alphas_cumprod[timesteps[i + 1]] if i + 1 < len(timesteps) else torch.ones(())
        x = x.requires_grad_(True) if keeps_graph else x.detach().requires_grad_(True)
        with torch.set_grad_enabled(torch.is_grad_enabled() if no_enable_grad else True):
            eps = model(x, torch.full((shape[0],), t, dtype=torch.long, device=device))
            if not_through_model:
                eps = eps.detach()
            x0 = x if goal_on_x_t else (x - (1 - abar).sqrt() * eps) / abar.sqrt()
            if wrt_x0_hat:
                x0 = x0.detach().requires_grad_(True)
            value = goal(x0)
            value = value.mean() if batch_mean else value.sum()
            grad, = torch.autograd.grad(value, x0 if wrt_x0_hat else x)
        if batch_normalised:
            grad = grad / grad.norm() * len(grad) ** 0.5
        if batch_shared:  # one gradient for the batch: each image's own, averaged
            grad = grad.mean(0, keepdim=True).expand_as(grad)
        if sign_flipped:
            grad = -grad
        factor = 1.0 if no_sqrt_factor else (1 - abar).sqrt()
        eps_steered = eps.detach() if shifts_x else eps.detach() - s * factor * grad
        x_now = x if keeps_graph or keeps_history else x.detach()
        x0 = (x_now - (1 - abar).sqrt() * eps_steered) / abar.sqrt()
        x0 = x0.clamp(-1, 1) if clip else x0
        noise = eps_steered if keeps_eps else (x_now - abar.sqrt() * x0) / (1 - abar).sqrt()
        x = abar_next.sqrt() * x0 + (1 - abar_next).sqrt() * noise
        if shifts_x:
            x = x + s * grad
    return x.clamp(-1, 1) if clip else x


TRACE_AT = {scale: partial(test_steer.test_matches_the_reference_exactly, scale=scale)
            for scale in test_steer.RECORDED_SCALES}
GAUSSIAN = test_steer.test_a_linear_goal_tilts_gaussian_data_as_the_posterior_says
MUTANTS = [  # (the mistake switched on in steered, the graded test that catches it, its message)
    pytest.param(dict(sign_flipped=True), TRACE_AT[5.0], "sign is flipped", id="gradient sign flipped"),
    pytest.param(dict(sign_flipped=True), GAUSSIAN, "mean", id="gradient sign flipped (Gaussian)"),
    pytest.param(dict(no_sqrt_factor=True), TRACE_AT[5.0], "not scale \\* grad", id="no sqrt(1 - abar)"),
    pytest.param(dict(no_sqrt_factor=True), GAUSSIAN, "mean", id="no sqrt(1 - abar) (Gaussian)"),
    pytest.param(dict(wrt_x0_hat=True), TRACE_AT[5.0], "not x0_hat", id="gradient with respect to x0_hat"),
    pytest.param(dict(wrt_x0_hat=True), GAUSSIAN, "mean", id="gradient with respect to x0_hat (Gaussian)"),
    pytest.param(dict(not_through_model=True), TRACE_AT[5.0], "through the model", id="eps detached"),
    pytest.param(dict(not_through_model=True), GAUSSIAN, "mean", id="eps detached (Gaussian)"),
    pytest.param(dict(goal_on_x_t=True), TRACE_AT[5.0], "not on x_t", id="goal on x_t"),
    pytest.param(dict(goal_on_x_t=True), GAUSSIAN, "mean", id="goal on x_t (Gaussian)"),
    pytest.param(dict(clip=False), TRACE_AT[5.0], "clip", id="x0_hat never clipped"),
    pytest.param(dict(keeps_eps=True), TRACE_AT[5.0], "the noise it implies", id="steered eps kept"),
    pytest.param(dict(shifts_x=True), TRACE_AT[5.0], "not x after the step", id="x shifted after the step"),
    pytest.param(dict(shifts_x=True), GAUSSIAN, "mean", id="x shifted after the step (Gaussian)"),
    pytest.param(dict(scale_twice=True), TRACE_AT[1.0], "first differs", id="scale applied twice"),
    pytest.param(dict(scale_twice=True), GAUSSIAN, "mean", id="scale applied twice (Gaussian)"),
    pytest.param(dict(ignores_scale=True), TRACE_AT[0.0], "first differs", id="scale ignored"),
    pytest.param(dict(ignores_scale=True), GAUSSIAN, "plain deterministic DDIM", id="scale ignored (Gaussian)"),
    pytest.param(dict(keeps_graph=True), test_steer.test_each_step_starts_a_fresh_graph, "fresh leaf",
                 id="graph kept across steps"),
    pytest.param(dict(batch_mean=True), GAUSSIAN, "mean", id="mean of the goal over the batch"),
    pytest.param(dict(batch_normalised=True), GAUSSIAN, "mean", id="gradient normalised over the batch"),
    pytest.param(dict(batch_shared=True), test_steer.test_each_image_is_steered_by_its_own_goal,
                 "changed the other images", id="one gradient for the batch"),
    pytest.param(dict(no_enable_grad=True), test_steer.test_works_under_no_grad_and_returns_no_history,
                 "enable_grad", id="no enable_grad"),
    pytest.param(dict(keeps_history=True), test_steer.test_works_under_no_grad_and_returns_no_history,
                 "autograd history", id="returns autograd history"),
    pytest.param(dict(every_timestep=True), TRACE_AT[1.0], "you passed t", id="all T timesteps"),
]


@pytest.mark.parametrize("mistake, graded_test, reason", MUTANTS)
def test_steered_mutant_is_caught(mistake, graded_test, reason):
    with pytest.raises(AssertionError, match=reason):
        graded_test(steered_sample=partial(steered, **mistake))


SAMPLER_TESTS = [*TRACE_AT.values(), GAUSSIAN, test_steer.test_each_image_is_steered_by_its_own_goal,
                 test_steer.test_each_step_starts_a_fresh_graph,
                 test_steer.test_works_under_no_grad_and_returns_no_history]


def test_unmodified_steered_mutant_passes_every_sampler_test():
    for graded_test in SAMPLER_TESTS:
        graded_test(steered_sample=steered)


def test_a_steered_sampler_written_unlike_the_reference_passes_every_sampler_test():
    """tests/harness/submissions/steer.py, written from the stub and the chapter alone (docs/calibration/level9.md)."""
    submitted = submission("steer")
    for graded_test in SAMPLER_TESTS:
        graded_test(steered_sample=submitted.steered_sample)
