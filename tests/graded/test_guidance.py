"""Level 6: class conditioning in src/model.py, guided_sample in src/sampler.py, and a trained class-conditional run."""

from functools import lru_cache

import pytest
import torch

from src.harness.grade.probes import gradients, jittered
from src.harness.loading import REFERENCE, CodeSource
from src.harness.policy import (DDIM_GAUSSIAN_STEPS, GAUSSIAN_MOMENT_TOLERANCE, GUIDED_AGREEMENT,
                                SAMPLER_TRAJECTORY_ATOL, SAMPLER_X_T_ATOL, UNGUIDED_AGREEMENT)
from src.harness.run.config import official_config
from src.harness.run.guidance import guidance_scores
from src.harness.run.runtime import Runtime
from src.harness.run.schedule import NoiseSchedule
from tests.graded.fakes import (ClassGaussianDenoiser, ConditionalRecordingModel, GUIDED_LABELS,
                               trace_guided_sampler)
from tests.graded.recorded import Recording, trace_seed
from tests.graded.runs import command, trained_model

pytestmark = pytest.mark.level6
T, K = 1000, 10  # timesteps, Fashion-MNIST's classes; the null label is K
FAKE_NULL = 3  # the null label of ConditionalRecordingModel, which has three classes
RECORDED_SCALES = (0.0, 1.0, 3.0)  # the guidance scales whose traces are recorded


def _reference_traces(seed: int = 0) -> dict:
    """{str(w): the reference's trace_guided_sampler(guided_sample, w)} for each of RECORDED_SCALES."""
    guided_sample = REFERENCE.module("sampler").guided_sample
    return {str(scale): trace_guided_sampler(guided_sample, scale, seed=seed) for scale in RECORDED_SCALES}


RECORDING = Recording("guidance", _reference_traces, seeded=True)


LEVEL_6_CONTRACT = "add the num_classes argument and forward(x, t, y=None), as src/model.py's docstring says for Level 6"


def conditional(model_class):
    """model_class(1, 28, num_classes=K), with a message for a Level 1 network that takes no labels yet."""
    try:
        return model_class(1, 28, num_classes=K)
    except TypeError as err:
        raise AssertionError(f"DiffusionModel(1, 28, num_classes=10) failed ({err}): {LEVEL_6_CONTRACT}") from None


def _inputs(batch: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 1, 28, 28, generator=g), torch.randint(0, T, (batch,), generator=g)


def _labels(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.long)


# ----------------------------------------------------------------------------------------- the model

@pytest.mark.points(1)
def test_conditional_model_takes_every_label_and_none(model_class):
    model = conditional(model_class).eval()
    x, t = _inputs(11)
    with torch.no_grad():
        for y in (torch.arange(K + 1), None):
            try:
                out = model(x, t, y)
            except TypeError as err:
                raise AssertionError(f"model(x, t, y) failed ({err}): {LEVEL_6_CONTRACT}") from None
            assert tuple(out.shape) == tuple(x.shape) and torch.isfinite(out).all(), (
                f"with y = {'None' if y is None else 'the labels 0 to 10'} the model returned "
                f"{tuple(out.shape)} (finite: {bool(torch.isfinite(out).all())}); return finite noise shaped like x "
                "for every label in [0, num_classes] (num_classes itself is the null label) and for y = None")


@pytest.mark.points(2)
def test_output_depends_on_the_label(model_class):
    model = jittered(conditional(model_class))
    x, t = _inputs(4)
    with torch.no_grad():
        outputs = [model(x, t, torch.full((4,), k)) for k in range(K)]
    same = [k for k in range(1, K) if torch.allclose(outputs[k], outputs[0], atol=1e-6)]
    assert not same, (f"the output for class {same[0]} equals that for class 0: your model ignores y. Embed it "
                      "(nn.Embedding(num_classes + 1, dim)) and add it where the time embedding goes")


@pytest.mark.points(2)
def test_null_label_is_its_own_and_the_default(model_class):
    model = jittered(conditional(model_class))
    x, t = _inputs(4)
    with torch.no_grad():
        null = model(x, t, torch.full((4,), K))
        default = model(x, t, None)
        like_a_class = [k for k in range(K) if torch.allclose(model(x, t, torch.full((4,), k)), null, atol=1e-6)]
    assert not like_a_class, (f"the null label {K} gives the output of class {like_a_class[0]}: it needs an "
                              f"embedding of its own (num_classes + 1 = {K + 1} rows), not a clamp into [0, {K - 1}]")
    assert torch.allclose(default, null, atol=1e-5), (
        f"y = None must mean the null label {K} for every image: replace it with torch.full((B,), num_classes)")


@pytest.mark.points(1)
def test_each_image_sees_only_its_own_label(model_class):
    model = jittered(conditional(model_class))
    x, t = _inputs(4)
    with torch.no_grad():
        before, after = model(x, t, _labels(0, 1, 2, 3)), model(x, t, _labels(0, 7, 2, 3))
    unchanged = [0, 2, 3]
    assert torch.allclose(before[unchanged], after[unchanged], atol=1e-5), (
        "changing image 1's label changed the output for other images: each image's noise prediction may depend "
        "on its own label only (embed y per image, shape (B, dim), no mean over the batch)")
    assert not torch.allclose(before[1], after[1], atol=1e-6), (
        "changing image 1's label did not change its output: condition each image on its own label y[i]")


@pytest.mark.points(1)
def test_gradients_reach_the_label_embedding(model_class):
    x, t = _inputs(6)
    report = gradients(conditional(model_class), x, t, _labels(0, 3, 5, 9, K, K))
    assert report["attached"], "the output is cut off from the parameters (a .detach() or torch.no_grad() in forward?)"
    assert not report["missing"], (f"no gradient reaches {report['missing'][0]}: every layer must take part in "
                                   "forward(x, t, y)")
    assert report["finite"], "non-finite gradient"


# ------------------------------------------------------------------------------------- the sampler

def _check_trace(guided_sample, scale: float) -> None:
    out, calls = trace_guided_sampler(guided_sample, scale, seed=trace_seed())
    expected_out, expected_calls = RECORDING.values()[str(scale)]
    null = [FAKE_NULL] * len(GUIDED_LABELS)
    for i, ((t, y, x), (expected_t, expected_y, expected_x)) in enumerate(zip(calls, expected_calls)):
        assert (t, y) == (expected_t, expected_y), (
            f"model call {i + 1}: you passed t = {t[0]} and y = {y}, the reference t = {expected_t[0]} and y = "
            f"{expected_y}. Each step calls the model twice on DDIM's timesteps: first with the labels "
            f"{list(GUIDED_LABELS)}, then with the null label {null}")
        assert torch.allclose(x, expected_x, atol=SAMPLER_X_T_ATOL if i == 0 else SAMPLER_TRAJECTORY_ATOL), (
            "the starting noise differs from the reference's: draw x = torch.randn(shape, generator=generator, "
            "device=...) first, and nothing else" if i == 0 else
            f"with w = {scale:g}, your x first differs from the reference's at model call {i + 1} (step {i // 2}): "
            + _guided_step_hint(calls[i - 2], calls[i], scale))
    assert len(calls) == len(expected_calls), (
        f"your sampler called the model {len(calls)} times for 10 steps: twice per step, {len(expected_calls)} in all")
    assert torch.allclose(out, expected_out, atol=SAMPLER_TRAJECTORY_ATOL), (
        "every model input matched, but the returned x differs: the last step returns x0_hat, clipped to [-1, 1]")


def _guided_step_hint(before, after, scale: float) -> str:
    """Which mistake turns the step from the conditional call `before` (t, y, x) into the x of `after`, if one of the
    usual ones does: the step is redone from your own x with each."""
    (t, labels, x), (t_next, _, x_next) = before, after
    schedule, model = NoiseSchedule(T), ConditionalRecordingModel(T)
    step = torch.tensor(t)
    with torch.no_grad():
        eps_cond, eps_uncond = model(x, step, torch.tensor(labels)), model(x, step, torch.full_like(step, FAKE_NULL))
    abar, abar_next = schedule.alphas_cumprod[t[0]], schedule.alphas_cumprod[t_next[0]]

    def step_with(eps, clip=True, implied_eps=True):
        x0 = (x - (1 - abar).sqrt() * eps) / abar.sqrt()
        x0 = x0.clamp(-1, 1) if clip else x0
        eps = (x - abar.sqrt() * x0) / (1 - abar).sqrt() if implied_eps else eps
        return abar_next.sqrt() * x0 + (1 - abar_next).sqrt() * eps

    guided = eps_uncond + scale * (eps_cond - eps_uncond)
    mistakes = [
        (step_with(eps_cond + scale * (eps_cond - eps_uncond)),
         "your w is one higher than the kata's: here w = 1 is the plain conditional model, so eps = eps_uncond + "
         "w * (eps_cond - eps_uncond) (Ho & Salimans write it with 1 + w)"),
        (step_with(eps_cond + scale * (eps_uncond - eps_cond)),
         "eps_cond and eps_uncond trade places: eps = eps_uncond + w * (eps_cond - eps_uncond)"),
        (step_with(guided, clip=False), "clip x0_hat to [-1, 1] before the update"),
        (step_with(guided, implied_eps=False),
         "after clipping x0_hat, use the noise it implies, eps_hat = (x - sqrt(abar) * x0_hat) / sqrt(1 - abar), "
         "in the update, not the guided eps"),
    ]
    return next((why for candidate, why in mistakes if torch.allclose(x_next, candidate, atol=SAMPLER_TRAJECTORY_ATOL)),
                "check eps = eps_uncond + w * (eps_cond - eps_uncond), then x0_hat (clipped), the eps_hat it "
                "implies, and x = sqrt(abar_next) * x0_hat + sqrt(1 - abar_next) * eps_hat")


@pytest.mark.points(2)
@pytest.mark.parametrize("scale", RECORDED_SCALES)
def test_matches_the_reference_exactly(guided_sample, scale):
    _check_trace(guided_sample, scale)


@pytest.mark.points(2)
def test_w_0_draws_the_unconditional_model_and_w_1_the_conditional(guided_sample):
    """Independent of the random-number order: with exact denoisers of Gaussian data, each scale's samples follow
    the distribution it stands for."""
    means, null_mean, std = [-0.4, 0.0, 0.4], 0.2, 0.3
    schedule = NoiseSchedule(T)
    model = ClassGaussianDenoiser(schedule, means, null_mean, std)
    labels = torch.arange(3).repeat_interleave(128)
    for scale, wanted in ((0.0, "the null label's"), (1.0, "the class's own")):
        out = guided_sample(model, schedule, (len(labels), 1, 8, 8), labels, len(means), guidance_scale=scale,
                            generator=torch.Generator().manual_seed(0), num_steps=DDIM_GAUSSIAN_STEPS)
        for k, mean in enumerate(means):
            target = null_mean if scale == 0 else mean
            got = out[labels == k]
            assert abs(got.mean().item() - target) < GAUSSIAN_MOMENT_TOLERANCE, (
                f"with w = {scale:g}, the samples of class {k} have mean {got.mean().item():.3f}; they must follow "
                f"{wanted} distribution (mean {target}): eps = eps_uncond + w * (eps_cond - eps_uncond)")
            assert abs(got.std().item() - std) < GAUSSIAN_MOMENT_TOLERANCE, (
                f"with w = {scale:g}, the samples of class {k} have std {got.std().item():.3f}, the data {std}: "
                "check the step: x0_hat (clipped), eps_hat, then x")


@pytest.mark.points(1)
def test_returns_clipped_samples_without_autograd_history(guided_sample):
    out, _ = trace_guided_sampler(guided_sample, 7.0, num_steps=3)
    assert out.shape == (4, 1, 6, 6) and out.dtype == torch.float32, f"returned {tuple(out.shape)}, {out.dtype}"
    assert out.min() >= -1 and out.max() <= 1, "clip the samples to [-1, 1] (torch.clamp)"
    assert not out.requires_grad and out.grad_fn is None, (
        "the samples carry autograd history: decorate guided_sample with @torch.no_grad()")


# ------------------------------------------------------------------------------------- a trained run

@lru_cache(maxsize=2)
def run_agreement(model_class, guided_sample, source: CodeSource) -> dict[float, float]:
    """{w: class agreement} of the trained class-conditional run, drawn with `guided_sample` at w = 0 and at the
    default scale."""
    model, run_cfg = trained_model("fashion_mnist_cfg", model_class, source)
    official = official_config("fashion_mnist_cfg")
    autocast = Runtime.choose("cpu", official.training.precision).autocast
    scores = guidance_scores(guided_sample, model, NoiseSchedule.from_config(run_cfg.diffusion), (1, 28, 28), K,
                             "fashion_mnist", autocast, scales=(0.0, official.conditioning.guidance_scale))
    return {scale: entry["agreement"] for scale, entry in scores.items()}


def _advice(source: CodeSource) -> str:
    return (f" (if the model and sampler tests above pass, improve the network and retrain: "
            f"`{command('fashion_mnist_cfg', source)} --overwrite`)")


@pytest.mark.points(4)
@pytest.mark.slow  # evaluates a trained run
@pytest.mark.timeout(3600)
def test_trained_run_shows_the_class_asked_for(model_class, guided_sample, source):
    scale = official_config("fashion_mnist_cfg").conditioning.guidance_scale
    agreement = run_agreement(model_class, guided_sample, source)[scale]
    assert agreement >= GUIDED_AGREEMENT, (
        f"at w = {scale:g}, the classifier sees the class asked for in {agreement:.0%} of your samples; at least "
        f"{GUIDED_AGREEMENT:.0%} is needed" + _advice(source))


@pytest.mark.points(2)
@pytest.mark.slow  # evaluates a trained run
@pytest.mark.timeout(3600)
def test_trained_run_draws_no_class_at_w_0(model_class, guided_sample, source):
    """With the test above, the agreement rises with w: a sampler that ignores w, or never asks for the null label,
    draws classes at w = 0 too."""
    agreement = run_agreement(model_class, guided_sample, source)[0.0]
    assert agreement <= UNGUIDED_AGREEMENT, (
        f"at w = 0 {agreement:.0%} of the samples show the class asked for, more than {UNGUIDED_AGREEMENT:.0%}: w = 0 "
        "must be the unconditional model alone (the null label), which knows no class" + _advice(source))
