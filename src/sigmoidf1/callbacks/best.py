"""Track the best value of the monitored metric, so that searches optimise the best epoch.

Early stopping ends a run up to ``patience`` epochs after its best epoch, so the *last* validation
value under-reports a run. ``BestMetric`` logs ``<monitor>_best`` (e.g. ``val/f1_macro_best``) at
every validation epoch: the best value so far (max or min). It goes to every logger and to
``trainer.callback_metrics``, from where ``sigmoidf1-train`` returns it to Hydra sweepers (Optuna);
W&B sweeps name it as their metric. Its state travels in checkpoints, so a resumed run keeps
the best value of the epochs before the interruption.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch


def best_name(monitor: str) -> str:
    """``val/f1_macro -> val/f1_macro_best``."""
    return f"{monitor}_best"


class BestMetric(L.Callback):
    """Log ``<monitor>_best`` after every validation epoch.

    Args:
        monitor: a metric logged at validation epoch end, e.g. ``val/f1_macro``.
        mode: ``"max"`` or ``"min"``: which values are better.
    """

    def __init__(self, monitor: str, mode: str = "max") -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.monitor = monitor
        self.mode = mode
        self.best = -math.inf if mode == "max" else math.inf

    # on_validation_end, not on_validation_epoch_end: only then are the epoch's metrics in
    # callback_metrics (as for EarlyStopping); logged the way LearningRateMonitor logs
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.monitor])  # once per epoch, synced already
        if value > self.best if self.mode == "max" else value < self.best:
            self.best = value
        name = best_name(self.monitor)
        trainer.callback_metrics[name] = torch.tensor(self.best)
        step = trainer.fit_loop.epoch_loop._batches_that_stepped  # the step the epoch logged at
        for logger in trainer.loggers:
            logger.log_metrics({name: self.best}, step=step)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = float(state_dict["best"])
