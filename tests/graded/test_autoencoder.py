"""Level 8: src/autoencoder.py (the autoencoder, its sample, its loss, the latents' scale), and the latent run of
configs/fashion_mnist_latent.yaml: its reconstructions and its decoded samples.

Measures that take a gradient through the code under test run beside it (src/harness/grade/latent.py); these tests
judge what comes back."""

import pytest
import torch

from src.harness.grade.latent import ProbeAutoencoder, loss_trace, network_contract, probe_images, sample_latent_trace
from src.harness.loading import REFERENCE
from src.harness.policy import LATENT_RECONSTRUCTION_RMSE, LATENT_STD
from src.harness.run.config import official_config
from src.harness.run.data import load_data, model_input
from src.harness.run.quality import judge
from tests.graded.recorded import Recording, trace_seed
from tests.graded.runs import command, latent_run_quality, trained_latent_space

pytestmark = pytest.mark.level8
CONFIG = "fashion_mnist_latent"
KL_WEIGHT = 0.5  # of the loss traces: large, so that a mistake in the KL term moves the loss


def _reference_values(seed: int = 0) -> dict:
    module = REFERENCE.module("autoencoder")
    return {"loss": loss_trace(module.autoencoder_loss, seed, KL_WEIGHT),
            "sample": sample_latent_trace(module.sample_latent, seed)}


RECORDING = Recording("autoencoder", _reference_values, seeded=True)


# ------------------------------------------------------------------------------------- the network

@pytest.fixture
def contract(autoencoder_class) -> dict:
    return network_contract(autoencoder_class)


@pytest.mark.points(2)
def test_encode_and_decode_have_the_contract_shapes(contract):
    assert contract["encode_returns"] == "tuple", (
        f"encode returned a {contract['encode_returns']}: return the pair (mean, logvar), two tensors")
    assert contract["mean_shape"] == contract["logvar_shape"] == (4, 4, 7, 7), (
        f"encode gave mean {contract['mean_shape']} and logvar {contract['logvar_shape']} for 4 images 1x28x28 with "
        "latent_channels=4: each should be (4, 4, 7, 7), a quarter of the height and width (two stride-2 layers)")
    assert contract["decode_shape"] == (4, 1, 28, 28), (
        f"decode gave {contract['decode_shape']} for latents (4, 4, 7, 7): it should give images (4, 1, 28, 28)")
    assert contract["finite"], "encode or decode returned NaN or inf on ordinary images"


@pytest.mark.points(1)
def test_decode_stays_in_the_image_range(contract):
    low, high = contract["far_range"]
    assert -1 <= low and high <= 1, (
        f"decode gave values from {low:.2f} to {high:.2f} for latents far from 0: images live in [-1, 1], so end "
        "the decoder with a tanh")


@pytest.mark.points(1)
def test_encode_is_deterministic(contract):
    assert contract["deterministic"], (
        "encode gave two different results for the same images in eval mode: return the mean and logvar of q(z | x) "
        "and leave the sampling to sample_latent (the harness trains diffusion on the means)")


@pytest.mark.points(1)
def test_every_parameter_learns(contract):
    assert not contract["no_gradient"], (
        f"these parameters get no gradient from a loss on mean, logvar and decode: {contract['no_gradient'][:5]}; "
        "use every layer you build in encode or decode")


@pytest.mark.points(1)
def test_your_network_takes_latents(model_class):
    x = torch.randn(3, 4, 7, 7, generator=torch.Generator().manual_seed(0))
    try:
        out = model_class(4, 7)(x, torch.tensor([0, 500, 999]))
    except NotImplementedError:  # the stub: its own message says what to do
        raise
    except RuntimeError as err:  # a shape mismatch inside the network
        raise AssertionError(
            f"DiffusionModel(4, 7) failed on latents (3, 4, 7, 7): {str(err).splitlines()[0]}. A UNet that halves "
            "7 twice gets 3 then 1 and cannot match the skips on the way up: pad x to 8 (F.pad) and crop the output "
            "back, or halve once only") from None
    assert tuple(out.shape) == (3, 4, 7, 7), (
        f"DiffusionModel(4, 7) returned {tuple(out.shape)} for latents (3, 4, 7, 7): it must predict noise shaped "
        "like its input")


# ------------------------------------------------------------------------------ sample_latent

@pytest.mark.points(2)
def test_sample_latent_matches_the_reference(sample_latent):
    trace, expected = sample_latent_trace(sample_latent, trace_seed()), RECORDING.values()["sample"]
    mean, logvar, z = trace["mean"], trace["logvar"], trace["z"]
    assert z.shape == mean.shape, f"sample_latent returned {tuple(z.shape)} for mean {tuple(mean.shape)}: same shape"
    assert trace["draws"] == mean.numel(), (
        "sample_latent should take exactly one draw from the generator, torch.randn(mean.shape, "
        "generator=generator, device=mean.device, dtype=mean.dtype); "
        + ("it took none: pass generator=generator" if trace["draws"] == 0 else "it took another number"))
    if torch.allclose(z, expected["z"], atol=1e-5):
        return
    noise = (expected["z"] - mean) / (0.5 * logvar).exp()
    hints = {"you returned the mean: add exp(logvar / 2) * noise": mean,
             "the noise is scaled by exp(logvar), the variance: the standard deviation is exp(logvar / 2)":
                 mean + logvar.exp() * noise,
             "the noise is scaled by logvar itself: the standard deviation is exp(logvar / 2)": mean + logvar * noise,
             "the noise is scaled by exp(logvar / 2) squared?": mean + (0.5 * logvar).exp().pow(2) * noise}
    hint = next((text for text, wrong in hints.items() if torch.allclose(z, wrong, atol=1e-5)),
                "z = mean + exp(logvar / 2) * noise")
    assert False, f"sample_latent's z differs from the reference's: {hint}"


@pytest.mark.points(1)
def test_sample_latent_is_differentiable(sample_latent):
    trace = sample_latent_trace(sample_latent, trace_seed())
    assert torch.allclose(trace["grad_mean"], torch.ones_like(trace["mean"]), atol=1e-5), (
        "dz/dmean should be 1: compute z from mean itself, not from a detached copy")
    assert torch.allclose(trace["grad_logvar"], 0.5 * (trace["z"] - trace["mean"]), atol=1e-5), (
        "dz/dlogvar should be exp(logvar / 2) * noise / 2: compute z with torch operations on logvar (the "
        "reparameterisation trick lets the gradient flow through the sample)")


# ---------------------------------------------------------------------------- autoencoder_loss

def _candidates(seed: int) -> dict:
    """The usual mistakes of autoencoder_loss, each computed on loss_trace's inputs."""
    model, x = ProbeAutoencoder(), probe_images(seed)
    with torch.no_grad():
        mean, logvar = model.encode(x)
        noise = torch.randn(mean.shape, generator=torch.Generator().manual_seed(seed))
        sampled = model.decode(mean + (0.5 * logvar).exp() * noise)
        squared = (sampled - x).pow(2)
        kl_terms = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar)
        reconstruction, kl = squared.flatten(1).sum(1), kl_terms.flatten(1).sum(1)
    return {
        "the KL term's sign is flipped: it is + kl_weight * KL": (reconstruction - KL_WEIGHT * kl).mean(),
        "the KL term is missing": reconstruction.mean(),
        "the latent was not sampled: decode z = sample_latent(mean, logvar, generator), not the mean":
            ((model.decode(mean) - x).pow(2).flatten(1).sum(1) + KL_WEIGHT * kl).mean().detach(),
        "the squared error is averaged over the pixels: sum it over (C, H, W), then average over the batch":
            (squared.flatten(1).mean(1) + KL_WEIGHT * kl).mean(),
        "the KL is averaged over the latent numbers: sum it over (c, h, w), then average over the batch":
            (reconstruction + KL_WEIGHT * kl_terms.flatten(1).mean(1)).mean(),
        "the loss is summed over the batch: average it": (reconstruction + KL_WEIGHT * kl).sum(),
        "the KL lacks its factor 1/2": (reconstruction + 2 * KL_WEIGHT * kl).mean(),
        "the KL uses logvar where it needs exp(logvar) (the variance)": (reconstruction + KL_WEIGHT * 0.5 * (
            mean.pow(2) + logvar - 1 - logvar).flatten(1).sum(1)).mean(),
    }


@pytest.mark.points(3)
def test_loss_matches_the_reference(autoencoder_loss):
    seed = trace_seed()
    trace, expected = loss_trace(autoencoder_loss, seed, KL_WEIGHT), RECORDING.values()["loss"]
    assert trace["draws"] == expected["draws"], (
        f"autoencoder_loss took {trace['draws']} random numbers from the generator, the reference "
        f"{expected['draws']}: draw only through sample_latent(mean, logvar, generator), once")
    if torch.allclose(trace["loss"], expected["loss"], rtol=1e-5, atol=1e-5):
        return
    hint = next((text for text, wrong in _candidates(seed).items()
                 if torch.allclose(trace["loss"], wrong.float(), rtol=1e-5, atol=1e-5)), None)
    assert False, (f"autoencoder_loss gave {trace['loss'].item():.5f} where the reference gives "
                   f"{expected['loss'].item():.5f}: " + (hint or "follow the docstring's formula term by term"))


@pytest.mark.points(2)
def test_loss_gradient_flows_through_encoder_and_decoder(autoencoder_loss):
    trace, expected = loss_trace(autoencoder_loss, trace_seed(), KL_WEIGHT), RECORDING.values()["loss"]
    assert torch.isfinite(trace["grad"]).all(), (
        "autoencoder_loss returned a loss with no gradient to the autoencoder: build it from encode and decode with "
        "torch operations, without .detach(), .item() or torch.no_grad()")
    assert torch.allclose(trace["grad"], expected["grad"], rtol=1e-4, atol=1e-5), (
        f"the loss's gradient with respect to a probe autoencoder's weights (mean's, logvar's, decoder's) is "
        f"{trace['grad'].tolist()}, the reference's {expected['grad'].tolist()}: the gradient must reach mean and "
        "logvar through the sampled z (sample_latent) and the KL term, and the decoder through the reconstruction")


# ------------------------------------------------------------------------------ latent_scale

@pytest.mark.points(1)
def test_latent_scale_gives_unit_variance(latent_scale):
    latents = 3 + 5 * torch.randn(500, 4, 7, 7, generator=torch.Generator().manual_seed(0))
    scale = latent_scale(latents)
    assert isinstance(scale, (float, int)) or (torch.is_tensor(scale) and scale.numel() == 1), (
        f"latent_scale returned {type(scale).__name__}: return one number, e.g. 1 / latents.std().item()")
    scaled_std = (latents * float(scale)).std().item()
    assert abs(scaled_std - 1) < 1e-3, (
        f"latents of mean 3 and std 5 times your scale {float(scale):.4f} have std {scaled_std:.3f}, not 1: the "
        "scale is 1 / latents.std() (the std around the mean, over all the numbers)")


# ------------------------------------------------------------------------ the trained latent run

def _held_out() -> torch.Tensor:
    return model_input(load_data(official_config(CONFIG).data).val)


@pytest.mark.slow  # evaluates a trained run
@pytest.mark.points(2)
def test_trained_run_reconstructs_held_out_images(autoencoder_class, source):
    rmse = trained_latent_space(CONFIG, autoencoder_class, source).reconstruction_rmse(_held_out())
    assert rmse <= LATENT_RECONSTRUCTION_RMSE, (
        f"the autoencoder half: your trained autoencoder reconstructs held-out images with an RMSE of {rmse:.3f} "
        f"(pixels in [-1, 1]), above the {LATENT_RECONSTRUCTION_RMSE:g} allowed; look at reconstructions.png. Blurred "
        "reconstructions come from an encoder and decoder too narrow or fully connected (use the convolution blocks "
        "the docstring sketches), or from a loss that weighs the KL too much (sum the squared error over the pixels)"
        f"; then rerun `{command(CONFIG, source)} --overwrite`")


@pytest.mark.slow  # evaluates a trained run
@pytest.mark.points(1)
def test_trained_run_latents_have_unit_variance(autoencoder_class, source):
    std = trained_latent_space(CONFIG, autoencoder_class, source).encode(_held_out()).std().item()
    low, high = LATENT_STD
    assert low <= std <= high, (
        f"the latents the diffusion trained on have a std of {std:.2f} on held-out images (allowed {low:g} to "
        f"{high:g}): the noise schedule assumes data of unit variance; check latent_scale")


@pytest.mark.slow  # evaluates a trained run
@pytest.mark.points(3)
def test_trained_run_samples_are_recognisable(model_class, autoencoder_class, source):
    reasons = judge(latent_run_quality(CONFIG, model_class, autoencoder_class, source), "fashion_mnist_latent")
    assert not reasons, (
        "the decoded samples of your latent run are not yet recognisable: " + "; ".join(reasons) + ". Look at "
        "samples.png beside reconstructions.png. Garments drawn wrong point at the diffusion half, your network on "
        "4x7x7 latents (src/model.py); garments of the right shapes but dim or soft point at the decoder, which "
        "renders whatever latents diffusion draws: give it GroupNorm and 32 to 64 channels (src/autoencoder.py). "
        f"Then rerun `{command(CONFIG, source)} --overwrite`")
