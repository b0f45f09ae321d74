"""Optuna pruning for trials of the hydra-optuna-sweeper: stop unpromising runs early.

The sweeper (hydra-optuna-sweeper 1.x) asks its study for a trial, launches the job with the
trial's parameters as overrides and, when the job returns, tells the study the returned value. It
never hands the trial object to the job, so the job finds it itself, through a study storage that
both share (``hydra.sweeper.storage``: ``in_process_storage()`` below, or a storage URL):

1. ``setup``: load the study (``study_name``, ``storage``) with this callback's ``pruner``, and
   pick its one RUNNING trial whose parameters are among this job's overrides (the sweeper writes
   them as ``name=value``, exactly as ``hydra.overrides.task`` holds them);
2. every validation epoch: ``trial.report(<monitor>, step=epoch)``, then ``trial.should_prune()``;
3. when pruned: record ``pruned_at_epoch`` on the trial and stop the fit after this epoch (as
   early stopping does). The run then goes on as usual (test, ``test_metrics.json``) and returns
   its best value so far, ``<monitor>_best``; the sweeper stores the trial as COMPLETE with it.

Only the sweeper can finish a trial (it refuses to tell a finished one), so a pruned trial is
stored as COMPLETE with its best value so far, marked by the ``pruned_at_epoch`` user attribute,
rather than as PRUNED. Its intermediate values are in the storage like any trial's.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import lightning as L

from sigmoidf1.utils.errors import ConfigError
from sigmoidf1.utils.logging import get_logger

log = get_logger(__name__)

PRUNED_ATTR = "pruned_at_epoch"


@functools.cache
def in_process_storage() -> Any:
    """One ``optuna.storages.InMemoryStorage`` per process: the study storage that the sweeper and
    the trials it runs in its own process (Hydra's basic launcher, the default) share.

    Optuna 2.10's SQL storage does not work with SQLAlchemy 2 (its schema-version row is never
    committed: ``create_study`` fails on an ``AssertionError``), and the sweeper needs optuna < 3.
    A storage URL still works where the SQL storage does (SQLAlchemy < 2), and with launchers
    that run trials in other processes it is the only way.
    """
    import optuna

    return optuna.storages.InMemoryStorage()


def find_trial(study: Any, overrides: Sequence[str]) -> Any:
    """The one RUNNING trial of ``study`` whose parameters all appear in ``overrides`` as
    ``name=value`` (how the sweeper passes them); ``ConfigError`` when there is none or several."""
    from optuna.trial import TrialState

    given = set(overrides)
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    matches = [
        trial
        for trial in running
        if {f"{name}={value}" for name, value in trial.params.items()} <= given
    ]
    if len(matches) != 1:
        raise ConfigError(
            f"pruning: {len(matches)} of the {len(running)} running trials of study "
            f"'{study.study_name}' have this job's parameters ({', '.join(sorted(given))}); "
            "run the callback only inside that study's Optuna sweep (-m hparams_search=...)"
        )
    return matches[0]


class OptunaPruning(L.Callback):
    """Report ``monitor`` to this job's Optuna trial every validation epoch; stop when pruned.

    Args:
        monitor: the metric the study optimises (``optimized_metric``).
        storage: the sweeper's study storage (``hydra.sweeper.storage``): a URL or a storage
            object such as ``in_process_storage()``; not ``None`` (a private in-memory study).
        study_name: the sweeper's study name (``hydra.sweeper.study_name``).
        overrides: this job's overrides (``hydra.overrides.task``), to find its trial.
        pruner: an ``optuna.pruners.BasePruner``; the study's direction decides what is worse.
    """

    def __init__(
        self,
        monitor: str,
        storage: Any,
        study_name: str | None,
        overrides: Sequence[str],
        pruner: Any,
    ) -> None:
        if not storage:
            raise ConfigError(
                "pruning needs a study storage that the sweeper and its trials share: use "
                "hparams_search=yeast_optuna_pruning (its in-process storage), or set "
                "hydra.sweeper.storage to a storage URL"
            )
        if not study_name:
            raise ConfigError("pruning needs hydra.sweeper.study_name (the study to report to)")
        self.monitor = monitor
        self.storage = storage
        self.study_name = study_name
        self.overrides = [str(item) for item in overrides]
        self.pruner = pruner
        self.trial: Any = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or not trainer.is_global_zero or self.trial is not None:
            return
        import optuna

        study = optuna.load_study(
            study_name=self.study_name, storage=self.storage, pruner=self.pruner
        )
        frozen = find_trial(study, self.overrides)
        self.trial = optuna.trial.Trial(study, frozen._trial_id)
        log.info(
            f"Pruning: reporting {self.monitor} to trial {frozen.number} of {study.study_name}"
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
                    f"Pruned: trial {self.trial.number} stops after epoch {epoch} "
                    f"({self.monitor}={value:.4f})"
                )
        if trainer.strategy.broadcast(prune):
            trainer.should_stop = True
