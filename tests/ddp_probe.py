"""A test-only callback that records, per training step and rank, which loss the module used.

Added to a real run with ``+callbacks.loss_probe._target_=tests.ddp_probe.LossProbe`` (the repo
root on ``PYTHONPATH``). Before each step it recomputes the logits of the rank's batch (needs
``model.backbone.dropout=0`` so that they equal the step's own), gathers logits and targets from
every rank, and evaluates the sigmoidF1 loss (default parameters, no syncing) on the rank's batch
("local") and on the concatenated global batch ("global"); after the step it stores the loss the
module returned ("used"). Each rank writes ``<run dir>/loss_probe_rank<r>.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from lightning.pytorch import Callback

from sigmoidf1.losses import sigmoid_f1_loss


class LossProbe(Callback):
    def __init__(self) -> None:
        self.records: list[dict[str, float]] = []
        self._pending: dict[str, float] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        inputs, targets = batch
        with torch.no_grad():
            logits = pl_module(inputs)
            all_logits = pl_module.all_gather(logits).reshape(-1, logits.shape[-1])
            all_targets = pl_module.all_gather(targets).reshape(-1, targets.shape[-1])
            self._pending = {
                "local": sigmoid_f1_loss(logits, targets, sync_dist=False).item(),
                "global": sigmoid_f1_loss(all_logits, all_targets, sync_dist=False).item(),
                "local_batch": targets.shape[0],
                "global_batch": all_targets.shape[0],
            }

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.records.append({**self._pending, "used": float(outputs["loss"])})

    def on_train_end(self, trainer, pl_module) -> None:
        path = Path(trainer.default_root_dir) / f"loss_probe_rank{trainer.global_rank}.json"
        path.write_text(json.dumps(self.records))
