"""A progress bar that costs nothing per step: Lightning's rich bar, redrawn at most
``refresh_rate`` times per second.

Lightning's ``RichProgressBar`` does, on every training batch, a redraw and a read of every
progress-bar metric (``get_metrics``: an ``.item()`` per logged tensor, which on a GPU waits for the
device), and its display thread redraws 100 times per second. With a small model that is more than
the training step itself (Yeast's MLP on one CPU thread: about a third of the step time). Here a
batch hook does that work only when ``1 / refresh_rate`` seconds have passed since the last update,
or on the last batch of the loop; the display thread runs at ``refresh_rate``.

A bar needs a terminal (or a notebook) to redraw in place. Where stdout is neither (a SLURM job's
log, ``nohup``, a pipe) the bar turns itself off and ``ProgressLog`` writes plain log lines instead:
one per epoch with its metrics and times, and one every ``interval_s`` seconds within a long epoch.
On a terminal ``ProgressLog`` says nothing (unless ``always=True``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar

from sigmoidf1.utils.logging import get_logger

log = get_logger(__name__)

# What ProgressLog reports at each epoch end by default (those that were logged); a metric logged
# both per step and per epoch is found under its epoch name (``train/loss_epoch``) too.
EPOCH_METRICS = ("train/loss", "val/loss", "val/f1_macro", "val/f1_micro")


def draws_live() -> bool:
    """Whether stdout can show a live progress bar: a terminal or a Jupyter notebook, as rich
    decides it (``FORCE_TERMINAL``/``TTY_COMPATIBLE`` override it)."""
    from rich.console import Console

    console = Console()
    return console.is_terminal or console.is_jupyter


def format_seconds(seconds: float) -> str:
    """``42.0 s``, ``12 min 5 s``, ``3 h 04 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class ProgressBar(RichProgressBar):
    """``RichProgressBar`` whose batch hooks update it at most ``refresh_rate`` times per second.

    Args:
        refresh_rate: updates per second (> 0); ``0`` hides the bar, as in Lightning.
        terminal_only: hide the bar where stdout is not a terminal or a notebook.
        **kwargs: ``RichProgressBar``'s (``leave``, ``theme``, ``console_kwargs``).
    """

    def __init__(self, refresh_rate: float = 5, terminal_only: bool = True, **kwargs: Any) -> None:
        if refresh_rate < 0:
            raise ValueError(f"refresh_rate must be >= 0 (0 hides the bar), got {refresh_rate}")
        super().__init__(refresh_rate=refresh_rate, **kwargs)
        self.terminal_only = terminal_only
        self._last_update = -float("inf")

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # off where it cannot redraw in place (rich would print its last frame only, wrapped at
        # 80 columns); ProgressLog's lines stand in for it there
        if self.terminal_only and not draws_live():
            self.disable()
        super().setup(trainer, pl_module, stage)

    def _due(self, batch_idx: int, total: Callable[[], float]) -> bool:
        """Whether this batch updates the bar: ``1 / refresh_rate`` s after the last update, or the
        loop's last batch (so that every loop ends drawn complete). Never on a disabled bar (the
        processes of rank > 0, where Lightning's per-dataloader totals are not set: reading them
        asserts), so ``total`` is a callable read only when needed."""
        if not self.is_enabled:
            return False
        now = time.monotonic()
        if batch_idx + 1 < total() and now - self._last_update < 1.0 / max(self.refresh_rate, 1e-9):
            return False
        self._last_update = now
        return True

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx
    ) -> None:
        if self._due(batch_idx, lambda: self.total_train_batches):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        def total() -> float:
            if trainer.sanity_checking:
                return trainer.num_sanity_val_batches[dataloader_idx]
            return self.total_val_batches_current_dataloader

        if self._due(batch_idx, total):
            super().on_validation_batch_end(
                trainer, pl_module, outputs, batch, batch_idx, dataloader_idx
            )

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._due(batch_idx, lambda: self.total_test_batches_current_dataloader):
            super().on_test_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_predict_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._due(batch_idx, lambda: self.total_predict_batches_current_dataloader):
            super().on_predict_batch_end(
                trainer, pl_module, outputs, batch, batch_idx, dataloader_idx
            )


class ProgressLog(L.Callback):
    """Plain log lines that show a run's progress where no progress bar can be drawn.

    Where stdout is not a terminal (a SLURM job, ``nohup``, a pipe) it logs, through the run's
    logger (console and ``<run dir>/train.log``, rank zero only):

    - at each training epoch end (after its validation): the epoch, the ``metrics`` that were
      logged, the epoch's duration and the time since fit started, e.g.
      ``epoch 3/39: train/loss 0.5521, val/loss 0.5467 (4.1 s; 16.5 s in all)``;
    - within an epoch, every ``interval_s`` seconds: the batches done and the last step loss.

    Args:
        metrics: names to report (a name logged per step and per epoch is found as
            ``<name>_epoch`` too); names not logged are left out.
        interval_s: seconds between lines within an epoch; ``None`` or ``0``: epoch ends only.
        always: log on a terminal too (where the progress bar already shows all this).
    """

    def __init__(
        self,
        metrics: tuple[str, ...] | list[str] = EPOCH_METRICS,
        interval_s: float | None = 60.0,
        always: bool = False,
    ) -> None:
        if interval_s is not None and interval_s < 0:
            raise ValueError(f"interval_s must be >= 0 or None, got {interval_s}")
        self.metrics = list(dict.fromkeys(metrics))  # in order, without repeats
        self.interval_s = interval_s or None
        self.always = always
        self._active = False
        self._fit_started = self._epoch_started = self._last_line = 0.0
        self._pending: tuple[int, float, float] | None = None  # epoch, its seconds, fit seconds

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._active = self.always or not draws_live()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # an epoch resumed in its middle gets no on_train_epoch_start: it counts from here
        self._fit_started = self._epoch_started = self._last_line = time.monotonic()
        self._pending = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report(trainer)
        self._epoch_started = self._last_line = time.monotonic()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx
    ) -> None:
        if not (self._active and self.interval_s and trainer.is_global_zero):
            return
        now = time.monotonic()
        if now - self._last_line < self.interval_s:
            return
        self._last_line = now
        done = trainer.fit_loop.epoch_loop.batch_progress.current.completed + 1
        loss = self._values(trainer, ["train/loss_step"])
        log.info(
            f"epoch {trainer.current_epoch}: {done}/{trainer.num_training_batches} batches"
            + (f", {loss}" if loss else "")
            + f" ({format_seconds(now - self._epoch_started)})"
        )

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # the epoch's training metrics are computed after this hook: the line is written at the
        # next epoch start, or when training ends
        now = time.monotonic()
        self._pending = (trainer.current_epoch, now - self._epoch_started, now - self._fit_started)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report(trainer)

    def _report(self, trainer: L.Trainer) -> None:
        """The line of the epoch that ended last, if any (once)."""
        pending, self._pending = self._pending, None
        if pending is None or not (self._active and trainer.is_global_zero):
            return
        epoch, epoch_seconds, fit_seconds = pending
        last = trainer.max_epochs - 1 if trainer.max_epochs not in (None, -1) else "?"
        values = self._values(trainer, self.metrics)
        log.info(
            f"epoch {epoch}/{last}: {values or 'no metrics logged'} "
            f"({format_seconds(epoch_seconds)}; {format_seconds(fit_seconds)} in all)"
        )

    @staticmethod
    def _values(trainer: L.Trainer, names: list[str]) -> str:
        """``name value, ...`` for the names found in ``trainer.callback_metrics``."""
        logged = trainer.callback_metrics
        parts = []
        for name in names:
            value = logged.get(name, logged.get(f"{name}_epoch"))
            if value is not None and getattr(value, "numel", lambda: 1)() == 1:
                parts.append(f"{name} {float(value):.4f}")
        return ", ".join(parts)
