"""Optuna pruning for the trials of an Optuna sweep: stop unpromising runs early.

The sweeper (``hydra_plugins/sigmoidf1_sweeper``) runs trial ``k`` of its study as Hydra job
``k``; this callback opens the same study (``storage``, ``study_name``: the sweeper's) and

1. ``setup``: takes trial ``trial_number`` (``hydra.job.num``), which must be RUNNING;
2. every validation epoch: ``trial.report(<monitor>, step=epoch)`` (the study keeps the curve),
   then ``trial.should_prune()`` with this callback's ``pruner``;
3. when pruned: records the epoch as user attribute ``pruned_at_epoch`` and stops the fit after
   this epoch, as early stopping does. The run ends as usual (test, ``test_metrics.json``, the W&B
   run finished, not failed); the sweeper sees the attribute and stores the trial PRUNED, with the
   last reported value as its value.

Under DDP only rank zero talks to the study; the decision is broadcast to every rank.
"""

from __future__ import annotations

from typing import Any

import lightning as L

from sigmoidf1.sweeps.study import PRUNED_ATTR
from sigmoidf1.utils.errors import ConfigError
from sigmoidf1.utils.logging import get_logger

log = get_logger(__name__)

__all__ = ["PRUNED_ATTR", "OptunaPruning"]


class OptunaPruning(L.Callback):
    """Report ``monitor`` to this job's Optuna trial every validation epoch; stop when pruned.

    Args:
        monitor: the metric the study optimises (``optimized_metric``).
        storage: the sweeper's study storage (``hydra.sweeper.storage``): a journal file path or a
            database URL.
        study_name: the sweeper's study name (``hydra.sweeper.study_name``).
        trial_number: this job's trial (``hydra.job.num``, which the sweeper sets to it).
        pruner: an ``optuna.pruners.BasePruner``; the study's direction decides what is worse.
    """

    def __init__(
        self, monitor: str, storage: str, study_name: str, trial_number: int, pruner: Any
    ) -> None:
        if not storage or not study_name:
            raise ConfigError(
                "pruning reports to the study of an Optuna sweep: run it with "
                "-m hparams_search=... (hydra.sweeper.storage and study_name)"
            )
        self.monitor = monitor
        self.storage = str(storage)
        self.study_name = study_name
        self.trial_number = int(trial_number)
        self.pruner = pruner
        self.trial: Any = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or not trainer.is_global_zero or self.trial is not None:
            return
        import optuna

        from sigmoidf1.sweeps.study import open_storage

        study = optuna.load_study(
            study_name=self.study_name, storage=open_storage(self.storage), pruner=self.pruner
        )
        trial = {t.number: t for t in study.get_trials(deepcopy=False)}.get(self.trial_number)
        if trial is None or trial.state.name != "RUNNING":
            raise ConfigError(
                f"pruning: trial {self.trial_number} of study '{self.study_name}' is "
                f"{trial.state.name if trial else 'missing'}, not RUNNING: the callback works "
                "inside that study's sweep only (-m hparams_search=...)"
            )
        self.trial = optuna.Trial(study, trial._trial_id)
        log.info(
            f"Pruning: reporting {self.monitor} to trial {self.trial_number} of {self.study_name}"
        )

    # on_validation_end, as EarlyStopping: the epoch's metrics are in callback_metrics by then
    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        prune = False
        if trainer.is_global_zero:
            value = float(trainer.callback_metrics[self.monitor])
            epoch = trainer.current_epoch
            self.trial.report(value, step=epoch)
            prune = self.trial.should_prune()
            if prune:
                self.trial.set_user_attr(PRUNED_ATTR, epoch)
                log.info(
                    f"Pruned: trial {self.trial_number} stops after epoch {epoch} "
                    f"({self.monitor}={value:.4f})"
                )
        if trainer.strategy.broadcast(prune):
            trainer.should_stop = True
