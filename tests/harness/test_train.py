"""Training loop: exact resume after Ctrl-C, atomic checkpoints, the NaN stop, EMA and learning-rate shape."""

import signal

import pytest
import torch

from src.harness import train as train_module
from src.harness.data import load_data
from src.harness.loading import build_model
from src.harness.schedule import NoiseSchedule
from src.harness.train import (EMA, NonFiniteLossError, TrainingInterrupted, load_checkpoint, lr_factor,
                               save_checkpoint, train)
from tests.harness.helpers import smoke_config


def _setup(tmp_path, *overrides):
    cfg = smoke_config(tmp_path, "training.max_steps=6", "training.checkpoint_every=1000", *overrides)
    data = load_data(cfg.data)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, data.channels, data.image_size, solution=True)
    return cfg, model, NoiseSchedule.from_config(cfg.diffusion), data.train


def _ctrl_c_at(step):
    def on_step(current, logs, ema_model):
        if current == step:
            signal.raise_signal(signal.SIGINT)
    return on_step


def test_resumed_run_ends_with_the_same_weights_as_an_uninterrupted_one(tmp_path):
    cfg, model, schedule, images = _setup(tmp_path / "a", "training.precision=fp32")
    straight = train(cfg, model, schedule, images, torch.device("cpu"), tmp_path / "a.pt")

    cfg, model, schedule, images = _setup(tmp_path / "b", "training.precision=fp32")
    with pytest.raises(TrainingInterrupted) as info:
        train(cfg, model, schedule, images, torch.device("cpu"), tmp_path / "b.pt", on_step=_ctrl_c_at(3))
    assert info.value.step == 3 and load_checkpoint(tmp_path / "b.pt")["step"] == 3
    cfg, model, schedule, images = _setup(tmp_path / "b", "training.precision=fp32")  # a fresh process, in effect
    resumed = train(cfg, model, schedule, images, torch.device("cpu"), tmp_path / "b.pt", resume=True)

    assert resumed.steps == straight.steps == 6
    for name, expected in straight.ema.model.state_dict().items():
        assert torch.equal(resumed.ema.model.state_dict()[name], expected), f"EMA weight {name} differs"
    a, b = load_checkpoint(tmp_path / "a.pt"), load_checkpoint(tmp_path / "b.pt")
    for name, expected in a["model"].items():
        assert torch.equal(b["model"][name], expected), f"weight {name} differs after resume"
    assert a["optimizer"]["state"][0]["step"] == b["optimizer"]["state"][0]["step"]


def test_checkpoint_holds_what_resume_needs(tmp_path):
    cfg, model, schedule, images = _setup(tmp_path)
    train(cfg, model, schedule, images, torch.device("cpu"), tmp_path / "c.pt", metadata={"solution": True})
    state = load_checkpoint(tmp_path / "c.pt")  # weights_only=True
    assert {"model", "ema", "optimizer", "scheduler", "step", "rng", "config", "solution"} <= set(state)
    assert state["config"]["training"]["max_steps"] == 6


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"step": 1})

    def crash(obj, f, *args, **kwargs):
        open(f, "wb").write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        save_checkpoint(path, {"step": 2})
    monkeypatch.undo()
    assert load_checkpoint(path) == {"step": 1}, "a failed write must leave the previous checkpoint intact"
    assert list(tmp_path.iterdir()) == [path], "no temporary file may be left behind"


class NaNModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, x, t):
        return x * self.scale / 0.0 * 0.0


def test_nan_loss_stops_with_advice_and_no_checkpoint(tmp_path):
    cfg, _, schedule, images = _setup(tmp_path, "training.log_every=1")
    with pytest.raises(NonFiniteLossError, match="training.lr"):
        train(cfg, NaNModel(), schedule, images, torch.device("cpu"), tmp_path / "nan.pt")
    assert not (tmp_path / "nan.pt").exists()


def test_ema_tracks_the_weights_with_warm_up():
    model = torch.nn.Linear(2, 2)
    ema = EMA(model, decay=0.99)
    with torch.no_grad():
        model.weight.add_(1.0)
    before = ema.model.weight.clone()
    ema.update(model)  # first update: decay = min(0.99, 2/11)
    expected = before + (model.weight - before) * (1 - 2 / 11)
    assert torch.allclose(ema.model.weight, expected)
    assert not ema.model.weight.requires_grad


def test_learning_rate_warms_up_then_decays_to_the_floor():
    factors = [lr_factor(s, warmup_steps=10, total_steps=100, min_ratio=0.1) for s in range(101)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:])), "no increase after warm-up"
    assert factors[100] == pytest.approx(0.1)


def test_auto_precision_is_fp32_off_bf16_hardware(monkeypatch):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert train_module.resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert train_module.resolve_precision("bf16", torch.device("cpu")) == "bf16"
