"""The progress bar reads the metrics and redraws at most ``refresh_rate`` times a second."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import RichProgressBar
from torch.utils.data import DataLoader, TensorDataset

from sigmoidf1.callbacks.progress import ProgressBar
from tests.test_module import small_model

BATCHES = 12


def metric_reads(bar: RichProgressBar, monkeypatch) -> int:
    """Fit 2 epochs of 12 batches with ``bar``; how often it read the metrics (``get_metrics``)."""
    reads = []
    original = type(bar).get_metrics

    def counting(self, trainer, pl_module):
        reads.append(trainer.global_step)
        return original(self, trainer, pl_module)

    monkeypatch.setattr(type(bar), "get_metrics", counting)
    data = TensorDataset(torch.randn(4 * BATCHES, 5), torch.randint(0, 2, (4 * BATCHES, 3)).float())
    trainer = L.Trainer(
        max_epochs=2,
        callbacks=[bar],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        limit_val_batches=0,
        log_every_n_steps=1,
    )
    trainer.fit(small_model(), DataLoader(data, batch_size=4))
    return len(reads)


def test_lightnings_bar_reads_the_metrics_on_every_batch_and_ours_does_not(monkeypatch):
    # a clock that never advances: only each loop's last batch (and the epoch ends) are due
    monkeypatch.setattr("sigmoidf1.callbacks.progress.time.monotonic", lambda: 1000.0)
    assert metric_reads(RichProgressBar(), monkeypatch) >= 2 * BATCHES
    assert metric_reads(ProgressBar(refresh_rate=5), monkeypatch) <= 2 * 3


def test_updates_are_due_once_per_interval_and_on_the_last_batch(monkeypatch):
    now = [0.0]
    monkeypatch.setattr("sigmoidf1.callbacks.progress.time.monotonic", lambda: now[0])
    bar = ProgressBar(refresh_rate=4)  # every 0.25 s
    due = []
    for batch_idx in range(10):
        due.append(bar._due(batch_idx, total=lambda: 10))
        now[0] += 0.1
    # t = 0.0 (first), 0.3, 0.6, 0.9 (0.25 s after the last update each), and the last batch
    assert [i for i, d in enumerate(due) if d] == [0, 3, 6, 9]
    assert bar._due(3, total=lambda: float("inf")) is False  # same instant, no end in sight


def test_a_negative_refresh_rate_is_refused():
    with pytest.raises(ValueError, match="refresh_rate must be >= 0"):
        ProgressBar(refresh_rate=-1)


def test_a_disabled_bar_never_reads_the_dataloader_totals():
    """On the processes of rank > 0 Lightning disables the bar and leaves the per-dataloader
    totals unset (reading them asserts): the batch hooks must not read them there."""
    bar = ProgressBar()
    bar.disable()

    def unset() -> float:
        raise AssertionError("total read on a disabled bar")

    assert bar._due(0, total=unset) is False
