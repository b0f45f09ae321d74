"""The progress bar reads the metrics and redraws at most ``refresh_rate`` times a second; where
stdout is not a terminal, plain log lines replace it."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import RichProgressBar
from torch.utils.data import DataLoader, TensorDataset

from sigmoidf1.callbacks import progress
from sigmoidf1.callbacks.progress import ProgressBar, ProgressLog, format_seconds
from tests.test_module import small_model

BATCHES = 12


def fit(callbacks: list, **kwargs) -> L.Trainer:
    """2 epochs of 12 batches of a small model with ``callbacks``."""
    data = TensorDataset(torch.randn(4 * BATCHES, 5), torch.randint(0, 2, (4 * BATCHES, 3)).float())
    kwargs = {"max_epochs": 2, **kwargs}
    trainer = L.Trainer(
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        log_every_n_steps=1,
        **kwargs,
    )
    loader = DataLoader(data, batch_size=4)
    trainer.fit(small_model(), loader, loader if kwargs.get("limit_val_batches") != 0 else None)
    return trainer


def metric_reads(bar: RichProgressBar, monkeypatch) -> int:
    """Fit 2 epochs of 12 batches with ``bar``; how often it read the metrics (``get_metrics``)."""
    reads = []
    original = type(bar).get_metrics

    def counting(self, trainer, pl_module):
        reads.append(trainer.global_step)
        return original(self, trainer, pl_module)

    monkeypatch.setattr(type(bar), "get_metrics", counting)
    fit([bar], limit_val_batches=0)
    return len(reads)


def test_lightnings_bar_reads_the_metrics_on_every_batch_and_ours_does_not(monkeypatch):
    # a clock that never advances: only each loop's last batch (and the epoch ends) are due
    monkeypatch.setattr("sigmoidf1.callbacks.progress.time.monotonic", lambda: 1000.0)
    assert metric_reads(RichProgressBar(), monkeypatch) >= 2 * BATCHES
    assert metric_reads(ProgressBar(refresh_rate=5, terminal_only=False), monkeypatch) <= 2 * 3


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


# --- without a terminal ------------------------------------------------------------------------
@pytest.mark.parametrize(("live", "enabled"), [(True, True), (False, False)])
def test_the_bar_turns_itself_off_without_a_terminal(monkeypatch, live, enabled):
    monkeypatch.setattr(progress, "draws_live", lambda: live)
    bar = ProgressBar()
    fit([bar], limit_val_batches=0, max_steps=1)
    assert bar.is_enabled is enabled


def epoch_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "sigmoidf1.callbacks.progress"]


def test_without_a_terminal_each_epoch_gets_a_line_with_its_own_metrics(monkeypatch, caplog):
    monkeypatch.setattr(progress, "draws_live", lambda: False)
    caplog.set_level("INFO")
    epoch_losses = []

    class Record(L.Callback):  # the epoch's train/loss, as the loggers get it
        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch:
                epoch_losses.append(float(trainer.callback_metrics["train/loss_epoch"]))

        def on_train_end(self, trainer, pl_module):
            epoch_losses.append(float(trainer.callback_metrics["train/loss_epoch"]))

    fit([ProgressLog(metrics=["train/loss", "val/loss", "val/nothing"]), Record()])
    lines = epoch_lines(caplog)
    assert len(lines) == 2
    for epoch, (line, loss) in enumerate(zip(lines, epoch_losses, strict=True)):
        assert line.startswith(f"epoch {epoch}/1: train/loss {loss:.4f}, val/loss ")
        assert "val/nothing" not in line and " in all)" in line


def test_long_epochs_get_a_line_every_interval(monkeypatch, caplog):
    monkeypatch.setattr(progress, "draws_live", lambda: False)
    caplog.set_level("INFO")
    now = [0.0]

    def clock() -> float:  # 1 s per call: every batch is past the interval
        now[0] += 1.0
        return now[0]

    monkeypatch.setattr(progress.time, "monotonic", clock)
    fit([ProgressLog(interval_s=1.5)], limit_val_batches=0, max_epochs=1)
    batch_lines = [line for line in epoch_lines(caplog) if "batches" in line]
    assert batch_lines and batch_lines[0].startswith("epoch 0: ")
    assert f"/{BATCHES} batches" in batch_lines[-1]


def test_on_a_terminal_the_log_stays_silent(monkeypatch, caplog):
    monkeypatch.setattr(progress, "draws_live", lambda: True)
    caplog.set_level("INFO")
    fit([ProgressLog(interval_s=0.0)], limit_val_batches=0)
    assert epoch_lines(caplog) == []
    fit([ProgressLog(always=True)], limit_val_batches=0)
    assert len(epoch_lines(caplog)) == 2


def test_durations_read_naturally():
    assert [format_seconds(s) for s in (4.25, 725, 11_050)] == ["4.2 s", "12 min 5 s", "3 h 04 min"]


def test_an_epoch_resumed_in_its_middle_counts_from_the_restart(monkeypatch, caplog):
    """Lightning calls no on_train_epoch_start for an epoch resumed in its middle."""
    from types import SimpleNamespace

    monkeypatch.setattr(progress, "draws_live", lambda: False)
    caplog.set_level("INFO")
    now = [5000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    trainer = SimpleNamespace(
        current_epoch=15,
        max_epochs=40,
        is_global_zero=True,
        callback_metrics={"train/loss_epoch": torch.tensor(0.25)},
    )
    callback = ProgressLog(metrics=["train/loss"])
    callback.setup(trainer, None, "fit")
    callback.on_train_start(trainer, None)
    now[0] += 3.0
    callback.on_train_epoch_end(trainer, None)
    callback.on_train_end(trainer, None)
    assert epoch_lines(caplog) == ["epoch 15/39: train/loss 0.2500 (3.0 s; 3.0 s in all)"]
