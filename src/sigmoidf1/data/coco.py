"""MS-COCO 2014/2017 as multilabel classification: 80 object categories per image.

Reads the standard on-disk layout (what ``torchvision.datasets.CocoDetection`` reads, without
needing pycocotools)::

    <root>/annotations/instances_train2014.json   <root>/train2014/*.jpg
    <root>/annotations/instances_val2014.json     <root>/val2014/*.jpg

An image's labels are the categories of its instance annotations; the label order is COCO's category
order (ascending category id), named by the ``categories`` entries. As in the paper and the usual
multilabel COCO protocol, ``train{year}`` trains and ``val{year}`` tests; the validation split is
``val_fraction`` of the training images (random from ``seed``). Images without any annotation are
dropped unless ``keep_empty``. COCO is not downloadable here: get it from cocodataset.org.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sigmoidf1.data.base import split_indices
from sigmoidf1.data.images import ImageDataModule
from sigmoidf1.utils.errors import DataError


def read_coco(
    annotation_file: str | Path, image_dir: str | Path, keep_empty: bool = False
) -> tuple[list[Path], np.ndarray, list[str], list[int]]:
    """Image paths, ``targets [n, num_categories] float32``, category names and ids.

    Raises ``FileNotFoundError``/``ValueError`` naming the file for a missing file, missing keys or
    an annotation of an unknown category.
    """
    annotation_file, image_dir = Path(annotation_file), Path(image_dir)
    if not annotation_file.is_file():
        raise FileNotFoundError(f"COCO annotation file not found: {annotation_file}")
    if not image_dir.is_dir():
        raise FileNotFoundError(f"COCO image folder not found: {image_dir}")
    with open(annotation_file) as handle:
        content = json.load(handle)
    for key in ("images", "annotations", "categories"):
        if key not in content:
            raise DataError(f"{annotation_file}: no '{key}' entry (not a COCO instances file?)")
    try:
        return _multi_hot(content, annotation_file, image_dir, keep_empty)
    except KeyError as error:
        raise DataError(
            f"{annotation_file}: an entry lacks the key {error} (not a COCO instances file?)"
        ) from None


def _multi_hot(
    content: dict, annotation_file: Path, image_dir: Path, keep_empty: bool
) -> tuple[list[Path], np.ndarray, list[str], list[int]]:
    """``read_coco`` on the parsed JSON (a missing key surfaces as ``KeyError``)."""
    categories = sorted(content["categories"], key=lambda c: c["id"])
    ids = [int(c["id"]) for c in categories]
    column = {cid: i for i, cid in enumerate(ids)}
    row = {int(image["id"]): i for i, image in enumerate(content["images"])}
    targets = np.zeros((len(row), len(ids)), dtype=np.float32)
    for annotation in content["annotations"]:
        cid, iid = int(annotation["category_id"]), int(annotation["image_id"])
        if cid not in column:
            raise DataError(
                f"{annotation_file}: annotation {annotation.get('id')} has unknown "
                f"category_id {cid}"
            )
        if iid not in row:
            raise DataError(
                f"{annotation_file}: annotation {annotation.get('id')} has unknown image_id {iid}"
            )
        targets[row[iid], column[cid]] = 1.0
    paths = [image_dir / image["file_name"] for image in content["images"]]
    if not keep_empty:
        keep = targets.any(axis=1)
        paths, targets = [p for p, k in zip(paths, keep, strict=True) if k], targets[keep]
    return paths, targets, [str(c["name"]) for c in categories], ids


class CocoDataModule(ImageDataModule):
    """MS-COCO multilabel (see the module docstring).

    Args:
        root: the folder holding ``annotations/`` and the image folders.
        year: 2014 or 2017 (names the files: ``instances_{split}{year}.json``, ``{split}{year}/``).
        train_split, test_split: the COCO splits used for training and testing.
        val_fraction: share of the training images held out for validation.
        keep_empty: keep images without annotations (all-zero targets).
        Other arguments: see ``ImageDataModule`` and ``MultilabelDataModule``.
    """

    def __init__(
        self,
        root: str,
        year: int = 2014,
        train_split: str = "train",
        test_split: str = "val",
        val_fraction: float = 0.1,
        keep_empty: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.root = Path(root)
        self.year = year
        self.train_split, self.test_split = train_split, test_split
        self.val_fraction = val_fraction
        self.keep_empty = keep_empty

    def _files(self, split: str) -> tuple[Path, Path]:
        name = f"{split}{self.year}"
        return self.root / "annotations" / f"instances_{name}.json", self.root / name

    def prepare_data(self) -> None:
        for split in (self.train_split, self.test_split):
            annotations, images = self._files(split)
            if not annotations.is_file():
                raise FileNotFoundError(f"COCO annotation file not found: {annotations}")
            if not images.is_dir():
                raise FileNotFoundError(f"COCO image folder not found: {images}")

    def _load(self) -> None:
        train_paths, train_targets, names, ids = read_coco(
            *self._files(self.train_split), self.keep_empty
        )
        test_paths, test_targets, test_names, test_ids = read_coco(
            *self._files(self.test_split), self.keep_empty
        )
        if test_ids != ids:
            raise DataError(
                f"{self._files(self.test_split)[0]} and {self._files(self.train_split)[0]} list "
                "different categories"
            )
        self.label_names = names
        train, val, _ = split_indices(len(train_paths), self.val_fraction, 0.0, self.seed)
        self._build_splits(
            {
                "train": [train_paths[i] for i in train],
                "val": [train_paths[i] for i in val],
                "test": test_paths,
            },
            {"train": train_targets[train], "val": train_targets[val], "test": test_targets},
        )
