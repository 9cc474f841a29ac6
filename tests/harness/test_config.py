"""Configuration: defaults, overrides, and one-line errors for bad keys, types and values."""

import pytest

from src.harness.paths import ROOT
from src.harness.run.cli import main
from src.harness.run.config import ConfigError, load_config, official_config

CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load(path):
    cfg = load_config(path)
    assert cfg.output.name == path.stem


def test_overrides_are_typed():
    cfg = official_config("smoke", ["training.epochs=3", "data.batch_size=256"])
    assert cfg.training.epochs == 3 and cfg.data.batch_size == 256


@pytest.mark.parametrize("override, expected", [
    ("training.epochz=3", ["unknown config key 'training.epochz'", "did you mean 'epochs'"]),
    ("trainin.lr=0.1", ["unknown config key 'trainin'", "training"]),
    ("training.lr=fast", ["training.lr", "wrong type"]),
    ("training.lr=-0.001", ["training.lr", "> 0"]),
    ("diffusion.num_timesteps=0", ["diffusion.num_timesteps", "> 0"]),
    ("data.name=mnist", ["data.name", "cifar10, fashion_mnist, moons, spiral, synthetic"]),
    ("diffusion.schedule=quadratic", ["diffusion.schedule", "cosine, linear"]),
    ("training.ema_decay=1.5", ["training.ema_decay", "[0, 1]"]),
    ("model.norm_num_groups=5", ["model.norm_num_groups", "divisor"]),
    ("sampling.sampler=euler", ["sampling.sampler", "ddim, ddpm, dpmpp_2m with diffusion.objective=noise"]),
    ("sampling.sampler=unipc", ["sampling.sampler", "ddim, ddpm, dpmpp_2m, euler, heun"]),
    ("diffusion.objective=flow", ["sampling.sampler", "euler, heun with diffusion.objective=flow"]),
    ("diffusion.objective=score", ["diffusion.objective", "flow, noise"]),
    ("model.norm_num_groups=0", ["model.norm_num_groups", "> 0"]),
    ("model.layers_per_block=0", ["model.layers_per_block", "> 0"]),
    ("model.block_out_channels=[0,32]", ["model.block_out_channels", "channel counts > 0"]),
    ("seed=-1", ["'seed' = -1", "from 0 to 2**63 - 1"]),
    (f"seed={2 ** 64}", ["'seed'", "from 0 to 2**63 - 1"]),
    (f"sampling.seed={10 ** 30}", ["sampling.seed", "from 0 to 2**63 - 1"]),
    ("data.batch_size=100000", ["data.batch_size", "at most the 512 training samples of synthetic"]),
    ("model=3", ["config key 'model' is a section, not a value (3)", "model.KEY=VALUE"]),
])
def test_bad_values_name_the_key_and_the_allowed_values(override, expected):
    with pytest.raises(ConfigError) as info:
        official_config("smoke", [override])
    message = str(info.value)
    assert "\n" not in message
    for part in expected:
        assert part in message


def test_cli_prints_one_line_and_exits_nonzero(capsys):
    assert main(["--config", str(ROOT / "configs" / "smoke.yaml"), "training.lr=-1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: config key 'training.lr'") and "\n" not in err


def test_data_root_follows_the_environment(monkeypatch):
    monkeypatch.setenv("KATA_DATA_ROOT", "/somewhere/data")
    assert official_config("fashion_mnist").data.root == "/somewhere/data"
    monkeypatch.delenv("KATA_DATA_ROOT")
    assert official_config("fashion_mnist").data.root == "data"


@pytest.mark.parametrize("text, expected", [
    ("data:\n  name: [synthetic\ntraining: {\n", ["bad.yaml, line 3, column 9 is not valid YAML", "key: value"]),
    ("- data\n- training\n", ["bad.yaml holds a list at the top level", "configs/smoke.yaml"]),
    ("3\n", ["bad.yaml holds a single value (3) at the top level"]),
    ("", ["bad.yaml is empty", "data:"]),
    ("# only a comment\n", ["bad.yaml is empty"]),
    ("model: 3\n", ["config key 'model' is a section, not a value (3)"]),
    ("data:\n  name: synthetic\n  batch_size: {a: 1}\n", ["data.batch_size"]),
])
def test_a_broken_yaml_file_is_one_line(tmp_path, capsys, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["--config", str(path), f"output.root={tmp_path}"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    for part in expected:
        assert part in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"], "nothing is written"


def test_a_missing_config_file_lists_the_shipped_ones(tmp_path):
    with pytest.raises(ConfigError, match="configs/smoke.yaml"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("config", ["fashion_mnist", "cifar10"])
def test_too_few_validation_images_for_the_quality_score_are_refused(config):
    with pytest.raises(ConfigError, match="data.num_val' = 100 .* at least 512"):
        official_config(config, ["data.num_val=100"])
    assert official_config(config, ["data.num_val=512"]).data.num_val == 512
    assert official_config("smoke", ["data.num_val=2"]).data.num_val == 2, "no score, no limit"
