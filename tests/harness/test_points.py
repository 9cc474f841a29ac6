"""Level 0's 2-D playground in the harness: the point datasets, the Chamfer score, the config rules and a run."""

import json

import pytest
import torch
from PIL import Image

from src.harness.paths import ROOT
from src.harness.run.config import ConfigError, official_config
from src.harness.run.data import DATASETS, load_data
from src.harness.run.points import chamfer_distance
from src.harness.run.schedule import NoiseSchedule
from src.solution.sampler import sample as reference_sample
from tests.harness.helpers import kata_copy, run_main


@pytest.mark.parametrize("name", ["spiral", "moons"])
def test_point_datasets_are_fixed_points_inside_the_model_range(name):
    cfg = official_config(name)
    first, second = load_data(cfg.data), load_data(cfg.data)
    assert first.train.shape == (cfg.data.num_train, 2) and first.val.shape == (cfg.data.num_val, 2)
    assert first.train.dtype == torch.float32 and DATASETS[name].shape(cfg.data) == (2,)
    assert torch.equal(first.train, second.train), "the same points on every load"
    assert not torch.equal(first.train[:100], first.val[:100]), "validation points are drawn apart from training"
    assert first.train.abs().max() < 1.0, "points stay inside [-1, 1], where samplers clip"


def test_two_moons_are_labelled_by_moon():
    data = load_data(official_config("moons").data)
    upper, lower = data.train[data.train_labels == 0], data.train[data.train_labels == 1]
    assert data.classes == ["upper moon", "lower moon"] and 0.4 < len(upper) / len(data.train) < 0.6
    assert upper[:, 1].mean() > lower[:, 1].mean()


def test_chamfer_distance_is_zero_for_the_same_points_and_grows_with_a_shift():
    points = torch.randn(300, 2, generator=torch.Generator().manual_seed(0))
    assert chamfer_distance(points, points) == 0
    near, far = chamfer_distance(points, points + 0.05), chamfer_distance(points, points + 0.5)
    assert 0 < near < far and chamfer_distance(points + 0.5, points) == pytest.approx(far)


@pytest.mark.parametrize("override, key", [("data.hflip=true", "data.hflip"), ("data.num_val=100", "data.num_val"),
                                           ("data.num_train=100", "data.num_train")])
def test_point_configs_refuse_what_cannot_work_on_points(override, key):
    with pytest.raises(ConfigError, match=key):
        official_config("moons", [override])


def test_the_reference_ddpm_sampler_runs_unchanged_on_points():
    """The student's Level 4 sampler draws points as it draws images: (B, 2) in, (B, 2) out."""
    calls = []

    def model(x, t):
        calls.append(x.shape)
        return torch.zeros_like(x)

    out = reference_sample(model, NoiseSchedule(10), (16, 2), torch.Generator().manual_seed(0))
    assert out.shape == (16, 2) and out.abs().max() <= 1 and calls == [(16, 2)] * 10


@pytest.mark.slow
def test_a_short_moons_run_writes_scatter_plots_an_animation_and_a_score(tmp_path):
    result = run_main(ROOT, "--config", "configs/moons.yaml", "--solution", f"output.root={tmp_path}",
                      "training.epochs=1", "training.preview_every=20", "sampling.num_samples=200")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "moons-solution"
    assert "(10000 points, 2)" in result.stdout and "Chamfer distance" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["quality"]["num_samples"] == 2000 and metrics["quality"]["chamfer"] > 0
    for name in ("samples.png", "forward_process.png", "previews/step_000020.png"):
        with Image.open(out / name) as picture:
            assert picture.width >= 200
    with Image.open(out / "animation.gif") as gif:
        assert gif.n_frames == 40


def test_the_point_model_stub_names_its_file(tmp_path):
    kata = kata_copy(tmp_path)
    result = run_main(kata, "--config", "configs/moons.yaml")
    assert result.returncode == 1 and "src/point_model.py is still a stub" in result.stderr, result.stderr
