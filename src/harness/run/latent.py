"""Level 8: latent diffusion (Rombach et al. 2022, "High-Resolution Image Synthesis with Latent Diffusion Models").

A run whose config sets `latent.channels` (configs/fashion_mnist_latent.yaml) first trains an autoencoder
(src/autoencoder.py, or the reference's with --solution) on the images, then the diffusion network on the encoded
images: the encoder's means, times the scale that gives them unit variance (the student's latent_scale). Diffusion
trains, validates and samples in latent space as it does on pixels; what the run pictures or scores is decoded first.
`Latents` is the data kind of such a run (kinds.py has the others), and the checkpoint holds the autoencoder beside
the diffusion network.
"""

import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from src.harness.loading import CodeSource, StudentCodeError
from src.harness.run.data import DATASETS, Data, derived_seed, model_input
from src.harness.run.figures import forward_strip, image_grid
from src.harness.run.kinds import Images, latent_shape
from src.harness.run.runtime import Runtime
from src.harness.run.train import NonFiniteLossError, load_weights

# What a latent run writes besides a pixel run's files.
LATENT_FILES = ["reconstructions.png", "latents.png"]


class LatentSpace:
    """A trained autoencoder and the scale of its latents. encode: images (N, C, H, W) in [-1, 1] -> scale * the
    encoder's mean, (N, c, H/4, W/4); decode: latents -> images, dividing the scale out first."""

    def __init__(self, autoencoder, scale: float):
        self.autoencoder, self.scale = autoencoder.eval(), scale

    @torch.no_grad()
    def encode(self, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        return torch.cat([self.autoencoder.encode(chunk)[0].float() for chunk in images.split(batch_size)]) * self.scale

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        return torch.cat([self.autoencoder.decode(chunk / self.scale).float() for chunk in latents.split(batch_size)])

    def reconstruction_rmse(self, images: torch.Tensor) -> float:
        """The root-mean-square error of decode(encode(images)), in [-1, 1] pixel units."""
        return (self.decode(self.encode(images)) - images).pow(2).mean().sqrt().item()

    def record(self) -> dict:
        """What a checkpoint keeps of the latent space (latent_space_of reads it back)."""
        return {"autoencoder": {k: v.detach().cpu() for k, v in self.autoencoder.state_dict().items()},
                "latent_scale": self.scale}


def autoencoder_class(source: CodeSource):
    """The class Autoencoder of `source` (src/autoencoder.py, or the reference's)."""
    cls = getattr(source.module("autoencoder"), "Autoencoder", None)
    if not isinstance(cls, type):
        raise StudentCodeError(f"{source.path('autoencoder')} defines no class Autoencoder; keep the stub's class")
    return cls


def build_autoencoder(cfg, cls):
    """cls(in_channels, latent_channels) for the images of `cfg`'s dataset: `cls` is an Autoencoder class."""
    return cls(DATASETS[cfg.data.name].shape(cfg.data)[0], latent_shape(cfg)[0])


def latent_space_of(cfg, cls, state: dict, path: Path) -> LatentSpace:
    """The latent space a checkpoint of a latent run holds, in the Autoencoder class `cls` (its weights loaded)."""
    autoencoder = build_autoencoder(cfg, cls)
    load_weights(autoencoder, state["autoencoder"], path)
    return LatentSpace(autoencoder, state["latent_scale"])


def train_autoencoder(cfg, source: CodeSource, images: torch.Tensor, runtime: Runtime) -> tuple[LatentSpace, dict]:
    """Train `source`'s autoencoder on `images` ((N, C, H, W) uint8) as `cfg.latent` says: Adam with cosine decay,
    a new permutation each epoch, the reparameterisation's noise from a generator seeded per step. Returns its latent
    space, scaled by `source`'s latent_scale of the training latents, and what it cost."""
    lc, module = cfg.latent, source.module("autoencoder")
    torch.manual_seed(cfg.seed)
    autoencoder = build_autoencoder(cfg, autoencoder_class(source)).to(runtime.device)
    optimizer = torch.optim.Adam(autoencoder.parameters(), lr=lc.lr)
    steps_per_epoch = len(images) // lc.batch_size
    steps = max(1, round(lc.epochs * steps_per_epoch))
    order, noise = torch.Generator().manual_seed(cfg.seed), torch.Generator(runtime.device)
    print(f"Training the autoencoder ({source.path('autoencoder')}): {steps} steps of {lc.batch_size} images.")
    autoencoder.train()
    tic, losses = time.perf_counter(), []
    for step in range(steps):
        if step % steps_per_epoch == 0:
            permutation = torch.randperm(len(images), generator=order)
        chosen = permutation[(step % steps_per_epoch) * lc.batch_size:][:lc.batch_size]
        x = model_input(images[chosen]).to(runtime.device)
        noise.manual_seed(derived_seed(cfg.seed, step))
        for group in optimizer.param_groups:
            group["lr"] = lc.lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        with runtime.autocast():
            loss = module.autoencoder_loss(autoencoder, x, lc.kl_weight, generator=noise)
        if not math.isfinite(loss.item()):
            raise NonFiniteLossError(f"the autoencoder's loss became {loss.item()} at step {step + 1}: check "
                                     "autoencoder_loss in src/autoencoder.py (an exp of a large logvar?), or lower "
                                     "latent.lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    seconds = time.perf_counter() - tic
    unscaled = LatentSpace(autoencoder, 1.0).encode(model_input(images[:10_000]).to(runtime.device))
    scale = float(module.latent_scale(unscaled))
    return LatentSpace(autoencoder, scale), {"autoencoder_steps": steps, "autoencoder_seconds": round(seconds, 2),
                                             "autoencoder_loss": sum(losses[-50:]) / len(losses[-50:])}


class Latents:
    """The data kind of a latent run: src/model.py's DiffusionModel on (c, H/4, W/4) latents; what is pictured or
    scored is decoded to images first, and scored against the images themselves (`pixels`)."""

    module, class_name, noun, signature = Images.module, Images.class_name, "latents", Images.signature
    animation_scale = Images.animation_scale
    build = staticmethod(Images.build)

    def __init__(self, space: LatentSpace, pixels: Data):
        self.space, self.pixels = space, pixels

    def record(self) -> dict:
        return self.space.record()

    def keep(self, x: torch.Tensor) -> torch.Tensor:
        """A CPU copy of the latent x_t for the animation, which pictures (decodes) it afterwards."""
        return x.detach().float().cpu()

    def picture(self, samples: torch.Tensor, data: torch.Tensor):
        return image_grid(self.space.decode(samples.float()).cpu())

    def forward_figure(self, val: torch.Tensor, objective, path: Path) -> None:
        forward_strip(val[:4], objective, path, decode=self.space.decode)

    def score(self, cfg, model, objective, train, val, classes, autocast) -> tuple[dict, str] | None:
        """Images.score's measures, of the decoded samples against the held-out images; None without a classifier."""
        from src.harness.policy import bars_of
        from src.harness.run.quality import (EVAL_SAMPLES, classifier_path, describe_quality, evaluation_samples,
                                             sample_quality)

        if not classifier_path(cfg.data.name).exists():
            return None

        latents = evaluation_samples(model, objective, (EVAL_SAMPLES, *latent_shape(cfg)), autocast)
        quality = sample_quality(self.space.decode(latents), model_input(self.pixels.val), cfg.data.name, classes,
                                 model_input(self.pixels.train))
        return quality, describe_quality(quality, bars_of(cfg))


def latent_data(cfg, source: CodeSource, runtime: Runtime, data: Data, state: dict | None, out: Path,
                checkpoint_path: Path) -> tuple[Latents, Data, dict]:
    """(the kind, the encoded data, metrics) of a latent run: its autoencoder trained here, or read from the
    checkpoint being resumed or scored (`state`); writes reconstructions.png and latents.png into `out`."""
    if state is not None and "autoencoder" in state:
        space, metrics = latent_space_of(cfg, autoencoder_class(source), state, checkpoint_path), {}
    else:
        space, metrics = train_autoencoder(cfg, source, data.train, runtime)
    val = model_input(data.val).to(runtime.device)
    encoded = Data(space.encode(model_input(data.train).to(runtime.device)).cpu(), data.train_labels,
                   space.encode(val).cpu(), data.val_labels, data.classes)
    metrics |= {"latent_scale": space.scale, "latent_std": encoded.train.std().item(),
                "reconstruction_rmse": space.reconstruction_rmse(val)}
    print(f"Autoencoder: reconstruction RMSE {metrics['reconstruction_rmse']:.3f} on {len(val)} held-out images; "
          f"latents {'x'.join(map(str, encoded.sample_shape))}, scale {space.scale:.3f}, std after scaling "
          f"{metrics['latent_std']:.2f}.")
    reconstructions_figure(space, val[:16].cpu(), out / "reconstructions.png")
    latents_figure(val[:6].cpu(), encoded.val[:6], out / "latents.png")
    return Latents(space, data), encoded, metrics


def reconstructions_figure(space: LatentSpace, images: torch.Tensor, path: Path) -> None:
    """Originals (top row) above their reconstructions decode(encode(x)) (bottom row)."""
    grid = image_grid(torch.cat([images, space.decode(space.encode(images))]), columns=len(images))
    grid.resize((grid.width * 2, grid.height * 2), Image.NEAREST).save(path)


def latents_figure(images: torch.Tensor, latents: torch.Tensor, path: Path) -> None:
    """Each row an image, then its latent's channels, each 7x7 channel blown up to the image's size and shown from
    -3 to 3 (latents of unit variance fill it). images: (N, C, H, W); latents: (N, c, H / 4, W / 4)."""
    channels = F.interpolate(latents.flatten(0, 1)[:, None] / 3, size=images.shape[-2:], mode="nearest")
    rows = torch.cat([images.mean(1, keepdim=True)[:, None], channels.view(len(latents), -1, 1, *images.shape[-2:])],
                     1)
    grid = image_grid(rows.flatten(0, 1).clamp(-1, 1), columns=rows.shape[1])
    grid.resize((grid.width * 2, grid.height * 2), Image.NEAREST).save(path)
