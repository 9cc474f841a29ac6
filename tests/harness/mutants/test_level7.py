"""Level 7: a flow-matching pair or Euler sampler with one mistake switched on fails a named graded test."""

from functools import partial

import pytest
import torch

from calibration.points import trained_run
from src.harness.loading import REFERENCE
from src.harness.run.schedule import NoiseSchedule
from src.solution.point_model import PointModel as ReferencePoint
from tests.graded import test_flow


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
    from src.harness.run.objective import FlowMatching

    objective = FlowMatching(NoiseSchedule(1000), source=REFERENCE)
    objective.flow_matching_pair = partial(flow_pair, swap_ends=True)
    torch.manual_seed(0)
    trained = trained_run("moons_flow", ReferencePoint(2), objective=objective)
    monkeypatch.setattr(test_flow, "trained_model", lambda config, model_class, source: trained)
    with pytest.raises(AssertionError, match="Chamfer distance"):
        test_flow.test_moons_flow_samples_have_the_datas_shape(point_model_class=ReferencePoint, source=REFERENCE)
