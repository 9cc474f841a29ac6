"""`python main.py --config configs/X.yaml [key=value ...]`: train, validate, sample, write the outputs."""

import argparse
import contextlib
import copy
import json
import os
import re
import shutil
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from src.harness.loading import (REFERENCE, STUDENT, CodeSource, StudentCodeError, describe_exception, stub_message,
                                student_location)
from src.harness.run.conditioning import conditioning_of
from src.harness.run.config import Config, ConfigError, load_config, output_dir
from src.harness.run.data import DATASETS, DataError, load_data, model_input
from src.harness.run.distributed import DistributedError, Processes
from src.harness.run.figures import save_animation, schedule_figure
from src.harness.run.kinds import build_model, kind_of, sample_shape_of, trained_code
from src.harness.run.latent import LATENT_FILES, latent_data
from src.harness.run.monitor import RunMonitor
from src.harness.run.objective import OBJECTIVES, make_objective
from src.harness.run.quality import evaluation_samples
from src.harness.run.runtime import Runtime, describe_cpu
from src.harness.run.samplers import UNDER_TEST, get_sampler
from src.harness.run.schedule import NoiseSchedule
from src.harness.run.train import (CheckpointError, NonFiniteLossError, ResumeMismatchError, TrainingInterrupted,
                               check_resume, load_checkpoint, load_weights, train)

# Failures a student can cause and fix; each carries a one-sentence message that says what to do.
EXPECTED_ERRORS = (ConfigError, DataError, StudentCodeError, NonFiniteLossError, CheckpointError,
                   ResumeMismatchError, DistributedError)
# What a run writes into its folder; a fresh run removes them first, so nothing stale of an older run is left.
RUN_FILES = ["checkpoint.pt", "config.yaml", "metrics.json", "history.json", "samples.png", "animation.gif",
             "curves.png", "schedule.png", "forward_process.png", "classes.png", "guidance.png", "previews",
             "tensorboard", *LATENT_FILES]
# Keys --evaluate takes from the command line: where the data lives and how to sample, not what was trained.
EVALUATION_KEYS = ["data.root", "data.download", "data.verify_md5", "training.precision", "training.val_batch_size",
                   "sampling", "output"]


class RunFolderError(Exception):
    """The run folder cannot be written, or holds a run that this command would replace."""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Train a diffusion model, then sample from it. Outputs go to outputs/<config name>[-solution]/.",
        epilog="Overrides: any config key as key=value, e.g. training.epochs=3 data.batch_size=256")
    parser.add_argument("--config", required=True, help="a YAML file in configs/")
    parser.add_argument("--solution", dest="source", action="store_const", const=REFERENCE, default=STUDENT,
                        help="train the reference model, not src/model.py")
    parser.add_argument("--custom-sampler", action="store_true",
                        help="draw the final samples with your own sampler (src/sampler.py, or src/flow.py for flow "
                             "matching), not sampling.sampler")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--seed", type=int, default=None, help="overrides the config's seed")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue from the run's checkpoint.pt")
    mode.add_argument("--overwrite", action="store_true",
                      help="replace the run already in the output folder (without it, an existing run is kept)")
    mode.add_argument("--evaluate", action="store_true",
                      help="score the run's existing checkpoint (validation loss, samples, quality) under the config "
                           "it was trained with; no training")
    mode.add_argument("--benchmark", action="store_true",
                      help="measure training and sampling speed beside a textbook loop, then exit")
    parser.add_argument("--traceback", action="store_true", help="show the full traceback behind an error message")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    return parser.parse_intermixed_args(argv)


def main(argv=None) -> int:
    with _sigterm_as_ctrl_c():
        return _main(argv)


@contextlib.contextmanager
def _sigterm_as_ctrl_c():
    """SIGTERM (`kill`, a job scheduler, `timeout`) stops the run as Ctrl-C does: a checkpoint and one line."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    main_thread = threading.current_thread() is threading.main_thread()  # only it may set a signal handler
    previous = signal.signal(signal.SIGTERM, interrupt) if main_thread else None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main(argv=None) -> int:
    args = parse_args(argv)
    args.overrides += [f"seed={args.seed}"] if args.seed is not None else []
    out = None
    try:
        cfg = load_config(args.config, args.overrides)
        out = output_dir(cfg, args.source)
        return run(cfg, args)
    except TrainingInterrupted as err:
        print(interrupted_message(err.step))
        return 130
    except (Exception, KeyboardInterrupt, SystemExit) as err:
        message = error_message(err, out)
        if message is None:
            raise
        if args.traceback:
            traceback.print_exception(err)
        print(f"error: {message}", file=sys.stderr)
        return 130 if isinstance(err, KeyboardInterrupt) else 1


def is_out_of_memory(err: BaseException) -> bool:
    """Whether `err` is an allocation that failed: torch's on a GPU or from its CPU allocator, or Python's."""
    return isinstance(err, (MemoryError, torch.OutOfMemoryError)) or (
        isinstance(err, RuntimeError) and "DefaultCPUAllocator: can't allocate memory" in str(err))


def interrupted_message(step: int | None) -> str:
    if step is None:
        return "Stopped before the first checkpoint, so there is nothing to resume; run the same command to start anew."
    return f"Stopped; the checkpoint holds step {step}. Continue with the same command plus --resume."


def error_message(err: BaseException, out: Path | None) -> str | None:
    """The one line that explains an expected failure, or None for a bug of the harness (shown as a traceback)."""
    if isinstance(err, NotImplementedError):
        return stub_message(err)
    if isinstance(err, EXPECTED_ERRORS + (RunFolderError,)):
        return str(err)
    if isinstance(err, KeyboardInterrupt):
        return ctrl_c_message(out)
    if isinstance(err, SystemExit):
        where = student_location(err)
        at = f" at {where[0]}:{where[1]}" if where else ""
        return (f"your code called sys.exit({err.code!r}){at}, which ended the run before it finished; "
                "return a value instead of exiting")
    if is_out_of_memory(err):
        asked = re.search(r"allocate (\d+) bytes", str(err))
        amount = f" (one tensor of {int(asked.group(1)) / 2 ** 30:,.0f} GiB)" if asked else ""
        return (f"the run needs more memory than this machine has{amount}: make data.batch_size, "
                "sampling.num_samples, data.image_size or diffusion.num_timesteps smaller, or the model")
    if student_location(err) is not None:
        return f"your code raised {describe_exception(err)} (run again with --traceback for the full traceback)"
    if isinstance(err, OSError) and err.filename is not None:  # a write into the run folder failed
        return (f"could not write {err.filename} ({err.strerror}): make sure output.root is a folder you can write "
                "to, with free space")
    if isinstance(err, FileNotFoundError):  # raised by the harness with its own message
        return str(err)
    return None


def ctrl_c_message(out: Path | None) -> str:
    checkpoint = out / "checkpoint.pt" if out is not None else None
    if checkpoint is None or not checkpoint.exists():
        return "stopped by Ctrl-C before any checkpoint was written; run the same command to start again"
    return (f"stopped by Ctrl-C; {checkpoint} is intact: add --resume to finish its training, "
            "or --evaluate to score it if training had finished")


def run_metadata(cfg, source: CodeSource) -> dict:
    """What a checkpoint records about the code that trained it (see CodeSource.fingerprint)."""
    return {"solution": source.reference, "model_fingerprint": source.fingerprint(trained_code(cfg))}


def run(cfg, args) -> int:
    """Build, train (or load), validate, sample and evaluate; every phase writes into the run folder. A steering run
    (Level 9) trains nothing: it steers a finished run."""
    if cfg.steering.run:
        from src.harness.run.steering import run_steering

        return run_steering(cfg, args)
    out = output_dir(cfg, args.source)
    state = open_run_folder(out / "checkpoint.pt", cfg, args)
    if args.resume and state["step"] >= state.get("total_steps", float("inf")) and (out / "metrics.json").exists():
        print(f"{out}/ has trained all its {state['step']} steps and written its results: nothing to resume "
              "(--evaluate scores it again, --overwrite trains it anew).")
        return 0
    if args.evaluate:
        cfg = evaluation_config(cfg, args.overrides, state, out / "checkpoint.pt")
    if cfg.latent.channels and (args.benchmark or int(os.environ.get("WORLD_SIZE", "1")) > 1):
        raise ConfigError("a latent run (Level 8) trains its autoencoder, then its diffusion, in one process: start "
                          "it with `uv run python main.py ...`, without --benchmark or torchrun")
    runtime = chosen_runtime(args.device, cfg.training.precision)
    processes = join_processes(args, runtime)
    conditioning = conditioning_of(cfg)
    # First: a stub or a syntax error is reported before anything slow.
    model, sampler, guided_sample = load_code(cfg, args, runtime, conditioning)
    data = load_data(cfg.data)
    if args.benchmark:
        return run_benchmark(cfg, args, runtime, model, data, conditioning)
    objective = make_objective(cfg.diffusion, runtime.device, args.source)
    if not processes.is_main:  # a torchrun worker: it trains its shard, the main process does the rest
        train(cfg, model, objective, data.train, runtime, out / "checkpoint.pt", resume_from=state,
              metadata=run_metadata(cfg, args.source), processes=processes, train_labels=data.train_labels,
              conditioning=conditioning)
        processes.close()
        return 0
    prepare_run_folder(out, cfg, args)
    kind, latent_metrics = kind_of(cfg.data.name), {}
    if cfg.latent.channels:  # Level 8: the autoencoder first, then diffusion on what it encodes
        kind, data, latent_metrics = latent_data(cfg, args.source, runtime, data, state, out, out / "checkpoint.pt")
    val_images = model_input(data.val)
    described = describe_run(cfg, args, runtime, model, data, out, kind)
    if args.evaluate:  # speed and training loss as training measured them
        ema_model = trained_weights(model, state, out / "checkpoint.pt")
        metrics = previous_metrics(out / "metrics.json", state) | latent_metrics
    else:
        ema_model, trained = train_run(cfg, args, runtime, model, objective, conditioning, data, val_images, out,
                                       state, processes, kind)
        metrics = described | latent_metrics | trained
    metrics |= validate(cfg, model, ema_model, objective, val_images, conditioning.validation_labels(data.val_labels))
    metrics |= draw_samples(cfg, args, runtime, sampler, ema_model, objective.schedule, val_images, out, kind)
    metrics |= score_quality(cfg, runtime, ema_model, objective, data, val_images, kind)
    metrics |= conditioning.report(guided_sample, ema_model, objective.schedule, data, cfg.data.name,
                                   cfg.conditioning.guidance_scale, runtime.autocast, out)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return 0


def open_run_folder(checkpoint_path: Path, cfg: DictConfig, args) -> dict | None:
    """The checkpoint to continue or to score (read once), after checking that the command fits the run folder.

    A --resume under another budget or other code is refused here, before anything is written.
    """
    state = check_run_folder(checkpoint_path, args)
    if args.resume:
        check_resume(state, cfg, run_metadata(cfg, args.source))
    return state


def load_code(cfg: DictConfig, args, runtime: Runtime, conditioning):
    """(the model on the device, the sampler, the guided sampler of a class-conditional run or None), from student
    code or, with --solution, the reference."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, args.source, conditioning).to(runtime.device)
    sampler = get_sampler(cfg.sampling, OBJECTIVES[cfg.diffusion.objective], args.source, custom=args.custom_sampler)
    tiny = (1, *(min(size, 4) for size in sample_shape_of(cfg)))  # (1, C, 4, 4) or (1, 2)
    if args.custom_sampler or cfg.sampling.sampler in UNDER_TEST:  # a stub raises here, not after training
        sampler(lambda x, t: torch.zeros_like(x), NoiseSchedule(2, device=runtime.device), tiny)
    return model, sampler, conditioning.load_sampler(args.source, tiny, runtime.device)


def run_benchmark(cfg: DictConfig, args, runtime: Runtime, model, data, conditioning) -> int:
    from src.harness.run.benchmark import benchmark

    if DATASETS[cfg.data.name].kind == "points":
        raise ConfigError(f"--benchmark measures image runs; {cfg.data.name} is 2-D points, which train in seconds")
    cpu = f", CPU {describe_cpu()}" if runtime.device.type == "cpu" else ""
    print(f"benchmark: {args.config}, {num_parameters(model) / 1e6:.2f} M parameters, "
          f"{runtime.device.type} ({torch.get_num_threads()} threads{cpu}), precision {runtime.precision}")
    benchmark(cfg, lambda: build_model(cfg, args.source, conditioning), data, runtime)
    return 0


def num_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def describe_run(cfg: DictConfig, args, runtime: Runtime, model, data, out: Path, kind) -> dict:
    """Print what is about to run; return the metrics that say so."""
    who = "the reference model" if args.source.reference else f"your model (src/{kind.module}.py)"
    action = "Evaluating" if args.evaluate else "Training"
    count = num_parameters(model)
    print(f"{action} {who}, {count / 1e6:.2f} M parameters, on {cfg.data.name} "
          f"({len(data.train)} {kind.noun}, {'x'.join(map(str, data.sample_shape))}), "
          f"device {runtime.device.type}, {runtime.precision}. Outputs: {out}/")
    return {"config": args.config, "solution": args.source.reference, "dataset": cfg.data.name, "num_parameters": count,
            "device": runtime.device.type, "precision": runtime.precision}


def trained_weights(model, state: dict, checkpoint_path: Path):
    """Load the checkpoint's raw weights into `model`; return a copy holding its EMA weights."""
    load_weights(model, state["model"], checkpoint_path)
    ema_model = copy.deepcopy(model)
    load_weights(ema_model, state["ema"]["model"], checkpoint_path)
    return ema_model


def train_run(cfg: DictConfig, args, runtime: Runtime, model, objective, conditioning, data, val_images, out: Path,
              state: dict | None, processes: Processes, kind):
    """Draw the schedule figures, train with the run monitor; return (the EMA model, training metrics)."""
    schedule_figure(cfg.diffusion.num_timesteps, out / "schedule.png")
    # The figure is drawn from CPU tensors, so it gets a CPU copy of the objective.
    kind.forward_figure(val_images, make_objective(cfg.diffusion, source=args.source), out / "forward_process.png")
    shape = sample_shape(cfg)
    monitor = RunMonitor(
        out, objective, val_images, runtime.autocast,
        preview=lambda m: evaluation_samples(m, objective, shape, runtime.autocast, cfg.sampling.seed),
        picture=lambda samples: kind.picture(samples, val_images), eval_every=cfg.training.eval_every,
        preview_every=cfg.training.preview_every, start_step=state["step"] if state else 0,
        tensorboard=cfg.output.tensorboard, val_labels=conditioning.validation_labels(data.val_labels))
    tic = time.perf_counter()
    result = train(cfg, model, objective, data.train, runtime, out / "checkpoint.pt", resume_from=state,
                   on_step=monitor, metadata=run_metadata(cfg, args.source) | kind.record(), processes=processes,
                   train_labels=data.train_labels, conditioning=conditioning)
    processes.close()
    monitor.close(result.steps, result.ema.model)
    return result.ema.model, {"steps": result.steps, "train_seconds": round(time.perf_counter() - tic, 2),
                              "train_images_per_second": round(result.images_per_second, 1),
                              "train_loss": result.last_loss}


def sample_shape(cfg: DictConfig) -> tuple[int, ...]:
    """(num_samples, C, H, W), or (num_samples, 2) for points, of the samples a run draws."""
    return cfg.sampling.num_samples, *sample_shape_of(cfg)


def validate(cfg: DictConfig, model, ema_model, objective, val_images, val_labels) -> dict:
    """The validation loss of the EMA and the raw weights; val_labels: those of a class-conditional run, or None."""
    # float32, not autocast: the level tests recompute this number from the checkpoint and compare runs by it.
    val = objective.validation_loss(ema_model, val_images, cfg.training.val_batch_size, labels=val_labels)
    val_raw = objective.validation_loss(model, val_images, cfg.training.val_batch_size, labels=val_labels)
    print(f"Validation loss (EMA weights) {val['loss']:.4f}, raw weights {val_raw['loss']:.4f}.")
    return {"val_loss": val["loss"], "val_loss_bands": val["bands"], "val_loss_raw_weights": val_raw["loss"]}


def draw_samples(cfg: DictConfig, args, runtime: Runtime, sampler, ema_model, schedule, val, out: Path, kind) -> dict:
    """samples.png (and animation.gif) from the EMA model; points are drawn over the validation points `val`."""
    shape = sample_shape(cfg)
    tic = time.perf_counter()
    generator = torch.Generator(runtime.device).manual_seed(cfg.sampling.seed)
    with runtime.autocast():
        if cfg.output.animation:
            samples = save_animation(sampler, ema_model, schedule, shape, generator, out / "animation.gif",
                                     lambda x: kind.picture(x, val), kind.keep, cfg.sampling.animation_frames,
                                     scale=kind.animation_scale)
        else:
            samples = sampler(ema_model, schedule, shape, generator=generator)
    kind.picture(samples, val).save(out / "samples.png")
    custom = f"your {OBJECTIVES[cfg.diffusion.objective].student_sampler}"
    sampler_name = custom if args.custom_sampler else cfg.sampling.sampler
    seconds = round(time.perf_counter() - tic, 2)
    print(f"{len(samples)} samples ({sampler_name}) in {seconds:.1f} s: {out / 'samples.png'}")
    return {"sampler": sampler_name, "sample_seconds": seconds}


def score_quality(cfg: DictConfig, runtime: Runtime, ema_model, objective, data, val, kind) -> dict:
    """The sample-quality score: a classifier's for images (where one is shipped), a distance for points."""
    tic = time.perf_counter()
    scored = kind.score(cfg, ema_model, objective, data.train, val, data.classes, runtime.autocast)
    if scored is None:
        return {}
    quality, description = scored
    print(description)
    return {"quality": quality, "quality_seconds": round(time.perf_counter() - tic, 2)}


def check_run_folder(checkpoint_path: Path, args) -> dict | None:
    """Stop early where the command does not fit the run folder; returns the checkpoint to continue or to score."""
    flag = "--resume" if args.resume else "--evaluate" if args.evaluate else None
    exists = checkpoint_path.exists()
    if flag and not exists:
        raise RunFolderError(f"{flag}: there is no checkpoint at {checkpoint_path}; train first, without {flag}")
    if exists and not (flag or args.benchmark or args.overwrite):
        raise RunFolderError(f"{checkpoint_path.parent}/ already holds a run: add --resume to continue it, --evaluate "
                             "to score it, --overwrite to replace it, or set output.name=NEW to keep both")
    return load_checkpoint(checkpoint_path) if flag else None


def evaluation_config(cfg: DictConfig, overrides: list[str], state: dict, checkpoint_path: Path) -> DictConfig:
    """The config the run was trained with, plus EVALUATION_KEYS from `cfg`; overriding any other key is an error."""
    if "config" not in state:
        raise CheckpointError(f"{checkpoint_path} records no config, so main.py did not write it: "
                              "train the run again with --overwrite")
    run_cfg = OmegaConf.merge(OmegaConf.structured(Config), state["config"])
    for key in (override.partition("=")[0] for override in overrides):
        recorded, value = OmegaConf.select(run_cfg, key), OmegaConf.select(cfg, key)
        if recorded != value and not any(key == k or key.startswith(k + ".") for k in EVALUATION_KEYS):
            raise ConfigError(f"--evaluate scores the run in {checkpoint_path.parent}/ under the config it was trained "
                              f"with, where {key}={recorded}, not {value}: drop that override (or train a new run "
                              "with it, output.name=NEW keeps both)")
    for key in EVALUATION_KEYS:
        OmegaConf.update(run_cfg, key, OmegaConf.select(cfg, key), merge=False)
    return run_cfg


def join_processes(args, runtime: Runtime) -> Processes:
    """The processes of a torchrun launch (or this one process); only training runs on several."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and (args.evaluate or args.benchmark):
        raise DistributedError(f"{'--evaluate' if args.evaluate else '--benchmark'} runs in one process: "
                               "start it with `uv run python main.py ...`, not torchrun")
    return Processes.from_environment(runtime.device)


def chosen_runtime(device: str, precision: str) -> Runtime:
    try:
        return Runtime.choose(device, precision)
    except RuntimeError as err:  # a device this machine does not have, or an unknown KATA_PRECISION
        raise ConfigError(str(err)) from None


def prepare_run_folder(out: Path, cfg: DictConfig, args) -> None:
    """Create `out`; a new run first removes what an older one left there, so nothing stale stays beside it."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        if not (args.resume or args.evaluate):
            for path in (out / name for name in RUN_FILES):
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
        if not args.evaluate:
            OmegaConf.save(cfg, out / "config.yaml", resolve=True)
    except OSError as err:
        raise RunFolderError(f"cannot write to {err.filename or out} ({err.strerror or err}): "
                             "set output.root to a folder you can write to") from None


def previous_metrics(path: Path, state: dict) -> dict:
    """metrics.json of the run being evaluated, for what only training knows (speed, training loss)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {"steps": state["step"]}
