"""Shared test helpers (fixtures and CLI runners live in conftest.py).

Callbacks that the CLI subprocesses import (the tests put the repository on the path), and an
independent plain-numpy reference of the per-label test report.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from torch import Tensor, nn

from sigmoidf1.callbacks.report import FIGURE_FILES
from sigmoidf1.data import YeastDataModule


class WaitForSignalAtStep(L.Callback):
    """At global step ``step``, write ``marker`` and wait (up to ``timeout`` s) for SIGTERM/SIGINT,
    or for SLURM's requeue signal (which ``InterruptCheckpoint`` notes in ``_requeue_asked``).

    Makes the interruption tests deterministic: the signal always arrives in the middle of an
    epoch, at a known step, however slow the machine is. Under DDP every process waits, and the
    stop that the processes agree on comes at the next batch end.
    """

    def __init__(self, step: int, marker: str, timeout: float = 120.0) -> None:
        self.step = step
        self.marker = Path(marker)
        self.timeout = timeout

    def on_train_batch_end(self, trainer: L.Trainer, *args, **kwargs) -> None:
        if trainer.global_step != self.step:
            return
        self.marker.write_text(str(trainer.global_step))
        deadline = time.monotonic() + self.timeout
        while not _signalled(trainer) and time.monotonic() < deadline:
            time.sleep(0.05)  # signal handlers run in the main thread between these sleeps


def _signalled(trainer: L.Trainer) -> bool:
    return trainer.received_sigterm or any(
        getattr(callback, "_requeue_asked", False) for callback in trainer.callbacks
    )


class CrashAtStep(L.Callback):
    """Raise ``RuntimeError`` in the middle of the training step at global step ``step`` (after the
    forward pass, before the backward pass): a crash that leaves the epoch half done."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_before_backward(self, trainer: L.Trainer, *args, **kwargs) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError(f"simulated crash at step {self.step}")


# --- an independent reference: plain numpy, no torchmetrics -------------------------------------
def reference_average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Step-wise AP = sum_n (R_n - R_{n-1}) P_n over distinct score thresholds; 0 if no positive."""
    positives = labels.sum()
    if positives == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order]
    last_of_tie = np.r_[scores[1:] != scores[:-1], True]
    tp = np.cumsum(labels)[last_of_tie]
    fp = np.cumsum(1 - labels)[last_of_tie]
    precision, recall = tp / (tp + fp), tp / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def reference_rows(
    probabilities: np.ndarray, targets: np.ndarray, thresholds: np.ndarray
) -> list[dict]:
    decisions = probabilities >= thresholds
    rows = []
    for label in range(targets.shape[1]):
        d, y = decisions[:, label], targets[:, label].astype(bool)
        tp, fp, fn = int((d & y).sum()), int((d & ~y).sum()), int((~d & y).sum())
        rows.append(
            {
                "support": int(y.sum()),
                "predicted": int(d.sum()),
                "tp": tp,
                "fp": fp,
                "fn": fn,
                "precision": tp / (tp + fp) if tp + fp else 0.0,
                "recall": tp / (tp + fn) if tp + fn else 0.0,
                "f1": 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else 0.0,
                "average_precision": reference_average_precision(
                    probabilities[:, label], targets[:, label]
                ),
                "threshold": float(thresholds[label]),
            }
        )
    return rows


def read_csv(path: Path) -> list[dict]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def assert_rows_match(csv_rows: list[dict], expected: list[dict]) -> None:
    assert len(csv_rows) == len(expected)
    for got, want in zip(csv_rows, expected, strict=True):
        for key, value in want.items():
            if isinstance(value, int):
                assert int(got[key]) == value, (got["label"], key)
            else:
                assert float(got[key]) == pytest.approx(value, abs=2e-5), (got["label"], key)


# --- the report of a real run --------------------------------------------------------
def check_report_of_a_yeast_run(run_dir: Path) -> None:
    """The report files of a real Yeast run (seed 42) exist and agree with an independent
    recomputation from ``predictions.npz`` and with ``test_metrics.json`` (torchmetrics).

    Called by the CLI tests in test_tracking.py, which share one run between several checks."""
    report_dir = run_dir / "report"
    for name in ("per_label.csv", "label_counts.csv", "predictions.npz", *FIGURE_FILES.values()):
        assert (report_dir / name).stat().st_size > 0, name

    saved = np.load(report_dir / "predictions.npz")
    probabilities, targets = saved["probabilities"], saved["targets"]
    thresholds = saved["thresholds"]

    datamodule = YeastDataModule(seed=42)
    datamodule.setup()
    assert targets.shape == (len(datamodule.test_set), len(datamodule.label_names))
    rows = read_csv(report_dir / "per_label.csv")
    assert [r["label"] for r in rows] == list(datamodule.label_names)
    assert_rows_match(rows, reference_rows(probabilities, targets, thresholds))

    # computed by torchmetrics inside the module, independently of the report
    test_metrics = json.loads((run_dir / "test_metrics.json").read_text())
    f1 = np.array([float(r["f1"]) for r in rows])
    ap = np.array([float(r["average_precision"]) for r in rows])
    assert f1.mean() == pytest.approx(test_metrics["test/f1_macro"], abs=1e-5)
    assert ap.mean() == pytest.approx(test_metrics["test/map_macro"], abs=1e-4)
    decisions = probabilities >= thresholds
    card_mae = np.abs(decisions.sum(1) - targets.sum(1)).mean()
    assert card_mae == pytest.approx(test_metrics["test/card_mae"], abs=1e-5)
    counts = read_csv(report_dir / "label_counts.csv")
    assert sum(int(c["examples_true"]) for c in counts) == targets.shape[0]
    for c in counts:
        k = int(c["labels_per_example"])
        assert int(c["examples_true"]) == int((targets.sum(1) == k).sum())
        assert int(c["examples_predicted"]) == int((decisions.sum(1) == k).sum())


class RaiseValueErrorAtTrainStart(L.Callback):
    """A bug that happens to be a ``ValueError``: it must keep its traceback."""

    def on_train_start(self, trainer: L.Trainer, pl_module) -> None:
        raise ValueError("a bug deep inside a callback")


class NonFiniteInputsOnRank(L.Callback):
    """Replace the inputs of the training batch at global step ``step`` with NaN, on ``rank`` only:
    a divergence that one process of a distributed run sees first."""

    def __init__(self, rank: int, step: int) -> None:
        self.rank = rank
        self.step = step

    def on_train_batch_start(self, trainer: L.Trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.global_rank == self.rank and trainer.global_step == self.step:
            batch[0].fill_(float("nan"))


class UnexportableBackbone(nn.Module):
    """A tabular backbone that trains but that ``torch.export`` cannot trace: ``fault="branch"``
    takes a Python decision on a tensor's value, ``fault="size"`` reads the batch size as a Python
    int (a trace fixes it to the example's)."""

    def __init__(self, in_features: int, fault: str = "branch") -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, 8)
        self.fault = fault
        self.out_features = 8

    def forward(self, features: Tensor) -> Tensor:
        hidden = self.linear(features)
        if self.fault == "size":
            return hidden.reshape(int(features.shape[0]), 8)
        if hidden.mean() > 0:
            return hidden
        return -hidden


class SeededEncoder(nn.Module):
    """A stand-in for a pretrained image encoder: a small ``CNN`` whose weights come from a fixed
    seed, so that every build gives the same network (as loading a weights file does)."""

    def __init__(self, in_channels: int, seed: int = 0) -> None:
        super().__init__()
        from sigmoidf1.backbones import CNN

        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.network = CNN(in_channels, channels=(8, 16))
        self.out_features = self.network.out_features

    def forward(self, images: Tensor) -> Tensor:
        return self.network(images)
