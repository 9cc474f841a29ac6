"""Sample quality without downloads: a small classifier per dataset, trained by this project and shipped.

Its confidence says whether samples are recognisable; the Frechet distance between its features of real
and generated images says whether they look like the data (FID's recipe with a domain classifier in
place of Inception, which is poorly calibrated on 28-pixel greyscale images).
"""

import json
from pathlib import Path

import torch
from torch import nn

WEIGHTS = Path(__file__).resolve().parent / "classifiers"
CONFIDENT = 0.9  # a sample is "confident" when the classifier gives its top class at least this probability
COVERED = 0.02  # a class is "covered" when at least this share of samples lands in it


class Classifier(nn.Module):
    """Three VGG-style stages (two 3x3 conv + BatchNorm + ReLU each), global average pooling, a linear head.

    x: (B, C, H, W) in [-1, 1] -> logits (B, num_classes); `features(x)`: (B, 4 * width), the pooled output.
    """

    def __init__(self, in_channels: int, width: int, num_classes: int = 10):
        super().__init__()
        layers, channels = [], in_channels
        for stage, out in enumerate((width, 2 * width, 4 * width)):
            for _ in range(2):
                layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
                channels = out
            if stage < 2:
                layers.append(nn.MaxPool2d(2))
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(channels, num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


CLASSIFIERS = {  # dataset -> (in_channels, width)
    "fashion_mnist": (1, 32),
    "cifar10": (3, 48),
}


def classifier_path(dataset: str) -> Path:
    return WEIGHTS / f"{dataset}.pt"


def load_classifier(dataset: str, device="cpu") -> Classifier:
    """The shipped classifier for `dataset` (see `python -m src.harness.train_classifier`)."""
    path = classifier_path(dataset)
    if not path.exists():
        raise FileNotFoundError(f"no classifier for {dataset} at {path}; train one with "
                                f"`uv run python -m src.harness.train_classifier {dataset}`")
    model = Classifier(*CLASSIFIERS[dataset])
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.to(device).eval()


def classifier_card(dataset: str) -> dict:
    """The accuracy and training settings recorded next to the weights."""
    return json.loads(classifier_path(dataset).with_suffix(".json").read_text())


@torch.no_grad()
def classify(classifier: Classifier, images: torch.Tensor, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """images: (N, C, H, W) in [-1, 1] -> (probabilities (N, K), features (N, D)), float64 on the CPU."""
    device = next(classifier.parameters()).device
    probabilities, features = [], []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].to(device).float()
        f = classifier.features(x)
        probabilities.append(classifier.head(f).softmax(-1).double().cpu())
        features.append(f.double().cpu())
    return torch.cat(probabilities), torch.cat(features)


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2) between two feature sets (N, D)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    values, vectors = torch.linalg.eigh(cov_a)
    sqrt_a = vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T
    cross = torch.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a).clamp(min=0).sqrt().sum()
    return ((mu_a - mu_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * cross).item()


def sample_quality(samples: torch.Tensor, real: torch.Tensor, dataset: str, classes: list[str]) -> dict:
    """Recognisability of `samples` and their Frechet distance to `real` images, both (N, C, H, W) in [-1, 1].

    `real` needs at least 2N images: the distance is also measured between two disjoint sets of N real
    images (real_vs_real_fd), which is what a perfect generator would score at this N.
    """
    n = len(samples)
    classifier = load_classifier(dataset)
    probabilities, sample_features = classify(classifier, samples)
    _, real_features = classify(classifier, real[:2 * n])
    confidence, predicted = probabilities.max(-1)
    histogram = torch.bincount(predicted, minlength=len(classes)) / n
    return {
        "num_samples": n,
        "mean_confidence": confidence.mean().item(),
        "confident_share": (confidence >= CONFIDENT).double().mean().item(),
        "classes_covered": int((histogram >= COVERED).sum()),
        "class_histogram": {name: round(share.item(), 4) for name, share in zip(classes, histogram)},
        "fd": frechet_distance(sample_features, real_features[:n]),
        "real_vs_real_fd": frechet_distance(real_features[n:2 * n], real_features[:n]),
    }


EVAL_SAMPLES = 256  # images drawn per evaluation
EVAL_STEPS = 50  # DDIM steps per image: fast, and the same for every run so scores compare


def evaluate(model, schedule, real: torch.Tensor, dataset: str, classes: list[str], autocast,
             num_samples: int = EVAL_SAMPLES, seed: int = 0) -> dict:
    """Draw `num_samples` images with DDIM from a fixed seed and score them against `real` (N, C, H, W) in [-1, 1]."""
    samples = evaluation_samples(model, schedule, (num_samples, *real.shape[1:]), autocast, seed)
    return sample_quality(samples, real, dataset, classes)


def evaluation_samples(model, schedule, shape: tuple[int, ...], autocast, seed: int = 0) -> torch.Tensor:
    """The images an evaluation scores: DDIM with EVAL_STEPS steps from a fixed seed; (B, C, H, W) on the CPU."""
    from src.harness.samplers import ddim

    generator = torch.Generator(schedule.betas.device).manual_seed(seed)
    with autocast():
        samples = ddim(model.eval(), schedule, shape, generator, num_steps=EVAL_STEPS)
    return samples.float().cpu()


# Calibrated with `uv run python -m src.harness.calibrate <dataset>`; the table is in the README ("Sample quality").
THRESHOLDS = {  # dataset -> minimum mean confidence, minimum classes covered, maximum FD / real-vs-real FD
    "fashion_mnist": {"mean_confidence": 0.6, "classes_covered": 8, "fd_ratio": 15.0},
    # No confidence bar: on CIFAR-10 pure noise (0.54) scores as high as the reference (0.50).
    "cifar10": {"classes_covered": 8, "fd_ratio": 8.0},
}


def judge(quality: dict, dataset: str) -> list[str]:
    """The reasons the samples do not count as recognisable; an empty list means they pass."""
    limits, reasons = THRESHOLDS[dataset], []
    if quality["mean_confidence"] < limits.get("mean_confidence", 0.0):
        reasons.append(f"the classifier is only {quality['mean_confidence']:.0%} sure on average what your samples "
                       f"show (needs {limits['mean_confidence']:.0%}): train longer or improve the model")
    if quality["classes_covered"] < limits["classes_covered"]:
        reasons.append(f"your samples cover {quality['classes_covered']} of {len(quality['class_histogram'])} classes "
                       f"(needs {limits['classes_covered']}): the model draws too few kinds of image")
    ratio = quality["fd"] / quality["real_vs_real_fd"]
    if ratio > limits["fd_ratio"]:
        reasons.append(f"Frechet distance {quality['fd']:.1f} is {ratio:.1f}x that between two sets of real images "
                       f"(allowed {limits['fd_ratio']:g}x): the samples do not yet look like the data")
    return reasons


def describe_quality(quality: dict, dataset: str) -> str:
    reasons = judge(quality, dataset)
    verdict = "recognisable" if not reasons else "not yet recognisable: " + "; ".join(reasons)
    return (f"Sample quality ({quality['num_samples']} DDIM samples): mean confidence {quality['mean_confidence']:.2f}, "
            f"{quality['confident_share']:.0%} confident, {quality['classes_covered']} classes covered, "
            f"FD {quality['fd']:.2f} (real vs real {quality['real_vs_real_fd']:.2f}). Verdict: {verdict}")
