"""The training loop: AdamW, warm-up + cosine learning rate, gradient clipping, EMA, checkpoints, resume."""

import copy
import math
import os
import pickle
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from tqdm import tqdm

from src.harness.paths import write_atomically
from src.harness.policy import BUDGET_KEYS
from src.harness.run.conditioning import Unconditional
from src.harness.run.data import TrainBatches, derived_seed
from src.harness.run.distributed import Processes
from src.harness.run.runtime import Runtime


class TrainingInterrupted(Exception):
    """Ctrl-C during training; the checkpoint on disk holds `step` (None: none was written)."""

    def __init__(self, step: int | None):
        super().__init__(step)
        self.step = step


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class CheckpointError(Exception):
    """A checkpoint cannot be written, read, or loaded into the model; the message says what to do."""


class NotACheckpointError(CheckpointError):
    """A file that loads, but holds no run of main.py's (a bare tensor, a dict of other things)."""


class ResumeMismatchError(ValueError):
    """--resume was asked to continue a run with a different budget or different code."""


def budget_of(cfg) -> dict:
    """{key: value} of every BUDGET_KEYS entry in `cfg`."""
    from omegaconf import OmegaConf

    return {key: OmegaConf.select(cfg, key) for key in BUDGET_KEYS}


def recorded_budget(state: dict) -> dict:
    """The budget a checkpoint records; a key added to BUDGET_KEYS after it was written reads as its default, the
    value every run of that time trained with."""
    from omegaconf import OmegaConf

    from src.harness.run.config import Config

    return budget_of(OmegaConf.structured(Config)) | state["budget"]


@dataclass
class TrainResult:
    ema: "EMA"
    steps: int  # the step training ended at
    images_per_second: float  # over the steps run in this call
    last_loss: float | None  # mean training loss over the last log interval


class EMA:
    """Exponential moving average of a model's weights, with decay min(decay, (1 + n) / (10 + n)) after n updates.

    The warm-up keeps early averages from being dominated by the random initialisation in short runs.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay
        self.num_updates = 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.num_updates += 1
        decay = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        torch._foreach_lerp_(list(self.model.parameters()), list(model.parameters()), 1 - decay)
        for ema_buffer, buffer in zip(self.model.buffers(), model.buffers()):
            ema_buffer.copy_(buffer)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "num_updates": self.num_updates}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.num_updates = state["num_updates"]


def lr_factor(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """Linear warm-up to 1 over `warmup_steps`, then cosine decay to `min_ratio` at `total_steps`."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def total_steps(training_cfg, steps_per_epoch: int) -> int:
    steps = training_cfg.epochs * steps_per_epoch
    return min(steps, training_cfg.max_steps) if training_cfg.max_steps else steps


def save_checkpoint(path: Path, state: dict) -> None:
    """Written atomically: a crash mid-write never leaves a half-written checkpoint."""
    try:
        write_atomically(path, lambda scratch: torch.save(state, scratch))
    except (RuntimeError, OSError) as err:  # torch's zip writer reports a full disk as a RuntimeError
        raise CheckpointError(f"could not write {path} ({_first_line(err)}): free some disk space or set output.root "
                              "to a folder you can write to; any previous checkpoint there is intact") from err


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """The checkpoint at `path`: a dict that holds at least the step and the EMA weights (a recorded run holds no
    more), or a CheckpointError that says what to do."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except IsADirectoryError:
        raise CheckpointError(f"{path} is a folder, not a checkpoint: remove it, then train the run again") from None
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError, OSError) as err:
        raise CheckpointError(f"{path} is not a readable checkpoint, it is truncated or damaged ({_first_line(err)}): "
                              "train the run again with --overwrite") from None
    if not isinstance(state, dict) or not {"step", "ema"} <= state.keys():
        raise NotACheckpointError(f"{path} is not a checkpoint written by main.py (it holds a {type(state).__name__} "
                              "without a step and EMA weights): train the run again with --overwrite")
    return state


def load_weights(model: torch.nn.Module, weights: dict, path: Path) -> None:
    """model.load_state_dict(weights), where a mismatch means the checkpoint is of another model."""
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise CheckpointError(f"{path} holds the weights of a different model ({_first_line(err)}): restore the "
                              "model that trained it, or train this one with --overwrite") from None


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


class TrainingState:
    """What a checkpoint holds of a run in progress: weights, EMA, optimiser, LR schedule, step, images seen."""

    def __init__(self, model: torch.nn.Module, training_cfg, total_steps: int):
        tc = training_cfg
        self.model = model
        self.ema = EMA(model, tc.ema_decay)
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, partial(
            lr_factor, warmup_steps=tc.warmup_steps, total_steps=total_steps, min_ratio=tc.min_lr_ratio))
        self.step = self.images_seen = 0

    def state_dict(self) -> dict:
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {"model": self.model.state_dict(), "ema": self.ema.state_dict(), "rng": rng,
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "step": self.step, "images_seen": self.images_seen}

    def load_state_dict(self, state: dict, path: Path) -> None:
        load_weights(self.model, state["model"], path)
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.step, self.images_seen = state["step"], state["images_seen"]


def train(cfg, model: torch.nn.Module, objective, train_images: torch.Tensor, runtime: Runtime,
          checkpoint_path: Path, resume_from: dict | None = None, on_step=None, metadata: dict | None = None,
          processes: Processes | None = None, train_labels: torch.Tensor | None = None,
          conditioning=None) -> TrainResult:
    """Train `model` on `train_images` ((N, C, H, W) uint8) with `objective`, as `cfg.training` says; a class-
    conditional `conditioning` (Level 6) gives the network `train_labels` ((N,) int64), some dropped.

    Every batch and every random input of the objective is a pure function of (cfg.seed, step), so a run
    resumed from a checkpoint (`resume_from`, checked beforehand by check_resume) ends with exactly the
    weights of an uninterrupted one. `on_step(step, logs, ema_model)` runs after each step. The checkpoint
    records the budget the run was trained with (`budget`, `images_seen`) and `metadata`. With several
    `processes` (torchrun), each trains on its shard of every batch and only the main one writes the checkpoint.
    """
    tc, processes, conditioning = cfg.training, processes or Processes(), conditioning or Unconditional()
    batches = TrainBatches(train_images, cfg.data.batch_size, cfg.seed, cfg.data.hflip, runtime.device, train_labels)
    processes.check_batch(batches.batch_size)
    steps = total_steps(tc, batches.steps_per_epoch)
    run = TrainingState(model, tc, steps)
    if resume_from is not None:
        run.load_state_dict(resume_from, checkpoint_path)
    start_step = run.step
    record = {"total_steps": steps, "config": cfg_container(cfg), "budget": budget_of(cfg), **(metadata or {})}
    saved_step = start_step if resume_from is not None else None

    def checkpoint() -> None:
        nonlocal saved_step
        if processes.is_main:
            save_checkpoint(checkpoint_path, run.state_dict() | record)
        saved_step = run.step

    noise_generator = torch.Generator(runtime.device)
    progress = _Progress(steps, run.step, batches.batch_size, runtime.device, processes)
    stop = _StopOnCtrlC()
    network = processes.wrap(model)  # what forward and backward go through
    model.train()
    with stop, _stopped_at_once(lambda: saved_step, progress):
        while run.step < steps:
            batch = batches(run.step)
            noise_generator.manual_seed(derived_seed(cfg.seed, run.step))
            t, noise = objective.draw(batch, noise_generator)
            y = conditioning.draw(batches.labels(run.step), noise_generator)  # after t and noise; None: no labels
            x0, t, noise, y = (processes.shard(v) for v in (batch, t, noise, y))
            with runtime.autocast():
                loss = objective.loss(conditioning.bind(network, y), x0, t, noise)
            _optimizer_step(run, loss, tc.grad_clip)
            run.step += 1
            run.images_seen += len(batch)
            logs = progress.add(loss, run.step, run.scheduler.get_last_lr()[0],
                                due=run.step % tc.log_every == 0 or run.step % tc.checkpoint_every == 0)
            if logs is not None and not math.isfinite(logs["loss"]):
                raise NonFiniteLossError(_nan_message(run.step, tc.lr))
            if run.step % tc.checkpoint_every == 0 and run.step < steps:
                checkpoint()
            if on_step is not None:
                on_step(run.step, logs, run.ema.model)
            if processes.any(stop.requested, runtime.device) and run.step < steps:
                checkpoint()
                progress.close()
                raise TrainingInterrupted(run.step)
    progress.close()
    checkpoint()
    return TrainResult(run.ema, run.step, progress.images_per_second(run.step - start_step), progress.last_loss)


def _optimizer_step(run: TrainingState, loss: torch.Tensor, grad_clip: float) -> None:
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), grad_clip)
    run.optimizer.step()
    run.scheduler.step()
    run.ema.update(run.model)


class _Progress:
    """The progress bar and the training loss averaged over each log interval (one device sync per interval)."""

    def __init__(self, total: int, initial: int, batch_size: int, device: torch.device, processes: Processes):
        self.bar = tqdm(total=total, initial=initial, desc="training", unit="step", dynamic_ncols=True,
                        disable=os.environ.get("KATA_PROGRESS", "1") == "0" or not processes.is_main)
        self.total, self.batch_size, self.processes = total, batch_size, processes
        self.running, self.since = torch.zeros((), device=device), 0
        self.started = self.tic = time.perf_counter()
        self.last_loss = None

    def add(self, loss: torch.Tensor, step: int, lr: float, due: bool) -> dict | None:
        """Count this step's loss; at the end of a log interval (`due`, or the last step) return the logs."""
        self.running += loss.detach()
        self.since += 1
        if not (due or step == self.total):
            return None
        self.last_loss = (self.processes.mean(self.running) / self.since).item()
        logs = {"loss": self.last_loss, "lr": lr,
                "images_per_second": self.since * self.batch_size / (time.perf_counter() - self.tic)}
        self.bar.set_postfix(loss=f"{self.last_loss:.4f}", img_s=f"{logs['images_per_second']:.0f}", lr=f"{lr:.1e}")
        self.bar.update(self.since)
        self.running.zero_()
        self.since, self.tic = 0, time.perf_counter()
        return logs

    def images_per_second(self, steps: int) -> float:
        return steps * self.batch_size / max(time.perf_counter() - self.started, 1e-9)

    def close(self) -> None:
        self.bar.close()


def check_resume(state: dict, cfg, metadata: dict) -> None:
    """Refuse to continue a checkpoint under another budget, another recipe (any setting that changes what the rest
    of the run learns, config.NOT_RECIPE aside) or other code: its record must stay true."""
    from omegaconf import OmegaConf

    from src.harness.run.config import recipe_changes

    new_run = "start a new run instead (--overwrite replaces this one, output.name=NEW keeps both)"
    if "budget" not in state:
        raise ResumeMismatchError("--resume: this checkpoint was written by an older version of the kata and does "
                                  f"not record its budget; {new_run}")
    recorded = recorded_budget(state)
    for key, value in budget_of(cfg).items():
        if recorded.get(key) != value:
            raise ResumeMismatchError(f"--resume: this run was trained with {key}={recorded.get(key)}, but "
                                      f"this command asks for {key}={value}; resume with the run's own settings, "
                                      f"or {new_run}")
    changed = recipe_changes(state.get("config", {}), cfg)
    if changed:
        key = changed[0]
        was = OmegaConf.select(OmegaConf.create(state.get("config", {})), key, default="its default")
        raise ResumeMismatchError(f"--resume: this run was trained with {key}={was}, but this command asks for "
                                  f"{key}={OmegaConf.select(cfg, key)} (the rest of the run would learn under other "
                                  f"settings); resume with the run's own settings, or {new_run}")
    for key, value in metadata.items():
        if state.get(key) != value:
            what = ("the code this run trains with (src/model.py or src/point_model.py, src/utils.py, and src/flow.py "
                    "for flow matching)") if key == "model_fingerprint" else key
            raise ResumeMismatchError(f"--resume: {what} changed since this run began, so its checkpoint holds "
                                      f"weights of other code; {new_run}")


def cfg_container(cfg) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True)


def _nan_message(step: int, lr: float) -> str:
    return (f"the training loss became NaN or infinite by step {step}. Likely causes: a learning rate too high "
            f"for your model (training.lr={lr}; try a tenth), a division by a value near zero or a log of zero "
            "in src/model.py, or missing normalisation layers. No checkpoint was written for the broken weights.")


@contextmanager
def _stopped_at_once(saved_step, progress: _Progress):
    """A second Ctrl-C ends training at once, as TrainingInterrupted naming the step of the checkpoint on disk."""
    try:
        yield
    except KeyboardInterrupt:  # an interrupted checkpoint write has left the previous checkpoint intact
        progress.close()
        raise TrainingInterrupted(saved_step()) from None


class _StopOnCtrlC:
    """The first Ctrl-C (or SIGTERM: `kill`, a job scheduler, `timeout`) asks the loop to stop at the end of the
    current step; a second one stops at once.

    A repeat within REPEAT_SECONDS is the same Ctrl-C delivered twice: `timeout` signals both the process and
    its process group, and a terminal signals every process of the foreground group (uv and python).
    """

    REPEAT_SECONDS = 1.0

    def __init__(self):
        self.requested = False
        self._requested_at = 0.0
        self._previous = {}

    def __enter__(self):
        if _in_main_thread():
            self._previous = {signum: signal.signal(signum, self._handle) for signum in STOP_SIGNALS}
        return self

    def __exit__(self, *exc):
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        return False

    def _handle(self, signum, frame):
        if self.requested:
            if time.monotonic() - self._requested_at < self.REPEAT_SECONDS:
                return
            raise KeyboardInterrupt
        self.requested, self._requested_at = True, time.monotonic()
        what = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        print(f"\n{what}: finishing this step and saving a checkpoint (press Ctrl-C again to quit at once)",
              flush=True)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
