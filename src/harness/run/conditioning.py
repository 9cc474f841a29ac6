"""What the network is told besides x_t and t: nothing (Levels 1 to 5 and 7), or each image's class (Level 6).

A conditioning builds the network's extra constructor arguments, draws the labels of a training step (with
classifier-free guidance's label dropout, Ho & Salimans 2022, Algorithm 1) and binds them to the network, so the
objective and the training loop keep calling model(x, t). The guided sampler itself is the student's
(src/sampler.py's guided_sample, Level 6); the harness only calls it.
"""

from pathlib import Path

import torch


def with_labels(model, y: torch.Tensor):
    """A class-conditional network as a function of (x, t) alone, conditioned on the labels y: (B,)."""
    return lambda x, t: model(x, t, y)


class Unconditional:
    """The network is DiffusionModel(in_channels, image_size), called as model(x, t)."""

    model_arguments: dict = {}

    def draw(self, labels: torch.Tensor, generator: torch.Generator | None) -> None:
        return None

    def bind(self, model, y: torch.Tensor | None):
        return model

    def validation_labels(self, labels: torch.Tensor) -> None:
        return None

    def load_sampler(self, source, tiny_shape: tuple[int, ...], device) -> None:
        return None

    def report(self, guided_sample, model, schedule, data, dataset: str, guidance_scale: float, autocast,
               out: Path) -> dict:
        return {}


class ClassConditional:
    """The network is DiffusionModel(in_channels, image_size, num_classes=K), called as model(x, t, y) with y: (B,)
    int64 in [0, K]; y = K is the null label ("no class"), which trains the unconditional model that guidance needs.

    Args:
        num_classes: K, the dataset's classes.
        label_dropout: p_uncond, the share of training labels replaced by the null label.
    """

    def __init__(self, num_classes: int, label_dropout: float):
        self.num_classes, self.label_dropout = num_classes, label_dropout
        self.model_arguments = {"num_classes": num_classes}

    @property
    def null_label(self) -> int:
        return self.num_classes

    def draw(self, labels: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """labels: (B,) -> y: (B,), each replaced by the null label with probability label_dropout (one uniform draw
        per label, after the objective's t and noise)."""
        dropped = torch.rand(len(labels), generator=generator, device=labels.device) < self.label_dropout
        return torch.where(dropped, torch.full_like(labels, self.null_label), labels)

    def bind(self, model, y: torch.Tensor):
        """The network as a function of (x, t) alone, conditioned on the batch's labels y: (B,)."""
        return with_labels(model, y)

    def validation_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """The labels the validation loss conditions on: the images' own classes."""
        return labels

    def load_sampler(self, source, tiny_shape: tuple[int, ...], device):
        """guided_sample from `source` (a loading.CodeSource: src/sampler.py, or the reference's), tried once on a
        fake model and images of `tiny_shape`, (1, C, 4, 4), so that a stub is reported before training, not after
        it."""
        from src.harness.run.schedule import NoiseSchedule

        guided_sample = source.module("sampler").guided_sample
        guided_sample(lambda x, t, y: torch.zeros_like(x), NoiseSchedule(2, device=device), tiny_shape,
                      torch.zeros(1, dtype=torch.long, device=device), self.null_label, num_steps=2)
        return guided_sample

    def report(self, guided_sample, model, schedule, data, dataset: str, guidance_scale: float, autocast,
               out: Path) -> dict:
        """classes.png (one row per class, at `guidance_scale`), guidance.png (the same seeds at each of
        GUIDANCE_SCALES) and the agreement table; returns {"guidance": {"w": agreement}}."""
        from src.harness.policy import GUIDANCE_SCALES
        from src.harness.run.figures import image_grid
        from src.harness.run.guidance import class_rows, describe_agreement, guidance_scores, guidance_strip

        scales = sorted({*GUIDANCE_SCALES, guidance_scale})
        scores = guidance_scores(guided_sample, model, schedule, data.sample_shape, self.num_classes, dataset,
                                 autocast, scales)
        chosen = scores[guidance_scale]
        image_grid(class_rows(chosen["samples"], chosen["labels"], self.num_classes, columns=8),
                   columns=8).save(out / "classes.png")
        guidance_strip({w: scores[w] for w in GUIDANCE_SCALES}, data.classes, out / "guidance.png")
        print(f"One row per class at w = {guidance_scale:g}: {out / 'classes.png'}; the same seeds at each w: "
              f"{out / 'guidance.png'}")
        if chosen["agreement"] is None:  # no shipped classifier for this dataset
            return {}
        print(describe_agreement(scores, chance=1 / self.num_classes))
        return {"guidance": {f"{w:g}": entry["agreement"] for w, entry in scores.items()},
                "guidance_scale": guidance_scale}


def conditioning_of(cfg):
    """The conditioning a run config's `conditioning.kind` names, for its dataset's classes."""
    from src.harness.run.data import DATASETS

    if cfg.conditioning.kind == "class":
        return ClassConditional(DATASETS[cfg.data.name].num_classes, cfg.conditioning.label_dropout)
    return Unconditional()
