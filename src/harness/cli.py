"""`python main.py --config configs/X.yaml [key=value ...]`: train, validate, sample, write the outputs."""

import argparse
import copy
import json
import sys
import time
import traceback
from pathlib import Path

import torch
from omegaconf import OmegaConf

from src.harness.config import ConfigError, load_config
from src.harness.data import DATASETS, DataNotFoundError, load_data, to_model_range
from src.harness.figures import RunMonitor, forward_strip, save_animation, save_grid, schedule_figure
from src.harness.loading import StudentCodeError, build_model, describe_exception, stub_message, student_location
from src.harness.quality import classifier_path, describe_quality, evaluate, evaluation_samples
from src.harness.samplers import get_sampler
from src.harness.schedule import NoiseSchedule, validation_loss
from src.harness.train import (NonFiniteLossError, TrainingInterrupted, autocast_factory, load_checkpoint,
                               pick_device, resolve_precision, train)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train a diffusion model, then sample from it. Outputs go to outputs/<config name>[-solution]/.",
        epilog="Overrides: any config key as key=value, e.g. training.epochs=3 data.batch_size=256")
    parser.add_argument("--config", required=True, help="a YAML file in configs/")
    parser.add_argument("--solution", action="store_true", help="train the reference model, not src/model.py")
    parser.add_argument("--custom-sampler", action="store_true",
                        help="draw the final samples with your src/sampler.py instead of the harness's (sampling.sampler)")
    parser.add_argument("--resume", action="store_true", help="continue from the run's checkpoint.pt")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--seed", type=int, default=None, help="overrides the config's seed")
    parser.add_argument("--evaluate", action="store_true",
                        help="score the run's existing checkpoint (validation loss, samples, quality); no training")
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
    sampler = get_sampler(cfg.sampling, custom=args.custom_sampler, solution=args.solution)
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
    shape = (cfg.sampling.num_samples, channels, image_size, image_size)
    val_images = to_model_range(data.val)

    out.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, out / "config.yaml", resolve=True)
    num_parameters = sum(p.numel() for p in model.parameters())
    who = "the reference model" if args.solution else "your model (src/model.py)"
    action = "Evaluating" if args.evaluate else "Training"
    print(f"{action} {who}, {num_parameters / 1e6:.2f} M parameters, on {cfg.data.name} "
          f"({len(data.train)} images, {data.channels}x{data.image_size}x{data.image_size}), "
          f"device {device.type}, {precision}. Outputs: {out}/")

    metrics_path = out / "metrics.json"
    if args.evaluate:
        if not checkpoint_path.exists():
            raise FileNotFoundError(f"--evaluate: there is no checkpoint at {checkpoint_path}; train first")
        state = load_checkpoint(checkpoint_path, map_location=device)
        model.load_state_dict(state["model"])
        ema_model = copy.deepcopy(model)
        ema_model.load_state_dict(state["ema"]["model"])
        metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {"steps": state["step"]}
    else:
        schedule_figure(cfg.diffusion.num_timesteps, out / "schedule.png")
        # The figure is drawn from CPU tensors, so it gets a CPU copy of the schedule.
        forward_strip(val_images[:4], NoiseSchedule.from_config(cfg.diffusion), out / "forward_process.png")
        monitor = RunMonitor(
            out, schedule, val_images, autocast,
            preview=lambda m: evaluation_samples(m, schedule, shape, autocast, cfg.sampling.seed),
            eval_every=cfg.training.eval_every, preview_every=cfg.training.preview_every,
            start_step=load_checkpoint(checkpoint_path)["step"] if args.resume else 0,
            tensorboard=cfg.output.tensorboard)
        tic = time.perf_counter()
        result = train(cfg, model, schedule, data.train, device, checkpoint_path, resume=args.resume,
                       on_step=monitor, metadata={"solution": args.solution})
        monitor.close(result.steps, result.ema.model)
        ema_model = result.ema.model
        metrics = {
            "config": args.config, "solution": args.solution, "dataset": cfg.data.name,
            "num_parameters": num_parameters, "device": device.type, "precision": precision, "steps": result.steps,
            "train_seconds": round(time.perf_counter() - tic, 2),
            "train_images_per_second": round(result.images_per_second, 1), "train_loss": result.last_loss,
        }

    # float32, not autocast: the level tests recompute this number from the checkpoint and compare runs by it.
    val = validation_loss(ema_model, schedule, val_images, cfg.training.val_batch_size)
    val_raw = validation_loss(model, schedule, val_images, cfg.training.val_batch_size)
    metrics |= {"val_loss": val["loss"], "val_loss_bands": val["bands"], "val_loss_raw_weights": val_raw["loss"]}
    print(f"Validation loss (EMA weights) {val['loss']:.4f}, raw weights {val_raw['loss']:.4f}.")

    tic = time.perf_counter()
    generator = torch.Generator(device).manual_seed(cfg.sampling.seed)
    with autocast():
        if cfg.output.animation:
            samples = save_animation(sampler, ema_model, schedule, shape, generator, out / "animation.gif",
                                     cfg.sampling.animation_frames)
        else:
            samples = sampler(ema_model, schedule, shape, generator=generator)
    save_grid(samples, out / "samples.png")
    sampler_name = "your src/sampler.py" if args.custom_sampler else cfg.sampling.sampler
    metrics |= {"sampler": sampler_name, "sample_seconds": round(time.perf_counter() - tic, 2)}
    print(f"{len(samples)} samples ({sampler_name}) in {metrics['sample_seconds']:.1f} s: {out / 'samples.png'}")

    if classifier_path(cfg.data.name).exists():
        tic = time.perf_counter()
        quality = evaluate(ema_model, schedule, val_images, cfg.data.name, data.classes, autocast)
        metrics |= {"quality": quality, "quality_seconds": round(time.perf_counter() - tic, 2)}
        print(describe_quality(quality, cfg.data.name))
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n")
    return 0
