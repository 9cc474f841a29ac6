"""Level integrity: a checkpoint counts for a level only if it proves its budget and the code that trained it,
and broken student code on the grading path ends in one clear line."""

import json
import time

import pytest
import torch
from omegaconf import OmegaConf

from src.harness.grade.grading import gradable
from src.harness.loading import STUDENT, StudentCodeError
from src.harness.run.config import official_config
from src.harness.run.train import ResumeMismatchError, budget_of, check_resume, load_checkpoint, save_checkpoint, train
from tests.graded import runs, test_model
from tests.harness.helpers import ONE_CONV, cpu, kata_copy, run_main, run_pytest, smoke_training

OFFICIAL = official_config("fashion_mnist")
OFFICIAL_CONTAINER = OmegaConf.to_container(OFFICIAL, resolve=True)
BATCH = OFFICIAL.data.batch_size
OFFICIAL_STEPS = OFFICIAL.training.epochs * (60_000 // BATCH)


def _official_state(**changes) -> dict:
    """The record of a complete student run at the official Fashion-MNIST budget, then `changes`."""
    state = {"step": OFFICIAL_STEPS, "total_steps": OFFICIAL_STEPS, "images_seen": OFFICIAL_STEPS * BATCH,
             "budget": budget_of(OFFICIAL), "solution": False, "model_fingerprint": STUDENT.fingerprint(),
             "config": {}, "ema": {}}
    return state | changes


# ------------------------------------------------------------------------------------------- fingerprint

def _kata_files(root, model: str):
    (root / "src").mkdir(parents=True, exist_ok=True)
    (root / "src" / "model.py").write_text(model)
    (root / "src" / "utils.py").write_text("def helper():\n    return 1\n")
    return STUDENT.fingerprint(root=root)


def test_fingerprint_ignores_comments_docstrings_and_layout_but_not_code(tmp_path):
    model = 'class DiffusionModel:\n    """Doc."""\n    width = 32\n'
    original = _kata_files(tmp_path / "a", model)
    assert _kata_files(tmp_path / "b", '# my net\nclass DiffusionModel:\n    """Other doc."""\n\n    width = (32)\n') \
        == original
    assert _kata_files(tmp_path / "c", model.replace("32", "64")) != original


# ------------------------------------------------------------------------------------- what a run records

def _smoke(tmp_path, *overrides):
    return smoke_training(tmp_path, "training.precision=fp32", *overrides)


def test_checkpoint_records_the_budget_it_was_trained_with(tmp_path):
    cfg, model, objective, images = _smoke(tmp_path, "training.max_steps=3")
    train(cfg, model, objective, images, cpu(cfg), tmp_path / "c.pt", metadata={"solution": True})
    state = load_checkpoint(tmp_path / "c.pt")
    assert state["budget"] == budget_of(cfg) and state["budget"]["training.max_steps"] == 3
    assert state["step"] == 3 and state["images_seen"] == 3 * cfg.data.batch_size


def test_resume_refuses_a_changed_budget_and_keeps_the_record(tmp_path):
    """Route: train longer than the official budget, then --resume with the official config to relabel it."""
    cfg, model, objective, images = _smoke(tmp_path, "training.max_steps=4")
    train(cfg, model, objective, images, cpu(cfg), tmp_path / "c.pt")
    before = load_checkpoint(tmp_path / "c.pt")
    cfg = _smoke(tmp_path, "training.max_steps=2")[0]
    with pytest.raises(ResumeMismatchError, match="training.max_steps=4.*training.max_steps=2"):
        check_resume(load_checkpoint(tmp_path / "c.pt"), cfg, {})
    assert load_checkpoint(tmp_path / "c.pt")["budget"] == before["budget"], "the record must not be rewritten"


def test_resume_refuses_other_model_code(tmp_path):
    cfg, model, objective, images = _smoke(tmp_path, "training.max_steps=2")
    train(cfg, model, objective, images, cpu(cfg), tmp_path / "c.pt", metadata={"model_fingerprint": "a"})
    with pytest.raises(ResumeMismatchError, match=r"the code this run trains with \(src/model.py"):
        check_resume(load_checkpoint(tmp_path / "c.pt"), cfg, {"model_fingerprint": "b"})


@pytest.mark.slow
def test_main_refuses_to_resume_with_another_budget_in_one_line_and_touches_nothing(tmp_path):
    kata = kata_copy(tmp_path, model=ONE_CONV)
    first = run_main(kata, "--config", "configs/smoke.yaml", "training.max_steps=3", "output.animation=false")
    assert first.returncode == 0, first.stderr
    run_folder = kata / "outputs" / "smoke"
    before = {path.name: path.read_bytes() for path in run_folder.iterdir() if path.is_file()}
    again = run_main(kata, "--config", "configs/smoke.yaml", "--resume")
    assert again.returncode == 1 and "Traceback" not in again.stderr and not again.stdout
    assert len(again.stderr.strip().splitlines()) == 1 and "training.max_steps=3" in again.stderr
    after = {path.name: path.read_bytes() for path in run_folder.iterdir() if path.is_file()}
    assert after == before, "a refused --resume must leave the run folder (config.yaml included) as it was"


# ------------------------------------------------------------------------------- what a level accepts

def test_a_complete_official_run_of_the_graded_code_counts():
    assert runs.provenance_problem(_official_state(), OFFICIAL, source=STUDENT) is None


@pytest.mark.parametrize("changes, reason", [
    # Route: copy the reference's checkpoint and flip its solution flag (it has no student fingerprint).
    pytest.param({"solution": False, "model_fingerprint": None}, "other code than the current src/model.py",
                 id="flipped-reference"),
    pytest.param({"model_fingerprint": "0" * 64}, "other code than the current src/model.py", id="other-fingerprint"),
    pytest.param({"solution": True}, "was not trained from src/model.py", id="reference-flag"),
    # Route: train with more epochs, then --resume with the official config (the record keeps epochs=3).
    pytest.param({"budget": budget_of(OFFICIAL) | {"training.epochs": 3}}, "training.epochs=3", id="more-epochs"),
    pytest.param({"step": 3 * OFFICIAL_STEPS // 2, "images_seen": 3 * OFFICIAL_STEPS // 2 * BATCH},
                 f"official budget is {OFFICIAL_STEPS} steps", id="steps-above-total"),
    pytest.param({"images_seen": 2 * OFFICIAL_STEPS * BATCH}, f"official budget is {OFFICIAL_STEPS} steps",
                 id="images-above-budget"),
    pytest.param({"step": 500}, f"stopped at step 500 of {OFFICIAL_STEPS}", id="unfinished"),
    pytest.param({"budget": None}, "does not record its training budget", id="old-checkpoint"),
])
def test_a_run_that_cannot_prove_its_budget_and_code_does_not_count(changes, reason):
    problem = runs.provenance_problem(_official_state(**changes), OFFICIAL, source=STUDENT)
    assert problem is not None and reason in problem


class SmallNet(torch.nn.Module):
    def __init__(self, in_channels, image_size):
        super().__init__()
        self.conv = torch.nn.Conv2d(in_channels, in_channels, 3, padding=1)

    def forward(self, x, t):
        return self.conv(x)


class OtherNet(SmallNet):
    def __init__(self, in_channels, image_size):
        super().__init__(in_channels, image_size)
        self.extra = torch.nn.Linear(2, 2)


def _graded_checkpoint(monkeypatch, tmp_path, state=None, raw: bytes | None = None):
    path = tmp_path / "checkpoint.pt"
    if raw is not None:
        path.write_bytes(raw)
    else:
        save_checkpoint(path, state)
    monkeypatch.setattr(runs, "checkpoint_path", lambda config, source: path)
    monkeypatch.setattr(runs.CodeSource, "fingerprint", lambda source, code: "graded code")


@pytest.mark.parametrize("raw", [pytest.param(b"", id="empty"), pytest.param(b"garbage" * 100, id="garbage")])
def test_a_damaged_checkpoint_is_one_clear_line(monkeypatch, tmp_path, raw):
    _graded_checkpoint(monkeypatch, tmp_path, raw=raw)
    with pytest.raises(pytest.fail.Exception, match="cannot be read.*train again"):
        runs.trained_model("fashion_mnist", SmallNet, source=STUDENT)


@pytest.mark.parametrize("state", [pytest.param({"weights": torch.zeros(3)}, id="other-dict"),
                                   pytest.param({"step": 1, "ema": {}}, id="no-config")])
def test_a_file_that_is_no_run_of_main_py_is_one_clear_line(monkeypatch, tmp_path, state):
    _graded_checkpoint(monkeypatch, tmp_path, state)
    with pytest.raises(pytest.fail.Exception, match="is not a checkpoint written by main.py; delete it"):
        runs.trained_model("fashion_mnist", SmallNet, source=STUDENT)


def test_a_truncated_checkpoint_is_one_clear_line(monkeypatch, tmp_path):
    save_checkpoint(tmp_path / "full.pt", {"weights": torch.zeros(10_000)})
    _graded_checkpoint(monkeypatch, tmp_path, raw=(tmp_path / "full.pt").read_bytes()[:20_000])
    with pytest.raises(pytest.fail.Exception, match="cannot be read"):
        runs.trained_model("fashion_mnist", SmallNet, source=STUDENT)


def test_a_checkpoint_of_another_model_class_is_one_clear_line(monkeypatch, tmp_path):
    weights = OtherNet(1, 28).state_dict()
    state = _official_state(model_fingerprint="graded code", ema={"model": weights}, config=OFFICIAL_CONTAINER)
    _graded_checkpoint(monkeypatch, tmp_path, state)
    with pytest.raises(pytest.fail.Exception, match="do not fit this DiffusionModel.*extra"):
        runs.trained_model("fashion_mnist", SmallNet, source=STUDENT)
    assert runs.trained_model("fashion_mnist", OtherNet, source=STUDENT)[0].training is False


# ------------------------------------------------------------------------- broken code on the grading path

class ReturnsATuple(SmallNet):
    def forward(self, x, t):
        return self.conv(x), t


class ReturnsOnAnotherDevice(SmallNet):
    def forward(self, x, t):
        return self.conv(x).to("meta")


class ReturnsBFloat16(SmallNet):
    def forward(self, x, t):
        return self.conv(x).bfloat16()


class Huge(SmallNet):
    def __init__(self, in_channels, image_size):
        super().__init__(in_channels, image_size)
        self.layers = torch.nn.ModuleList(torch.nn.Linear(10_000, 10_000) for _ in range(5))  # 500 M parameters


@pytest.mark.parametrize("model, reason", [
    (ReturnsATuple, "the model returned a tuple, not a tensor"),
    (ReturnsOnAnotherDevice, "returned a tensor on meta for input on cpu"),
])
def test_output_that_is_not_one_tensor_on_the_input_device_is_one_clear_line(model, reason):
    with pytest.raises(StudentCodeError, match=reason):
        test_model.test_output_shape_equals_input_shape(model_class=gradable(model), dataset="fashion_mnist", batch=1)


def test_bfloat16_output_fails_only_the_dtype_test():
    with pytest.raises(AssertionError, match="bfloat16"):
        test_model.test_output_is_float32(model_class=gradable(ReturnsBFloat16))
    test_model.test_output_shape_equals_input_shape(model_class=gradable(ReturnsBFloat16), dataset="cifar10", batch=3)


def test_a_model_too_large_to_grade_fails_before_allocating_it():
    tic = time.perf_counter()
    with pytest.raises(pytest.fail.Exception, match="500 M parameters.*too large to grade"):
        gradable(Huge)
    assert time.perf_counter() - tic < 5, "counting must not allocate the weights"


SYS_EXIT_MODEL = """
import sys
import torch
class DiffusionModel(torch.nn.Module):
    def __init__(self, in_channels, image_size):
        super().__init__()
        self.conv = torch.nn.Conv2d(in_channels, in_channels, 3, padding=1)
    def forward(self, x, t):
        sys.exit(0)
"""


def test_student_code_that_calls_sys_exit_fails_its_tests_and_the_others_still_run(tmp_path):
    kata = kata_copy(tmp_path, model=SYS_EXIT_MODEL, sampler="def sample(model, schedule, shape, generator=None:\n")
    result = run_pytest(kata, "tests/graded/test_model.py", "tests/graded/test_ddpm.py", "--grade-json",
                        "grade.json", "-k", "float32 or budget or exactly")
    grade = json.loads((kata / "grade.json").read_text())
    tests = {t["name"]: t for t in grade["tests"]}
    assert result.returncode != 0
    assert "sys.exit" in tests["test_output_is_float32"]["output"]
    assert tests["test_parameter_budget[fashion_mnist]"]["status"] == "passed", "tests that never call forward pass"
    assert "src/sampler.py, line 1: SyntaxError" in tests["test_matches_the_reference_sampler_exactly"]["output"]
