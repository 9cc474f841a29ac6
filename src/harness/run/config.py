"""Run configuration: OmegaConf structured configs, loaded from YAML plus command-line overrides.

Every field has a type and a default; `load_config` merges a YAML file and `key=value` overrides onto
them and rejects a misspelt key, a wrong type or an out-of-range value with a `ConfigError` whose
message is one line naming the key and what is allowed.
"""

import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from src.harness.paths import CONFIGS


class ConfigError(ValueError):
    """A configuration value is missing, misspelt, of the wrong type or out of range."""


# Allowed values, attached to a field as metadata and checked by `validate`: (what is allowed, test).
POSITIVE = ("a number > 0", lambda value: value > 0)
NON_NEGATIVE = ("a number >= 0", lambda value: value >= 0)
FRACTION = ("a number in [0, 1]", lambda value: 0 <= value <= 1)
POSITIVE_OR_NULL = ("null or an integer > 0", lambda value: value is None or value > 0)
SEED = ("an integer from 0 to 2**63 - 1", lambda value: 0 <= value < 2 ** 63)  # what torch.manual_seed takes


def checked(default, rule: tuple[str, Callable]):
    """A config field whose value must pass `rule`."""
    return field(default=default, metadata={"rule": rule})


def one_of(default: str, choices: Callable[[], Iterable[str]]):
    """A config field whose value must be one of `choices()` (a registry, read when the config is checked)."""
    return field(default=default, metadata={"choices": choices})


def _datasets():
    from src.harness.run.data import DATASETS  # torch-heavy: imported only when a config is checked

    return DATASETS


def _samplers():
    from src.harness.run.samplers import SAMPLERS

    return SAMPLERS


def _objectives():
    from src.harness.run.objective import OBJECTIVES

    return OBJECTIVES



@dataclass
class DataConfig:
    name: str = one_of("fashion_mnist", _datasets)  # a key of harness.run.data.DATASETS
    root: str = "${oc.env:KATA_DATA_ROOT,data}"  # dataset folder (torchvision layout); env KATA_DATA_ROOT sets it
    download: bool = True  # let torchvision download missing files when online
    verify_md5: bool = True  # false: accept mirrors whose files are complete but fail torchvision's md5
    batch_size: int = checked(128, POSITIVE)
    num_val: int = checked(1000, POSITIVE)  # held-out validation images, a fixed subset of the test split
    hflip: bool = True  # random horizontal flips during training
    # Only for generated data: `synthetic` images' shape, and the training count of `synthetic`, `spiral`, `moons`.
    channels: int = checked(1, POSITIVE)
    image_size: int = checked(16, POSITIVE)
    num_train: int = checked(512, POSITIVE)


@dataclass
class ModelConfig:
    """Architecture of the reference UNet (`--solution`); your own model builds itself."""

    block_out_channels: list[int] = field(default_factory=lambda: [32, 64, 128])
    layers_per_block: int = checked(1, POSITIVE)
    attention: list[bool] = field(default_factory=lambda: [False, False, False])
    mid_attention: bool = False
    norm_num_groups: int = checked(8, POSITIVE)


@dataclass
class DiffusionConfig:
    objective: str = one_of("noise", _objectives)  # DDPM's noise prediction, or flow matching (Level 7)
    num_timesteps: int = checked(1000, POSITIVE)  # T
    schedule: str = one_of("linear", lambda: ("linear", "cosine"))
    beta_start: float = 1e-4  # linear schedule only
    beta_end: float = 0.02  # linear schedule only


@dataclass
class ConditioningConfig:
    """What the network sees besides x_t and t (src/harness/run/conditioning.py)."""

    kind: str = one_of("none", lambda: ("none", "class"))  # class: each image's class label (Level 6)
    label_dropout: float = checked(0.1, FRACTION)  # share of training labels replaced by the null label
    guidance_scale: float = checked(3.0, NON_NEGATIVE)  # w of classes.png and the agreement the level grades


@dataclass
class TrainingConfig:
    epochs: int = checked(10, POSITIVE)
    max_steps: int | None = checked(None, POSITIVE_OR_NULL)  # stop earlier than `epochs` (the LR schedule follows)
    lr: float = checked(2e-3, POSITIVE)
    weight_decay: float = checked(0.0, NON_NEGATIVE)
    warmup_steps: int = checked(100, NON_NEGATIVE)
    min_lr_ratio: float = checked(0.1, FRACTION)  # the cosine schedule ends at lr * min_lr_ratio
    grad_clip: float = checked(1.0, NON_NEGATIVE)
    ema_decay: float = checked(0.999, FRACTION)
    precision: str = one_of("auto", lambda: ("auto", "fp32", "bf16"))  # bf16: bfloat16 autocast
    checkpoint_every: int = checked(500, POSITIVE)  # steps; a checkpoint is also written at the end and on Ctrl-C
    log_every: int = checked(10, POSITIVE)  # steps between progress-bar updates (and NaN checks)
    eval_every: int = checked(100, NON_NEGATIVE)  # steps between validation points on curves.png (0: none)
    preview_every: int = checked(250, NON_NEGATIVE)  # steps between sample grids in previews/ (0: none)
    val_batch_size: int = checked(500, POSITIVE)


@dataclass
class SamplingConfig:
    # the harness's: dpmpp_2m, or heun for flow matching; yours: ddpm, ddim (Levels 4, 5), euler (Level 7)
    sampler: str = one_of("dpmpp_2m", _samplers)
    steps: int = checked(50, POSITIVE)  # model calls per sample, for samplers that skip timesteps (all but ddpm)
    eta: float = checked(0.0, FRACTION)  # ddim's noise: 0 deterministic, 1 as stochastic as DDPM
    num_samples: int = checked(64, POSITIVE)
    seed: int = checked(0, SEED)
    animation_frames: int = checked(40, POSITIVE)  # frames of animation.gif, from x_T to x_0


@dataclass
class SteeringConfig:
    """Level 9: a trained run's samples steered at inference (src/harness/run/steering.py). A steering run trains
    nothing; the level grades the scales marked "graded"."""

    run: str | None = None  # the config whose finished run is steered; null: this is not a steering run
    steps: int = checked(20, POSITIVE)  # steered DDIM steps, each a model call and a gradient through it
    num_images: int = checked(50, POSITIVE)  # held-out images inpainted, top half kept (inpainting.png: 20)
    inpainting_scales: list[float] = field(default_factory=lambda: [0.0, 3.0, 10.0, 30.0])  # rows of inpainting.png
    inpainting_scale: float = checked(10.0, NON_NEGATIVE)  # graded
    per_class: int = checked(10, POSITIVE)  # class-steered samples per class and scale
    class_scales: list[float] = field(default_factory=lambda: [0.0, 1.0, 3.0, 10.0])  # rows of steering.png
    class_scale: float = checked(3.0, NON_NEGATIVE)  # graded


@dataclass
class LatentConfig:
    """Level 8: diffusion in the latent space of an autoencoder (src/autoencoder.py), which the run trains first on the
    same images (src/harness/run/latent.py); the diffusion half then trains as `training` says, on scaled latents."""

    channels: int = checked(0, NON_NEGATIVE)  # latent channels (latents are channels x H/4 x W/4); 0: pixel diffusion
    epochs: float = checked(1.0, POSITIVE)  # the autoencoder's passes over the training images
    batch_size: int = checked(64, POSITIVE)
    lr: float = checked(2.0e-3, POSITIVE)  # Adam, cosine decay to 0
    kl_weight: float = checked(1.0e-3, NON_NEGATIVE)  # beta of the KL term in autoencoder_loss


@dataclass
class OutputConfig:
    root: str = "outputs"
    name: str | None = None  # default: the config file's name, plus "-solution" for reference runs
    animation: bool = True  # animation.gif: the final samples emerging from noise
    tensorboard: bool = False  # also log to <run>/tensorboard/ (needs `uv sync --extra tensorboard`)


@dataclass
class Config:
    seed: int = checked(0, SEED)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    conditioning: ConditioningConfig = field(default_factory=ConditioningConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    steering: SteeringConfig = field(default_factory=SteeringConfig)
    latent: LatentConfig = field(default_factory=LatentConfig)
    output: OutputConfig = field(default_factory=OutputConfig)


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> DictConfig:
    """Config defaults, then the YAML file at `path`, then `key=value` overrides; validated."""
    cfg = OmegaConf.structured(Config)
    try:
        for given in ([_read_yaml(Path(path))] if path is not None else []) + [OmegaConf.from_dotlist(list(overrides))]:
            _check_sections(given, Config)
            cfg = OmegaConf.merge(cfg, given)
    except OmegaConfBaseException as err:
        raise ConfigError(_describe(err, cfg)) from None
    if cfg.output.name is None:
        cfg.output.name = Path(path).stem if path is not None else "run"
    validate(cfg)
    return cfg


def output_dir(cfg: DictConfig, source) -> Path:
    """The run folder of a run of `cfg` by `source` (a loading.CodeSource): output.root/output.name, with
    "-solution" for the reference's."""
    return Path(cfg.output.root) / (cfg.output.name + source.run_suffix)


def official_config(name: str, overrides=()) -> DictConfig:
    """configs/<name>.yaml, loaded and validated, plus `key=value` overrides."""
    return load_config(CONFIGS / f"{name}.yaml", overrides)


# Settings that do not change what a run learns: where data comes from, how it reports, how it samples afterwards.
NOT_RECIPE = ("data.root", "data.download", "data.verify_md5", "training.precision", "training.checkpoint_every",
              "training.log_every", "training.eval_every", "training.preview_every", "training.val_batch_size",
              "conditioning.guidance_scale", "sampling", "steering", "output")


def recipe_changes(recorded: dict, wanted: DictConfig) -> list[str]:
    """The settings (dotted keys) in which a run's recorded config differs from `wanted`, NOT_RECIPE aside."""
    run = OmegaConf.to_container(OmegaConf.merge(OmegaConf.structured(Config), recorded))

    def differ(a, b, prefix=""):
        if isinstance(a, dict) and isinstance(b, dict):
            return [key for name in sorted(a.keys() | b.keys()) if not _ignored(prefix + name)
                    for key in differ(a.get(name), b.get(name), prefix + name + ".")]
        return [] if a == b else [prefix.rstrip(".")]

    return differ(run, OmegaConf.to_container(wanted))


def _ignored(key: str) -> bool:
    return any(key == ignored or key.startswith(ignored + ".") for ignored in NOT_RECIPE)


def _read_yaml(path: Path) -> DictConfig:
    if not path.is_file():
        known = ", ".join(sorted(p.as_posix() for p in Path("configs").glob("*.yaml")))
        raise ConfigError(f"config file {path} not found; use one of: {known or 'the YAML files in configs/'}")
    try:
        loaded = OmegaConf.load(path)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}{where} is not valid YAML ({problem}); fix it there: "
                          "each line is `key: value`, nested keys indented under their section") from None
    except OSError as err:
        if "Invalid loaded object type" not in str(err):  # OmegaConf's words for a lone number or string
            raise ConfigError(f"cannot read {path} ({err.strerror or err}); check that it is a readable file") from None
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(loaded, DictConfig):
        what = "a list" if isinstance(loaded, ListConfig) else f"a single value ({loaded!r})"
        raise ConfigError(f"{path} holds {what} at the top level; a config is sections of `key: value` lines, like "
                          "configs/smoke.yaml")
    if not loaded:
        raise ConfigError(f"{path} is empty; a config names at least its data (`data:` with `name: ...` under it), "
                          "like configs/smoke.yaml")
    return loaded


def _check_sections(given: DictConfig, cls, prefix: str = "") -> None:
    """Raise ConfigError where `given` holds a value where `cls` has a section (e.g. `model: 3`)."""
    for f in fields(cls):
        if is_dataclass(f.type) and f.name in given:
            value = given[f.name]
            if not isinstance(value, DictConfig):
                raise ConfigError(f"config key '{prefix}{f.name}' is a section, not a value ({value!r}): put its keys "
                                  f"under it, one `key: value` per indented line, or override one as "
                                  f"{prefix}{f.name}.KEY=VALUE")
            _check_sections(value, f.type, f"{prefix}{f.name}.")


def _describe(err: OmegaConfBaseException, cfg: DictConfig) -> str:
    key = err.full_key or "?"
    if isinstance(err, ConfigKeyError):
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(cfg, parent) if parent else cfg
        valid = list(node.keys()) if isinstance(node, DictConfig) else []
        close = difflib.get_close_matches(leaf, valid, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"unknown config key '{key}'{hint}; valid keys here: {', '.join(valid)}"
    if isinstance(err, ValidationError):
        expected = type(OmegaConf.select(cfg, key)).__name__ if OmegaConf.select(cfg, key) is not None else "?"
        return f"config key '{key}' has the wrong type: {err.msg.splitlines()[0]} (expected {expected})"
    return f"config error at '{key}': {err.msg.splitlines()[0]}"


def _check(ok: bool, key: str, value, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"config key '{key}' = {value!r} is out of range; allowed: {allowed}")


def _checked_fields(cls, prefix: str = ""):
    """(dotted key, metadata) of every field of `cls` and its nested sections that carries a rule or choices."""
    for f in fields(cls):
        if is_dataclass(f.type):
            yield from _checked_fields(f.type, f"{prefix}{f.name}.")
        elif f.metadata:
            yield prefix + f.name, f.metadata


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError on the first out-of-range value: each field's own rule, then the rules between fields."""
    for key, spec in _checked_fields(Config):
        value = OmegaConf.select(cfg, key)
        if "choices" in spec:
            choices = spec["choices"]()
            _check(value in choices, key, value, "one of " + ", ".join(sorted(choices)))
        else:
            allowed, test = spec["rule"]
            _check(test(value), key, value, allowed)
    _check_between_fields(cfg)


def _check_between_fields(cfg: DictConfig) -> None:
    from src.harness.policy import POINT_EVAL_SAMPLES
    from src.harness.run.data import DATASETS  # torch-heavy: imported only when needed
    from src.harness.run.quality import EVAL_SAMPLES, classifier_path

    if DATASETS[cfg.data.name].kind == "points":
        _check(cfg.conditioning.kind == "none", "conditioning.kind", cfg.conditioning.kind,
               "none for 2-D points (class conditioning is for images: src/model.py)")
        _check(not cfg.data.hflip, "data.hflip", cfg.data.hflip, "false for 2-D points (a flip is for images)")
        for key in ("num_train", "num_val"):
            _check(cfg.data[key] >= POINT_EVAL_SAMPLES, f"data.{key}", cfg.data[key],
                   f"at least {POINT_EVAL_SAMPLES}, as the sample-quality score compares {POINT_EVAL_SAMPLES} "
                   "samples with as many training and validation points")
    if cfg.latent.channels:
        spec = DATASETS[cfg.data.name]
        _check(spec.kind == "images" and spec.shape(cfg.data)[-1] % 4 == 0, "latent.channels",
               cfg.latent.channels, "0 for 2-D points and for images whose size is not a multiple of 4 (a latent is "
               "a quarter of the image's height and width)")
        _check(not cfg.data.hflip, "data.hflip", cfg.data.hflip, "false for a latent run (a flipped latent is not "
               "the latent of the flipped image)")
    num_train = DATASETS[cfg.data.name].num_train(cfg.data)
    _check(cfg.data.batch_size <= num_train, "data.batch_size", cfg.data.batch_size,
           f"at most the {num_train} training samples of {cfg.data.name} (a batch is drawn from them)")
    if classifier_path(cfg.data.name).exists():
        _check(cfg.data.num_val >= 2 * EVAL_SAMPLES, "data.num_val", cfg.data.num_val,
               f"at least {2 * EVAL_SAMPLES} for {cfg.data.name}, as the sample-quality score compares "
               f"{EVAL_SAMPLES} samples with two sets of {EVAL_SAMPLES} real images")
    from src.harness.run.objective import OBJECTIVES

    d = cfg.diffusion
    objective = OBJECTIVES[d.objective]
    _check(cfg.conditioning.kind == "none" or objective.conditional, "conditioning.kind", cfg.conditioning.kind,
           f"none with diffusion.objective={d.objective} (the guided sampler of Level 6 takes DDIM's steps)")
    fitting = objective.samplers
    _check(cfg.sampling.sampler in fitting, "sampling.sampler", cfg.sampling.sampler,
           f"one of {', '.join(sorted(fitting))} with diffusion.objective={d.objective}")
    _check(0 < d.beta_start < d.beta_end < 1, "diffusion.beta_start", d.beta_start,
           f"0 < beta_start < beta_end (= {d.beta_end}) < 1")
    m = cfg.model
    _check(len(m.block_out_channels) > 0, "model.block_out_channels", list(m.block_out_channels), "a non-empty list")
    _check(len(m.attention) == len(m.block_out_channels), "model.attention", list(m.attention),
           f"one true/false per entry of model.block_out_channels ({len(m.block_out_channels)})")
    _check(all(c > 0 for c in m.block_out_channels), "model.block_out_channels", list(m.block_out_channels),
           "a list of channel counts > 0")
    _check(all(c % m.norm_num_groups == 0 for c in m.block_out_channels), "model.norm_num_groups",
           m.norm_num_groups, f"a divisor of every entry of model.block_out_channels {list(m.block_out_channels)}")
