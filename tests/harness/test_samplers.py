"""The harness's samplers: the registry, DPM-Solver++(2M), Heun, and the benchmark against a textbook loop."""

import pytest
import torch
from omegaconf import OmegaConf

from src.harness.loading import REFERENCE
from src.harness.paths import ROOT
from src.harness.run.config import SamplingConfig
from src.harness.run.objective import OBJECTIVES, FlowMatching, NoisePrediction
from src.harness.run.samplers import SAMPLERS, dpmpp_2m, get_sampler, heun
from src.harness.run.schedule import NoiseSchedule
from tests.graded.fakes import GaussianDataDenoiser, GaussianDataVelocity, RecordingModel
from tests.harness.helpers import run_main


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_registered_sampler_draws_images_in_range(name):  
    cfg = OmegaConf.merge(OmegaConf.structured(SamplingConfig), {"sampler": name, "steps": 5})
    schedule = NoiseSchedule(20)
    out = SAMPLERS[name](cfg, REFERENCE)(RecordingModel(20), schedule, (2, 3, 4, 4), torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, 4, 4) and out.min() >= -1 and out.max() <= 1 and not out.requires_grad


def test_dpmpp_2m_calls_the_model_on_evenly_spaced_timesteps():
    model = RecordingModel(1000)
    dpmpp_2m(model, NoiseSchedule(1000), (1, 1, 2, 2), num_steps=5)
    assert [t[0] for t, _ in model.calls] == [999, 749, 500, 250, 0]


def test_dpmpp_2m_reproduces_gaussian_data_with_a_second_order_error():
    schedule = NoiseSchedule(1000)
    denoiser = GaussianDataDenoiser(schedule, 0.2, 0.3)

    def std_error(num_steps):
        out = dpmpp_2m(denoiser, schedule, (256, 1, 8, 8), torch.Generator().manual_seed(0), num_steps=num_steps)
        assert out.mean().item() == pytest.approx(0.2, abs=0.01)
        return abs(out.std().item() - 0.3)

    assert std_error(50) < 0.04
    assert std_error(100) < std_error(50) / 3, "second order: twice the steps, a quarter of the error (DDIM: half)"


def test_heun_reproduces_gaussian_data_and_calls_the_model_twice_per_step_but_the_last():
    model = RecordingModel(1000)
    heun(model, NoiseSchedule(1000), (1, 1, 2, 2), num_steps=4)
    assert [t[0] for t, _ in model.calls] == [999, 749, 749, 499, 499, 249, 249]
    out = heun(GaussianDataVelocity(1000, 0.2, 0.3), NoiseSchedule(1000), (256, 1, 8, 8),
               torch.Generator().manual_seed(0), num_steps=25)
    assert out.mean().item() == pytest.approx(0.2, abs=0.01)
    assert out.std().item() == pytest.approx(0.3, abs=0.01), "second order: closer than Euler's 50 steps"


def test_every_sampler_fits_exactly_one_objective_and_custom_picks_the_students():
    fitted = [name for objective in OBJECTIVES.values() for name in objective.samplers]
    assert sorted(fitted) == sorted(SAMPLERS), "each sampler is meant for one objective"
    cfg = OmegaConf.structured(SamplingConfig)
    assert get_sampler(cfg, NoisePrediction, custom=True).__module__ == "src.sampler"
    assert get_sampler(OmegaConf.merge(cfg, {"sampler": "ddim"}), NoisePrediction).func.__module__ == "src.sampler"
    assert get_sampler(cfg, FlowMatching, custom=True).func.__module__ == "src.flow"


@pytest.mark.slow
def test_benchmark_prints_both_loops_and_the_speedup(tmp_path):
    result = run_main(ROOT, "--config", "configs/smoke.yaml", "--solution", "--benchmark", f"output.root={tmp_path}")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("train images/s") for line in lines)
    assert any(line.startswith("sample images/s") for line in lines)
    assert lines[-1].startswith("speedup vs textbook: train ") and ", sample " in lines[-1]
