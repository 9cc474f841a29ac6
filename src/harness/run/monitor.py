"""The training callback of a run: validation points, curves.png, preview grids and TensorBoard, as training goes."""

import json
from pathlib import Path

from src.harness.run.config import ConfigError
from src.harness.run.figures import curves_figure


class RunMonitor:
    """Called after every training step: records losses, redraws curves.png, saves preview grids, feeds TensorBoard.

    The history lives in history.json beside the checkpoint, so a resumed run continues its curves.
    """

    def __init__(self, out: Path, objective, val_images, autocast, preview, picture, eval_every: int,
                 preview_every: int, start_step: int = 0, tensorboard: bool = False, val_labels=None):
        """preview(ema_model) draws the preview samples, picture(samples) makes them a PIL image; val_labels: the
        classes a class-conditional model is validated with (Level 6), else None."""
        self.out, self.objective, self.val_images, self.autocast = out, objective, val_images, autocast
        self.val_labels = val_labels
        self.preview, self.picture, self.eval_every, self.preview_every = preview, picture, eval_every, preview_every
        self.history_path = out / "history.json"
        self.history = _history_until(self.history_path, start_step) if start_step else {"train": [], "val": []}
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
        val = self.objective.validation_loss(ema_model, self.val_images, autocast=self.autocast, labels=self.val_labels)
        self.history["val"].append({"step": step, **val})
        self.history_path.write_text(json.dumps(self.history) + "\n")
        curves_figure(self.history, self.out / "curves.png")
        self._scalar("val/loss", val["loss"], step)
        for band, value in val["bands"].items():
            self._scalar(f"val_band/{band}", value, step)

    def _preview(self, step: int, ema_model) -> None:
        picture = self.picture(self.preview(ema_model))
        (self.out / "previews").mkdir(exist_ok=True)
        picture.save(self.out / "previews" / f"step_{step:06d}.png")
        if self.writer:
            from torchvision.transforms.functional import pil_to_tensor

            self.writer.add_image("samples", pil_to_tensor(picture.convert("RGB")), step)

    def _scalar(self, name: str, value: float, step: int) -> None:
        if self.writer:
            self.writer.add_scalar(name, value, step)


def _history_until(path: Path, step: int) -> dict:
    """The losses history.json recorded up to `step` (a resumed run continues its curves from there); a missing or
    damaged file only restarts the curves, with a note."""
    try:
        history = json.loads(path.read_text())
        return {key: [e for e in history.get(key, []) if _step(e) <= step] for key in ("train", "val")}
    except FileNotFoundError:
        pass
    except (OSError, ValueError, TypeError, AttributeError, KeyError, IndexError):
        print(f"note: {path} is damaged, so curves.png starts again at step {step} (training resumes as usual)")
    return {"train": [], "val": []}


def _step(entry) -> int:
    return entry["step"] if isinstance(entry, dict) else entry[0]


def _tensorboard_writer(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("output.tensorboard=true needs TensorBoard: run `uv sync --extra tensorboard` first") from None
    return SummaryWriter(str(out / "tensorboard"))
