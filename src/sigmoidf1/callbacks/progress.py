"""A progress bar that costs nothing per step: Lightning's rich bar, redrawn at most
``refresh_rate`` times per second.

Lightning's ``RichProgressBar`` does, on every training batch, a redraw and a read of every
progress-bar metric (``get_metrics``: an ``.item()`` per logged tensor, which on a GPU waits for the
device), and its display thread redraws 100 times per second. With a small model that is more than
the training step itself (Yeast's MLP on one CPU thread: about a third of the step time). Here a
batch hook does that work only when ``1 / refresh_rate`` seconds have passed since the last update,
or on the last batch of the loop; the display thread runs at ``refresh_rate``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar


class ProgressBar(RichProgressBar):
    """``RichProgressBar`` whose batch hooks update it at most ``refresh_rate`` times per second.

    Args:
        refresh_rate: updates per second (> 0); ``0`` hides the bar, as in Lightning.
        **kwargs: ``RichProgressBar``'s (``leave``, ``theme``, ``console_kwargs``).
    """

    def __init__(self, refresh_rate: float = 5, **kwargs: Any) -> None:
        if refresh_rate < 0:
            raise ValueError(f"refresh_rate must be >= 0 (0 hides the bar), got {refresh_rate}")
        super().__init__(refresh_rate=refresh_rate, **kwargs)
        self._last_update = -float("inf")

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
