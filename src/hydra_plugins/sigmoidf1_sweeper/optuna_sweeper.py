"""``OptunaSweeper``: ``sigmoidf1-train -m hparams_search=<name>`` on a current Optuna.

Each sweep process is one worker of a study stored in ``storage`` (a journal file in the sweep
directory by default). The worker asks trials, runs each as a Hydra job through the configured
launcher (in this process by default; SLURM jobs with ``hydra/launcher=slurm``), and tells the
study the value the job returned (``sigmoidf1.sweeps.loop``). Trial ``k`` runs as job number
``k`` (``hydra.job.num``), hence in ``<sweep dir>/k`` whichever worker runs it, and the pruning
callback finds its trial from that number. At the end: ``optimization_results.yaml`` and the
pictures of ``sigmoidf1.sweeps.plots`` in the sweep directory.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


def consecutive_runs(trials: Sequence[Any]) -> list[list[Any]]:
    """``trials`` cut where their numbers stop following each other: a launcher numbers the jobs
    of one launch ``first, first + 1, ...``."""
    runs: list[list[Any]] = []
    for trial in trials:
        if runs and trial.number == runs[-1][-1].number + 1:
            runs[-1].append(trial)
        else:
            runs.append([trial])
    return runs


class OptunaSweeper(Sweeper):
    """See ``configs/hydra/sweeper/optuna.yaml`` for the meaning of each argument."""

    def __init__(
        self,
        study_name: str,
        storage: str,
        direction: str,
        n_trials: int,
        n_jobs: int = 1,
        sampler: DictConfig | None = None,
        params: DictConfig | None = None,
        heartbeat_interval: float = 60.0,
        grace_period: float = 300.0,
        poll_interval: float = 10.0,
        catch: Sequence[str] = ("builtins.FloatingPointError",),
        plots: bool = True,
    ) -> None:
        self.study_name = study_name
        self.storage = str(storage)
        self.direction = direction
        self.n_trials = int(n_trials)
        self.n_jobs = int(n_jobs)
        self.sampler = sampler
        self.params = OmegaConf.to_container(params, resolve=True) if params else {}
        self.heartbeat_interval = float(heartbeat_interval)
        self.grace_period = float(grace_period)
        self.poll_interval = float(poll_interval)
        self.catch = list(catch)
        self.plots = plots
        self.config: DictConfig | None = None
        self.launcher: Any = None
        self.space: Any = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )
        self.sweep_dir = Path(str(config.hydra.sweep.dir))

    def _make_sampler(self) -> Any:
        """``number -> sampler``: the configured sampler, seeded ``seed + number`` when it has a
        seed (see ``sigmoidf1.sweeps.loop``); None keeps Optuna's default sampler."""
        from hydra.utils import instantiate

        if not self.sampler:
            return None
        seed = self.sampler.get("seed")
        if seed is None:
            sampler = instantiate(self.sampler)
            return lambda number: sampler
        return lambda number: instantiate(self.sampler, seed=int(seed) + number)

    def _run_batch(self, trials: Sequence[Any]) -> list[Any]:
        from sigmoidf1.sweeps.loop import JobResult

        results = []
        for run in consecutive_runs(trials):
            overrides = [self.space.overrides(trial.params) for trial in run]
            self.validate_batch_is_legal(overrides)
            for job in self.launcher.launch(overrides, initial_job_idx=run[0].number):
                try:
                    results.append(JobResult(value=job.return_value))
                except Exception as error:  # the job raised: return_value re-raises it
                    results.append(JobResult(error=error))
        return results

    def sweep(self, arguments: list[str]) -> None:
        import optuna
        import yaml
        from hydra.utils import get_class

        from sigmoidf1.sweeps.loop import run_study
        from sigmoidf1.sweeps.plots import write_plots
        from sigmoidf1.sweeps.space import SearchSpace
        from sigmoidf1.sweeps.study import count_states, finished, open_study

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # this sweeper says what happens
        self.space = SearchSpace.parse(self.params, arguments)
        study = open_study(self.study_name, self.storage, self.direction)
        counts = count_states(study)
        log.info(
            f"Study {self.study_name} ({self.storage}): {finished(counts)} of {self.n_trials} "
            f"trials finished, {counts['RUNNING']} running, {counts['FAIL']} failed; "
            f"trial k runs in {self.sweep_dir}/k"
        )
        if finished(counts) >= self.n_trials:
            log.info(f"Nothing to run: raise hydra.sweeper.n_trials above {self.n_trials} for more")
        run_study(
            study,
            self.space.distributions,
            self._run_batch,
            n_trials=self.n_trials,
            n_jobs=self.n_jobs,
            make_sampler=self._make_sampler(),
            heartbeat_interval=self.heartbeat_interval,
            grace_period=self.grace_period,
            poll_interval=self.poll_interval,
            catch=tuple(get_class(name) for name in self.catch),
        )
        counts = count_states(study)
        summary = {
            "name": "optuna",
            "study_name": self.study_name,
            "trials": {state.lower(): n for state, n in sorted(counts.items())},
        }
        complete = counts["COMPLETE"] > 0
        if complete:
            best = study.best_trial
            summary |= {"best_trial": best.number, "best_value": best.value}
            summary["best_params"] = best.params
            log.info(f"Best trial {best.number}: {best.value:.6g} with {best.params}")
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        (self.sweep_dir / "optimization_results.yaml").write_text(yaml.safe_dump(summary))
        if self.plots:
            for name, outcome in write_plots(study, self.sweep_dir).items():
                log.info(f"{name}: {outcome}")
