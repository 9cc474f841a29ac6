"""`python main.py --config configs/X.yaml [key=value ...]`: train, validate, sample, write the outputs."""

import argparse
import json
import math
import sys
import time
import traceback
from pathlib import Path

import torch
from omegaconf import OmegaConf

from src.harness.config import ConfigError, load_config
from src.harness.data import DATASETS, DataNotFoundError, load_data, to_model_range
from src.harness.loading import StudentCodeError, build_model, describe_exception, stub_message, student_location
from src.harness.samplers import get_sampler
from src.harness.schedule import NoiseSchedule, validation_loss
from src.harness.train import (NonFiniteLossError, TrainingInterrupted, autocast_factory, pick_device,
                               resolve_precision, train)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train a diffusion model, then sample from it. Outputs go to outputs/<config name>[-solution]/.",
        epilog="Overrides: any config key as key=value, e.g. training.epochs=3 data.batch_size=256")
    parser.add_argument("--config", required=True, help="a YAML file in configs/")
    parser.add_argument("--solution", action="store_true", help="train the reference model, not src/model.py")
    parser.add_argument("--custom-sampler", action="store_true",
                        help="draw the final samples with your src/sampler.py instead of the reference sampler")
    parser.add_argument("--resume", action="store_true", help="continue from the run's checkpoint.pt")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--seed", type=int, default=None, help="overrides the config's seed")
    parser.add_argument("--benchmark", action="store_true",
                        help="measure training and sampling speed beside a textbook loop, then exit")
    parser.add_argument("--traceback", action="store_true", help="show full tracebacks for errors in your code")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        overrides = list(args.overrides) + ([f"seed={args.seed}"] if args.seed is not None else [])
        cfg = load_config(args.config, overrides)
        return run(cfg, args)
    except (ConfigError, DataNotFoundError, StudentCodeError, NonFiniteLossError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except NotImplementedError as err:
        print(stub_message(err), file=sys.stderr)
        return 1
    except TrainingInterrupted as err:
        print(f"Stopped at step {err.step}; the checkpoint is saved. Continue with the same command plus --resume.")
        return 130
    except Exception as err:
        if args.traceback or student_location(err) is None:
            raise
        traceback_hint = "run again with --traceback for the full traceback"
        print(f"error: your code raised {describe_exception(err)} ({traceback_hint})", file=sys.stderr)
        return 1


def output_dir(cfg, solution: bool) -> Path:
    return Path(cfg.output.root) / (cfg.output.name + ("-solution" if solution else ""))


def run(cfg, args) -> int:
    device = pick_device(args.device)
    precision = resolve_precision(cfg.training.precision, device)
    autocast = autocast_factory(device, precision)
    out = output_dir(cfg, args.solution)
    checkpoint_path = out / "checkpoint.pt"
    if args.resume and not checkpoint_path.exists():
        raise FileNotFoundError(f"--resume: there is no checkpoint at {checkpoint_path}; run without --resume first")

    # Student code first: a stub or a syntax error should be reported before anything slow happens.
    channels, image_size = DATASETS[cfg.data.name].shape(cfg.data)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, channels, image_size, args.solution).to(device)
    sampler = get_sampler(cfg.sampling, custom=args.custom_sampler)
    if args.custom_sampler:
        sampler(lambda x, t: torch.zeros_like(x), NoiseSchedule(2, device=device), (1, channels, 4, 4))
    data = load_data(cfg.data)
    if args.benchmark:
        from src.harness.benchmark import benchmark

        print(f"benchmark: {args.config}, {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, "
              f"{device.type} ({torch.get_num_threads()} threads)")
        benchmark(cfg, lambda: build_model(cfg.model, channels, image_size, args.solution), data, device, precision)
        return 0
    schedule = NoiseSchedule.from_config(cfg.diffusion, device)

    out.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out / "config.yaml", resolve=True)
    num_parameters = sum(p.numel() for p in model.parameters())
    who = "the reference model" if args.solution else "your model (src/model.py)"
    print(f"Training {who}, {num_parameters / 1e6:.2f} M parameters, on {cfg.data.name} "
          f"({len(data.train)} images, {data.channels}x{data.image_size}x{data.image_size}), "
          f"device {device.type}, {precision}. Outputs: {out}/")

    tic = time.perf_counter()
    result = train(cfg, model, schedule, data.train, device, checkpoint_path, resume=args.resume,
                   metadata={"solution": args.solution})
    train_seconds = time.perf_counter() - tic

    # float32, not autocast: the level tests recompute this number from the checkpoint and compare runs by it.
    val_images = to_model_range(data.val)
    val = validation_loss(result.ema.model, schedule, val_images, cfg.training.val_batch_size)
    val_raw = validation_loss(model, schedule, val_images, cfg.training.val_batch_size)

    tic = time.perf_counter()
    generator = torch.Generator(device).manual_seed(cfg.sampling.seed)
    shape = (cfg.sampling.num_samples, data.channels, data.image_size, data.image_size)
    with autocast():
        samples = sampler(result.ema.model, schedule, shape, generator=generator)
    sample_seconds = time.perf_counter() - tic
    save_grid(samples, out / "samples.png")

    metrics = {
        "config": args.config, "solution": args.solution, "custom_sampler": args.custom_sampler,
        "dataset": cfg.data.name, "num_parameters": num_parameters, "device": device.type, "precision": precision,
        "steps": result.steps, "train_seconds": round(train_seconds, 2),
        "train_images_per_second": round(result.images_per_second, 1), "train_loss": result.last_loss,
        "val_loss": val["loss"], "val_loss_bands": val["bands"], "val_loss_raw_weights": val_raw["loss"],
        "sample_seconds": round(sample_seconds, 2),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"Validation loss (EMA weights) {val['loss']:.4f}, raw weights {val_raw['loss']:.4f}. "
          f"{len(samples)} samples in {sample_seconds:.1f} s: {out / 'samples.png'}")
    return 0


def save_grid(images: torch.Tensor, path: Path) -> None:
    """images: (B, C, H, W) in [-1, 1] -> a square-ish PNG grid with 2-pixel white gaps."""
    from torchvision.utils import save_image

    save_image(images.float().cpu() * 0.5 + 0.5, path, nrow=math.ceil(math.sqrt(len(images))), padding=2,
               pad_value=1.0)
