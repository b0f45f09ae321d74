"""Refuse, before training, a macro-averaged soft-count loss on a label space its batches miss.

sigmoidF1 and its family with ``average=macro`` compute one soft score per label over the batch
and average them: a label without a positive in the batch has ``tp = 0``, so its soft F1 (and
precision, recall, Jaccard) is 0 whatever its scores, and its logits get no gradient from that
step. When most labels are absent from most batches, their scores stay where initialisation put
them (near 0.5, above the threshold for every example): on ``data=wordnet`` (17,161 labels) the
model learned nothing (test micro-F1 0.008, against 0.42 for predicting the most frequent labels).

The check: the expected share of labels with at least one positive in a training batch of ``B``
examples,

    coverage = mean over labels l of 1 - C(n - c_l, B) / C(n, B),

with ``c_l`` of the ``n`` training examples carrying label ``l`` (batches drawn at random without
replacement; labels without a training example are left out; ``B`` is the global batch size, as the
loss counts over the global batch under DDP). Below
``MIN_BATCH_COVERAGE`` the run is refused with a message naming what works instead:
``loss.average=micro`` (counts pooled over all labels: every false positive is pushed down), a
per-element loss (``bce``, ``focal``, ``asl``), larger batches or fewer labels.
``configs/data_loss/wordnet_sigmoid_f1.yaml`` makes the default ``data=wordnet`` run micro.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from sigmoidf1.utils.errors import ConfigError
from sigmoidf1.utils.logging import get_logger

log = get_logger(__name__)

# Measured with macro sigmoidF1 (docs/data.md), test micro-F1 against the frequent-labels baseline:
# data=wordnet at batch 256 (coverage 0.04) 0.008 against 0.42; data.min_label_count=10 (0.15) 0.20
# against 0.43, let through here (the run's end says it did not learn); data=reuters at batch 32
# (0.18), 64 (0.26) and 256 (0.50) 0.75 to 0.80 against 0.33. The line is drawn where the loss
# clearly fails, so that no configuration that learns is refused.
MIN_BATCH_COVERAGE = 0.1


def batch_label_coverage(
    train_label_counts: Tensor | Sequence[int], train_size: int, batch_size: int
) -> float:
    """The expected share of labels with a positive in a random batch of ``batch_size`` training
    examples (module docstring), among the labels the training split has: a label without any
    training example learns nothing with any loss, and does not count."""
    counts = torch.as_tensor(train_label_counts, dtype=torch.float64)
    counts = counts[counts > 0]
    if len(counts) == 0:
        return 0.0
    n, batch = float(train_size), float(min(batch_size, train_size))
    # P(no positive among B of n drawn without replacement) = C(n - c, B) / C(n, B)
    rest = n - counts
    log_absent = (
        torch.lgamma(rest + 1)
        - torch.lgamma((rest - batch).clamp(min=0) + 1)
        - math.lgamma(n + 1)
        + math.lgamma(n - batch + 1)
    )
    absent = torch.where(rest >= batch, log_absent.exp(), torch.zeros_like(rest))
    return float((1 - absent).mean())


def check_loss_covers_labels(
    loss: Mapping[str, Any],
    train_label_counts: Tensor | Sequence[int],
    train_size: int,
    batch_size: int,
) -> None:
    """Raise ``ConfigError`` when ``loss`` (a loss config) averages soft counts per label
    (``average: macro``) and a training batch covers fewer than ``MIN_BATCH_COVERAGE`` of the
    labels on average; warn when some labels have no training example at all (no batch ever
    covers them)."""
    if loss.get("average") != "macro":
        return
    counts = torch.as_tensor(train_label_counts)
    num_labels = int((counts > 0).sum())
    coverage = batch_label_coverage(train_label_counts, train_size, batch_size)
    if coverage >= MIN_BATCH_COVERAGE:
        if num_labels < len(counts):
            log.warning(
                f"{len(counts) - num_labels:,} of the {len(counts):,} labels have no training "
                "example: with loss.average=macro nothing moves their scores from where "
                "initialisation put them (near 0.5, so they are predicted for many examples). "
                "Use loss.average=micro, or drop the labels the training data lacks"
            )
        return
    name = loss.get("name", "this loss")
    raise ConfigError(
        f"loss={name} with loss.average=macro cannot learn these {num_labels:,} labels: a training "
        f"batch of {batch_size} examples holds a positive for {coverage:.1%} of them on average, "
        "and a label without a positive in the batch gets no gradient from a macro-averaged soft "
        "count, so most labels never learn. Use loss.average=micro (the counts pooled over all "
        "labels), or a per-element loss (loss=bce, loss=focal, loss=asl), or larger batches "
        f"(data.batch_size) or fewer labels, so that a batch covers at least "
        f"{MIN_BATCH_COVERAGE:.0%} of them"
    )
