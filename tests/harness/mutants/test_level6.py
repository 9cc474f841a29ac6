"""Level 6: broken class-conditional models and guided samplers each fail a named graded test."""

from functools import partial

import pytest
import torch

from src.solution.model import DiffusionModel as Reference
from tests.graded import test_guidance
from tests.harness.helpers import submission
from tests.harness.mutants import caught, small


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
    submitted = submission("sampler")
    for graded_test in [*GUIDED_TRACE_AT.values(),
                        test_guidance.test_w_0_draws_the_unconditional_model_and_w_1_the_conditional,
                        test_guidance.test_returns_clipped_samples_without_autograd_history]:
        graded_test(guided_sample=submitted.guided_sample)
