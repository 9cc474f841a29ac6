"""Datasets: synthetic always; the IDX reader on files the test writes; real data when the folder exists."""

import gzip
import struct

import pytest
import torch
from omegaconf import OmegaConf

from src.harness.data import (DATASETS, DataNotFoundError, TrainBatches, load_cifar10, load_data,
                              load_fashion_mnist, to_model_range, to_uint8)
from src.harness.config import DataConfig
from tests.conftest import SHARED_DATA


def data_cfg(**overrides):
    return OmegaConf.merge(OmegaConf.structured(DataConfig), overrides)


def test_synthetic_is_deterministic_and_well_formed():
    cfg = data_cfg(name="synthetic", channels=3, image_size=12, num_train=40, num_val=10)
    a, b = load_data(cfg), load_data(cfg)
    assert a.train.shape == (40, 3, 12, 12) and a.train.dtype == torch.uint8
    assert a.val.shape == (10, 3, 12, 12) and a.val_labels.shape == (10,)
    assert torch.equal(a.train, b.train) and torch.equal(a.val, b.val)
    assert a.train.float().std() > 10, "synthetic images should not be blank"
    assert set(a.train_labels.tolist()) <= set(range(len(a.classes)))


def test_value_range_round_trip():
    images = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    floats = to_model_range(images)
    assert floats.min() == -1 and floats.max() == 1
    assert torch.equal(to_uint8(floats), images)


def _write_idx(path, array: torch.Tensor):
    header = struct.pack(">I", 0x0800 + array.dim()) + b"".join(struct.pack(">I", n) for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.numpy().tobytes())


def test_fashion_mnist_reads_gzipped_idx_files(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    images = torch.randint(0, 256, (6, 28, 28), dtype=torch.uint8)
    labels = torch.tensor([9, 0, 0, 3, 0, 2], dtype=torch.uint8)
    for split in ("train", "t10k"):
        _write_idx(raw / f"{split}-images-idx3-ubyte.gz", images)
        _write_idx(raw / f"{split}-labels-idx1-ubyte.gz", labels)
    train_x, train_y, test_x, test_y, classes = load_fashion_mnist(data_cfg(root=str(tmp_path), download=False))
    assert torch.equal(train_x[:, 0], images) and train_x.shape == (6, 1, 28, 28)
    assert train_y.tolist() == labels.tolist() and classes[9] == "Ankle boot"


@pytest.mark.parametrize("loader, names", [
    (load_fashion_mnist, ["train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "FashionMNIST/raw"]),
    (load_cifar10, ["data_batch_1", "test_batch", "batches.meta", "cifar-10-batches-py"]),
])
def test_missing_data_names_the_files_and_the_folder(tmp_path, loader, names):
    with pytest.raises(DataNotFoundError) as info:
        loader(data_cfg(root=str(tmp_path), download=False))
    for name in names:
        assert name in str(info.value)


def test_train_batches_are_a_function_of_the_step():
    images = torch.randint(0, 256, (50, 1, 4, 4), dtype=torch.uint8)
    first, second = (TrainBatches(images, 8, seed=3, hflip=True, device="cpu") for _ in range(2))
    for step in [0, 5, 7, 6, 13]:  # out of order, across epochs (6 steps per epoch)
        assert torch.equal(first(step), second(step))
    epoch = torch.cat([first(s) for s in range(first.steps_per_epoch)])
    assert epoch.shape == (48, 1, 4, 4) and epoch.min() >= -1 and epoch.max() <= 1
    assert not torch.equal(first(0), first(6)), "each epoch should be shuffled anew"


needs_shared = pytest.mark.skipif(not (SHARED_DATA / "FashionMNIST").exists(), reason="no shared data folder")


@needs_shared
def test_real_fashion_mnist():
    data = load_data(data_cfg(name="fashion_mnist", root=str(SHARED_DATA), download=False, num_val=1000))
    assert data.train.shape == (60000, 1, 28, 28) and data.val.shape == (1000, 1, 28, 28)
    assert data.train_labels[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert torch.bincount(data.train_labels).tolist() == [6000] * 10


@needs_shared
def test_real_cifar10_needs_the_md5_switch_and_has_a_balanced_validation_set():
    with pytest.raises(DataNotFoundError, match="verify_md5=false"):
        load_data(data_cfg(name="cifar10", root=str(SHARED_DATA), download=False))
    data = load_data(data_cfg(name="cifar10", root=str(SHARED_DATA), download=False, verify_md5=False))
    assert data.train.shape == (50000, 3, 32, 32) and data.val.shape == (1000, 3, 32, 32)
    assert data.classes[0] == "airplane"
    assert torch.bincount(data.val_labels, minlength=10).min() > 60, "validation set should mix all classes"


def test_registered_shapes_match_the_loaded_data():
    assert set(DATASETS) == {"fashion_mnist", "cifar10", "synthetic"}
    cfg = data_cfg(name="synthetic", channels=3, image_size=12, num_train=8, num_val=4)
    data = load_data(cfg)
    assert DATASETS["synthetic"].shape(cfg) == (data.channels, data.image_size) == (3, 12)


@needs_shared
@pytest.mark.parametrize("name", ["fashion_mnist", "cifar10"])
def test_registered_shapes_match_the_real_data(name):
    cfg = data_cfg(name=name, root=str(SHARED_DATA), download=False, verify_md5=False, num_val=10)
    data = load_data(cfg)
    assert DATASETS[name].shape(cfg) == (data.channels, data.image_size)
