"""Shared pieces of the image DataModules (``multi_fashion_mnist``, ``coco``, ``voc``,
``csv_image``).

Batches are ``(images, targets)``: ``images`` float ``[batch, channels, height, width]``, normalised
per channel as ``(pixel / 255 - mean) / std``; ``targets`` float ``[batch, num_labels]``.
``backbone_inputs = {"in_channels": channels}``.

Image files are read with Pillow, converted to grey (``channels=1``) or RGB (``channels=3``) and
resized to ``image_size`` (bilinear; no cropping, so the aspect ratio is not kept). Training images
are flipped left-right at random when ``augment`` is on. The size, channels and normalisation travel
in checkpoints so that prediction preprocesses new images identically.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset

from sigmoidf1.data.base import MultilabelDataModule
from sigmoidf1.data.records import read_records
from sigmoidf1.utils.errors import ConfigError, DataError

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def default_normalisation(channels: int) -> tuple[list[float], list[float]]:
    """ImageNet statistics for RGB (what pretrained torchvision models expect); 0.5/0.5 for grey."""
    return (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else ([0.5], [0.5])


class ImagePreprocessing:
    """``PIL image -> float tensor [channels, size, size]`` (see the module docstring)."""

    def __init__(
        self,
        image_size: int,
        channels: int,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        if channels not in (1, 3):
            raise ConfigError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
        if image_size < 1:
            raise ConfigError(f"image_size must be >= 1, got {image_size}")
        default_mean, default_std = default_normalisation(channels)
        mean, std = list(mean or default_mean), list(std or default_std)
        if len(mean) != channels or len(std) != channels:
            raise ConfigError(f"mean and std need {channels} value(s) each, got {mean} and {std}")
        if min(std) <= 0:
            raise ConfigError(f"std must be positive, got {std}")
        self.image_size, self.channels = int(image_size), int(channels)
        self.mean, self.std = [float(m) for m in mean], [float(s) for s in std]
        self._mean = torch.tensor(self.mean).view(-1, 1, 1)
        self._std = torch.tensor(self.std).view(-1, 1, 1)

    def pixels(self, image: Image.Image) -> np.ndarray:
        """Converted and resized ``uint8 [size, size]`` (grey) or ``[size, size, 3]`` (RGB)."""
        image = image.convert("L" if self.channels == 1 else "RGB")
        if image.size != (self.image_size, self.image_size):
            image = image.resize((self.image_size, self.image_size), Image.Resampling.BILINEAR)
        return np.array(image, dtype=np.uint8)  # a writable copy

    def normalise(self, pixels: Tensor) -> Tensor:
        """``uint8 [..., C, H, W] -> float32``, ``(pixel / 255 - mean) / std``."""
        return (pixels.float() / 255.0 - self._mean) / self._std

    def __call__(self, image: Image.Image) -> Tensor:
        array = self.pixels(image)
        array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
        return self.normalise(torch.from_numpy(np.ascontiguousarray(array)))

    def state(self) -> dict[str, Any]:
        return {
            "image_size": self.image_size,
            "channels": self.channels,
            "mean": self.mean,
            "std": self.std,
        }


def open_image(path: str | Path, where: str = "") -> Image.Image:
    """Open an image, raising ``FileNotFoundError``/``ValueError`` that name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{where}{': ' if where else ''}image not found: {path}")
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError) as error:
        raise DataError(
            f"{where}{': ' if where else ''}cannot read image {path} ({error})"
        ) from None
    return image


class ImageFiles(Dataset):
    """Images read from files on access; items ``(image, target)`` or ``image`` without targets."""

    def __init__(
        self,
        paths: Sequence[str | Path],
        preprocessing: ImagePreprocessing,
        targets: Tensor | None = None,
        augment: bool = False,
    ) -> None:
        if targets is not None and len(targets) != len(paths):
            raise DataError(f"{len(paths)} images but {len(targets)} target rows")
        self.paths, self.preprocessing, self.targets, self.augment = (
            list(paths),
            preprocessing,
            targets,
            augment,
        )

    def __len__(self) -> int:
        return len(self.paths)

    def fingerprint(self) -> Iterator[bytes]:
        """What a frozen encoder sees: each file (path, size, modification time) and the
        preprocessing (feature cache keys); the images are not read."""
        yield json.dumps({"files": self.preprocessing.state()}, sort_keys=True).encode()
        for path in self.paths:
            stat = Path(path).stat()
            yield f"{Path(path).resolve()}:{stat.st_size}:{stat.st_mtime_ns}\n".encode()

    def __getitem__(self, index: int) -> Any:
        image = self.preprocessing(open_image(self.paths[index]))
        if self.augment and torch.rand(()) < 0.5:
            image = image.flip(-1)
        return image if self.targets is None else (image, self.targets[index])


class ImageDataModule(MultilabelDataModule):
    """Base of the image DataModules: preprocessing settings, checkpoint state, prediction.

    Args:
        image_size: side of the square images fed to the backbone.
        channels: 1 (grey) or 3 (RGB).
        mean, std: per-channel normalisation; ``None`` = ImageNet's for RGB, 0.5 for grey.
        augment: random left-right flips of training images.
        image_column: the column of image paths in files given to ``predict_dataset``.
    """

    def __init__(
        self,
        image_size: int = 224,
        channels: int = 3,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        augment: bool = True,
        image_column: str = "image",
        **loader_kwargs,
    ) -> None:
        super().__init__(**loader_kwargs)
        self.preprocessing = ImagePreprocessing(image_size, channels, mean, std)
        self.augment = augment
        self.image_column = image_column
        self.backbone_inputs = {"in_channels": channels}

    def _build_splits(
        self, paths: dict[str, Sequence[Path]], targets: dict[str, np.ndarray]
    ) -> None:
        """Set the three splits from image paths and ``[n, num_labels]`` targets per split."""
        for split in ("train", "val", "test"):
            dataset = ImageFiles(
                paths[split],
                self.preprocessing,
                torch.from_numpy(np.asarray(targets[split], dtype=np.float32)),
                augment=self.augment and split == "train",
            )
            setattr(self, f"{split}_set", dataset)
        self.backbone_inputs = {"in_channels": self.preprocessing.channels}

    # --- prediction -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return super().state_dict() | {
            "image": self.preprocessing.state(),
            "image_column": self.image_column,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.image_column = state.get("image_column", self.image_column)
        if "image" in state:
            self.preprocessing = ImagePreprocessing(**state["image"])
            self.backbone_inputs = {"in_channels": self.preprocessing.channels}

    def predict_dataset(self, path: str) -> Dataset:
        """Images named in the ``image_column`` column of a CSV/TSV/JSONL(.gz) file.

        Relative image paths are relative to the folder of ``path``. Items: ``[channels, size,
        size]``.
        """
        rows, lines, _ = read_records(path, [self.image_column])
        base = Path(path).parent
        files = []
        for row, line in zip(rows, lines, strict=True):
            files.append(resolve_image_path(row[self.image_column], base, f"{path} line {line}"))
        return ImageFiles(files, self.preprocessing)


def resolve_image_path(value: Any, base: Path, where: str) -> Path:
    """An image path from a file cell: relative paths are taken from ``base``; must exist."""
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: expected an image path, got {value!r}")
    file = Path(value.strip())
    file = file if file.is_absolute() else base / file
    if not file.is_file():
        raise FileNotFoundError(f"{where}: image not found: {file}")
    return file
