"""The Level 1 and Level 3 bars agree with a person on every generator of the calibration zoo.

calibration/grids/<dataset>/ holds the 256 evaluation samples of each generator (real images, the reference,
independently written student models trained at the official budget, and broken generators), drawn once by
`uv run python -m calibration.calibrate <dataset>`; calibration/verdicts.json holds what a person saw in each
grid. A change to the metric or its thresholds that turns any verdict fails here.
"""

import pytest
from omegaconf import OmegaConf

from calibration.calibrate import GRIDS, grader_verdicts, human_verdicts, score_grid
from src.harness.config import DataConfig
from src.harness.data import load_data, to_model_range
from src.harness.paths import SHARED_DATA

FOLDERS = {"fashion_mnist": "FashionMNIST", "cifar10": "cifar-10-batches-py"}


def _cases():
    for dataset in FOLDERS:
        for key in human_verdicts(dataset):
            yield pytest.param(dataset, key, id=f"{dataset}-{key}")


@pytest.fixture(scope="module")
def real_images():
    cache = {}

    def load(dataset):
        if not (SHARED_DATA / FOLDERS[dataset]).exists():
            pytest.skip(f"no offline copy of {dataset} under {SHARED_DATA}")
        if dataset not in cache:
            cfg = OmegaConf.merge(OmegaConf.structured(DataConfig), {"name": dataset, "root": str(SHARED_DATA),
                                                                     "download": False, "verify_md5": False})
            data = load_data(cfg)
            cache[dataset] = to_model_range(data.val), data.classes
        return cache[dataset]

    return load


def test_every_recorded_verdict_has_its_grid():
    for dataset in FOLDERS:
        for key in human_verdicts(dataset):
            assert (GRIDS / dataset / f"{key}.png").is_file(), f"{dataset}/{key}.png is missing: run calibrate"


@pytest.mark.parametrize("dataset, key", list(_cases()))
def test_grader_agrees_with_the_person(real_images, dataset, key):
    real, classes = real_images(dataset)
    person = human_verdicts(dataset)[key]
    grader = grader_verdicts(score_grid(dataset, key, real, classes), dataset)
    for bar, verdict in grader.items():
        assert verdict == person[bar], f"{dataset}/{key}, {bar}: a person says {person[bar]}, the grader {verdict}"
