"""Level 9's run and evaluation: a trained run's samples steered at inference, with no retraining, by the steered
sampler under test (src/steer.py's steered_sample, or the reference's with --solution; the harness holds no steering
of its own), towards the two goals the harness ships:

- inpainting: keep the top half of a held-out image and draw the rest (InpaintingGoal);
- class steering: Level 1's unconditional model drawn towards a class by the shipped classifier (ClassGoal).

A steering run (configs/fashion_mnist_steer.yaml) trains nothing: it steers the finished run of the config
`steering.run`, the reference's recorded run with --solution where that run was not trained here, and writes
inpainting.png, steering.png and metrics.json.
"""

import json
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from src.harness.paths import REFERENCE_RUNS
from src.harness.run.config import Config, ConfigError, official_config, output_dir
from src.harness.run.data import load_data, model_input
from src.harness.run.guidance import class_agreement, guidance_strip
from src.harness.run.kinds import build_model
from src.harness.run.quality import classifier_path, load_classifier
from src.harness.run.runtime import Runtime
from src.harness.run.schedule import NoiseSchedule
from src.harness.run.train import load_checkpoint, load_weights


class InpaintingGoal:
    """goal(x0) = -1/2 * sum over the known pixels of (x0 - image)^2, one value per image: (B,). The log-likelihood
    of the known pixels under unit Gaussian noise; its gradient pulls x0_hat towards the image where mask = 1."""

    def __init__(self, images: torch.Tensor, mask: torch.Tensor):
        self.images, self.mask = images, mask  # (B, C, H, W) in [-1, 1]; (1, C, H, W) of 0 and 1

    def __call__(self, x0: torch.Tensor) -> torch.Tensor:
        return -0.5 * (self.mask * (x0 - self.images) ** 2).flatten(1).sum(1)


class ClassGoal:
    """goal(x0) = log p(label | x0) under a classifier of clean images, one value per image: (B,)."""

    def __init__(self, classifier, labels: torch.Tensor):
        self.classifier, self.labels = classifier, labels

    def __call__(self, x0: torch.Tensor) -> torch.Tensor:
        log_p = self.classifier(x0).float().log_softmax(-1)
        return log_p.gather(1, self.labels[:, None]).squeeze(1)


def top_half(sample_shape: tuple[int, ...]) -> torch.Tensor:
    """The inpainting mask: (1, C, H, W), 1 on the known rows (the top half), 0 on the rows to draw."""
    mask = torch.zeros(1, *sample_shape)
    mask[..., :sample_shape[-2] // 2, :] = 1
    return mask


def steering_inputs(settings, data) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What a steering run (its `steering` config) draws from `data`: the first num_images held-out images to inpaint
    (N, C, H, W) in [-1, 1], their labels (N,), and the class asked of each class-steered sample, 0, 1, ..., K-1,
    0, 1, ..., per_class times: (K * per_class,)."""
    count = settings.num_images
    return (model_input(data.val[:count]), data.val_labels[:count],
            torch.arange(len(data.classes)).repeat(settings.per_class))


def inpainted(steered_sample, model, schedule, images: torch.Tensor, scale: float, num_steps: int,
              seed: int = 0) -> torch.Tensor:
    """(N, C, H, W) on the CPU: one sample per image of `images` (N, C, H, W) in [-1, 1], steered to keep its top
    half, from a fixed seed."""
    device = schedule.betas.device
    goal = InpaintingGoal(images.to(device), top_half(tuple(images.shape[1:])).to(device))
    generator = torch.Generator(device).manual_seed(seed)
    samples = steered_sample(model.eval(), schedule, tuple(images.shape), goal, scale=scale, generator=generator,
                             num_steps=num_steps)
    return samples.float().cpu()


def class_steered(steered_sample, model, schedule, sample_shape: tuple[int, ...], labels: torch.Tensor, dataset: str,
                  scale: float, num_steps: int, seed: int = 0) -> torch.Tensor:
    """(N, C, H, W) on the CPU: one sample per label of `labels` (N,), steered towards it by the shipped classifier
    of `dataset`, from a fixed seed."""
    device = schedule.betas.device
    classifier = load_classifier(dataset, device).requires_grad_(False)
    goal = ClassGoal(classifier, labels.to(device))
    generator = torch.Generator(device).manual_seed(seed)
    samples = steered_sample(model.eval(), schedule, (len(labels), *sample_shape), goal, scale=scale,
                             generator=generator, num_steps=num_steps)
    return samples.float().cpu()


def inpainting_scores(samples: torch.Tensor, images: torch.Tensor, labels: torch.Tensor, dataset: str,
                      classifier=None) -> dict:
    """{"known_rmse": the root mean square error on the known half, over all images, "worst_known_rmse": that of the
    worst image, "kept_class": the share of samples the shipped classifier puts in their image's class (None for a
    dataset without one)}."""
    mask = top_half(tuple(images.shape[1:]))
    per_image = ((samples - images) ** 2 * mask).flatten(1).sum(1) / mask.sum()
    kept = class_agreement(samples, labels, dataset, classifier) if classifier_path(dataset).exists() else None
    return {"known_rmse": per_image.mean().sqrt().item(), "worst_known_rmse": per_image.max().sqrt().item(),
            "kept_class": kept}


def inpainting_figure(images: torch.Tensor, samples: dict, path: Path, columns: int = 20) -> None:
    """Columns: the first `columns` images; rows: the input (the half to draw blanked), each scale's samples, the
    original."""
    import matplotlib.pyplot as plt

    from src.harness.run.data import to_uint8

    images, samples = images[:columns], {scale: drawn[:columns] for scale, drawn in samples.items()}
    blanked = images * top_half(tuple(images.shape[1:]))
    rows = {"input": blanked, **{f"scale {scale:g}": drawn for scale, drawn in samples.items()}, "original": images}
    fig, axes = plt.subplots(len(rows), len(images), figsize=(len(images) * 0.8, len(rows) * 0.85 + 0.2),
                             squeeze=False)
    for r, (name, row) in enumerate(rows.items()):
        for c, image in enumerate(row):
            axes[r][c].imshow(to_uint8(image).permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=255)
            axes[r][c].set_xticks([])
            axes[r][c].set_yticks([])
        axes[r][0].set_ylabel(name, fontsize=8)
    fig.tight_layout(pad=0.3)
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------- the run

def steered_checkpoint(run: str, source, root: str) -> Path:
    """The checkpoint of the run to steer: <root>/<run>[-solution]/checkpoint.pt, or for the reference its recorded
    run (src/solution/runs/<run>.pt) while that run has not been trained there."""
    path = output_dir(official_config(run, [f"output.root={root}"]), source) / "checkpoint.pt"
    if source.reference and not path.exists() and (REFERENCE_RUNS / f"{run}.pt").exists():
        return REFERENCE_RUNS / f"{run}.pt"
    if not path.exists():
        solution = " --solution" if source.reference else ""
        raise ConfigError(f"there is no trained run to steer at {path}: train it first with "
                          f"`uv run python main.py --config configs/{run}.yaml{solution}`")
    return path


def run_steering(cfg, args) -> int:
    """Steer the trained run of cfg.steering.run: inpainting.png, steering.png and metrics.json in the run folder."""
    checkpoint = steered_checkpoint(cfg.steering.run, args.source, cfg.output.root)
    state = load_checkpoint(checkpoint)
    run_cfg = OmegaConf.merge(OmegaConf.structured(Config), state["config"])
    run_cfg.data.root, run_cfg.data.download = cfg.data.root, cfg.data.download
    runtime = Runtime.choose(args.device, cfg.training.precision)
    steered_sample = args.source.module("steer").steered_sample
    model = build_model(run_cfg, args.source)
    load_weights(model, state["ema"]["model"], checkpoint)
    model = model.to(runtime.device).eval().requires_grad_(False)
    schedule = NoiseSchedule.from_config(run_cfg.diffusion, device=runtime.device)
    data = load_data(run_cfg.data)
    out = output_dir(cfg, args.source)
    out.mkdir(parents=True, exist_ok=True)
    who = "the reference's steered sampler" if args.source.reference else "your steered sampler (src/steer.py)"
    print(f"Steering {checkpoint} with {who}, {cfg.steering.steps} steps, device {runtime.device.type}, "
          f"{runtime.precision}. Outputs: {out}/")
    steering = (steered_sample, model, schedule)  # what inpainted and class_steered start with
    metrics = {"config": args.config, "solution": args.source.reference, "steered_run": str(checkpoint),
               "steps": cfg.steering.steps, "precision": runtime.precision}
    metrics |= _inpainting_phase(cfg, steering, data, run_cfg.data.name, runtime, out)
    if classifier_path(run_cfg.data.name).exists():
        metrics |= _class_phase(cfg, steering, data, run_cfg.data.name, runtime, out)
    else:
        print(f"No classifier is shipped for {run_cfg.data.name}: no class steering.")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return 0


def _inpainting_phase(cfg, steering, data, dataset: str, runtime, out: Path) -> dict:
    """Inpaint the first held-out images at every scale of the config: inpainting.png and the scores."""
    settings, tic = cfg.steering, time.perf_counter()
    images, labels, _ = steering_inputs(settings, data)
    drawn, table = {}, {}
    for scale in settings.inpainting_scales:
        with runtime.autocast():
            drawn[scale] = inpainted(*steering, images, scale, settings.steps, cfg.sampling.seed)
        table[scale] = inpainting_scores(drawn[scale], images, labels, dataset)
    inpainting_figure(images, drawn, out / "inpainting.png")
    print(describe_inpainting(table, settings.inpainting_scale))
    seconds = round(time.perf_counter() - tic, 2)
    print(f"inpainting in {seconds:.0f} s: {out / 'inpainting.png'}")
    return {"inpainting": {str(scale): entry for scale, entry in table.items()}, "inpainting_seconds": seconds}


def _class_phase(cfg, steering, data, dataset: str, runtime, out: Path) -> dict:
    """Steer towards every class at every scale of the config: steering.png and the class agreement."""
    settings, tic = cfg.steering, time.perf_counter()
    _, _, labels = steering_inputs(settings, data)
    scores = {}
    for scale in settings.class_scales:
        with runtime.autocast():
            samples = class_steered(*steering, data.sample_shape, labels, dataset, scale, settings.steps,
                                    cfg.sampling.seed)
        scores[scale] = {"agreement": class_agreement(samples, labels, dataset), "samples": samples, "labels": labels}
    guidance_strip(scores, data.classes, out / "steering.png", symbol="scale")
    print(describe_class_steering(scores, settings.class_scale, 1 / len(data.classes)))
    seconds = round(time.perf_counter() - tic, 2)
    print(f"class steering in {seconds:.0f} s: {out / 'steering.png'}")
    return {"class_agreement": {str(scale): entry["agreement"] for scale, entry in scores.items()},
            "class_seconds": seconds}


def describe_inpainting(table: dict, graded: float) -> str:
    lines = ["Inpainting (top half kept): error on the known half, and the share the classifier puts in the "
             "original's class:"]
    lines += [f"  scale {scale:g}: RMSE {entry['known_rmse']:.3f} (worst image {entry['worst_known_rmse']:.3f}), "
              + (f"class kept {entry['kept_class']:.0%}" if entry["kept_class"] is not None else "")
              + ("  <- graded" if scale == graded else "")
              for scale, entry in table.items()]
    return "\n".join(lines)


def describe_class_steering(scores: dict, graded: float, chance: float) -> str:
    lines = ["Class steering of the unconditional model: the share the classifier sees as the class asked for:"]
    lines += [f"  scale {scale:g}: {entry['agreement']:.0%}{'  <- graded' if scale == graded else ''}"
              for scale, entry in scores.items()]
    return "\n".join(lines + [f"  (chance: {chance:.0%}; scale 0 is the unsteered model)"])

