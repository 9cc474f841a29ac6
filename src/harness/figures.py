"""Pictures of the process, drawn from the same code the student trains; no screen needed (Agg, Pillow)."""

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from src.harness.config import ConfigError  # noqa: E402
from src.harness.data import to_uint8  # noqa: E402
from src.harness.schedule import NoiseSchedule, validation_loss  # noqa: E402


def image_grid(images: torch.Tensor, padding: int = 2) -> Image.Image:
    """(B, C, H, W) in [-1, 1] -> a square-ish grid as a PIL image, white gaps between images."""
    from torchvision.utils import make_grid

    grid = make_grid(images.float().cpu(), nrow=math.ceil(math.sqrt(len(images))), padding=padding, pad_value=1.0)
    array = to_uint8(grid).permute(1, 2, 0).numpy()
    return Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array)


def save_grid(images: torch.Tensor, path: Path) -> None:
    image_grid(images).save(path)


class TrajectoryRecorder(torch.nn.Module):
    """Wraps a model and keeps the x_t it is called with, so any sampler's path from noise to image can be shown."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.inputs: list[torch.Tensor] = []

    def forward(self, x, t):
        self.inputs.append(to_uint8(x.detach().float().cpu()))
        return self.model(x, t)


def save_animation(sampler, model, schedule, shape, generator, path: Path, num_frames: int = 40,
                   frame_ms: int = 80, hold_ms: int = 1500, scale: int = 2) -> torch.Tensor:
    """Sample with `sampler`, write a GIF of the grid from x_T to x_0 (num_frames frames, `scale` x), return the samples."""
    recorder = TrajectoryRecorder(model)
    samples = sampler(recorder, schedule, shape, generator=generator)
    states = recorder.inputs
    chosen = [states[round(i * (len(states) - 1) / max(1, num_frames - 2))] for i in range(num_frames - 1)]
    frames = [image_grid(s.float().div(127.5).sub(1)) for s in chosen] + [image_grid(samples)]
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


def forward_strip(images: torch.Tensor, schedule: NoiseSchedule, path: Path, columns: int = 9) -> None:
    """Each row one image, noised by q(x_t | x_0) at t = 0, T/8, ..., T (the last column uses t = T-1)."""
    T = schedule.num_timesteps
    steps = [min(round(i * T / (columns - 1)), T - 1) for i in range(columns)]
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(0))
    fig, axes = plt.subplots(len(images), columns, figsize=(columns * 1.1, len(images) * 1.1 + 0.3), squeeze=False)
    for c, t in enumerate(steps):
        xt = schedule.q_sample(images, torch.full((len(images),), t), noise).clamp(-1, 1)
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


class RunMonitor:
    """Called after every training step: records losses, redraws curves.png, saves preview grids, feeds TensorBoard.

    The history lives in history.json beside the checkpoint, so a resumed run continues its curves.
    """

    def __init__(self, out: Path, schedule, val_images, autocast, preview, eval_every: int, preview_every: int,
                 start_step: int = 0, tensorboard: bool = False):
        self.out, self.schedule, self.val_images, self.autocast = out, schedule, val_images, autocast
        self.preview, self.eval_every, self.preview_every = preview, eval_every, preview_every
        self.history_path = out / "history.json"
        history = json.loads(self.history_path.read_text()) if start_step and self.history_path.exists() else {}
        self.history = {key: [e for e in history.get(key, []) if _step(e) <= start_step] for key in ("train", "val")}
        self.writer = _tensorboard_writer(out) if tensorboard else None

    def __call__(self, step: int, logs: dict | None, ema_model) -> None:
        if logs is not None:
            self.history["train"].append([step, logs["loss"]])
            for name, value in logs.items():
                self._scalar(f"train/{name}", value, step)
        if self.eval_every and step % self.eval_every == 0:
            self._validate(step, ema_model)
        if self.preview_every and step % self.preview_every == 0:
            self._preview(step, ema_model)

    def close(self, step: int, ema_model) -> None:
        """A last validation point at the final step, then the final figure."""
        if self.eval_every and (not self.history["val"] or self.history["val"][-1]["step"] != step):
            self._validate(step, ema_model)
        if self.writer:
            self.writer.close()

    def _validate(self, step: int, ema_model) -> None:
        val = validation_loss(ema_model, self.schedule, self.val_images, autocast=self.autocast)
        self.history["val"].append({"step": step, **val})
        self.history_path.write_text(json.dumps(self.history) + "\n")
        curves_figure(self.history, self.out / "curves.png")
        self._scalar("val/loss", val["loss"], step)
        for band, value in val["bands"].items():
            self._scalar(f"val_band/{band}", value, step)

    def _preview(self, step: int, ema_model) -> None:
        samples = self.preview(ema_model)
        (self.out / "previews").mkdir(exist_ok=True)
        save_grid(samples, self.out / "previews" / f"step_{step:06d}.png")
        if self.writer:
            from torchvision.transforms.functional import pil_to_tensor

            self.writer.add_image("samples", pil_to_tensor(image_grid(samples).convert("RGB")), step)

    def _scalar(self, name: str, value: float, step: int) -> None:
        if self.writer:
            self.writer.add_scalar(name, value, step)


def _step(entry) -> int:
    return entry["step"] if isinstance(entry, dict) else entry[0]


def _tensorboard_writer(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("output.tensorboard=true needs TensorBoard: run `uv sync --extra tensorboard` first") from None
    return SummaryWriter(str(out / "tensorboard"))
