"""What differs between the kinds of data a run trains on: images (Levels 1 to 4) and 2-D points (Level 0).

Each dataset names its kind (`data.DATASETS`). A kind says which student file holds the network, how samples
are pictured, how the forward process is shown and how samples are scored; training, validation and sampling
are the same code for both. A latent run (Level 8) trains on its images' latents, whose kind, `latent.Latents`,
decodes them first.
"""

from pathlib import Path

import torch

from src.harness.loading import CodeSource, StudentCodeError, student_location
from src.harness.run.conditioning import conditioning_of
from src.harness.run.data import DATASETS, model_input, to_uint8
from src.harness.run.objective import OBJECTIVES


class Images:
    """(C, H, W) images: src/model.py's DiffusionModel(in_channels, image_size), grids, a classifier's score."""

    module, class_name, noun = "model", "DiffusionModel", "images"  # src/model.py (or src/solution/model.py)
    signature = "in_channels, image_size"  # what build passes, besides arguments
    animation_scale = 2  # grids of 28-pixel images are small: the GIF shows them twice the size

    @staticmethod
    def build(cls, sample_shape: tuple[int, ...], arguments: dict):
        """cls(in_channels, image_size, **arguments): the reference's architecture from the config, and num_classes
        for a class-conditional run (Level 6)."""
        return cls(sample_shape[0], sample_shape[-1], **arguments)

    @staticmethod
    def record() -> dict:
        """What a checkpoint keeps besides the network (a latent run's autoencoder, Level 8): nothing."""
        return {}

    @staticmethod
    def keep(x: torch.Tensor) -> torch.Tensor:
        """A compact CPU copy of x_t for the animation, which keeps every model call's input: 1 byte a pixel."""
        return to_uint8(x.detach().float().cpu())

    @staticmethod
    def picture(samples: torch.Tensor, data: torch.Tensor):
        from src.harness.run.figures import image_grid

        return image_grid(model_input(samples))

    @staticmethod
    def forward_figure(val: torch.Tensor, objective, path: Path) -> None:
        from src.harness.run.figures import forward_strip

        forward_strip(val[:4], objective, path)

    @staticmethod
    def score(cfg, model, objective, train, val, classes, autocast) -> tuple[dict, str] | None:
        """(quality, one line) for a run of `cfg` on a dataset with a shipped classifier, None for the others.
        train: the stored training set, (M, C, H, W) uint8, against which samples must not be copies; val: the
        held-out images, (N, C, H, W) in [-1, 1], that samples are scored against."""
        from src.harness.policy import bars_of
        from src.harness.run.quality import classifier_path, describe_quality, evaluate

        if not classifier_path(cfg.data.name).exists():
            return None
        quality = evaluate(model, objective, val, cfg.data.name, classes, autocast, train)
        return quality, describe_quality(quality, bars_of(cfg))


class Points:
    """(2,) points: src/point_model.py's PointModel(dim), scatter plots over the data, a Chamfer distance score."""

    module, class_name, noun = "point_model", "PointModel", "points"  # src/point_model.py (or src/solution/'s)
    signature = "dim"
    animation_scale = 1

    @staticmethod
    def build(cls, sample_shape: tuple[int, ...], arguments: dict):
        """cls(dim): the reference point model has no configurable architecture, and points take no labels."""
        return cls(sample_shape[0])

    record = Images.record

    @staticmethod
    def keep(x: torch.Tensor) -> torch.Tensor:
        return x.detach().float().cpu()

    @staticmethod
    def picture(samples: torch.Tensor, data: torch.Tensor):
        from src.harness.run.points import scatter_picture

        return scatter_picture(samples, data)

    @staticmethod
    def forward_figure(val: torch.Tensor, objective, path: Path) -> None:
        from src.harness.run.points import forward_scatter

        forward_scatter(val, objective, path)

    @staticmethod
    def score(cfg, model, objective, train, val, classes, autocast) -> tuple[dict, str]:
        """(quality, one line): the samples' Chamfer distance to `val`, beside train's (both (N, 2) points)."""
        from src.harness.run.points import describe_point_quality, evaluation_points, point_quality

        quality = point_quality(evaluation_points(model, objective, autocast), train, val)
        return quality, describe_point_quality(quality, cfg.data.name)


KINDS = {"images": Images, "points": Points}


def kind_of(dataset: str):
    """The kind (Images or Points) of the dataset named `dataset`."""
    return KINDS[DATASETS[dataset].kind]


# A latent (Level 8) is the image downsampled this many times in height and width: src/autoencoder.py's contract.
LATENT_DOWNSAMPLING = 4


def latent_shape(cfg) -> tuple[int, ...]:
    """(latent.channels, H / 4, W / 4) of the images of `cfg`'s dataset: what a latent run's diffusion models."""
    channels, height, width = DATASETS[cfg.data.name].shape(cfg.data)
    return cfg.latent.channels, height // LATENT_DOWNSAMPLING, width // LATENT_DOWNSAMPLING


def sample_shape_of(cfg) -> tuple[int, ...]:
    """The shape of one sample that a run of `cfg` trains on and draws: (C, H, W) images, (2,) points, or the
    latents of a latent run."""
    return latent_shape(cfg) if cfg.latent.channels else DATASETS[cfg.data.name].shape(cfg.data)


def trained_code(cfg) -> tuple[str, ...]:
    """The student files (levels.STUDENT_FILES) whose code a run of `cfg` trains with, besides src/utils.py: its
    network (model or point_model), flow for flow matching (Level 7), autoencoder for a latent run (Level 8)."""
    return (kind_of(cfg.data.name).module, *OBJECTIVES[cfg.diffusion.objective].code,
            *(("autoencoder",) if cfg.latent.channels else ()))


def build_model(cfg, source: CodeSource, conditioning=None):
    """The network for the run config's dataset: DiffusionModel(channels, image_size) for images (the reference also
    takes the `model` config's architecture; a class-conditional run adds num_classes), PointModel(2) for points.
    `conditioning`: the run's (conditioning_of(cfg)), when the caller holds it already."""
    kind = kind_of(cfg.data.name)
    path = source.path(kind.module)
    cls = getattr(source.module(kind.module), kind.class_name, None)
    if not isinstance(cls, type):
        raise StudentCodeError(f"{path} defines no class {kind.class_name}; keep the stub's class and its name")
    arguments = (dict(cfg.model) if source.reference else {}) | (conditioning or conditioning_of(cfg)).model_arguments
    try:
        return kind.build(cls, sample_shape_of(cfg), arguments)
    except TypeError as err:
        if student_location(err) is not None:  # raised inside the student's __init__: reported as their error
            raise
        raise StudentCodeError(f"{path}: {kind.class_name}({kind.signature}"
                               f"{', num_classes' if 'num_classes' in arguments else ''}) cannot be called "
                               f"({err}); keep the __init__ signature of the stub") from None
