"""Datasets: synthetic always; the IDX reader on files the test writes; real data when the folder exists."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from src.harness.paths import SHARED_DATA
from src.harness.run.config import DataConfig
from src.harness.run.data import (CIFAR10_FILES, DATASETS, DataError, DataNotFoundError, TrainBatches, load_cifar10,
                              load_data, load_fashion_mnist, to_model_range, to_uint8)


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
    data = load_fashion_mnist(data_cfg(root=str(tmp_path), download=False))
    assert torch.equal(data.train[:, 0], images) and data.train.shape == (6, 1, 28, 28)
    assert data.train_labels.tolist() == labels.tolist() and data.classes[9] == "Ankle boot"


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
    with pytest.raises(DataError, match="verify_md5=false"):
        load_data(data_cfg(name="cifar10", root=str(SHARED_DATA), download=False))
    data = load_data(data_cfg(name="cifar10", root=str(SHARED_DATA), download=False, verify_md5=False))
    assert data.train.shape == (50000, 3, 32, 32) and data.val.shape == (1000, 3, 32, 32)
    assert data.classes[0] == "airplane"
    assert torch.bincount(data.val_labels, minlength=10).min() > 60, "validation set should mix all classes"


def test_registered_shapes_match_the_loaded_data():
    assert set(DATASETS) == {"fashion_mnist", "cifar10", "synthetic", "spiral", "moons"}
    cfg = data_cfg(name="synthetic", channels=3, image_size=12, num_train=8, num_val=4)
    data = load_data(cfg)
    assert DATASETS["synthetic"].shape(cfg) == data.sample_shape == (3, 12, 12)


@needs_shared
@pytest.mark.parametrize("name", ["fashion_mnist", "cifar10"])
def test_registered_shapes_match_the_real_data(name):
    cfg = data_cfg(name=name, root=str(SHARED_DATA), download=False, verify_md5=False, num_val=10)
    data = load_data(cfg)
    assert DATASETS[name].shape(cfg) == data.sample_shape


def _fashion_mnist_folder(root):
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for split in ("train", "t10k"):
        _write_idx(raw / f"{split}-images-idx3-ubyte.gz", torch.zeros(2, 28, 28, dtype=torch.uint8))
        _write_idx(raw / f"{split}-labels-idx1-ubyte.gz", torch.zeros(2, dtype=torch.uint8))
    return raw


@pytest.mark.parametrize("damage", ["truncated", "garbage", "not gzipped", "short data"])
def test_a_damaged_fashion_mnist_file_is_named(tmp_path, damage):
    path = _fashion_mnist_folder(tmp_path) / "train-images-idx3-ubyte.gz"
    good = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(good[:len(good) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x1f\x8b" + b"no gzip stream here" * 10)
    elif damage == "not gzipped":
        path.write_bytes(b"<html>404 Not Found</html>")
    else:  # a valid gzip of an IDX file that lost its last image
        with gzip.open(path, "wb") as f:
            f.write(gzip.decompress(good)[:-28 * 28])
    damaged = path.read_bytes()
    with pytest.raises(DataError) as info:
        load_fashion_mnist(data_cfg(root=str(tmp_path), download=False))
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "damaged" in message and "delete it" in message
    assert path.read_bytes() == damaged, "the damaged file is left for the student to inspect"


def _cifar10_folder(root):
    """A CIFAR-10 folder in the python-version layout: 2 images per batch (complete, but not the real md5s)."""
    import pickle

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in CIFAR10_FILES:
        entry = ({"label_names": [f"class {i}" for i in range(10)]} if name == "batches.meta" else
                 {"data": np.full((2, 3072), 7, dtype=np.uint8), "labels": [1, 2]})
        (folder / name).write_bytes(pickle.dumps(entry))
    return folder


@pytest.mark.parametrize("verify_md5", [True, False])
def test_a_truncated_cifar10_batch_is_named_not_blamed_on_md5(tmp_path, verify_md5):
    path = _cifar10_folder(tmp_path) / "data_batch_3"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError) as info:
        load_cifar10(data_cfg(root=str(tmp_path), download=False, verify_md5=verify_md5))
    message = str(info.value)
    assert "\n" not in message and f"{path} is damaged" in message and "verify_md5" not in message


def test_a_complete_rebuilt_cifar10_gets_the_md5_advice(tmp_path):
    _cifar10_folder(tmp_path)
    with pytest.raises(DataError, match="fail torchvision's md5 check.*data.verify_md5=false"):
        load_cifar10(data_cfg(root=str(tmp_path), download=False))
    data = load_cifar10(data_cfg(root=str(tmp_path), verify_md5=False))
    assert data.train.shape == (10, 3, 32, 32) and data.val.shape == (2, 3, 32, 32)
    assert data.train_labels.tolist() == [1, 2] * 5 and data.classes[9] == "class 9"


@pytest.mark.parametrize("loader, dataset", [(load_fashion_mnist, "FashionMNIST"), (load_cifar10, "CIFAR10")])
def test_offline_download_says_what_to_place_and_leaves_no_folders(tmp_path, monkeypatch, loader, dataset):
    import torchvision
    from urllib.error import URLError

    def offline(self):  # like torchvision: the folders first, then the network
        Path(self.root, "cifar-10-batches-py" if dataset == "CIFAR10" else "FashionMNIST/raw").mkdir(parents=True)
        raise URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(getattr(torchvision.datasets, dataset), "download", offline)
    root = tmp_path / "missing" / "data"
    with pytest.raises(DataNotFoundError) as info:
        loader(data_cfg(root=str(root), download=True))
    assert "not found: place" in str(info.value) and "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == [], "the failed download leaves no empty folders behind"
