"""Datasets as whole tensors in memory, and the shuffled training batches drawn from them.

Every dataset in `DATASETS` is a function of the `data` config that returns a `Data`. Images stay uint8
until a batch is taken (fast on a CPU, no worker processes); the model sees floats in [-1, 1]. The 2-D
playground's points (src/harness/run/points.py) are float32 from the start.
"""

import gzip
import math
import pickle
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch


class DataError(Exception):
    """The dataset cannot be used; the message says in one sentence what to do."""


class DataNotFoundError(DataError, FileNotFoundError):
    """The dataset's files are not under the data root and could not be downloaded."""


@dataclass
class Data:
    """train: (N, *sample_shape), val: (M, *sample_shape) (held out), labels: (N,), (M,) int64 indices into `classes`.

    Images are (C, H, W) uint8; points are (2,) float32.
    """

    train: torch.Tensor
    train_labels: torch.Tensor
    val: torch.Tensor
    val_labels: torch.Tensor
    classes: list[str]

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.train.shape[1:])


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return images.float().div(127.5).sub(1)


def model_input(stored: torch.Tensor) -> torch.Tensor:
    """Samples as stored -> as the model sees them: uint8 images are scaled to [-1, 1], points are kept as they are."""
    return stored if stored.is_floating_point() else to_model_range(stored)


def derived_seed(seed: int, index: int) -> int:
    """The seed of draw number `index` (an epoch, a step) of a run seeded `seed`: distinct for every pair in use."""
    return seed * 1_000_003 + index


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255] (values outside are clipped)."""
    return images.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)


# ---------------------------------------------------------------------------------------------- Fashion-MNIST

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FASHION_MNIST_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                       "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format), plain or gzipped: big-endian int32 header, then uint8 data."""
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            raw = f.read()
    except (PermissionError, IsADirectoryError) as err:
        raise DataError(_unreadable_message(path, err)) from None
    except (EOFError, OSError) as err:  # a truncated or non-gzip .gz
        raise DataError(_damaged_message(path, str(err) or type(err).__name__)) from None
    ndim = raw[3] if len(raw) > 4 and raw[:3] == b"\0\0\x08" else 0  # magic: two zero bytes, 0x08 for uint8
    shape = np.frombuffer(raw, dtype=">i4", count=ndim, offset=4) if len(raw) >= 4 + 4 * ndim else ()
    if ndim == 0 or len(shape) != ndim or len(raw) != 4 + 4 * ndim + int(np.prod(shape)):
        raise DataError(_damaged_message(path, "not a complete IDX file"))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find_fashion_mnist(raw: Path) -> list[Path] | None:
    found = []
    for name in FASHION_MNIST_FILES:
        candidates = [raw / name, raw / f"{name}.gz"]
        match = next((p for p in candidates if p.is_file()), None)
        if match is None:
            return None
        found.append(match)
    return found


def load_fashion_mnist(cfg) -> Data:
    """Reads `<root>/FashionMNIST/raw/` (the four files, gzipped or not); downloads them with torchvision if allowed."""
    raw = Path(cfg.root) / "FashionMNIST" / "raw"
    files = _find_fashion_mnist(raw)
    if files is None and cfg.download:
        _try_download(raw, lambda: __import__("torchvision").datasets.FashionMNIST(cfg.root, download=True))
        files = _find_fashion_mnist(raw)
    if files is None:
        raise DataNotFoundError(_missing_message("Fashion-MNIST", raw, [f + ".gz" for f in FASHION_MNIST_FILES]))
    train_x, train_y, test_x, test_y = (torch.from_numpy(_read_idx(p).copy()) for p in files)
    return Data(train_x[:, None], train_y.long(), test_x[:, None], test_y.long(), FASHION_MNIST_CLASSES)


# ---------------------------------------------------------------------------------------------------- CIFAR-10

CIFAR10_FILES = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
                 "test_batch", "batches.meta"]


def load_cifar10(cfg) -> Data:
    """`<root>/cifar-10-batches-py/` (the "python version"), downloaded by torchvision if missing and allowed.

    Every file is read before the md5 check, so a damaged file is named as such; `verify_md5=false` accepts
    complete mirrors that were rebuilt and so fail the check.
    """
    from torchvision.datasets import CIFAR10

    folder = Path(cfg.root) / CIFAR10.base_folder
    if not _cifar_present(folder) and cfg.download:
        _try_download(folder, lambda: CIFAR10(cfg.root, download=True))
    if not _cifar_present(folder):
        raise DataNotFoundError(_missing_message("CIFAR-10", folder, CIFAR10_FILES))
    batches = {name: _read_cifar_file(folder / name) for name in CIFAR10_FILES}
    if cfg.verify_md5 and not _cifar_md5_ok(folder):
        raise DataError(f"the CIFAR-10 files in {folder} fail torchvision's md5 check; if they are a complete "
                        "copy that was rebuilt (like the course's shared data folder), set data.verify_md5=false")
    train = [batches[name] for name in CIFAR10_FILES if name.startswith("data_batch")]
    test = batches["test_batch"]
    return Data(torch.from_numpy(np.concatenate([b["data"] for b in train])),
                torch.from_numpy(np.concatenate([b["labels"] for b in train])),
                torch.from_numpy(test["data"]), torch.from_numpy(test["labels"]),
                batches["batches.meta"]["label_names"])


def _cifar_present(folder: Path) -> bool:
    return all((folder / name).is_file() for name in CIFAR10_FILES)


def _read_cifar_file(path: Path) -> dict:
    """One pickled CIFAR-10 file: a batch ({"data": (N, 3, 32, 32) uint8, "labels": (N,) int64}) or batches.meta."""
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        if path.name == "batches.meta":
            return {"label_names": list(entry["label_names"])}
        data, labels = np.asarray(entry["data"], dtype=np.uint8), np.asarray(entry["labels"], dtype=np.int64)
    except (PermissionError, IsADirectoryError) as err:
        raise DataError(_unreadable_message(path, err)) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError) as err:
        raise DataError(_damaged_message(path, str(err).splitlines()[0] if str(err) else type(err).__name__)) from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise DataError(_damaged_message(path, f"images of shape {data.shape}, {len(labels)} labels"))
    return {"data": data.reshape(-1, 3, 32, 32), "labels": labels}


def _cifar_md5_ok(folder: Path) -> bool:
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import check_integrity

    expected = CIFAR10.train_list + CIFAR10.test_list + [[CIFAR10.meta["filename"], CIFAR10.meta["md5"]]]
    return all(check_integrity(str(folder / name), md5) for name, md5 in expected)


# --------------------------------------------------------------------------------------------------- synthetic

SYNTHETIC_CLASSES = ["disc", "square", "horizontal bar", "vertical bar"]


def make_synthetic(cfg) -> Data:
    """Small deterministic images: one bright shape (a class of SYNTHETIC_CLASSES) on a dark background.

    Always the same images for the same shape settings: the generators are seeded with fixed numbers.
    """
    train = _synthetic_shapes(cfg.num_train, cfg.channels, cfg.image_size, seed=0)
    test = _synthetic_shapes(max(cfg.num_val, 1), cfg.channels, cfg.image_size, seed=1)
    return Data(*train, *test, SYNTHETIC_CLASSES)


def _synthetic_shapes(n: int, channels: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(len(SYNTHETIC_CLASSES), (n,), generator=g)
    center = torch.rand(n, 2, generator=g) * 0.5 + 0.25  # (n, 2) in [0.25, 0.75] of the image
    radius = torch.rand(n, generator=g) * 0.15 + 0.1
    colour = torch.rand(n, channels, generator=g) * 0.6 + 0.4
    coords = (torch.arange(size) + 0.5) / size
    dy = (coords.view(1, size, 1) - center[:, 0].view(n, 1, 1)).abs()
    dx = (coords.view(1, 1, size) - center[:, 1].view(n, 1, 1)).abs()
    r = radius.view(n, 1, 1)
    masks = torch.stack([
        dx ** 2 + dy ** 2 <= r ** 2,  # disc
        (dx <= r) & (dy <= r),  # square
        (dx <= 2 * r) & (dy <= r / 3),  # horizontal bar
        (dx <= r / 3) & (dy <= 2 * r),  # vertical bar
    ], dim=1)[torch.arange(n), labels]  # (n, size, size)
    images = masks[:, None].float() * colour[:, :, None, None]
    return (images * 255).round().to(torch.uint8), labels


# ------------------------------------------------------------------------------------------------ 2-D points

# Seeds of the generated splits: the same points for every run, whatever the run's own seed.
TRAIN_SEED, VAL_SEED = 0, 1


def spiral(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A Swiss roll seen from above: 1.75 turns, radius growing from 0.12 to 0.84. Points (n, 2), labels (n,) zeros."""
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    angle, radius = 3.5 * math.pi * u, 0.12 + 0.72 * u
    points = torch.stack([radius * angle.cos(), radius * angle.sin()], dim=1)
    points += 0.03 * torch.randn(n, 2, generator=generator, dtype=torch.float64)
    return points.float(), torch.zeros(n, dtype=torch.long)


def moons(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Two interleaved half circles (scikit-learn's make_moons), scaled into [-1, 1]. Labels: which moon."""
    labels = torch.randint(2, (n,), generator=generator)
    angle = math.pi * torch.rand(n, generator=generator, dtype=torch.float64)
    outer = torch.stack([angle.cos(), angle.sin()], dim=1)
    inner = torch.stack([1 - angle.cos(), 0.5 - angle.sin()], dim=1)
    points = torch.where(labels.view(-1, 1) == 0, outer, inner)
    points += 0.05 * torch.randn(n, 2, generator=generator, dtype=torch.float64)
    return ((points - torch.tensor([0.5, 0.25], dtype=torch.float64)) / 1.8).float(), labels


SHAPES = {"spiral": (spiral, ["spiral"]), "moons": (moons, ["upper moon", "lower moon"])}


def make_points(name: str) -> Callable:
    """The loader of the 2-D dataset `name` (SHAPES): num_train and num_val points, each split from its seed."""

    def load(cfg) -> Data:
        draw, classes = SHAPES[name]
        train = draw(cfg.num_train, torch.Generator().manual_seed(TRAIN_SEED))
        val = draw(cfg.num_val, torch.Generator().manual_seed(VAL_SEED))
        return Data(*train, *val, classes)

    return load


# ---------------------------------------------------------------------------------------------------- registry

@dataclass(frozen=True)
class DatasetSpec:
    load: Callable  # data config -> Data with the whole test split as `val`
    shape: Callable  # data config -> the shape of one sample, (C, H, W) or (2,), known without loading anything
    num_train: Callable  # data config -> the number of training samples, known without loading anything
    num_classes: int  # len(Data.classes), known without loading anything (a class-conditional network needs it)
    kind: str = "images"  # a key of harness.run.kinds.KINDS: "images" or "points"


DATASETS = {
    "fashion_mnist": DatasetSpec(load_fashion_mnist, lambda cfg: (1, 28, 28), lambda cfg: 60_000,
                                 len(FASHION_MNIST_CLASSES)),
    "cifar10": DatasetSpec(load_cifar10, lambda cfg: (3, 32, 32), lambda cfg: 50_000, 10),
    "synthetic": DatasetSpec(make_synthetic, lambda cfg: (cfg.channels, cfg.image_size, cfg.image_size),
                             lambda cfg: cfg.num_train, len(SYNTHETIC_CLASSES)),
    "spiral": DatasetSpec(make_points("spiral"), lambda cfg: (2,), lambda cfg: cfg.num_train, 1, kind="points"),
    "moons": DatasetSpec(make_points("moons"), lambda cfg: (2,), lambda cfg: cfg.num_train, 2, kind="points"),
}


def load_data(cfg) -> Data:
    """The dataset named by `cfg.name`, with a fixed random subset of its test split held out for validation."""
    data = DATASETS[cfg.name].load(cfg)
    # A random subset, not the first images: some copies store the test split sorted by class.
    keep = torch.randperm(len(data.val), generator=torch.Generator().manual_seed(0))[:cfg.num_val]
    return replace(data, val=data.val[keep], val_labels=data.val_labels[keep])


def _try_download(folder: Path, download) -> None:
    """Run `download`; if it fails, say why and remove the empty folders it made on the way to `folder`."""
    created = next((p for p in [*reversed(folder.parents), folder] if not p.exists()), None)
    try:
        download()
    except (RuntimeError, OSError) as err:  # offline: URLError is an OSError; torchvision wraps it in RuntimeError
        print(f"download failed: {str(err).splitlines()[0] if str(err) else type(err).__name__}")
        if created is not None:
            _remove_empty_folders(created)


def _remove_empty_folders(top: Path) -> None:
    for path in sorted((p for p in [top, *top.rglob("*")] if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(path.iterdir()):
            path.rmdir()


def _unreadable_message(path: Path, err: OSError) -> str:
    return (f"cannot read {path.resolve()} ({err.strerror}): make it a file you can read (or point data.root "
            "elsewhere)")


def _damaged_message(path: Path, reason: str) -> str:
    return (f"{path.resolve()} is damaged ({reason}): delete it and place a complete copy there "
            "(online, data.download=true fetches a fresh one)")


def _missing_message(name: str, folder: Path, files: list[str]) -> str:
    return (f"{name} not found: place {', '.join(files)} in {folder.resolve()}/ "
            f"(or set data.root to the folder that holds them; online, data.download=true fetches them)")


class TrainBatches:
    """Shuffled, optionally flipped training batches; batch `step` is a pure function of (seed, step).

    Each epoch is a fresh permutation (the last incomplete batch is dropped), so a run resumed at any
    step sees exactly the data an uninterrupted run would.  images: (N, C, H, W) uint8, or points (N, 2);
    labels: their (N,) classes, for `labels(step)`.
    """

    def __init__(self, images: torch.Tensor, batch_size: int, seed: int, hflip: bool, device,
                 labels: torch.Tensor | None = None):
        self.images = images.to(device)
        self.train_labels = labels.to(device) if labels is not None else None
        self.batch_size = min(batch_size, len(images))
        self.steps_per_epoch = len(images) // self.batch_size
        self.seed, self.hflip, self.device = seed, hflip, device
        self._epoch, self._order, self._flips = None, None, None

    def __call__(self, step: int) -> torch.Tensor:
        """(B, C, H, W) (or (B, 2)) float32 in [-1, 1] on the device."""
        chosen = self._chosen(step)
        x = model_input(self.images[chosen])
        if self.hflip:
            x = torch.where(self._flips[chosen].view(-1, 1, 1, 1), x.flip(-1), x)
        return x

    def labels(self, step: int) -> torch.Tensor | None:
        """(B,) int64: the classes of batch `step`'s images, on the device (None without labels)."""
        return self.train_labels[self._chosen(step)] if self.train_labels is not None else None

    def _chosen(self, step: int) -> torch.Tensor:
        """The indices of batch `step`'s samples."""
        epoch, index = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(derived_seed(self.seed, epoch))
            self._order = torch.randperm(len(self.images), generator=g).to(self.device)
            self._flips = (torch.rand(len(self.images), generator=g) < 0.5).to(self.device)
            self._epoch = epoch
        return self._order[index * self.batch_size:(index + 1) * self.batch_size]
