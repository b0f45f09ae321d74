"""Label sets → multi-hot targets, with the vocabulary taken from the training split.

A label that occurs only in validation or test cannot be predicted by a model trained on the
training split; it is left out of the targets and **reported** (a warning naming each such label and
how many examples carry it), never dropped silently.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from sigmoidf1.utils.errors import DataError
from sigmoidf1.utils.logging import get_logger

log = get_logger(__name__)


def parse_labels(value: Any, separator: str, where: str) -> list[str]:
    """One example's label names from a CSV cell (``separator``-joined) or a JSON list.

    Surrounding spaces are stripped, empty names skipped and duplicates removed (order kept). An
    empty cell or list means "no label" (a valid negative example).

    Raises ``ValueError`` naming ``where`` (file and line) for anything else (a number, a nested
    list, null).
    """
    if isinstance(value, str):
        names = value.split(separator) if separator else [value]
    elif isinstance(value, (list, tuple)):
        if not all(isinstance(name, str) for name in value):
            raise DataError(f"{where}: labels must be a list of strings, got {value!r}")
        names = list(value)
    else:
        raise DataError(
            f"{where}: malformed labels {value!r}: expected a {separator!r}-separated string "
            "(CSV) or a list of strings (JSON Lines)"
        )
    return list(dict.fromkeys(name.strip() for name in names if name.strip()))


def label_vocabulary(
    label_sets: Sequence[Sequence[str]], source: str = "the training split"
) -> list[str]:
    """The sorted label names occurring in ``label_sets``; raises when there are none."""
    names = sorted({name for labels in label_sets for name in labels})
    if not names:
        raise DataError(
            f"{source} has no labels at all: a multilabel classifier needs at least one label"
        )
    return names


def multi_hot(
    label_sets: Sequence[Sequence[str]], names: Sequence[str]
) -> tuple[np.ndarray, Counter]:
    """``targets [n, len(names)] float32`` in {0, 1}, and the counts of labels not in ``names``."""
    index = {name: i for i, name in enumerate(names)}
    targets = np.zeros((len(label_sets), len(names)), dtype=np.float32)
    unknown: Counter = Counter()
    for row, labels in enumerate(label_sets):
        for name in labels:
            column = index.get(name)
            if column is None:
                unknown[name] += 1
            else:
                targets[row, column] = 1.0
    return targets, unknown


def report_unknown_labels(unknown: Counter, split: str, source: str) -> None:
    """Warn about labels of ``split`` that the training split does not have (none: no warning)."""
    if not unknown:
        return
    listing = ", ".join(f"{name!r} ({count})" for name, count in unknown.most_common())
    log.warning(
        f"{source}: {len(unknown)} label(s) of the {split} split never occur in the training split "
        f"and are left out of the targets (the model cannot predict them): {listing}"
    )
