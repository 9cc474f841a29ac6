"""The training loop: AdamW, warm-up + cosine learning rate, gradient clipping, EMA, checkpoints, resume."""

import copy
import math
from dataclasses import dataclass
import os
import pickle
import signal
import time
from contextlib import contextmanager, nullcontext
from functools import partial
from pathlib import Path

import torch
from tqdm import tqdm

from src.harness.data import TrainBatches
from src.harness.policy import BUDGET_KEYS
from src.harness.schedule import NoiseSchedule


class TrainingInterrupted(Exception):
    """Ctrl-C during training; the checkpoint on disk holds `step` (None: none was written)."""

    def __init__(self, step: int | None):
        super().__init__(step)
        self.step = step


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class CheckpointError(Exception):
    """A checkpoint cannot be written, read, or loaded into the model; the message says what to do."""


class ResumeMismatchError(ValueError):
    """--resume was asked to continue a run with a different budget or different code."""


def budget_of(cfg) -> dict:
    """{key: value} of every BUDGET_KEYS entry in `cfg`."""
    from omegaconf import OmegaConf

    return {key: OmegaConf.select(cfg, key) for key in BUDGET_KEYS}


@dataclass
class TrainResult:
    ema: "EMA"
    steps: int  # the step training ended at
    images_per_second: float  # over the steps run in this call
    last_loss: float | None  # mean training loss over the last log interval


def pick_device(name: str = "auto") -> torch.device:
    """auto: CUDA if available, then Apple MPS, then CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but PyTorch sees no CUDA GPU; use --device auto or cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError("--device mps was asked for, but this machine has no Apple MPS backend; use --device auto")
    return torch.device(name)


def resolve_precision(precision: str, device: torch.device) -> str:
    """auto: bfloat16 where the hardware runs it fast (CUDA with bf16, CPUs with AVX-512 bf16/AMX), else fp32."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"
    return "fp32"


def autocast_factory(device: torch.device, precision: str):
    """A zero-argument callable that returns the context every forward pass runs in."""
    if precision == "bf16":
        return partial(torch.autocast, device_type=device.type, dtype=torch.bfloat16)
    return nullcontext


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
    """Write to a temporary file, then rename: a crash mid-write never leaves a half-written checkpoint."""
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    try:
        torch.save(state, temporary)
        os.replace(temporary, path)
    except (RuntimeError, OSError) as err:  # torch's zip writer reports a full disk as a RuntimeError
        raise CheckpointError(f"could not write {path} ({_first_line(err)}): free some disk space or set output.root "
                              "to a folder you can write to; any previous checkpoint there is intact") from err
    finally:
        temporary.unlink(missing_ok=True)


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError) as err:
        raise CheckpointError(f"{path} is not a readable checkpoint, it is truncated or damaged ({_first_line(err)}): "
                              "train the run again with --overwrite") from None


def load_weights(model: torch.nn.Module, weights: dict, path: Path) -> None:
    """model.load_state_dict(weights), where a mismatch means the checkpoint is of another model."""
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise CheckpointError(f"{path} holds the weights of a different model ({_first_line(err)}): restore the "
                              "model that trained it, or train this one with --overwrite") from None


def _first_line(err: BaseException) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def train(cfg, model: torch.nn.Module, schedule: NoiseSchedule, train_images: torch.Tensor, device: torch.device,
          checkpoint_path: Path, resume: bool = False, on_step=None, metadata: dict | None = None) -> TrainResult:
    """Train `model` on `train_images` ((N, C, H, W) uint8) as `cfg.training` says.

    Every batch, timestep and noise draw is a pure function of (cfg.seed, step), so a run resumed from a
    checkpoint ends with exactly the weights of an uninterrupted one. `on_step(step)` runs after each step.
    The checkpoint records the budget the run was trained with (`budget`, `images_seen`) and `metadata`;
    a resume that would change either raises ResumeMismatchError, so a checkpoint's record is never rewritten.
    """
    tc = cfg.training
    batches = TrainBatches(train_images, cfg.data.batch_size, cfg.seed, cfg.data.hflip, device)
    steps = total_steps(tc, batches.steps_per_epoch)
    autocast = autocast_factory(device, resolve_precision(tc.precision, device))
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, partial(lr_factor, warmup_steps=tc.warmup_steps, total_steps=steps, min_ratio=tc.min_lr_ratio))
    ema = EMA(model, tc.ema_decay)
    step = start_step = images_seen = 0
    budget, metadata = budget_of(cfg), metadata or {}
    if resume:
        state = load_checkpoint(checkpoint_path, map_location=device)
        check_resume(state, budget, metadata)
        load_weights(model, state["model"], checkpoint_path)
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        step = start_step = state["step"]
        images_seen = state["images_seen"]
    saved_step = start_step if resume else None

    def checkpoint() -> None:
        nonlocal saved_step
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        save_checkpoint(checkpoint_path, {
            "model": model.state_dict(), "ema": ema.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "step": step, "total_steps": steps, "rng": rng,
            "config": cfg_container(cfg), "budget": budget, "images_seen": images_seen, **metadata,
        })
        saved_step = step

    noise_generator = torch.Generator(device)
    stop = _StopOnCtrlC()
    model.train()
    bar = tqdm(total=steps, initial=step, desc="training", unit="step", dynamic_ncols=True,
               disable=os.environ.get("KATA_PROGRESS", "1") == "0")
    running, since, tic = torch.zeros((), device=device), 0, time.perf_counter()
    start_time, last_loss = tic, None
    with stop, _stopped_at_once(lambda: saved_step, bar):
        while step < steps:
            x0 = batches(step)
            noise_generator.manual_seed(cfg.seed * 1_000_003 + step)
            t = torch.randint(0, schedule.num_timesteps, (len(x0),), generator=noise_generator, device=device)
            noise = torch.randn(x0.shape, generator=noise_generator, device=device)
            with autocast():
                loss = schedule.loss(model, x0, t, noise)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if tc.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            optimizer.step()
            scheduler.step()
            ema.update(model)
            step += 1
            images_seen += len(x0)
            running += loss.detach()
            since += 1
            logs = None
            if step % tc.log_every == 0 or step % tc.checkpoint_every == 0 or step == steps:
                mean_loss = last_loss = (running / since).item()  # one device sync per log interval
                if not math.isfinite(mean_loss):
                    raise NonFiniteLossError(_nan_message(step, tc.lr))
                logs = {"loss": mean_loss, "lr": scheduler.get_last_lr()[0],
                        "images_per_second": since * batches.batch_size / (time.perf_counter() - tic)}
                bar.set_postfix(loss=f"{mean_loss:.4f}", img_s=f"{logs['images_per_second']:.0f}", lr=f"{logs['lr']:.1e}")
                bar.update(since)
                running.zero_()
                since, tic = 0, time.perf_counter()
            if step % tc.checkpoint_every == 0 and step < steps:
                checkpoint()
            if on_step is not None:
                on_step(step, logs, ema.model)
            if stop.requested and step < steps:
                checkpoint()
                bar.close()
                raise TrainingInterrupted(step)
    bar.close()
    checkpoint()
    elapsed = time.perf_counter() - start_time
    return TrainResult(ema, step, (step - start_step) * batches.batch_size / max(elapsed, 1e-9), last_loss)


def check_resume(state: dict, budget: dict, metadata: dict) -> None:
    """Refuse to continue a checkpoint under another budget or other code: its record must stay true."""
    new_run = "start a new run instead (--overwrite replaces this one, output.name=NEW keeps both)"
    if "budget" not in state:
        raise ResumeMismatchError("--resume: this checkpoint was written by an older version of the kata and does "
                                  f"not record its budget; {new_run}")
    for key, value in budget.items():
        if state["budget"].get(key) != value:
            raise ResumeMismatchError(f"--resume: this run was trained with {key}={state['budget'].get(key)}, but "
                                      f"this command asks for {key}={value}; resume with the run's own settings, "
                                      f"or {new_run}")
    for key, value in metadata.items():
        if state.get(key) != value:
            what = "src/model.py" if key == "model_fingerprint" else key
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
def _stopped_at_once(saved_step, bar):
    """A second Ctrl-C ends training at once, as TrainingInterrupted naming the step of the checkpoint on disk."""
    try:
        yield
    except KeyboardInterrupt:  # an interrupted checkpoint write has left the previous checkpoint intact
        bar.close()
        raise TrainingInterrupted(saved_step()) from None


class _StopOnCtrlC:
    """The first Ctrl-C asks the loop to stop at the end of the current step; a second one stops at once.

    A repeat within REPEAT_SECONDS is the same Ctrl-C delivered twice: `timeout` signals both the process and
    its process group, and a terminal signals every process of the foreground group (uv and python).
    """

    REPEAT_SECONDS = 1.0

    def __init__(self):
        self.requested = False
        self._requested_at = 0.0
        self._previous = None

    def __enter__(self):
        if _in_main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False

    def _handle(self, signum, frame):
        if self.requested:
            if time.monotonic() - self._requested_at < self.REPEAT_SECONDS:
                return
            raise KeyboardInterrupt
        self.requested, self._requested_at = True, time.monotonic()
        print("\nCtrl-C: finishing this step and saving a checkpoint (press again to quit at once)", flush=True)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
