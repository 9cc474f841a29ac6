"""Tests of the graded tests: each deliberately broken implementation (a mutant) fails a named graded test.

Graded test functions take the code under test as plain arguments, so they are called here directly
with each mutant in place of the student's code.
"""

from functools import partial

import pytest
import torch

from calibration.points import trained_run
from src.harness.schedule import NoiseSchedule
from src.solution.model import DiffusionModel as Reference
from src.solution.point_model import PointModel as ReferencePoint
from tests.graded import test_ddim, test_flow, test_guidance, test_model, test_points, test_sampler, test_training

SMALL = dict(block_out_channels=(16, 32), norm_num_groups=8)  # fast stand-ins for a student's model


def small(cls):
    return partial(cls, **SMALL)


# ---------------------------------------------------------------------------------------------- models

class IgnoresTime(Reference):
    def forward(self, x, t):
        return super().forward(x, torch.zeros_like(t))


class ReturnsItsInput(Reference):
    def forward(self, x, t):
        return x


class ReturnsZeros(Reference):
    def forward(self, x, t):
        return super().forward(x, t) * 0


class WrongShape(Reference):
    def forward(self, x, t):
        return super().forward(x, t)[..., 1:, 1:]


class EmitsNaN(Reference):
    def forward(self, x, t):
        return super().forward(x, t) * float("nan")


class DetachesItsOutput(Reference):
    def forward(self, x, t):
        return super().forward(x, t).detach()


class ReturnsFloat64(Reference):
    def forward(self, x, t):
        return super().forward(x, t).double()


class TooManyParameters(Reference):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.unused = torch.nn.Linear(4000, 4000)


class TooFewTimesteps(Reference):
    """An embedding table one row short: t = T-1 is out of range."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.table = torch.nn.Embedding(999, 1)

    def forward(self, x, t):
        return super().forward(x, t) + self.table(t).view(-1, 1, 1, 1)


class PredictsAConstant(torch.nn.Module):
    def __init__(self, in_channels, image_size):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.zeros(in_channels, 1, 1))
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, x, t):
        return self.bias.expand_as(x) + 1e-3 * self.scale * torch.cos(t.float()).view(-1, 1, 1, 1) * x


class BreaksInEvalMode(Reference):
    def forward(self, x, t):
        if not self.training:
            raise RuntimeError("only trains")
        return super().forward(x, t)


def caught(mutant, graded_test, reason: str, **params):
    """A row of MODEL_MUTANTS: `graded_test` (given `params`) fails on `mutant`, its message matching `reason`."""
    return pytest.param(mutant, graded_test, params, reason, id=f"{mutant.__name__}-{graded_test.__name__}")


MODEL_MUTANTS = [
    caught(IgnoresTime, test_model.test_output_depends_on_t, "ignores the timestep"),
    caught(ReturnsItsInput, test_model.test_output_depends_on_t, "ignores the timestep"),
    caught(ReturnsZeros, test_model.test_output_depends_on_x, "ignores x"),
    caught(WrongShape, test_model.test_output_shape_equals_input_shape, "returned", dataset="cifar10", batch=3),
    caught(EmitsNaN, test_model.test_output_is_finite, "NaN or inf"),
    caught(DetachesItsOutput, test_model.test_gradients_reach_the_parameters, "no gradient reaches"),
    caught(ReturnsFloat64, test_model.test_output_is_float32, "float64"),
    caught(TooManyParameters, test_model.test_parameter_budget, "budget", dataset="fashion_mnist"),
    caught(TooFewTimesteps, test_model.test_first_and_last_timestep_are_accepted, "index out of range"),
    caught(BreaksInEvalMode, test_model.test_works_in_train_and_eval_mode_and_without_grad, "only trains"),
]


@pytest.mark.parametrize("mutant, graded_test, params, reason", MODEL_MUTANTS)
def test_model_mutant_is_caught(mutant, graded_test, params, reason):
    with pytest.raises(Exception, match=reason):
        graded_test(model_class=small(mutant), **params)


def test_a_model_that_does_not_learn_fails_the_training_test():
    with pytest.raises(AssertionError, match="should fall below"):
        test_training.test_loss_decreases(PredictsAConstant)


# -------------------------------------------------------------------------------------------- samplers

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
    pytest.param(dict(sqrt_coefficient=False), test_sampler.test_reproduces_the_mean_and_variance_of_gaussian_data,
                 "sample (mean|std)", id="missing sqrt"),
    pytest.param(dict(swap_alphas=True), test_sampler.test_matches_the_reference_sampler_exactly, "first differs",
                 id="alpha and alpha-bar swapped"),
    pytest.param(dict(noise_at_zero=True), test_sampler.test_matches_the_reference_sampler_exactly,
                 "returned x_0 differs", id="noise at the last step"),
    pytest.param(dict(upward=True), test_sampler.test_calls_the_model_once_per_step_from_T_minus_1_down_to_0,
                 "must run T-1", id="t runs upward"),
    pytest.param(dict(off_by_one=True), test_sampler.test_matches_the_reference_sampler_exactly, "you passed t",
                 id="off by one in t"),
    pytest.param(dict(posterior_variance=True), test_sampler.test_matches_the_reference_sampler_exactly,
                 "first differs", id="posterior variance"),
    pytest.param(dict(sigma_is_beta=True), test_sampler.test_reproduces_the_mean_and_variance_of_gaussian_data,
                 "sample std", id="sigma = beta, not sqrt(beta)"),
    pytest.param(dict(clip=False), test_sampler.test_output_shape_range_and_device, "clip", id="never clips"),
    pytest.param(dict(no_grad=False), test_sampler.test_returns_no_autograd_history, "autograd",
                 id="keeps autograd history"),
    pytest.param(dict(skip_model=True), test_sampler.test_calls_the_model_once_per_step_from_T_minus_1_down_to_0,
                 "called 0 times", id="never calls the model"),
]


@pytest.mark.parametrize("mistake, graded_test, reason", SAMPLER_MUTANTS)
def test_sampler_mutant_is_caught(mistake, graded_test, reason):
    with pytest.raises(AssertionError, match=reason):
        graded_test(sample=partial(ddpm, **mistake))


def test_unmodified_mutant_sampler_passes_every_sampler_test():
    """The switchboard above with no mistake on is the reference: the mutants differ only by their mistake."""
    for graded_test in [test_sampler.test_matches_the_reference_sampler_exactly,
                        test_sampler.test_reproduces_the_mean_and_variance_of_gaussian_data,
                        test_sampler.test_output_shape_range_and_device, test_sampler.test_returns_no_autograd_history,
                        test_sampler.test_calls_the_model_once_per_step_from_T_minus_1_down_to_0]:
        graded_test(sample=ddpm)


def test_noise_drawn_in_another_order_still_passes_the_distribution_test():
    """The distribution test must not punish a correct sampler for its random-number order."""
    def reversed_draws(model, schedule, shape, generator=None):
        torch.randn(shape, generator=generator)  # one extra draw shifts every later number
        return ddpm(model, schedule, shape, generator)

    test_sampler.test_reproduces_the_mean_and_variance_of_gaussian_data(sample=reversed_draws)
    with pytest.raises(AssertionError):
        test_sampler.test_matches_the_reference_sampler_exactly(sample=reversed_draws)


# ------------------------------------------------------------------------------------ level 0: point models

class PointIgnoresTime(ReferencePoint):
    def forward(self, x, t):
        return super().forward(x, torch.zeros_like(t))


class PointIgnoresX(ReferencePoint):
    def forward(self, x, t):
        return super().forward(torch.zeros_like(x), t)


class PointNormalisesOverTheBatch(ReferencePoint):
    """Standardises the points with the batch's statistics, as a BatchNorm in training mode does."""

    def forward(self, x, t):
        return super().forward((x - x.mean(0)) / (x.std(0) + 1e-5) if len(x) > 1 else x, t)


class PointReturnsOneNumber(ReferencePoint):
    def forward(self, x, t):
        return super().forward(x, t).sum(dim=1, keepdim=True)


class PointReturnsFloat64(ReferencePoint):
    def forward(self, x, t):
        return super().forward(x, t).double()


class PointEmbedsTooFewTimesteps(ReferencePoint):
    """A learned embedding table one row short: t = T-1 is out of range."""

    def __init__(self, dim):
        super().__init__(dim)
        self.table = torch.nn.Embedding(999, dim)

    def forward(self, x, t):
        return super().forward(x, t) + self.table(t)


class PointDetachesItsOutput(ReferencePoint):
    def forward(self, x, t):
        return super().forward(x, t).detach()


class PointHasAnUnusedLayer(ReferencePoint):
    def __init__(self, dim):
        super().__init__(dim)
        self.forgotten = torch.nn.Linear(128, 128)


class PointIsLinear(torch.nn.Module):
    """An MLP with its activations forgotten: it can only learn a Gaussian."""

    def __init__(self, dim):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(dim + 1, 128), torch.nn.Linear(128, dim))

    def forward(self, x, t):
        return self.net(torch.cat([x, t.float()[:, None] / 1000], dim=1))


POINT_MUTANTS = [
    caught(PointIgnoresTime, test_points.test_output_depends_on_t, "ignores the timestep"),
    caught(PointIgnoresX, test_points.test_output_depends_on_x, "ignores x"),
    caught(PointNormalisesOverTheBatch, test_points.test_each_point_is_denoised_on_its_own, "other points"),
    caught(PointReturnsOneNumber, test_points.test_output_is_float32_shaped_like_x, "shaped like x", batch=7),
    caught(PointReturnsFloat64, test_points.test_output_is_float32_shaped_like_x, "float64", batch=1),
    caught(PointEmbedsTooFewTimesteps, test_points.test_output_is_finite_at_the_first_and_last_timestep,
           "index out of range"),
    caught(PointDetachesItsOutput, test_points.test_gradients_reach_the_parameters, "no gradient reaches"),
    caught(PointHasAnUnusedLayer, test_points.test_gradients_reach_the_parameters, "forgotten"),
    caught(PointIsLinear, test_points.test_output_is_not_affine_in_x, "affine map of x"),
]


@pytest.mark.parametrize("mutant, graded_test, params, reason", POINT_MUTANTS)
def test_point_model_mutant_is_caught(mutant, graded_test, params, reason):
    with pytest.raises(Exception, match=reason):
        graded_test(point_model_class=mutant, **params)


def test_a_linear_point_model_fails_level0(monkeypatch):
    """Trained at the official budget of configs/moons.yaml (seconds), its samples are a cloud, not the moons."""
    torch.manual_seed(0)
    trained = trained_run("moons", PointIsLinear(2))
    monkeypatch.setattr(test_points, "trained_model", lambda config, model_class, solution: trained)
    with pytest.raises(AssertionError, match="Chamfer distance"):
        test_points.test_moons_samples_have_the_datas_shape(point_model_class=PointIsLinear, solution=False)


# ------------------------------------------------------------------------------------ level 7: flow matching

def flow_pair(x0, noise, t, T, *, swap_ends=False, flip_velocity=False, unscaled_t=False, off_by_one=False,
              noise_target=False, curved_path=False, float64=False):
    """The reference flow_matching_pair with one optional mistake switched on."""
    s = t.double() if unscaled_t else (t.double() + (0 if off_by_one else 1)) / T
    s = s.view(-1, *[1] * (x0.dim() - 1)).to(torch.float64 if float64 else torch.float32)
    if swap_ends:
        x_s = s * x0 + (1 - s) * noise
    elif curved_path:  # the variance-preserving path of DDPM
        x_s = (1 - s).sqrt() * x0 + s.sqrt() * noise
    else:
        x_s = (1 - s) * x0 + s * noise
    v = noise if noise_target else noise - x0
    return x_s, -v if flip_velocity else v


FLOW_PAIR_MUTANTS = [  # (the mistake switched on in flow_pair, the graded test that catches it, its message)
    pytest.param(dict(swap_ends=True), "x_s differs", id="interpolation ends swapped"),
    pytest.param(dict(flip_velocity=True), "the velocity is not", id="velocity sign flipped"),
    pytest.param(dict(unscaled_t=True), "x_s differs", id="t not scaled to s"),
    pytest.param(dict(off_by_one=True), "x_s differs", id="s = t / T"),
    pytest.param(dict(noise_target=True), "the velocity is not", id="DDPM's target, the noise"),
    pytest.param(dict(curved_path=True), "x_s differs", id="DDPM's curved path"),
    pytest.param(dict(float64=True), "float32", id="returns float64"),
]


@pytest.mark.parametrize("mistake, reason", FLOW_PAIR_MUTANTS)
@pytest.mark.parametrize("graded_test", [test_flow.test_pair_matches_the_reference_on_images,
                                         test_flow.test_pair_matches_the_reference_on_points])
def test_flow_pair_mutant_is_caught(graded_test, mistake, reason):
    with pytest.raises(AssertionError, match=reason):
        graded_test(flow_matching_pair=partial(flow_pair, **mistake))


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


def euler(model, schedule, shape, generator=None, num_steps=50, *, upward=False, skip_last=False, t_is_s=False,
          t_not_shifted=False, clip=True, no_grad=True, stochastic=False, step_of_T=False, starts_at_zero=False,
          step_of_N_minus_1=False):
    """The reference Euler sampler with one optional mistake switched on."""
    with torch.no_grad() if no_grad else torch.enable_grad():
        device, T = schedule.betas.device, schedule.num_timesteps
        x = torch.zeros(shape) if starts_at_zero else torch.randn(shape, generator=generator, device=device)
        for i in range(num_steps - 1 if skip_last else num_steps):
            s = (num_steps - i) / num_steps
            t = s if t_is_s else round(T * s) - (0 if t_not_shifted else 1)
            v = model(x, torch.full((shape[0],), t, device=device))
            x = x + (1 if upward else -1) * v / (T if step_of_T else num_steps - 1 if step_of_N_minus_1 else num_steps)
            if stochastic:
                x = x + 0.01 * torch.randn(shape, generator=generator, device=device)
        return x.clamp(-1, 1) if clip else x


EULER_MUTANTS = [  # (the mistake switched on in euler, the graded test that catches it, its message)
    pytest.param(dict(upward=True), test_flow.test_euler_matches_the_reference_sampler_exactly, "first differs",
                 id="steps towards the noise"),
    pytest.param(dict(upward=True), test_flow.test_euler_reproduces_the_mean_and_variance_of_gaussian_data,
                 "sample (mean|std)", id="steps towards the noise (Gaussian)"),
    pytest.param(dict(skip_last=True), test_flow.test_euler_matches_the_reference_sampler_exactly, "once per step",
                 id="a step skipped"),
    pytest.param(dict(t_is_s=True), test_flow.test_euler_matches_the_reference_sampler_exactly, "you passed t",
                 id="the model gets s, not t"),
    pytest.param(dict(t_not_shifted=True), test_flow.test_euler_calls_the_model_once_per_step_from_T_minus_1_down,
                 "must run 999", id="t = T * s, one too high"),
    pytest.param(dict(step_of_T=True), test_flow.test_euler_reproduces_the_mean_and_variance_of_gaussian_data,
                 "sample (mean|std)", id="step size 1 / T"),
    pytest.param(dict(stochastic=True), test_flow.test_euler_matches_the_reference_sampler_exactly, "first differs",
                 id="adds noise at each step"),
    pytest.param(dict(starts_at_zero=True), test_flow.test_euler_matches_the_reference_sampler_exactly,
                 "starting noise", id="starts from zeros"),
    pytest.param(dict(clip=False), test_flow.test_euler_returns_clipped_samples_without_autograd_history, "clip",
                 id="never clips"),
    pytest.param(dict(no_grad=False), test_flow.test_euler_returns_clipped_samples_without_autograd_history,
                 "autograd", id="keeps autograd history"),
    # Caught without the recorded trace:
    pytest.param(dict(step_of_N_minus_1=True), test_flow.test_euler_steps_on_a_linear_field,
                 "add up to 1", id="steps of 1 / (N - 1) (linear field)"),
    pytest.param(dict(skip_last=True), test_flow.test_euler_steps_on_a_linear_field,
                 "one step fewer", id="a step skipped (linear field)"),
    pytest.param(dict(upward=True), test_flow.test_euler_steps_on_a_linear_field,
                 "towards the noise", id="steps towards the noise (linear field)"),
    pytest.param(dict(step_of_T=True), test_flow.test_euler_steps_on_a_linear_field,
                 "1 / N", id="step size 1 / T (linear field)"),
]


@pytest.mark.parametrize("mistake, graded_test, reason", EULER_MUTANTS)
def test_euler_mutant_is_caught(mistake, graded_test, reason):
    with pytest.raises(AssertionError, match=reason):
        graded_test(euler_sample=partial(euler, **mistake))


def test_unmodified_flow_mutants_pass_every_flow_test():
    """The switchboards above with no mistake on are the reference: the mutants differ only by their mistake."""
    test_flow.test_pair_matches_the_reference_on_images(flow_matching_pair=flow_pair)
    test_flow.test_pair_matches_the_reference_on_points(flow_matching_pair=flow_pair)
    for graded_test in [test_flow.test_euler_matches_the_reference_sampler_exactly,
                        test_flow.test_euler_reproduces_the_mean_and_variance_of_gaussian_data,
                        test_flow.test_euler_steps_on_a_linear_field,
                        test_flow.test_euler_calls_the_model_once_per_step_from_T_minus_1_down,
                        test_flow.test_euler_returns_clipped_samples_without_autograd_history]:
        graded_test(euler_sample=euler)


@pytest.mark.slow
def test_a_flow_run_trained_with_swapped_ends_fails_level7(monkeypatch):
    """The reference point model trained at the official budget of configs/moons_flow.yaml on a pair whose ends are
    swapped (it learns to carry the data to the noise): the Heun sampler's points miss the moons."""
    from src.harness.objective import FlowMatching

    objective = FlowMatching(NoiseSchedule(1000), solution=True)
    objective.flow_matching_pair = partial(flow_pair, swap_ends=True)
    torch.manual_seed(0)
    trained = trained_run("moons_flow", ReferencePoint(2), objective=objective)
    monkeypatch.setattr(test_flow, "trained_model", lambda config, model_class, solution: trained)
    with pytest.raises(AssertionError, match="Chamfer distance"):
        test_flow.test_moons_flow_samples_have_the_datas_shape(point_model_class=ReferencePoint, solution=True)


# ---------------------------------------------------------------------------- level 6: conditioning

class IgnoresTheLabel(Reference):
    def forward(self, x, t, y=None):
        return super().forward(x, t, None)


class ClampsTheNullLabel(Reference):
    """An embedding of the K classes only: the null label is clamped into the last class."""

    def forward(self, x, t, y=None):
        return super().forward(x, t, None if y is None else y.clamp(max=self.num_classes - 1))


class NoneIsClassZero(Reference):
    def forward(self, x, t, y=None):
        return super().forward(x, t, torch.zeros(len(x), dtype=torch.long) if y is None else y)


class OneLabelForTheBatch(Reference):
    def forward(self, x, t, y=None):
        return super().forward(x, t, None if y is None else y[:1].expand(len(y)))


class TakesNoLabels(Reference):
    """A Level 1 network that was never given Level 6's num_classes."""

    def __init__(self, in_channels, image_size, **architecture):
        super().__init__(in_channels, image_size, **architecture)

    def forward(self, x, t):
        return super().forward(x, t)


CONDITIONAL_MUTANTS = [
    caught(IgnoresTheLabel, test_guidance.test_output_depends_on_the_label, "ignores y"),
    caught(ClampsTheNullLabel, test_guidance.test_null_label_is_its_own_and_the_default, "embedding of its own"),
    caught(NoneIsClassZero, test_guidance.test_null_label_is_its_own_and_the_default, "y = None must mean"),
    caught(OneLabelForTheBatch, test_guidance.test_each_image_sees_only_its_own_label, "its own label"),
    caught(TakesNoLabels, test_guidance.test_conditional_model_takes_every_label_and_none, "add the num_classes"),
]


@pytest.mark.parametrize("mutant, graded_test, params, reason", CONDITIONAL_MUTANTS)
def test_conditional_model_mutant_is_caught(mutant, graded_test, params, reason):
    with pytest.raises(AssertionError, match=reason):
        graded_test(model_class=small(mutant), **params)


def guided(model, schedule, shape, labels, null_label, guidance_scale=3.0, generator=None, num_steps=50, *,
           sign_flipped=False, w_on_conditional=False, null_never_used=False, unconditional_first=False,
           paper_convention=False, ignores_w=False, stochastic=False, clip=True, no_grad=True, every_timestep=False,
           keeps_eps=False):
    """The reference guided sampler, written out, with one optional mistake switched on."""
    with torch.no_grad() if no_grad else torch.enable_grad():
        device, T = schedule.betas.device, schedule.num_timesteps
        w = 1.0 if ignores_w else guidance_scale
        null = labels if null_never_used else torch.full_like(labels, null_label)
        n = T if every_timestep else num_steps
        timesteps = torch.linspace(T - 1, 0, n).round().long().tolist()
        x = torch.randn(shape, generator=generator, device=device)
        for i, t in enumerate(timesteps):
            step = torch.full((shape[0],), t, dtype=torch.long, device=device)
            if unconditional_first:
                eps_u, eps_c = model(x, step, null), model(x, step, labels)
            else:
                eps_c, eps_u = model(x, step, labels), model(x, step, null)
            if sign_flipped:
                eps = eps_c + w * (eps_u - eps_c)
            elif w_on_conditional:
                eps = eps_c + w * (eps_c - eps_u)
            elif paper_convention:  # Ho & Salimans' (1 + w) eps_c - w eps_u, with the kata's w
                eps = (1 + w) * eps_c - w * eps_u
            else:
                eps = eps_u + w * (eps_c - eps_u)
            abar = schedule.alphas_cumprod[t]
            last = i + 1 == len(timesteps)
            abar_next = torch.ones(()) if last else schedule.alphas_cumprod[timesteps[i + 1]]
            x0 = (x - (1 - abar).sqrt() * eps) / abar.sqrt()
            x0 = x0.clamp(-1, 1) if clip else x0
            if not keeps_eps:
                eps = (x - abar.sqrt() * x0) / (1 - abar).sqrt()
            sigma = ((1 - abar_next) / (1 - abar)).sqrt() * (1 - abar / abar_next).sqrt() if stochastic else 0.0
            x = abar_next.sqrt() * x0 + (1 - abar_next - sigma ** 2).sqrt() * eps
            if stochastic and not last:
                x = x + sigma * torch.randn(shape, generator=generator, device=device)
        return x.clamp(-1, 1) if clip else x


GUIDED_TRACE_AT = {scale: partial(test_guidance.test_matches_the_reference_exactly, scale=scale)
                   for scale in (0.0, 1.0, 3.0)}
GUIDED_MUTANTS = [  # (the mistake switched on in guided, the graded test that catches it, its message)
    pytest.param(dict(sign_flipped=True), GUIDED_TRACE_AT[3.0], "trade places", id="guidance sign flipped"),
    pytest.param(dict(sign_flipped=True), test_guidance.test_w_0_draws_the_unconditional_model_and_w_1_the_conditional,
                 "mean", id="guidance sign flipped (Gaussian)"),
    pytest.param(dict(w_on_conditional=True), GUIDED_TRACE_AT[0.0], "one higher", id="w applied to the wrong term"),
    pytest.param(dict(w_on_conditional=True),
                 test_guidance.test_w_0_draws_the_unconditional_model_and_w_1_the_conditional, "null label's",
                 id="w applied to the wrong term (Gaussian)"),
    pytest.param(dict(null_never_used=True), GUIDED_TRACE_AT[3.0], "then with the null label",
                 id="null label never used"),
    pytest.param(dict(unconditional_first=True), GUIDED_TRACE_AT[3.0], "first with the labels",
                 id="unconditional call first"),
    pytest.param(dict(paper_convention=True), GUIDED_TRACE_AT[1.0], "one higher", id="the paper's 1 + w as w"),
    pytest.param(dict(ignores_w=True), GUIDED_TRACE_AT[3.0], "first differs", id="w ignored"),
    pytest.param(dict(ignores_w=True), GUIDED_TRACE_AT[0.0], "first differs", id="w ignored (w = 0)"),
    pytest.param(dict(stochastic=True), GUIDED_TRACE_AT[3.0], "first differs", id="DDIM with eta = 1"),
    pytest.param(dict(clip=False), test_guidance.test_returns_clipped_samples_without_autograd_history, "clip",
                 id="samples never clipped"),
    pytest.param(dict(no_grad=False), test_guidance.test_returns_clipped_samples_without_autograd_history, "autograd",
                 id="keeps autograd history"),
    pytest.param(dict(every_timestep=True), GUIDED_TRACE_AT[3.0], "you passed t", id="all T timesteps"),
    pytest.param(dict(keeps_eps=True), GUIDED_TRACE_AT[3.0], "the noise it implies", id="ddim_sample's step: eps kept"),
    pytest.param(dict(clip=False), GUIDED_TRACE_AT[3.0], "clip x0_hat", id="x0_hat never clipped"),
]


@pytest.mark.parametrize("mistake, graded_test, reason", GUIDED_MUTANTS)
def test_guided_mutant_is_caught(mistake, graded_test, reason):
    with pytest.raises(AssertionError, match=reason):
        graded_test(guided_sample=partial(guided, **mistake))


def test_unmodified_guided_mutant_passes_every_guided_test():
    for graded_test in [*GUIDED_TRACE_AT.values(),
                        test_guidance.test_w_0_draws_the_unconditional_model_and_w_1_the_conditional,
                        test_guidance.test_returns_clipped_samples_without_autograd_history]:
        graded_test(guided_sample=guided)


def test_a_guided_sampler_written_unlike_the_reference_passes_every_guided_test():
    """tests/harness/submissions/sampler.py: w as (1 - w) eps_uncond + w eps_cond, eps_hat inlined."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent / "submissions" / "sampler.py"
    spec = importlib.util.spec_from_file_location("submitted_sampler", path)
    submitted = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(submitted)
    for graded_test in [*GUIDED_TRACE_AT.values(),
                        test_guidance.test_w_0_draws_the_unconditional_model_and_w_1_the_conditional,
                        test_guidance.test_returns_clipped_samples_without_autograd_history]:
        graded_test(guided_sample=submitted.guided_sample)
