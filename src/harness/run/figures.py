"""Pictures of the process, drawn from the same code the student trains; no screen needed (Agg, Pillow)."""

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from src.harness.run.data import to_uint8  # noqa: E402
from src.harness.run.schedule import NoiseSchedule  # noqa: E402


def image_grid(images: torch.Tensor, padding: int = 2, columns: int | None = None) -> Image.Image:
    """(B, C, H, W) in [-1, 1] -> a grid as a PIL image (square-ish unless `columns` is given), white gaps.

    Drawn here rather than with torchvision's make_grid, whose import costs a run several seconds."""
    count, channels, height, width = images.shape
    columns = min(columns or math.ceil(math.sqrt(count)), count)
    rows = math.ceil(count / columns)
    grid = torch.ones(channels, rows * (height + padding) + padding, columns * (width + padding) + padding)
    for i, image in enumerate(images.float().cpu()):
        top, left = padding + (i // columns) * (height + padding), padding + (i % columns) * (width + padding)
        grid[:, top:top + height, left:left + width] = image
    array = to_uint8(grid).permute(1, 2, 0).numpy()
    return Image.fromarray(array.squeeze(-1) if channels == 1 else array)


class TrajectoryRecorder(torch.nn.Module):
    """Wraps a model and keeps the x_t it is called with (as `keep(x_t)`), so any sampler's path from noise to data
    can be shown."""

    def __init__(self, model, keep):
        super().__init__()
        self.model, self.keep = model, keep
        self.inputs: list[torch.Tensor] = []

    def forward(self, x, t):
        self.inputs.append(self.keep(x))
        return self.model(x, t)


def save_animation(sampler, model, schedule, shape, generator, path: Path, picture, keep, num_frames: int = 40,
                   frame_ms: int = 80, hold_ms: int = 1500, scale: int = 2) -> torch.Tensor:
    """Sample with `sampler`, write a GIF from x_T to x_0 (num_frames frames, each `picture(x_t)` at `scale` x, from
    the x_t the model was called with, kept as `keep(x_t)`), return the samples."""
    recorder = TrajectoryRecorder(model, keep)
    samples = sampler(recorder, schedule, shape, generator=generator)
    states = recorder.inputs
    chosen = [states[round(i * (len(states) - 1) / max(1, num_frames - 2))] for i in range(num_frames - 1)]
    frames = [picture(s) for s in chosen] + [picture(samples)]
    frames = [f.resize((f.width * scale, f.height * scale), Image.NEAREST) for f in frames]
    durations = [frame_ms] * (len(frames) - 1) + [hold_ms]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=durations, loop=0)
    return samples


def schedule_figure(num_timesteps: int, path: Path) -> None:
    """beta_t, alpha-bar_t and the signal-to-noise ratio alpha-bar / (1 - alpha-bar), linear beside cosine."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    t = torch.arange(num_timesteps)
    for kind in ("linear", "cosine"):
        s = NoiseSchedule(num_timesteps, kind)
        axes[0].plot(t, s.betas, label=kind)
        axes[1].plot(t, s.alphas_cumprod, label=kind)
        axes[2].plot(t, s.alphas_cumprod / (1 - s.alphas_cumprod), label=kind)
    axes[0].set_title(r"$\beta_t$ (noise added at step t)")
    axes[1].set_title(r"$\bar\alpha_t$ (signal kept by step t)")
    axes[2].set_title(r"SNR $= \bar\alpha_t / (1 - \bar\alpha_t)$")
    axes[2].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("t")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def forward_strip(images: torch.Tensor, objective, path: Path, columns: int = 9, decode=None) -> None:
    """Each row one image, noised as the objective noises it (DDPM's q(x_t | x_0), or flow matching's straight line)
    at t = 0, T/8, ..., T (the last column uses t = T-1). `decode`: for latents (Level 8), what turns x_t into the
    image shown."""
    T = objective.schedule.num_timesteps
    steps = [min(round(i * T / (columns - 1)), T - 1) for i in range(columns)]
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(0))
    fig, axes = plt.subplots(len(images), columns, figsize=(columns * 1.1, len(images) * 1.1 + 0.3), squeeze=False)
    for c, t in enumerate(steps):
        xt = objective.noised(images, torch.full((len(images),), t), noise)
        xt = (decode(xt) if decode is not None else xt).clamp(-1, 1)
        for r in range(len(images)):
            ax = axes[r][c]
            ax.imshow(to_uint8(xt[r]).permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0][c].set_title(f"t = {t}", fontsize=9)
    fig.tight_layout(pad=0.3)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def curves_figure(history: dict, path: Path) -> None:
    """Training loss, validation loss, and validation loss per timestep band over the steps."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    if history["train"]:
        steps, losses = zip(*history["train"])
        axes[0].plot(steps, losses, label="training loss", alpha=0.8)
    if history["val"]:
        steps = [v["step"] for v in history["val"]]
        axes[0].plot(steps, [v["loss"] for v in history["val"]], "o-", label="validation loss")
        bands = list(history["val"][-1]["bands"])
        colours = plt.cm.viridis(torch.linspace(0, 1, len(bands)).numpy())
        for band, colour in zip(bands, colours):
            axes[1].plot(steps, [v["bands"][band] for v in history["val"]], "o-", color=colour, label=f"t {band}")
        axes[1].legend(fontsize=7, ncol=2)
    axes[0].legend()
    axes[0].set_title("loss")
    axes[1].set_title("validation loss per timestep band")
    for ax in axes:
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
