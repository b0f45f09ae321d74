"""Your own image data: ``data=csv_image data.path=FILE``.

``FILE`` is CSV, TSV or JSON Lines (gzip allowed) with an image-path column (``image``; relative
paths are relative to the file's folder, or to ``image_root``) and a labels column (``labels``:
``|``-separated names in CSV/TSV, a list in JSON Lines). Splits, the label vocabulary and errors
work as in ``csv_text`` (see ``sigmoidf1.data.user_files``); batches as in
``sigmoidf1.data.images``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sigmoidf1.data.images import ImageDataModule, resolve_image_path
from sigmoidf1.data.user_files import LabelledFiles


class CsvImageDataModule(LabelledFiles, ImageDataModule):
    """Image paths + labels from CSV/TSV/JSONL(.gz) files.

    Args:
        image_root: folder that relative image paths start from; ``None`` = each file's folder.
        Other arguments: the file arguments of ``LabelledFiles`` (``path`` or ``train_path`` ...,
        columns, separator, fractions); ``image_column`` and the image settings of
        ``ImageDataModule``; the loader settings of ``MultilabelDataModule``.
    """

    def __init__(self, *, image_root: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.image_root = image_root

    @property
    def input_column(self) -> str:
        return self.image_column

    def read_input(self, file: str) -> Callable[[Any, str], Path]:
        base = Path(self.image_root) if self.image_root else Path(file).parent
        return lambda value, where: resolve_image_path(value, base, where)
