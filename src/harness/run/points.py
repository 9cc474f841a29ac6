"""The 2-D playground (Level 0): pictures of point datasets (data.py makes them) and how close samples are to them.

A "sample" here is a point (x, y) instead of an image, so the whole forward and reverse process fits in a
scatter plot and a run trains in seconds. Points lie within [-1, 1], like images in the model's range.
"""

import io

import torch

from src.harness.policy import EVAL_STEPS, POINT_EVAL_SAMPLES, THRESHOLDS


def chamfer_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Symmetric Chamfer distance between point sets a: (N, D) and b: (M, D).

    The mean distance from each point of a to its nearest point of b, averaged with the same from b to a:
    samples off the data's shape raise the first half, parts of the shape that no sample reaches the second.
    """
    distances = torch.cdist(a.double().cpu(), b.double().cpu())
    return (distances.min(dim=1).values.mean() + distances.min(dim=0).values.mean()).item() / 2


def point_quality(samples: torch.Tensor, train: torch.Tensor, val: torch.Tensor) -> dict:
    """How far `samples` (N, 2) lie from held-out points `val`, beside two sets of real points (train vs val)."""
    n = len(samples)
    if len(val) < n or len(train) < n:
        raise ValueError(f"scoring {n} samples needs at least {n} training and {n} validation points")
    return {"num_samples": n, "chamfer": chamfer_distance(samples, val[:n]),
            "real_vs_real_chamfer": chamfer_distance(train[:n], val[:n])}


def chamfer_ratio(quality: dict) -> float:
    """The samples' Chamfer distance to the data in units of the distance between two sets of real points."""
    return quality["chamfer"] / quality["real_vs_real_chamfer"]


def judge_points(quality: dict, dataset: str) -> list[str]:
    """The reasons the samples do not yet follow the data's shape; an empty list means they pass."""
    bar = THRESHOLDS[dataset]["chamfer_ratio"]
    if chamfer_ratio(quality) <= bar:
        return []
    return [f"the samples' Chamfer distance to the data is {quality['chamfer']:.3f}, {chamfer_ratio(quality):.1f}x "
            f"that between two sets of real points (allowed {bar:g}x): samples.png shows where they leave the shape"]


def describe_point_quality(quality: dict, dataset: str) -> str:
    score = (f"Sample quality ({quality['num_samples']} samples): Chamfer distance {quality['chamfer']:.3f} = "
             f"{chamfer_ratio(quality):.1f}x real vs real ({quality['real_vs_real_chamfer']:.3f})")
    if dataset not in THRESHOLDS:
        return score + " (no bar: not graded)"
    reasons = judge_points(quality, dataset)
    verdict = "not yet the data's shape: " + "; ".join(reasons) if reasons else "the data's shape"
    return f"{score}. Verdict: {verdict}"


def evaluation_points(model, objective, autocast, seed: int = 0) -> torch.Tensor:
    """The points an evaluation scores: POINT_EVAL_SAMPLES of them, drawn as quality.evaluation_samples draws images."""
    from src.harness.run.quality import evaluation_samples

    return evaluation_samples(model, objective, (POINT_EVAL_SAMPLES, 2), autocast, seed)


# -------------------------------------------------------------------------------------------------- pictures

LIMITS = (-1.25, 1.25)


def scatter_picture(points: torch.Tensor, data: torch.Tensor | None = None, title: str | None = None):
    """A PIL image of `points` (N, 2) in blue over `data` (M, 2) in grey, on the square [-1.25, 1.25]^2."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3.2, 3.2))
    _scatter(ax, points, data)
    if title:
        ax.set_title(title, fontsize=9)
    return _picture(fig, dpi=80)


def _picture(fig, dpi: int):
    """The matplotlib figure `fig` as a PIL image, the figure closed."""
    import matplotlib.pyplot as plt
    from PIL import Image

    fig.tight_layout(pad=0.3)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return Image.open(buffer).convert("RGB")


def _scatter(ax, points: torch.Tensor, data: torch.Tensor | None) -> None:
    if data is not None:
        ax.scatter(*data.float().cpu().T.numpy(), s=2, color="0.75", linewidths=0)
    ax.scatter(*points.float().cpu().clamp(*LIMITS).T.numpy(), s=2, color="tab:blue", linewidths=0)
    ax.set_xlim(*LIMITS)
    ax.set_ylim(*LIMITS)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def forward_scatter(points: torch.Tensor, objective, path) -> None:
    """The forward process on `points` (N, 2), as the objective noises them (DDPM's q(x_t | x_0), or flow matching's
    straight line): one scatter per t = 0, T/40, T/20, T/10, T/5 and T-1.

    Under DDPM the shape dissolves early (by T/5 little is left of it), so the panels crowd there rather than spread
    evenly; under flow matching it fades steadily, and the same panels show the difference.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    T = objective.schedule.num_timesteps
    steps = [0, T // 40, T // 20, T // 10, T // 5, T - 1]
    noise = torch.randn(points.shape, generator=torch.Generator().manual_seed(0))
    fig, axes = plt.subplots(1, len(steps), figsize=(len(steps) * 2, 2.3))
    for ax, t in zip(axes, steps):
        _scatter(ax, objective.noised(points, torch.full((len(points),), t), noise), None)
        ax.set_title(f"t = {t}", fontsize=9)
    fig.tight_layout(pad=0.3)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def paths_picture(runs: list[tuple[str, torch.nn.Module, object]], data: torch.Tensor, num_paths: int = 40,
                  seed: int = 0):
    """A PIL image with one column per (title, model, objective) in `runs`, both rows from the same noise (seed):
    on top, the training paths, x_t over all t for pairs (a data point of `data` (M, 2), a noise) as the objective
    noises them; below, the sampling paths, as the objective's fast sampler moves points from that noise to samples.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from src.harness.run.figures import TrajectoryRecorder

    fig, axes = plt.subplots(2, len(runs), figsize=(3.4 * len(runs), 7), squeeze=False)
    for column, (title, model, objective) in enumerate(runs):
        noise = torch.randn((num_paths, 2), generator=torch.Generator().manual_seed(seed))
        x0 = data[torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:num_paths]]
        T = objective.schedule.num_timesteps
        training = torch.stack([objective.noised(x0, torch.full((num_paths,), t), noise) for t in range(T - 1, -1, -1)])
        _paths(axes[0][column], torch.cat([training, x0[None]]), data, f"{title}: training paths")
        recorder = TrajectoryRecorder(model.eval(), lambda x: x.detach().float().cpu())
        generator = torch.Generator(objective.schedule.betas.device).manual_seed(seed)
        samples = objective.fast_sampler(recorder, (num_paths, 2), generator, EVAL_STEPS).float().cpu()
        _paths(axes[1][column], torch.stack([*recorder.inputs, samples]), data, f"{title}: sampling paths")
    return _picture(fig, dpi=100)


def _paths(ax, paths: torch.Tensor, data: torch.Tensor, title: str) -> None:
    """paths: (steps, N, 2) from noise (first) to data (last), drawn over `data`: black start, blue end."""
    paths = paths.float().clamp(*LIMITS)
    _scatter(ax, paths[-1], data)
    ax.plot(paths[..., 0].numpy(), paths[..., 1].numpy(), color="tab:orange", linewidth=0.7, alpha=0.9)
    ax.scatter(*paths[0].T.numpy(), s=8, color="black", linewidths=0)
    ax.scatter(*paths[-1].T.numpy(), s=8, color="tab:blue", linewidths=0)
    ax.set_title(title, fontsize=9)
