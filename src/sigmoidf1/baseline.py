"""The frequent-labels baseline: the test micro-F1 a model must beat to have learned anything from
its inputs.

The baseline ignores the inputs and predicts the same label set for every example: the ``k`` labels
most frequent in the **training** split, with ``k`` the one that maximises micro-F1 on the training
split. With ``n`` training examples, ``P`` label occurrences in all and ``c_l`` examples carrying
label ``l``, predicting a set ``S`` of ``k`` labels for every example gives

    TP = sum_{l in S} c_l,   FP = k n - TP,   FN = P - TP,
    micro-F1 = 2 TP / (2 TP + FP + FN) = 2 TP / (k n + P),

so for each ``k`` the ``k`` most frequent labels are the best set, and the best ``k`` makes it the
best constant prediction there is (on the training split). It is at least as strong as the two usual
definitions, which are particular ``k``: the labels carried by at least half of the training
examples, and the ``round(mean labels per example)`` most frequent labels.

Its test micro-F1 is computed by the model's own ``test/f1_micro`` metric object (a clone of it:
the same class and options), fed probability 1 for the set's labels and 0 for the others, so that
the two numbers are comparable to the last digit. ``sigmoidf1-train`` and ``sigmoidf1-eval``
report it as ``test_baseline/f1_micro`` in ``test_metrics.json``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

BASELINE_KEY = "test_baseline/f1_micro"
CHUNK_ROWS = 512  # test rows per metric update (wordnet: 512 x 17,161 floats = 35 MB)


@dataclass(frozen=True)
class FrequentLabels:
    """The baseline's label set (indices and names, most frequent first) and its test micro-F1."""

    indices: list[int]
    names: list[str]
    f1_micro: float


def frequent_label_set(train_label_counts: Tensor | Sequence[int], train_size: int) -> Tensor:
    """Indices of the ``k`` most frequent labels, ``k`` maximising micro-F1 on the training split
    (module docstring); the smallest such ``k`` on a tie; most frequent first."""
    counts = torch.as_tensor(train_label_counts, dtype=torch.float64)
    if counts.ndim != 1 or len(counts) == 0 or train_size < 1 or float(counts.sum()) == 0:
        raise ValueError("frequent_label_set needs label counts [L] of a non-empty labelled split")
    order = torch.argsort(counts, descending=True, stable=True)
    true_positives = counts[order].cumsum(0)
    set_sizes = torch.arange(1, len(counts) + 1, dtype=torch.float64)
    f1 = 2 * true_positives / (set_sizes * train_size + counts.sum())
    return order[: int(torch.argmax(f1)) + 1]


def constant_prediction_f1(
    label_set: Tensor, target_chunks: Iterator[Tensor], metric: Metric
) -> float:
    """``metric`` (cloned, so the caller's state is untouched) over every chunk of targets
    ``[rows, L]``, with the prediction 1 for the labels of ``label_set`` and 0 elsewhere.

    Computed on this process alone, on the CPU: the clone never syncs with other processes, since
    every process holds the whole split's targets."""
    metric = metric.clone().cpu()
    metric.distributed_available_fn = _never
    metric.reset()
    for targets in target_chunks:
        predictions = torch.zeros(targets.shape, dtype=torch.float32)
        predictions[:, label_set] = 1.0
        metric.update(predictions, targets.int())
    return float(metric.compute())


def _never() -> bool:
    return False


def target_chunks(dataset: Any, rows: int = CHUNK_ROWS) -> Iterator[Tensor]:
    """The targets ``[n, L]`` of a labelled split, ``rows`` at a time, dense, on the CPU.

    Reads the split's ``targets`` (a tensor, or a dataset of rows such as WordNet's sparse
    targets) or a ``TensorDataset``'s last tensor, never the inputs (image files stay unread).
    """
    targets = getattr(dataset, "targets", None)
    if targets is None and hasattr(dataset, "tensors"):
        targets = dataset.tensors[-1]
    if targets is None:  # an unknown dataset: its items
        targets = [torch.as_tensor(dataset[index][1]) for index in range(len(dataset))]
    for start in range(0, len(targets), rows):
        stop = min(start + rows, len(targets))
        if isinstance(targets, Tensor):
            yield targets[start:stop].float()
        else:
            yield torch.stack([torch.as_tensor(targets[i]) for i in range(start, stop)]).float()


def frequent_labels_baseline(model: Any, test_set: Any) -> FrequentLabels | None:
    """The baseline of a trained ``MultilabelClassifier`` on ``test_set`` (its DataModule's test
    split), from the training label counts stored in the model; ``None`` when the model has
    none (a checkpoint written before they were stored)."""
    counts, size = model.hparams.get("train_label_counts"), model.hparams.get("train_size")
    if not counts or not size:
        return None
    label_set = frequent_label_set(counts, size)
    f1 = constant_prediction_f1(label_set, target_chunks(test_set), model.test_metrics["f1_micro"])
    indices = label_set.tolist()
    return FrequentLabels(indices, [model.label_names[i] for i in indices], f1)
