"""Where a study lives, and what this package writes on its trials.

A study is stored either in Optuna's journal file (the default: ``<sweep dir>/optuna.journal``, an
append-only log of operations that needs no server and takes its lock by creating a link, so it
also works on NFS) or in a database given by a SQLAlchemy URL (``postgresql://...``,
``mysql+pymysql://...``, ``sqlite:///...``). Any number of processes may open the same study.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sigmoidf1.utils.errors import ConfigError

if TYPE_CHECKING:
    import optuna

JOURNAL_NAME = "optuna.journal"  # the default store, in the sweep directory

# Attributes this package writes on trials (user attributes show in optuna-dashboard).
PRUNED_ATTR = "pruned_at_epoch"  # user: the epoch after which the pruning callback stopped the run
RETRY_ATTR = "retry_of"  # user: the number of the failed trial whose parameters this one retries
FAIL_ATTR = "failed_because"  # user: why the sweeper (not the job) failed the trial
WORKER_ATTR = "sigmoidf1:worker"  # system: the process running the trial (see workers.Worker)
HEARTBEAT_ATTR = "sigmoidf1:heartbeat"  # system: Unix time of its last sign of life


def is_url(storage: str | os.PathLike) -> bool:
    return "://" in str(storage)


def open_storage(storage: str | os.PathLike) -> optuna.storages.BaseStorage:
    """Optuna's RDB storage for a database URL (``dialect://...``), else a journal file at that
    path (its folder is created; the file too, on first use)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if is_url(storage):
        return optuna.storages.RDBStorage(str(storage))
    path = Path(storage).expanduser().absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def open_study(
    study_name: str, storage: str | os.PathLike, direction: str, **kwargs: Any
) -> optuna.Study:
    """Create the study, or load it when it exists; ``ConfigError`` when it exists with the other
    direction (a minimisation resumed as a maximisation would rank its trials backwards)."""
    import optuna

    if direction not in ("maximize", "minimize"):
        raise ConfigError(f"hydra.sweeper.direction={direction!r}: use maximize or minimize")
    study = optuna.create_study(
        study_name=study_name,
        storage=open_storage(storage),
        direction=direction,
        load_if_exists=True,
        **kwargs,
    )
    stored = study.direction.name.lower()
    if stored != direction:
        raise ConfigError(
            f"study '{study_name}' in {storage} was created to {stored}, not to {direction}: "
            "pick another hydra.sweeper.study_name (or optimized_mode)"
        )
    return study


def load_study(storage: str | os.PathLike, study_name: str | None = None, **kwargs: Any):
    """Load an existing study; its name may be left out when the storage holds only one."""
    import optuna

    opened = open_storage(storage)
    if study_name is None:
        names = optuna.study.get_all_study_names(opened)
        if len(names) != 1:
            raise ConfigError(
                f"{storage} holds {len(names)} studies ({', '.join(names) or 'none'}): "
                "name one with --study-name"
            )
        study_name = names[0]
    return optuna.load_study(study_name=study_name, storage=opened, **kwargs)


def count_states(study: optuna.Study) -> Counter:
    """How many trials are in each state, keyed by state name (``COMPLETE``, ``PRUNED``, ...)."""
    return Counter(trial.state.name for trial in study.get_trials(deepcopy=False))


def finished(counts: Counter) -> int:
    """Trials that ran to their end: completed, or stopped by the pruner."""
    return counts["COMPLETE"] + counts["PRUNED"]
