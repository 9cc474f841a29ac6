"""Level 8: broken autoencoders, samples, losses and scales each fail a named graded test, with a message that names
the mistake."""

from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from src.harness.grade.latent import network_contract
from src.harness.loading import REFERENCE
from tests.graded import test_autoencoder as graded
from tests.harness.helpers import submission


def sampled(mean, logvar, generator=None, *, returns_mean=False, variance_as_std=False, global_noise=False,
            two_draws=False, mean_detached=False, std_detached=False):
    """The reference's sample_latent, written out, with one optional mistake switched on."""
    draw = partial(torch.randn, mean.shape, device=mean.device, dtype=mean.dtype)
    noise = draw() if global_noise else draw(generator=generator)
    if two_draws:
        noise = draw(generator=generator)
    std = logvar.exp() if variance_as_std else (0.5 * logvar).exp()
    if returns_mean:
        return mean
    return (mean.detach() if mean_detached else mean) + (std.detach() if std_detached else std) * noise


def loss(autoencoder, x, kl_weight, generator=None, *, kl_sign_flipped=False, no_kl=False, decodes_mean=False,
         pixel_mean=False, latent_mean=False, batch_sum=False, no_half=False, logvar_as_variance=False,
         z_detached=False):
    """The reference's autoencoder_loss, written out, with one optional mistake switched on."""
    mean, logvar = autoencoder.encode(x)
    z = mean if decodes_mean else sampled(mean, logvar, generator)
    reconstruction = (autoencoder.decode(z.detach() if z_detached else z) - x).pow(2).flatten(1)
    reconstruction = reconstruction.mean(1) if pixel_mean else reconstruction.sum(1)
    variance = logvar if logvar_as_variance else logvar.exp()
    kl = (1.0 if no_half else 0.5) * (mean.pow(2) + variance - 1 - logvar).flatten(1)
    kl = kl.mean(1) if latent_mean else kl.sum(1)
    weight = 0.0 if no_kl else -kl_weight if kl_sign_flipped else kl_weight
    per_image = reconstruction + weight * kl
    return per_image.sum() if batch_sum else per_image.mean()


def scale_of(latents, *, forgotten=False, rms=False, std_not_inverse=False):
    """The reference's latent_scale, written out, with one optional mistake switched on."""
    if forgotten:
        return 1.0
    spread = latents.pow(2).mean().sqrt() if rms else latents.std()
    return spread.item() if std_not_inverse else 1.0 / spread.item()


Reference = REFERENCE.module("autoencoder").Autoencoder


class NoTanh(Reference):
    def decode(self, z):
        return self.decoder(z)


class SamplingEncoder(Reference):
    def encode(self, x):
        mean, logvar = super().encode(x)
        return mean + (0.5 * logvar).exp() * torch.randn_like(mean), logvar


class OneTensorEncoder(Reference):
    def encode(self, x):
        return self.encoder(x)


class HalfSizeLatents(Reference):
    def encode(self, x):
        mean, logvar = super().encode(F.interpolate(x, scale_factor=2))
        return mean, logvar

    def decode(self, z):
        return F.avg_pool2d(super().decode(z), 2)


class UnusedLayer(Reference):
    def __init__(self, in_channels=1, latent_channels=4):
        super().__init__(in_channels, latent_channels)
        self.refine = nn.Conv2d(in_channels, in_channels, 3, padding=1)  # built, never called


NETWORK_MUTANTS = [  # (the broken Autoencoder, the graded test that catches it, its message)
    pytest.param(NoTanh, graded.test_decode_stays_in_the_image_range, "tanh", id="decoder without its tanh"),
    pytest.param(SamplingEncoder, graded.test_encode_is_deterministic, "sampling to sample_latent",
                 id="encode returns a sample for the mean"),
    pytest.param(OneTensorEncoder, graded.test_encode_and_decode_have_the_contract_shapes, "the pair",
                 id="encode returns one tensor"),
    pytest.param(HalfSizeLatents, graded.test_encode_and_decode_have_the_contract_shapes, "a quarter",
                 id="latents half the image's size"),
    pytest.param(UnusedLayer, graded.test_every_parameter_learns, "refine", id="a layer never used"),
]

SAMPLE_MUTANTS = [
    pytest.param(dict(returns_mean=True), graded.test_sample_latent_matches_the_reference, "returned the mean",
                 id="the mean for a sample"),
    pytest.param(dict(variance_as_std=True), graded.test_sample_latent_matches_the_reference, "the variance",
                 id="exp(logvar) for the std"),
    pytest.param(dict(global_noise=True), graded.test_sample_latent_matches_the_reference, "pass generator",
                 id="noise not from the generator"),
    pytest.param(dict(two_draws=True), graded.test_sample_latent_matches_the_reference, "exactly one draw",
                 id="two draws"),
    pytest.param(dict(mean_detached=True), graded.test_sample_latent_is_differentiable, "dz/dmean",
                 id="mean detached"),
    pytest.param(dict(std_detached=True), graded.test_sample_latent_is_differentiable, "dz/dlogvar",
                 id="std detached"),
]

LOSS = graded.test_loss_matches_the_reference
LOSS_MUTANTS = [
    pytest.param(dict(kl_sign_flipped=True), LOSS, "sign is flipped", id="KL sign flipped"),
    pytest.param(dict(no_kl=True), LOSS, "KL term is missing", id="no KL term"),
    pytest.param(dict(decodes_mean=True), LOSS, "draw only through sample_latent", id="decodes the mean"),
    pytest.param(dict(pixel_mean=True), LOSS, "averaged over the pixels", id="squared error averaged over pixels"),
    pytest.param(dict(latent_mean=True), LOSS, "averaged over the latent numbers", id="KL averaged over latents"),
    pytest.param(dict(batch_sum=True), LOSS, "summed over the batch", id="summed over the batch"),
    pytest.param(dict(no_half=True), LOSS, "factor 1/2", id="KL without its 1/2"),
    pytest.param(dict(logvar_as_variance=True), LOSS, "needs exp\\(logvar\\)", id="logvar for the variance in KL"),
    pytest.param(dict(z_detached=True), graded.test_loss_gradient_flows_through_encoder_and_decoder, "through the "
                 "sampled z", id="z detached"),
]

SCALE_MUTANTS = [
    pytest.param(dict(forgotten=True), "not 1", id="scale forgotten"),
    pytest.param(dict(rms=True), "around the mean", id="1 / root mean square"),
    pytest.param(dict(std_not_inverse=True), "not 1", id="std, not 1 / std"),
]


@pytest.mark.parametrize("network, graded_test, reason", NETWORK_MUTANTS)
def test_autoencoder_mutant_is_caught(network, graded_test, reason):
    with pytest.raises(AssertionError, match=reason):
        graded_test(contract=network_contract(network))


@pytest.mark.parametrize("mistake, graded_test, reason", SAMPLE_MUTANTS)
def test_sample_latent_mutant_is_caught(mistake, graded_test, reason):
    with pytest.raises(AssertionError, match=reason):
        graded_test(sample_latent=partial(sampled, **mistake))


@pytest.mark.parametrize("mistake, graded_test, reason", LOSS_MUTANTS)
def test_loss_mutant_is_caught(mistake, graded_test, reason):
    with pytest.raises(AssertionError, match=reason):
        graded_test(autoencoder_loss=partial(loss, **mistake))


@pytest.mark.parametrize("mistake, reason", SCALE_MUTANTS)
def test_latent_scale_mutant_is_caught(mistake, reason):
    with pytest.raises(AssertionError, match=reason):
        graded.test_latent_scale_gives_unit_variance(latent_scale=partial(scale_of, **mistake))


def test_a_network_that_cannot_take_7x7_latents_is_caught():
    from calibration.zoo.tiny_unet import DiffusionModel

    with pytest.raises(AssertionError, match="pad x to 8"):
        graded.test_your_network_takes_latents(model_class=DiffusionModel)


CONTRACT_TESTS = [graded.test_encode_and_decode_have_the_contract_shapes, graded.test_decode_stays_in_the_image_range,
                  graded.test_encode_is_deterministic, graded.test_every_parameter_learns]


def _passes_every_test(network, sample_latent, autoencoder_loss, latent_scale) -> None:
    contract = network_contract(network)
    for graded_test in CONTRACT_TESTS:
        graded_test(contract=contract)
    graded.test_sample_latent_matches_the_reference(sample_latent=sample_latent)
    graded.test_sample_latent_is_differentiable(sample_latent=sample_latent)
    graded.test_loss_matches_the_reference(autoencoder_loss=autoencoder_loss)
    graded.test_loss_gradient_flows_through_encoder_and_decoder(autoencoder_loss=autoencoder_loss)
    graded.test_latent_scale_gives_unit_variance(latent_scale=latent_scale)


def test_unmodified_mutants_pass_every_autoencoder_test():
    _passes_every_test(Reference, sampled, loss, scale_of)


def test_an_autoencoder_written_unlike_the_reference_passes_every_autoencoder_test():
    """tests/harness/submissions/autoencoder.py, written from the stub alone (docs/calibration/level8.md)."""
    submitted = submission("autoencoder")
    _passes_every_test(submitted.Autoencoder, submitted.sample_latent, submitted.autoencoder_loss,
                       submitted.latent_scale)
