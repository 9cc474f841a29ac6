"""Level 6's evaluation: guided samples of every class, and how often the shipped classifier sees the class asked for.

The samples come from the guided sampler under test (src/sampler.py's guided_sample, or the reference's with
--solution): the harness holds no guidance of its own. Every scale starts from the same noise, so the guidance
strip shows the same seeds moving towards their class as w grows.
"""

from pathlib import Path

import torch

from src.harness.policy import AGREEMENT_PER_CLASS, GUIDANCE_SCALES, GUIDANCE_STEPS


def guided_draws(guided_sample, model, schedule, sample_shape: tuple[int, ...], num_classes: int, scale: float,
                 autocast, per_class: int = AGREEMENT_PER_CLASS, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(samples (K * per_class, C, H, W) on the CPU, labels (K * per_class,)): per_class images of each class, the
    labels cycling 0, 1, ..., K-1, 0, 1, ..., from a fixed seed, in GUIDANCE_STEPS guided DDIM steps."""
    device = schedule.betas.device
    labels = torch.arange(num_classes, device=device).repeat(per_class)
    generator = torch.Generator(device).manual_seed(seed)
    with autocast():
        samples = guided_sample(model.eval(), schedule, (len(labels), *sample_shape), labels, num_classes,
                                guidance_scale=scale, generator=generator, num_steps=GUIDANCE_STEPS)
    return samples.float().cpu(), labels.cpu()


def class_agreement(samples: torch.Tensor, labels: torch.Tensor, dataset: str, classifier=None) -> float:
    """The share of samples (N, C, H, W) in [-1, 1] whose class by the shipped classifier (`classifier`, loaded
    here if None) is their label (N,)."""
    from src.harness.run.quality import classify, load_classifier

    probabilities, _ = classify(classifier or load_classifier(dataset), samples)
    return (probabilities.argmax(-1) == labels).double().mean().item()


def guidance_scores(guided_sample, model, schedule, sample_shape, num_classes: int, dataset: str, autocast,
                    scales=GUIDANCE_SCALES, per_class: int = AGREEMENT_PER_CLASS) -> dict:
    """{w: {"agreement": share, "samples": (K * per_class, C, H, W), "labels": (K * per_class,)}} for each scale;
    the agreement is None for a dataset without a shipped classifier."""
    from src.harness.run.quality import classifier_path, load_classifier

    classifier = load_classifier(dataset) if classifier_path(dataset).exists() else None
    scores = {}
    for scale in scales:
        samples, labels = guided_draws(guided_sample, model, schedule, sample_shape, num_classes, scale, autocast,
                                       per_class)
        agreement = class_agreement(samples, labels, dataset, classifier) if classifier is not None else None
        scores[scale] = {"agreement": agreement, "samples": samples, "labels": labels}
    return scores


def describe_agreement(scores: dict, chance: float) -> str:
    """The agreement table: one line per guidance scale."""
    lines = ["Class agreement of guided samples (the shipped classifier's class = the class asked for):"]
    lines += [f"  w = {scale:g}: {entry['agreement']:.0%}" for scale, entry in scores.items()]
    return "\n".join(lines + [f"  (chance: {chance:.0%}; w = 0 is the unconditional model, w = 1 the conditional)"])


def class_rows(samples: torch.Tensor, labels: torch.Tensor, num_classes: int, columns: int) -> torch.Tensor:
    """(K * columns, C, H, W): the first `columns` samples of class 0, then of class 1, ...: one row per class."""
    return torch.cat([samples[labels == k][:columns] for k in range(num_classes)])


def guidance_strip(scores: dict, classes: list[str], path: Path, symbol: str = "w") -> None:
    """One row per scale (`symbol` = its value: w for guidance, Level 9's steering scale), one column per class: the
    first sample of each class, the same seed in every row."""
    import matplotlib.pyplot as plt

    from src.harness.run.data import to_uint8

    rows, columns = len(scores), len(classes)
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.0, rows * 1.05 + 0.4), squeeze=False)
    for r, (scale, entry) in enumerate(scores.items()):
        for c in range(columns):
            ax = axes[r][c]
            image = entry["samples"][(entry["labels"] == c).nonzero()[0, 0]]
            ax.imshow(to_uint8(image).permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(classes[c], fontsize=7)
        agreement = "" if entry["agreement"] is None else f"\n{entry['agreement']:.0%}"
        axes[r][0].set_ylabel(f"{symbol} = {scale:g}{agreement}", fontsize=8)
    fig.tight_layout(pad=0.3)
    fig.savefig(path, dpi=100)
    plt.close(fig)
