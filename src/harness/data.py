"""Datasets as whole uint8 tensors in memory, and the shuffled training batches drawn from them.

Every dataset in `DATASETS` is a function of the `data` config that returns an `ImageData`. Images stay
uint8 until a batch is taken (fast on a CPU, no worker processes); the model sees floats in [-1, 1].
"""

import gzip
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


class DataNotFoundError(FileNotFoundError):
    """The dataset's files are not under the data root and could not be downloaded."""


@dataclass
class ImageData:
    """train: (N, C, H, W) uint8, val: (M, C, H, W) uint8, labels: int64 class indices into `classes`."""

    train: torch.Tensor
    train_labels: torch.Tensor
    val: torch.Tensor
    val_labels: torch.Tensor
    classes: list[str]

    @property
    def channels(self) -> int:
        return self.train.shape[1]

    @property
    def image_size(self) -> int:
        return self.train.shape[-1]


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return images.float().div(127.5).sub(1)


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
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    shape = np.frombuffer(raw, dtype=">i4", count=ndim, offset=4)
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


def load_fashion_mnist(cfg) -> tuple:
    """Reads `<root>/FashionMNIST/raw/` (the four files, gzipped or not); downloads them with torchvision if allowed."""
    raw = Path(cfg.root) / "FashionMNIST" / "raw"
    files = _find_fashion_mnist(raw)
    if files is None and cfg.download:
        _try_download(lambda: __import__("torchvision").datasets.FashionMNIST(cfg.root, download=True))
        files = _find_fashion_mnist(raw)
    if files is None:
        raise DataNotFoundError(_missing_message("Fashion-MNIST", raw, [f + ".gz" for f in FASHION_MNIST_FILES]))
    train_x, train_y, test_x, test_y = (torch.from_numpy(_read_idx(p).copy()) for p in files)
    return train_x[:, None], train_y.long(), test_x[:, None], test_y.long(), FASHION_MNIST_CLASSES


# ---------------------------------------------------------------------------------------------------- CIFAR-10

CIFAR10_FILES = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
                 "test_batch", "batches.meta"]


def load_cifar10(cfg) -> tuple:
    """torchvision's CIFAR10 from `<root>/cifar-10-batches-py/`; `verify_md5=false` accepts rebuilt mirrors."""
    from torchvision.datasets import CIFAR10

    folder = Path(cfg.root) / CIFAR10.base_folder
    all_present = all((folder / name).is_file() for name in CIFAR10_FILES)

    class Cifar10(CIFAR10):
        def _check_integrity(self) -> bool:
            return all_present if not cfg.verify_md5 else super()._check_integrity()

    def load(train: bool):
        return Cifar10(cfg.root, train=train, download=cfg.download and not all_present)

    try:
        train, test = load(True), load(False)
    except RuntimeError as err:
        if all_present and cfg.verify_md5:
            raise DataNotFoundError(
                f"the CIFAR-10 files in {folder} fail torchvision's md5 check; if they are a complete "
                "copy that was rebuilt (like the course's shared data folder), set data.verify_md5=false"
            ) from None
        raise DataNotFoundError(_missing_message("CIFAR-10", folder, CIFAR10_FILES)) from err
    images = [torch.from_numpy(d.data).permute(0, 3, 1, 2).contiguous() for d in (train, test)]
    labels = [torch.tensor(d.targets, dtype=torch.long) for d in (train, test)]
    return images[0], labels[0], images[1], labels[1], list(train.classes)


# --------------------------------------------------------------------------------------------------- synthetic

SYNTHETIC_CLASSES = ["disc", "square", "horizontal bar", "vertical bar"]


def make_synthetic(cfg) -> tuple:
    """Small deterministic images: one bright shape (a class of SYNTHETIC_CLASSES) on a dark background.

    Always the same images for the same shape settings: the generators are seeded with fixed numbers.
    """
    train = _synthetic_shapes(cfg.num_train, cfg.channels, cfg.image_size, seed=0)
    test = _synthetic_shapes(max(cfg.num_val, 1), cfg.channels, cfg.image_size, seed=1)
    return *train, *test, SYNTHETIC_CLASSES


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


# ---------------------------------------------------------------------------------------------------- registry

@dataclass(frozen=True)
class DatasetSpec:
    load: Callable  # data config -> (train images, train labels, test images, test labels, class names)
    shape: Callable  # data config -> (channels, image_size), known without loading anything
    num_train: Callable  # data config -> the number of training images, known without loading anything


DATASETS = {
    "fashion_mnist": DatasetSpec(load_fashion_mnist, lambda cfg: (1, 28), lambda cfg: 60_000),
    "cifar10": DatasetSpec(load_cifar10, lambda cfg: (3, 32), lambda cfg: 50_000),
    "synthetic": DatasetSpec(make_synthetic, lambda cfg: (cfg.channels, cfg.image_size), lambda cfg: cfg.num_train),
}


def load_data(cfg) -> ImageData:
    """The dataset named by `cfg.name`, with a fixed random subset of its test split held out for validation."""
    train_x, train_y, test_x, test_y, classes = DATASETS[cfg.name].load(cfg)
    # A random subset, not the first images: some copies store the test split sorted by class.
    keep = torch.randperm(len(test_x), generator=torch.Generator().manual_seed(0))[:cfg.num_val]
    return ImageData(train_x, train_y, test_x[keep], test_y[keep], classes)


def _try_download(download) -> None:
    try:
        download()
    except (RuntimeError, OSError) as err:  # offline: URLError is an OSError; torchvision wraps it in RuntimeError
        print(f"download failed: {str(err).splitlines()[0] if str(err) else type(err).__name__}")


def _missing_message(name: str, folder: Path, files: list[str]) -> str:
    return (f"{name} not found: place {', '.join(files)} in {folder.resolve()}/ "
            f"(or set data.root to the folder that holds them; online, data.download=true fetches them)")


class TrainBatches:
    """Shuffled, optionally flipped training batches; batch `step` is a pure function of (seed, step).

    Each epoch is a fresh permutation (the last incomplete batch is dropped), so a run resumed at any
    step sees exactly the data an uninterrupted run would.  images: (N, C, H, W) uint8.
    """

    def __init__(self, images: torch.Tensor, batch_size: int, seed: int, hflip: bool, device):
        self.images = images.to(device)
        self.batch_size = min(batch_size, len(images))
        self.steps_per_epoch = len(images) // self.batch_size
        self.seed, self.hflip, self.device = seed, hflip, device
        self._epoch, self._order, self._flips = None, None, None

    def __call__(self, step: int) -> torch.Tensor:
        """(B, C, H, W) float32 in [-1, 1] on the device."""
        epoch, index = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._order = torch.randperm(len(self.images), generator=g).to(self.device)
            self._flips = (torch.rand(len(self.images), generator=g) < 0.5).to(self.device)
            self._epoch = epoch
        chosen = self._order[index * self.batch_size:(index + 1) * self.batch_size]
        x = to_model_range(self.images[chosen])
        if self.hflip:
            x = torch.where(self._flips[chosen].view(-1, 1, 1, 1), x.flip(-1), x)
        return x
