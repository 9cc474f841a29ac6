"""Training loop: exact resume after Ctrl-C, atomic checkpoints, the NaN stop, EMA and learning-rate shape."""

import signal

import pytest
import torch

from src.harness.run import train as train_module
from src.harness.run.train import (EMA, CheckpointError, NonFiniteLossError, TrainingInterrupted, load_checkpoint,
                               load_weights, lr_factor, save_checkpoint, train)
from tests.harness.helpers import cpu, smoke_training


def _setup(tmp_path, *overrides):
    return smoke_training(tmp_path, "training.max_steps=6", *overrides)


def _ctrl_c_at(step, times=1):
    """An on_step callback that presses Ctrl-C `times` times at once when training reaches `step`."""
    def on_step(current, logs, ema_model):
        if current == step:
            for _ in range(times):
                signal.raise_signal(signal.SIGINT)
    return on_step


def test_resumed_run_ends_with_the_same_weights_as_an_uninterrupted_one(tmp_path):
    cfg, model, objective, images = _setup(tmp_path / "a", "training.precision=fp32")
    straight = train(cfg, model, objective, images, cpu(cfg), tmp_path / "a.pt")

    cfg, model, objective, images = _setup(tmp_path / "b", "training.precision=fp32")
    with pytest.raises(TrainingInterrupted) as info:
        train(cfg, model, objective, images, cpu(cfg), tmp_path / "b.pt", on_step=_ctrl_c_at(3))
    assert info.value.step == 3 and load_checkpoint(tmp_path / "b.pt")["step"] == 3
    cfg, model, objective, images = _setup(tmp_path / "b", "training.precision=fp32")  # a fresh process, in effect
    resumed = train(cfg, model, objective, images, cpu(cfg), tmp_path / "b.pt",
                    resume_from=load_checkpoint(tmp_path / "b.pt"))

    assert resumed.steps == straight.steps == 6
    for name, expected in straight.ema.model.state_dict().items():
        assert torch.equal(resumed.ema.model.state_dict()[name], expected), f"EMA weight {name} differs"
    a, b = load_checkpoint(tmp_path / "a.pt"), load_checkpoint(tmp_path / "b.pt")
    for name, expected in a["model"].items():
        assert torch.equal(b["model"][name], expected), f"weight {name} differs after resume"
    assert a["optimizer"]["state"][0]["step"] == b["optimizer"]["state"][0]["step"]


def test_checkpoint_holds_what_resume_needs(tmp_path):
    cfg, model, objective, images = _setup(tmp_path)
    train(cfg, model, objective, images, cpu(cfg), tmp_path / "c.pt", metadata={"solution": True})
    state = load_checkpoint(tmp_path / "c.pt")  # weights_only=True
    assert {"model", "ema", "optimizer", "scheduler", "step", "rng", "config", "solution"} <= set(state)
    assert state["config"]["training"]["max_steps"] == 6


@pytest.mark.parametrize("failure", [
    pytest.param(OSError("disk full"), id="os-error"),
    pytest.param(RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0\nmore detail"),
                 id="zip-writer"),  # torch's zip writer
])
def test_a_failed_checkpoint_write_is_one_line_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch, failure):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"step": 1, "ema": {}})

    def fail_halfway(obj, f, *args, **kwargs):
        open(f, "wb").write(b"half a checkpoint")
        raise failure

    monkeypatch.setattr(torch, "save", fail_halfway)
    with pytest.raises(CheckpointError) as info:
        save_checkpoint(path, {"step": 2, "ema": {}})
    monkeypatch.undo()
    assert "\n" not in str(info.value) and f"could not write {path}" in str(info.value)
    assert "free some disk space" in str(info.value)
    assert load_checkpoint(path) == {"step": 1, "ema": {}}, "a failed write must leave the previous checkpoint intact"
    assert list(tmp_path.iterdir()) == [path], "no temporary file may be left behind"


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_damaged_checkpoint_is_one_line(tmp_path, damage):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"step": 1, "weights": torch.zeros(1000)})
    good = path.read_bytes()
    path.write_bytes({"truncated": good[:len(good) // 2], "garbage": b"not a checkpoint" * 100, "empty": b""}[damage])
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value) and f"{path} is not a readable checkpoint" in str(info.value)
    assert "--overwrite" in str(info.value)


def test_weights_of_another_model_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="holds the weights of a different model"):
        load_weights(torch.nn.Linear(2, 3), torch.nn.Linear(2, 2).state_dict(), tmp_path / "checkpoint.pt")


def test_ctrl_c_delivered_twice_at_once_stops_like_one(tmp_path):
    """`timeout` sends SIGINT to the process and to its group: one Ctrl-C that arrives twice."""
    cfg, model, objective, images = _setup(tmp_path)
    with pytest.raises(TrainingInterrupted) as info:
        train(cfg, model, objective, images, cpu(cfg), tmp_path / "c.pt", on_step=_ctrl_c_at(3, times=2))
    assert info.value.step == 3 and load_checkpoint(tmp_path / "c.pt")["step"] == 3


def test_a_second_ctrl_c_during_the_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    cfg, model, objective, images = _setup(tmp_path, "training.checkpoint_every=2")
    monkeypatch.setattr(train_module._StopOnCtrlC, "REPEAT_SECONDS", 0.0)
    save = torch.save

    def second_ctrl_c_while_writing(state, f, *args, **kwargs):
        if state["step"] < 3:
            return save(state, f, *args, **kwargs)
        open(f, "wb").write(b"half a checkpoint")
        signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(torch, "save", second_ctrl_c_while_writing)
    with pytest.raises(TrainingInterrupted) as info:
        train(cfg, model, objective, images, cpu(cfg), tmp_path / "c.pt", on_step=_ctrl_c_at(3))
    monkeypatch.undo()
    assert info.value.step == 2, "the message names the checkpoint on disk, not the one that was cut short"
    assert load_checkpoint(tmp_path / "c.pt")["step"] == 2 and not (tmp_path / "c.pt.tmp").exists()


def test_a_second_ctrl_c_before_any_checkpoint_says_none_was_written(tmp_path, monkeypatch):
    cfg, model, objective, images = _setup(tmp_path)
    monkeypatch.setattr(train_module._StopOnCtrlC, "REPEAT_SECONDS", 0.0)
    with pytest.raises(TrainingInterrupted) as info:
        train(cfg, model, objective, images, cpu(cfg), tmp_path / "c.pt", on_step=_ctrl_c_at(2, times=2))
    assert info.value.step is None and not (tmp_path / "c.pt").exists()


class NaNModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, x, t):
        return x * self.scale / 0.0 * 0.0


def test_nan_loss_stops_with_advice_and_no_checkpoint(tmp_path):
    cfg, _, objective, images = _setup(tmp_path, "training.log_every=1")
    with pytest.raises(NonFiniteLossError, match="training.lr"):
        train(cfg, NaNModel(), objective, images, cpu(cfg), tmp_path / "nan.pt")
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

