"""Multi Fashion-MNIST: real Fashion-MNIST articles composed into multilabel images.

Each example is a ``grid x grid`` canvas of 28x28 cells (56x56 by default) holding between
``min_objects`` and ``max_objects`` articles (uniformly many) in random cells, the other cells
black; its labels are the set of article classes present (two articles of one class give one label).
This is the multi-MNIST construction of the literature, on real photographs of clothing.

Deterministic from ``seed``: the Fashion-MNIST training set is split once into article pools for the
training and validation composites (``val_article_fraction``), and the test composites use the
Fashion-MNIST test set only, so no article image appears in two splits. The composites are cached
in ``<data_dir>/multi_fashion_mnist/composites-<hash>.npz`` (written atomically).

Sources, in order: the Debian package's idx files (``apt-get install dataset-fashion-mnist`` →
``/usr/share/datasets/fashion-mnist``), then torchvision's download into
``<data_dir>/fashion_mnist``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from sigmoidf1.data.images import ImageDataModule, ImagePreprocessing
from sigmoidf1.utils.errors import ConfigError, DataError
from sigmoidf1.utils.files import atomic_write
from sigmoidf1.utils.hashing import tensor_bytes
from sigmoidf1.utils.logging import get_logger

log = get_logger(__name__)

CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
ARTICLE = 28  # side of one Fashion-MNIST image


def read_idx(path: str | Path) -> np.ndarray:
    """Read an idx file (``.gz`` or raw): ``uint8 [n, 28, 28]`` images or ``uint8 [n]`` labels."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    magic = int.from_bytes(data[:4], "big")
    if magic >> 8 != 0x08 or magic & 0xFF not in (1, 3):
        raise DataError(f"{path}: not an unsigned-byte idx file (magic {magic:#010x})")
    ndim = magic & 0xFF
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise DataError(f"{path}: truncated ({array.size} bytes of {int(np.prod(shape))})")
    return array.reshape(shape)


def _idx_path(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def load_fashion_mnist(
    source_dir: str | Path | None, download_root: str | Path | None, download: bool = True
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train": (images [60000, 28, 28], labels [60000]), "test": (... 10000 ...)}``, uint8."""
    if source_dir is not None:
        folder = Path(source_dir)
        paths = {
            split: [_idx_path(folder, stem) for stem in stems] for split, stems in IDX_FILES.items()
        }
        if all(p is not None for pair in paths.values() for p in pair):
            return {
                split: (read_idx(images), read_idx(labels))
                for split, (images, labels) in paths.items()
            }
    if download_root is None:
        raise FileNotFoundError(
            f"Fashion-MNIST idx files not found in {source_dir} and no data_dir to download into "
            "(apt-get install dataset-fashion-mnist, or set data_dir)"
        )
    from torchvision.datasets import FashionMNIST

    root = Path(download_root) / "fashion_mnist"
    try:
        sets = {
            split: FashionMNIST(str(root), train=split == "train", download=download)
            for split in ("train", "test")
        }
    except RuntimeError as error:  # torchvision: "Dataset not found. You can use download=True"
        raise FileNotFoundError(
            f"Fashion-MNIST is neither in {source_dir} (apt-get install dataset-fashion-mnist) "
            f"nor downloadable into {root} ({error})"
        ) from error
    return {
        split: (s.data.numpy(), s.targets.numpy().astype(np.uint8)) for split, s in sets.items()
    }


def compose(
    images: np.ndarray,
    labels: np.ndarray,
    n: int,
    rng: np.random.Generator,
    grid: int = 2,
    min_objects: int = 1,
    max_objects: int = 4,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` composites from the article pool ``images [m, 28, 28]`` / ``labels [m]``.

    Returns ``canvases uint8 [n, 28 * grid, 28 * grid]`` and ``targets float32 [n, 10]``.
    """
    cells = grid * grid
    if not 1 <= min_objects <= max_objects <= cells:
        raise ConfigError(
            f"need 1 <= min_objects <= max_objects <= {cells}, got {min_objects}, {max_objects}"
        )
    count = rng.integers(min_objects, max_objects + 1, size=n)
    order = np.argsort(rng.random((n, cells)), axis=1)  # a random permutation of the cells per row
    occupied = np.zeros((n, cells), dtype=bool)
    occupied[np.arange(n)[:, None], order] = np.arange(cells)[None, :] < count[:, None]
    picks = rng.integers(0, len(images), size=(n, cells))
    tiles = images[picks] * occupied[:, :, None, None].astype(np.uint8)
    side = ARTICLE * grid
    canvases = (
        tiles.reshape(n, grid, grid, ARTICLE, ARTICLE)
        .transpose(0, 1, 3, 2, 4)
        .reshape(n, side, side)
    )
    targets = np.zeros((n, len(CLASSES)), dtype=np.float32)
    rows = np.repeat(np.arange(n), cells)
    mask = occupied.reshape(-1)
    targets[rows[mask], labels[picks].reshape(-1)[mask]] = 1.0
    return np.ascontiguousarray(canvases), targets


def pixel_statistics(pixels: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of ``uint8`` pixels scaled to [0, 1] (from a histogram: exact,
    without a float copy of the images)."""
    counts = np.bincount(pixels.reshape(-1), minlength=256).astype(np.float64)
    values = np.arange(256) / 255.0
    mean = float((counts * values).sum() / counts.sum())
    variance = float((counts * (values - mean) ** 2).sum() / counts.sum())
    return mean, max(variance, 1e-12) ** 0.5


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as handle:
        np.savez_compressed(handle, **arrays)


class ArrayImages(Dataset):
    """In-memory ``uint8 [n, H, W]`` grey images; items ``(image [1, H, W], target)``."""

    def __init__(
        self,
        pixels: np.ndarray,
        targets: np.ndarray,
        preprocessing: ImagePreprocessing,
        augment: bool = False,
    ) -> None:
        self.pixels = torch.from_numpy(pixels)
        self.targets = torch.from_numpy(targets)
        self.preprocessing, self.augment = preprocessing, augment

    def __len__(self) -> int:
        return len(self.pixels)

    def fingerprint(self) -> Iterator[bytes]:
        """What a frozen encoder sees: the pixels and their normalisation (feature cache keys)."""
        yield json.dumps({"arrays": self.preprocessing.state()}, sort_keys=True).encode()
        yield tensor_bytes(self.pixels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        image = self.preprocessing.normalise(self.pixels[index][None])
        if self.augment and torch.rand(()) < 0.5:
            image = image.flip(-1)
        return image, self.targets[index]


class MultiFashionMNISTDataModule(ImageDataModule):
    """Composite Fashion-MNIST images (see the module docstring); 10 labels, grey images.

    Args:
        data_dir: cache folder (``${paths.data_dir}``); also the torchvision download root.
        source_dir: folder of the idx files (the Debian package's by default).
        download: allow torchvision's download when ``source_dir`` lacks the files.
        num_train, num_val, num_test: number of composites per split.
        grid, min_objects, max_objects: canvas layout and articles per canvas.
        val_article_fraction: share of Fashion-MNIST training articles reserved for validation.
        augment: random left-right flips of training canvases.
        Other arguments: see ``MultilabelDataModule`` (batch sizes, workers, ``seed``).
    """

    def __init__(
        self,
        data_dir: str | None = None,
        source_dir: str | None = DEBIAN_DIR,
        download: bool = True,
        num_train: int = 10_000,
        num_val: int = 2_000,
        num_test: int = 4_000,
        grid: int = 2,
        min_objects: int = 1,
        max_objects: int = 4,
        val_article_fraction: float = 0.1,
        augment: bool = False,
        **loader_kwargs,
    ) -> None:
        super().__init__(image_size=ARTICLE * grid, channels=1, augment=augment, **loader_kwargs)
        if not 0.0 < val_article_fraction < 1.0:
            raise ConfigError(f"val_article_fraction must be in (0, 1), got {val_article_fraction}")
        self.data_dir = data_dir
        self.source_dir = source_dir
        self.download = download
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}
        self.layout = {"grid": grid, "min_objects": min_objects, "max_objects": max_objects}
        self.val_article_fraction = val_article_fraction

    def _settings(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "sizes": self.sizes,
            "layout": self.layout,
            "val_article_fraction": self.val_article_fraction,
            "version": 1,
        }

    @property
    def cache_path(self) -> Path | None:
        if self.data_dir is None:
            return None
        key = hashlib.sha256(json.dumps(self._settings(), sort_keys=True).encode()).hexdigest()[:16]
        return Path(self.data_dir) / "multi_fashion_mnist" / f"composites-{key}.npz"

    def generate(self) -> dict[str, np.ndarray]:
        """Build the composites from the Fashion-MNIST articles (deterministic from ``seed``)."""
        source = load_fashion_mnist(self.source_dir, self.data_dir, self.download)
        train_images, train_labels = source["train"]
        order = np.random.default_rng([self.seed, 0]).permutation(len(train_images))
        n_val = int(round(len(order) * self.val_article_fraction))
        pools = {
            "train": (train_images[order[n_val:]], train_labels[order[n_val:]]),
            "val": (train_images[order[:n_val]], train_labels[order[:n_val]]),
            "test": source["test"],
        }
        arrays = {}
        for code, split in enumerate(("train", "val", "test"), start=1):
            rng = np.random.default_rng([self.seed, code])
            images, targets = compose(*pools[split], self.sizes[split], rng, **self.layout)
            arrays[f"{split}_images"], arrays[f"{split}_targets"] = images, targets
        return arrays

    def _composites(self) -> dict[str, np.ndarray]:
        """The cached composites, generated (and cached) when the cache is absent or unreadable."""
        path = self.cache_path
        if path is not None and path.is_file():
            try:
                with np.load(path) as cached:
                    return {key: cached[key] for key in cached.files}
            except (OSError, ValueError) as error:
                log.warning(f"regenerating unreadable cache {path} ({error})")
        arrays = self.generate()
        if path is not None:
            # a file object: given a path, numpy would append ".npz" to the temporary name
            atomic_write(path, lambda tmp: _save_npz(tmp, arrays))
        return arrays

    def prepare_data(self) -> None:
        """Generate and cache the composites unless the cache exists (cheap when called again)."""
        if self.cache_path is None or not self.cache_path.is_file():
            self._composites()

    def _load(self) -> None:
        arrays = self._composites()
        self.label_names = list(CLASSES)
        mean, std = pixel_statistics(arrays["train_images"])
        self.preprocessing = ImagePreprocessing(self.preprocessing.image_size, 1, [mean], [std])
        for split in ("train", "val", "test"):
            dataset = ArrayImages(
                arrays[f"{split}_images"],
                arrays[f"{split}_targets"],
                self.preprocessing,
                augment=self.augment and split == "train",
            )
            setattr(self, f"{split}_set", dataset)
        self.backbone_inputs = {"in_channels": 1}
