"""The bars of Levels 0, 1, 3, 6, 7, 8 and 9 agree with a person on every generator of the calibration zoo.

calibration/grids/<config>/ holds the 256 evaluation samples of each generator (real images, the reference,
independently written student models trained at the official budget, and broken generators), drawn once by
`uv run python -m calibration.calibrate <config>`; calibration/verdicts.json holds what a person saw in each
grid. Level 6's guided samples, one row per class at each guidance scale, are in
calibration/grids/fashion_mnist_cfg/ (`uv run python -m calibration.guidance`). The point sets of Levels 0, 5 and 7 are in calibration/grids/moons{,_flow,-ddim-eta0,-ddim-eta1}/samples.pt
(`uv run python -m calibration.points [--config moons_flow | --ddim-eta ETA]`). Level 9's steered Level 1 runs,
inpainted and class-steered, are in calibration/grids/fashion_mnist_steer/ (`uv run python -m calibration.steering`).
Level 8's latent runs, their reconstructions and decoded samples, are in calibration/grids/fashion_mnist_latent/
(`uv run python -m calibration.latent`).
A change to the metric or its thresholds that turns any verdict fails here.
"""

import pytest

from calibration import guidance as guidance_calibration
from calibration import latent as latent_calibration
from calibration import points as points_calibration
from calibration import steering as steering_calibration
from calibration.calibrate import GRIDS, grader_verdicts, human_verdicts, score_grid
from src.harness.run.data import to_model_range
from src.harness.run.points import chamfer_ratio, point_quality
from tests.harness.helpers import shared_data


CALIBRATED = {"fashion_mnist": "fashion_mnist", "fashion_mnist_flow": "fashion_mnist", "cifar10": "cifar10"}


def _cases():
    for config, dataset in CALIBRATED.items():
        for key in human_verdicts(config):
            yield pytest.param(config, dataset, key, id=f"{config}-{key}")


@pytest.fixture(scope="module")
def real_images():
    cache = {}

    def load(dataset):
        if dataset not in cache:
            data = shared_data(dataset)
            cache[dataset] = to_model_range(data.val), data.classes, data.train
        return cache[dataset]

    return load


def test_every_recorded_verdict_has_its_grid():
    for config in CALIBRATED:
        for key in human_verdicts(config):
            assert (GRIDS / config / f"{key}.png").is_file(), f"{config}/{key}.png is missing: run calibrate"
    for key in guidance_calibration.human_verdicts():
        for scale in guidance_calibration.GUIDANCE_SCALES:
            assert guidance_calibration.grid_path(key, scale).is_file(), f"{key} at w = {scale:g}: run guidance"
    for key in steering_calibration.human_verdicts():
        for what in ("inpainting", "class"):
            assert steering_calibration.grid_path(key, what).is_file(), f"{key}-{what}.png: run calibration.steering"
    for key in latent_calibration.human_verdicts():
        for what in ("reconstructions", "samples"):
            assert latent_calibration.grid_path(key, what).is_file(), f"{key}-{what}.png: run calibration.latent"


@pytest.mark.parametrize("config, dataset, key", list(_cases()))
def test_grader_agrees_with_the_person(real_images, config, dataset, key):
    real, classes, train = real_images(dataset)
    person = human_verdicts(config)[key]
    grader = grader_verdicts(score_grid(config, key, real, classes, train), config)
    for bar, verdict in grader.items():
        assert verdict == person[bar], f"{config}/{key}, {bar}: a person says {person[bar]}, the grader {verdict}"


@pytest.mark.parametrize("key", list(guidance_calibration.human_verdicts()))
def test_guidance_grader_agrees_with_the_person(key):
    agreement = guidance_calibration.stored_agreement(key, num_classes=10)
    person = guidance_calibration.human_verdicts()[key]["guided"]
    assert guidance_calibration.grader_verdict(agreement) == person, (
        f"fashion_mnist_cfg/{key}: a person says {person}, the grader {guidance_calibration.grader_verdict(agreement)} "
        f"(agreement {', '.join(f'{a:.0%} at w = {w:g}' for w, a in agreement.items())})")


@pytest.fixture(scope="module")
def moons():
    from src.harness.run.config import official_config
    from src.harness.run.data import load_data

    return load_data(official_config("moons").data)


@pytest.mark.parametrize("config, key", [pytest.param(config, key, id=f"{config}-{key}")
                                         for config in points_calibration.GRID_NAMES
                                         for key in points_calibration.human_verdicts(config)])
def test_point_grader_agrees_with_the_person(moons, config, key):
    samples = points_calibration.stored_samples(config)
    assert key in samples, (f"calibration/grids/{config}/samples.pt has no {key}: run "
                            f"`python -m calibration.points` (see its --help)")
    quality = point_quality(samples[key], moons.train, moons.val)
    person = points_calibration.human_verdicts(config)[key]["shape"]
    assert points_calibration.grader_verdict(quality) == person, (
        f"{config}/{key}: a person says {person}, the grader {points_calibration.grader_verdict(quality)} "
        f"(Chamfer {chamfer_ratio(quality):.2f}x)")


@pytest.mark.parametrize("key", list(steering_calibration.human_verdicts()))
def test_steering_grader_agrees_with_the_person(key):
    shared_data("fashion_mnist")  # the held-out images that were inpainted
    scores = steering_calibration.stored_scores(key)
    grader = steering_calibration.grader_verdicts(scores)
    person = steering_calibration.human_verdicts()[key]
    for bar, verdict in grader.items():
        assert verdict == person[bar], (
            f"fashion_mnist_steer/{key}, {bar}: a person says {person[bar]}, the grader {verdict} (known-half RMSE "
            f"{scores['known_rmse']:.3f}, class kept {scores['kept_class']:.0%}, agreement {scores['agreement']:.0%})")


@pytest.mark.parametrize("key", list(latent_calibration.human_verdicts()))
def test_latent_grader_agrees_with_the_person(key):
    scores = latent_calibration.stored_scores(key, shared_data("fashion_mnist"))
    grader = latent_calibration.grader_verdicts(scores)
    person = latent_calibration.human_verdicts()[key]
    quality = scores["quality"]
    for bar, verdict in grader.items():
        assert verdict == person[bar], (
            f"fashion_mnist_latent/{key}, {bar}: a person says {person[bar]}, the grader {verdict} (reconstruction "
            f"RMSE {scores['reconstruction_rmse']:.3f}, {quality['classes_covered']} classes, FD "
            f"{quality['fd'] / quality['real_vs_real_fd']:.1f}x, edges "
            f"{quality['edge_strength'] / quality['real_edge_strength']:.2f}x)")
