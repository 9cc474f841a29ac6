"""Level 4: a DDPM sampler with one mistake switched on fails a named graded test."""

from functools import partial

import pytest
import torch

from tests.graded import test_ddpm


def ddpm(model, schedule, shape, generator=None, *, sqrt_coefficient=True, swap_alphas=False, noise_at_zero=False,
         upward=False, off_by_one=False, posterior_variance=False, clip=True, no_grad=True, sigma_is_beta=False,
         skip_model=False):
    """The reference sampler with one optional mistake switched on."""
    with torch.no_grad() if no_grad else torch.enable_grad():
        device = schedule.betas.device
        betas, alphas, abar = schedule.betas, schedule.alphas, schedule.alphas_cumprod
        if swap_alphas:
            alphas, abar = abar, alphas
        T = schedule.num_timesteps
        x = torch.randn(shape, generator=generator, device=device)
        steps = range(T) if upward else reversed(range(T))
        for t in steps:
            model_t = min(t + 1, T - 1) if off_by_one else t
            eps = torch.zeros_like(x) if skip_model else model(x, torch.full((shape[0],), model_t, dtype=torch.long))
            denominator = (1 - abar[t]).sqrt() if sqrt_coefficient else (1 - abar[t])
            x = (x - betas[t] / denominator * eps) / alphas[t].sqrt()
            if t > 0 or noise_at_zero:
                variance = betas[t] * (1 - abar[t - 1]) / (1 - abar[t]) if posterior_variance and t > 0 else betas[t]
                sigma = variance if sigma_is_beta else variance.sqrt()
                x = x + sigma * torch.randn(shape, generator=generator, device=device)
        return x.clamp(-1, 1) if clip else x


SAMPLER_MUTANTS = [  # (the mistake switched on in ddpm, the graded test that catches it, its message)
    pytest.param(dict(sqrt_coefficient=False), test_ddpm.test_reproduces_the_mean_and_variance_of_gaussian_data,
                 "sample (mean|std)", id="missing sqrt"),
    pytest.param(dict(swap_alphas=True), test_ddpm.test_matches_the_reference_sampler_exactly, "first differs",
                 id="alpha and alpha-bar swapped"),
    pytest.param(dict(noise_at_zero=True), test_ddpm.test_matches_the_reference_sampler_exactly,
                 "returned x_0 differs", id="noise at the last step"),
    pytest.param(dict(upward=True), test_ddpm.test_calls_the_model_once_per_step_from_T_minus_1_down_to_0,
                 "must run T-1", id="t runs upward"),
    pytest.param(dict(off_by_one=True), test_ddpm.test_matches_the_reference_sampler_exactly, "you passed t",
                 id="off by one in t"),
    pytest.param(dict(posterior_variance=True), test_ddpm.test_matches_the_reference_sampler_exactly,
                 "first differs", id="posterior variance"),
    pytest.param(dict(sigma_is_beta=True), test_ddpm.test_reproduces_the_mean_and_variance_of_gaussian_data,
                 "sample std", id="sigma = beta, not sqrt(beta)"),
    pytest.param(dict(clip=False), test_ddpm.test_output_shape_range_and_device, "clip", id="never clips"),
    pytest.param(dict(no_grad=False), test_ddpm.test_returns_no_autograd_history, "autograd",
                 id="keeps autograd history"),
    pytest.param(dict(skip_model=True), test_ddpm.test_calls_the_model_once_per_step_from_T_minus_1_down_to_0,
                 "called 0 times", id="never calls the model"),
]


@pytest.mark.parametrize("mistake, graded_test, reason", SAMPLER_MUTANTS)
def test_sampler_mutant_is_caught(mistake, graded_test, reason):
    with pytest.raises(AssertionError, match=reason):
        graded_test(sample=partial(ddpm, **mistake))


def test_unmodified_mutant_sampler_passes_every_sampler_test():
    """The switchboard above with no mistake on is the reference: the mutants differ only by their mistake."""
    for graded_test in [test_ddpm.test_matches_the_reference_sampler_exactly,
                        test_ddpm.test_reproduces_the_mean_and_variance_of_gaussian_data,
                        test_ddpm.test_output_shape_range_and_device, test_ddpm.test_returns_no_autograd_history,
                        test_ddpm.test_calls_the_model_once_per_step_from_T_minus_1_down_to_0]:
        graded_test(sample=ddpm)


def test_noise_drawn_in_another_order_still_passes_the_distribution_test():
    """The distribution test must not punish a correct sampler for its random-number order."""
    def reversed_draws(model, schedule, shape, generator=None):
        torch.randn(shape, generator=generator)  # one extra draw shifts every later number
        return ddpm(model, schedule, shape, generator)

    test_ddpm.test_reproduces_the_mean_and_variance_of_gaussian_data(sample=reversed_draws)
    with pytest.raises(AssertionError):
        test_ddpm.test_matches_the_reference_sampler_exactly(sample=reversed_draws)
