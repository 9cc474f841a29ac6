"""Sample quality without downloads: a small classifier per dataset, trained by this project and shipped.

The classes it sees say whether samples cover the data; the Frechet distance between its features of real
and generated images says whether they look like the data (FID's recipe with a domain classifier in
place of Inception, which is poorly calibrated on 28-pixel greyscale images); the strength of the edges
between neighbouring pixels, beside that of real images, catches blur, noise and patterns that the
classifier overlooks; and the distance of each sample to its nearest training image, beside that of held-out real
images, catches a "model" that returns stored training images instead of generating.
"""

import hashlib
import json
import weakref
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from src.harness.paths import ROOT
from src.harness.policy import COVERED, EVAL_SAMPLES, EVAL_STEPS, THRESHOLDS  # the bars and why: see policy.py

WEIGHTS = ROOT / "src" / "harness" / "classifiers"
# A sample is "confident" when the classifier gives its top class at least this probability. Reported only
# (confident_share): it judges nothing, so it is no grading policy.
CONFIDENT = 0.9


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
    """The shipped classifier for `dataset` (see `python -m src.harness.instructor.train_classifier`)."""
    path = classifier_path(dataset)
    if not path.exists():
        raise FileNotFoundError(f"no classifier for {dataset} at {path}; train one with "
                                f"`uv run python -m src.harness.instructor.train_classifier {dataset}`")
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


def edge_strength(images: torch.Tensor) -> float:
    """Mean absolute difference between horizontally and vertically neighbouring pixels of (N, C, H, W) images."""
    images = images.double()
    horizontal = (images[..., :, 1:] - images[..., :, :-1]).abs().mean()
    vertical = (images[..., 1:, :] - images[..., :-1, :]).abs().mean()
    return ((horizontal + vertical) / 2).item()


def nearest_distances(images: torch.Tensor, train: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """(N,) root-mean-square distance from each of `images` (N, C, H, W) to its nearest of `train` (M, C, H, W), both
    in [-1, 1] (or `train` as stored, uint8), measured on 2x2 averages of pixels: a copy is at 0 all the same, and
    the search costs a quarter."""
    flat, pooled = F.avg_pool2d(images.float(), 2).flatten(1), _pooled(train, chunk)
    best = torch.cat([torch.cdist(flat, pooled[start:start + chunk]).min(1, keepdim=True).values
                      for start in range(0, len(pooled), chunk)], 1).min(1).values
    return best / flat.shape[1] ** 0.5


_POOLED: list = [None, None]  # [a weak reference to the last training set, its 2x2 averages]: each run has one


def _pooled(train: torch.Tensor, chunk: int) -> torch.Tensor:
    """(M, C * H * W / 4) float: `train`'s images in [-1, 1], averaged over 2x2 pixels; kept for the next call."""
    if _POOLED[0] is None or _POOLED[0]() is not train:
        blocks = [train[start:start + chunk].float() for start in range(0, len(train), chunk)]
        _POOLED[:] = weakref.ref(train), torch.cat([F.avg_pool2d(block / 127.5 - 1 if train.dtype == torch.uint8
                                                                 else block, 2).flatten(1) for block in blocks])
    return _POOLED[1]


def copy_ratio(samples: torch.Tensor, held_out: torch.Tensor, train: torch.Tensor) -> float:
    """How near the samples sit to the training set, in units of how near held-out real images sit: the median
    distance to the nearest training image of the samples / that of `held_out` (real images outside `train`).
    Near 1 (or above) for a model that generates; near 0 for one that returns training images."""
    held_out_distance = _remembered(("nearest training image", len(train)), held_out,
                                    lambda: nearest_distances(held_out, train).median())
    return (nearest_distances(samples, train).median() / held_out_distance).item()


_REMEMBERED: dict[tuple, torch.Tensor] = {}  # (what, ..., digest of the images) -> the result, the last eight


def _remembered(what: tuple, images: torch.Tensor, compute) -> torch.Tensor:
    """compute(), remembered by `what` and the content of `images`: the calibration and the graded tests score many
    sample sets against the same real images (the calibration dozens), which are then measured once."""
    key = (*what, hashlib.sha256(images.detach().float().cpu().contiguous().numpy().tobytes()).hexdigest())
    if key not in _REMEMBERED:
        if len(_REMEMBERED) >= 8:
            _REMEMBERED.pop(next(iter(_REMEMBERED)))
        _REMEMBERED[key] = compute()
    return _REMEMBERED[key]


def sample_quality(samples: torch.Tensor, real: torch.Tensor, dataset: str, classes: list[str],
                   train: torch.Tensor | None = None) -> dict:
    """Recognisability of `samples` and their Frechet distance to `real` images, both (N, C, H, W) in [-1, 1]; with
    the `train` images, also how near the samples sit to them (copy_ratio).

    `real` needs at least 2N images: the distance is also measured between two disjoint sets of N real
    images (real_vs_real_fd), which is what a perfect generator would score at this N.
    """
    n = len(samples)
    classifier = load_classifier(dataset)
    probabilities, sample_features = classify(classifier, samples)
    real_features = _remembered(("features", dataset), real[:2 * n], lambda: classify(classifier, real[:2 * n])[1])
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
        "edge_strength": edge_strength(samples),
        "real_edge_strength": edge_strength(real[:2 * n]),
    } | ({"copy_ratio": copy_ratio(samples, real[:n], train)} if train is not None else {})


def evaluate(model, objective, real: torch.Tensor, dataset: str, classes: list[str], autocast,
             train: torch.Tensor | None = None, num_samples: int = EVAL_SAMPLES, seed: int = 0) -> dict:
    """Draw `num_samples` images with the objective's fast sampler from a fixed seed and score them against `real`
    (N, C, H, W) in [-1, 1] (and against the `train` images, for copies)."""
    samples = evaluation_samples(model, objective, (num_samples, *real.shape[1:]), autocast, seed)
    return sample_quality(samples, real, dataset, classes, train)


def evaluation_samples(model, objective, shape: tuple[int, ...], autocast, seed: int = 0) -> torch.Tensor:
    """The samples an evaluation scores, drawn from a fixed seed by the objective's fast sampler in EVAL_STEPS model
    calls (DPM-Solver++(2M) for DDPM, Heun for flow matching); (B, C, H, W) or (B, 2) on the CPU."""
    generator = torch.Generator(objective.schedule.betas.device).manual_seed(seed)
    with autocast():
        samples = objective.fast_sampler(model.eval(), shape, generator, EVAL_STEPS)
    return samples.float().cpu()


def fd_ratio(quality: dict) -> float:
    """The samples' Frechet distance in units of the distance between two sets of real images."""
    return quality["fd"] / quality["real_vs_real_fd"]


def edge_ratio(quality: dict) -> float:
    """How strong the samples' edges between neighbouring pixels are, in units of real images' (1 for real ones)."""
    return quality["edge_strength"] / quality["real_edge_strength"]


def judge(quality: dict, bars: str) -> list[str]:
    """The reasons the samples do not count as recognisable by THRESHOLDS[bars] (policy.bars_of names the entry of
    a run); an empty list means they pass."""
    limits, reasons = THRESHOLDS[bars], []
    if "copy_ratio" in limits and quality.get("copy_ratio", 1.0) < limits["copy_ratio"]:
        reasons.append(f"your samples are copies of training images: their nearest training image is "
                       f"{quality['copy_ratio']:.2f}x as far as a held-out real image's (needs at least "
                       f"{limits['copy_ratio']:g}x); the model must learn to generate images, not store them")
    if quality["classes_covered"] < limits["classes_covered"]:
        reasons.append(f"your samples cover {quality['classes_covered']} of {len(quality['class_histogram'])} classes "
                       f"(needs {limits['classes_covered']}): the model draws too few kinds of image")
    if fd_ratio(quality) > limits["fd_ratio"]:
        reasons.append(f"Frechet distance {quality['fd']:.1f} is {fd_ratio(quality):.1f}x that between two sets of "
                       f"real images (allowed {limits['fd_ratio']:g}x): the samples do not yet look like the data")
    low, high = limits["edge_ratio"]
    if edge_ratio(quality) < low:
        reasons.append(f"the samples are blurrier than real images: the edges between neighbouring pixels are "
                       f"{edge_ratio(quality):.2f}x as strong (allowed {low:g}x to {high:g}x)")
    if edge_ratio(quality) > high:
        reasons.append(f"the samples hold noise or a fine pattern that real images lack: the edges between "
                       f"neighbouring pixels are {edge_ratio(quality):.2f}x as strong (allowed {low:g}x to {high:g}x)")
    return reasons


def judge_against_reference(quality: dict, bars: str) -> list[str]:
    """The reasons the samples are not yet as close to the data as the reference's; empty means they are.

    Only for THRESHOLDS entries with a "reference_fd_ratio" bar."""
    bar = THRESHOLDS[bars]["reference_fd_ratio"]
    if fd_ratio(quality) <= bar:
        return []
    return [f"Frechet distance {quality['fd']:.1f} is {fd_ratio(quality):.1f}x that between two sets of real images; "
            f"samples as good as the reference's are within {bar:g}x"]


def describe_quality(quality: dict, bars: str) -> str:
    reasons = judge(quality, bars)
    if reasons:
        verdict = "not yet recognisable: " + "; ".join(reasons)
    elif "reference_fd_ratio" not in THRESHOLDS[bars]:
        verdict = "recognisable"
    elif judge_against_reference(quality, bars):
        verdict = (f"recognisable, but not yet as close to the data as the reference's (FD within "
                   f"{THRESHOLDS[bars]['reference_fd_ratio']:g}x real vs real)")
    else:
        verdict = "recognisable, and as close to the data as the reference's"
    return (f"Sample quality ({quality['num_samples']} samples): {quality['classes_covered']} classes covered, "
            f"FD {quality['fd']:.2f} = {fd_ratio(quality):.1f}x real vs real ({quality['real_vs_real_fd']:.2f}), "
            f"edges {edge_ratio(quality):.2f}x real images'"
            + (f", copies {quality['copy_ratio']:.2f}x" if "copy_ratio" in quality else "")
            + f"; mean confidence {quality['mean_confidence']:.2f}. Verdict: {verdict}")
