"""Lightning's ``EMAWeightAveraging``, fixed for a trainer that tests after fitting.

Lightning's callback saves the averaged weights as a checkpoint's ``state_dict`` and the raw ones as
``current_model_state``; on loading, it puts the raw ones back into the model, so that a resumed fit
continues from them. It does so whenever it has an averaged model, and it keeps that model after
fit: ``trainer.test(ckpt_path=best)`` on the trainer that fitted would test the raw weights. Here
the raw weights are restored only when fitting; testing, validating and predicting use the
averaged ``state_dict``, as ``load_from_checkpoint`` and ``sigmoidf1-eval`` do.

``keep_current`` names state entries that callbacks set rather than training learns (the
``thresholds`` buffer that ``ThresholdTuning`` writes): checkpoints store the model's own value,
never an average, whatever the order of the callbacks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import EMAWeightAveraging as _LightningEMA


class EMAWeightAveraging(_LightningEMA):
    """Arguments are Lightning's (``decay``, ``update_every_n_steps``, ``update_starting_at_step``
    ...), plus ``keep_current`` (see the module docstring)."""

    def __init__(self, *args: Any, keep_current: Sequence[str] = ("thresholds",), **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.keep_current = tuple(keep_current)

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        super().on_save_checkpoint(trainer, pl_module, checkpoint)
        current = checkpoint.get("current_model_state")
        if current is not None:
            for name in self.keep_current:
                if name in current:
                    checkpoint["state_dict"][name] = current[name]

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if trainer.state.fn != "fit":
            return
        super().on_load_checkpoint(trainer, pl_module, checkpoint)
        if self._average_model is not None:
            average = self._average_model.module
            for name in self.keep_current:
                if name in dict(average.named_buffers()):
                    average.get_buffer(name).copy_(pl_module.get_buffer(name))
