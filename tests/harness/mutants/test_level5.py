"""Level 5: a DDIM sampler with one mistake switched on fails a named graded test."""

from functools import partial

import pytest
import torch

from tests.graded import test_ddim


def ddim(model, schedule, shape, generator=None, num_steps=50, eta=0.0, *, leading=False, truncated=False,
         ignores_eta=False, swap_alphas=False, clip=True, direction_ignores_sigma=False, sigma_missing_factor=False,
         sigma_not_squared=False, stops_at_t_0=False, steps_fixed=False, no_grad=True, noise_without_eta=False,
         ascending=False):
    """The reference DDIM sampler with one optional mistake switched on."""
    with torch.no_grad() if no_grad else torch.enable_grad():
        device, T = schedule.betas.device, schedule.num_timesteps
        abar_of = schedule.alphas if swap_alphas else schedule.alphas_cumprod
        n = 50 if steps_fixed else num_steps
        if leading:  # diffusers' "leading" spacing: 0, T/N, 2T/N, ... reversed
            timesteps = list(reversed(range(0, T, T // n)))[:n]
        else:
            grid = torch.linspace(T - 1, 0, n)
            timesteps = (grid.long() if truncated else grid.round().long()).tolist()
            timesteps = timesteps[::-1] if ascending else timesteps
        eta = 0.0 if ignores_eta else eta
        x = torch.randn(shape, generator=generator, device=device)
        for i, t in enumerate(timesteps):
            last = i + 1 == len(timesteps)
            abar = abar_of[t]
            abar_next = abar_of[0] if last and stops_at_t_0 else torch.ones(()) if last else abar_of[timesteps[i + 1]]
            eps = model(x, torch.full((shape[0],), t, dtype=torch.long, device=device)).float()
            x0 = (x - (1 - abar).sqrt() * eps) / abar.sqrt()
            x0 = x0.clamp(-1, 1) if clip else x0
            sigma = eta * ((1 - abar_next) / (1 - abar)).sqrt()
            if not sigma_missing_factor:
                sigma = sigma * (1 - abar / abar_next).sqrt()
            taken = 0 if direction_ignores_sigma else sigma if sigma_not_squared else sigma ** 2
            x = abar_next.sqrt() * x0 + (1 - abar_next - taken).clamp(min=0).sqrt() * eps
            if noise_without_eta and not last:  # sigma of eq. 16 without its factor eta: noise even at eta = 0
                x = x + (sigma / eta if eta else ((1 - abar_next) / (1 - abar) * (1 - abar / abar_next)).sqrt()) \
                    * torch.randn(shape, generator=generator, device=device)
            elif eta > 0 and not last:
                x = x + sigma * torch.randn(shape, generator=generator, device=device)
        return x.clamp(-1, 1) if clip else x


DDIM_MUTANTS = [  # (the mistake switched on in ddim, the graded test that catches it, its message)
    pytest.param(dict(leading=True), test_ddim.test_calls_the_model_on_evenly_spaced_timesteps_from_T_minus_1_to_0,
                 "must run 999, 666, 333, 0", id="diffusers' leading spacing"),
    pytest.param(dict(truncated=True), test_ddim.test_matches_the_reference_exactly_with_eta_0, "you passed t",
                 id="timesteps truncated, not rounded"),
    pytest.param(dict(steps_fixed=True), test_ddim.test_calls_the_model_on_evenly_spaced_timesteps_from_T_minus_1_to_0,
                 "called 50 times", id="num_steps ignored"),
    pytest.param(dict(ignores_eta=True), test_ddim.test_matches_the_reference_exactly_with_eta_1, "first differs",
                 id="eta ignored"),
    pytest.param(dict(swap_alphas=True), test_ddim.test_matches_the_reference_exactly_with_eta_0, "first differs",
                 id="alpha and alpha-bar swapped"),
    pytest.param(dict(swap_alphas=True),
                 test_ddim.test_deterministic_steps_reproduce_the_mean_and_variance_of_gaussian_data,
                 "sample (mean|std)", id="alpha and alpha-bar swapped (Gaussian)"),
    pytest.param(dict(clip=False), test_ddim.test_matches_the_reference_exactly_with_eta_0, "first differs",
                 id="x0_hat never clipped"),
    pytest.param(dict(direction_ignores_sigma=True),
                 test_ddim.test_stochastic_steps_reproduce_the_mean_and_variance_of_gaussian_data,
                 "sample (mean|std)", id="eps term keeps its sigma^2"),
    pytest.param(dict(sigma_missing_factor=True), test_ddim.test_matches_the_reference_exactly_with_eta_1,
                 "first differs", id="sigma without sqrt(1 - abar / abar_next)"),
    pytest.param(dict(sigma_not_squared=True), test_ddim.test_matches_the_reference_exactly_with_eta_1,
                 "first differs", id="sigma, not sigma^2, in the eps term"),
    pytest.param(dict(stops_at_t_0=True), test_ddim.test_matches_the_reference_exactly_with_eta_0, "returned x differs",
                 id="last step to abar_0, not 1"),
    # Caught without the recorded trace, whose random-number order a student's correct sampler need not share:
    pytest.param(dict(ignores_eta=True), test_ddim.test_stochastic_step_adds_the_noise_of_eq_16, "add no noise",
                 id="eta ignored (per step)"),
    pytest.param(dict(noise_without_eta=True), test_ddim.test_deterministic_step_follows_eq_12_without_noise,
                 "adds noise", id="noise at eta = 0 (per step)"),
    pytest.param(dict(clip=False), test_ddim.test_deterministic_step_follows_eq_12_without_noise, "unclipped",
                 id="x0_hat never clipped (per step)"),
    pytest.param(dict(swap_alphas=True), test_ddim.test_deterministic_step_follows_eq_12_without_noise,
                 "is not eq. 12", id="alpha and alpha-bar swapped (per step)"),
    pytest.param(dict(sigma_missing_factor=True), test_ddim.test_stochastic_step_adds_the_noise_of_eq_16,
                 "std|not eq. 12", id="sigma without sqrt(1 - abar / abar_next) (per step)"),
    pytest.param(dict(sigma_not_squared=True), test_ddim.test_stochastic_step_adds_the_noise_of_eq_16,
                 "not eq. 12", id="sigma, not sigma^2, in the eps term (per step)"),
    pytest.param(dict(direction_ignores_sigma=True), test_ddim.test_stochastic_step_adds_the_noise_of_eq_16,
                 "not eq. 12", id="eps term keeps its sigma^2 (per step)"),
    pytest.param(dict(stops_at_t_0=True), test_ddim.test_deterministic_step_follows_eq_12_without_noise,
                 "is not eq. 12", id="last step to abar_0, not 1 (per step)"),
    pytest.param(dict(ascending=True), test_ddim.test_returns_clipped_samples_without_autograd_history, "NaN",
                 id="timesteps from 0 up"),
    pytest.param(dict(no_grad=False), test_ddim.test_returns_clipped_samples_without_autograd_history, "autograd",
                 id="keeps autograd history"),
]


@pytest.mark.parametrize("mistake, graded_test, reason", DDIM_MUTANTS)
def test_ddim_mutant_is_caught(mistake, graded_test, reason):
    with pytest.raises(AssertionError, match=reason):
        graded_test(ddim_sample=partial(ddim, **mistake))


DDIM_TESTS = [test_ddim.test_matches_the_reference_exactly_with_eta_0,
              test_ddim.test_matches_the_reference_exactly_with_eta_1,
              test_ddim.test_deterministic_steps_reproduce_the_mean_and_variance_of_gaussian_data,
              test_ddim.test_stochastic_steps_reproduce_the_mean_and_variance_of_gaussian_data,
              test_ddim.test_deterministic_step_follows_eq_12_without_noise,
              test_ddim.test_stochastic_step_adds_the_noise_of_eq_16,
              test_ddim.test_calls_the_model_on_evenly_spaced_timesteps_from_T_minus_1_to_0,
              test_ddim.test_returns_clipped_samples_without_autograd_history]


def test_unmodified_ddim_mutant_passes_every_ddim_test():
    """The switchboard above with no mistake on is the reference: the mutants differ only by their mistake."""
    for graded_test in DDIM_TESTS:
        graded_test(ddim_sample=ddim)


def test_ddim_noise_drawn_in_another_order_still_passes_the_distribution_test():
    """The distribution test must not punish a correct sampler for its random-number order."""
    def extra_draw(model, schedule, shape, generator=None, num_steps=50, eta=0.0):
        torch.randn(shape, generator=generator)  # one extra draw shifts every later number
        return ddim(model, schedule, shape, generator, num_steps, eta)

    test_ddim.test_stochastic_steps_reproduce_the_mean_and_variance_of_gaussian_data(ddim_sample=extra_draw)
    test_ddim.test_stochastic_step_adds_the_noise_of_eq_16(ddim_sample=extra_draw)
    with pytest.raises(AssertionError):
        test_ddim.test_matches_the_reference_exactly_with_eta_1(ddim_sample=extra_draw)
