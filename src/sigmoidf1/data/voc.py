"""PASCAL VOC 2007 as multilabel classification: 20 object classes per image.

Reads the standard layout (the extracted ``VOCtrainval`` and ``VOCtest`` tarballs)::

    <root>/VOCdevkit/VOC2007/Annotations/<id>.xml
    <root>/VOCdevkit/VOC2007/ImageSets/Main/{train,val,trainval,test}.txt
    <root>/VOCdevkit/VOC2007/JPEGImages/<id>.jpg

An image's labels are the classes of its ``<object>`` entries. Objects marked ``<difficult>1`` count
only when ``use_difficult`` is on (off by default, as in VOC's classification evaluation, where they
are neither positives nor negatives); an image whose only objects are difficult then has no label.
Splits come from the ``ImageSets/Main`` lists: ``train``, ``val`` and ``test`` by default.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from sigmoidf1.data.images import ImageDataModule
from sigmoidf1.utils.errors import DataError

CLASSES = [
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
]


def read_voc_annotation(path: str | Path, use_difficult: bool) -> list[str]:
    """The class names of one annotation XML file's objects (difficult ones only if asked)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"VOC annotation not found: {path}")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as error:
        raise DataError(f"{path}: malformed XML ({error})") from None
    names = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in CLASSES:
            raise DataError(f"{path}: unknown VOC class {name!r} (known: {', '.join(CLASSES)})")
        if use_difficult or (obj.findtext("difficult") or "0").strip() != "1":
            names.append(name)
    return names


class VocDataModule(ImageDataModule):
    """PASCAL VOC multilabel (see the module docstring).

    Args:
        root: the folder holding ``VOCdevkit/`` (or the ``VOC<year>`` folder itself).
        year: 2007 (or 2012, which has no public test list).
        train_split, val_split, test_split: names of ``ImageSets/Main/<name>.txt`` lists.
        use_difficult: count objects marked difficult.
        Other arguments: see ``ImageDataModule`` and ``MultilabelDataModule``.
    """

    def __init__(
        self,
        root: str,
        year: int = 2007,
        train_split: str = "train",
        val_split: str = "val",
        test_split: str = "test",
        use_difficult: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.root = Path(root)
        self.year = year
        self.splits = {"train": train_split, "val": val_split, "test": test_split}
        self.use_difficult = use_difficult

    @property
    def voc_dir(self) -> Path:
        nested = self.root / "VOCdevkit" / f"VOC{self.year}"
        return self.root if not nested.is_dir() and (self.root / "Annotations").is_dir() else nested

    def _ids(self, split: str) -> list[str]:
        path = self.voc_dir / "ImageSets" / "Main" / f"{split}.txt"
        if not path.is_file():
            raise FileNotFoundError(f"VOC split list not found: {path}")
        return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]

    def prepare_data(self) -> None:
        if not self.voc_dir.is_dir():
            raise FileNotFoundError(f"VOC folder not found: {self.voc_dir}")
        for split in self.splits.values():
            self._ids(split)

    def _load(self) -> None:
        self.label_names = list(CLASSES)
        column = {name: i for i, name in enumerate(CLASSES)}
        paths, targets = {}, {}
        for split, name in self.splits.items():
            ids = self._ids(name)
            targets[split] = np.zeros((len(ids), len(CLASSES)), dtype=np.float32)
            for row, image_id in enumerate(ids):
                xml = self.voc_dir / "Annotations" / f"{image_id}.xml"
                for label in read_voc_annotation(xml, self.use_difficult):
                    targets[split][row, column[label]] = 1.0
            paths[split] = [self.voc_dir / "JPEGImages" / f"{image_id}.jpg" for image_id in ids]
        self._build_splits(paths, targets)
