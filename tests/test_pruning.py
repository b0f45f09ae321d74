"""Optuna pruning of sweep trials: callbacks=pruning, hparams_search=yeast_optuna_pruning.

Unit level: the callback's report / prune / stop on a stand-in trainer against a real journal
study, and how the sweeper then stores the trial. End to end: a real two-trial sweep with a pruner
that prunes deterministically (ThresholdPruner: every value below 0.99 after one warm-up epoch),
in this process and through a launcher that runs each trial in a process of its own.
"""

from __future__ import annotations

import csv
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from sigmoidf1.utils.errors import ConfigError
from tests.conftest import QUIET, run_cli

optuna = pytest.importorskip("optuna", reason="pruning comes with sigmoidf1[sweeps]")

from sigmoidf1.callbacks.pruning import PRUNED_ATTR, OptunaPruning  # noqa: E402
from sigmoidf1.sweeps.loop import JobResult, tell  # noqa: E402
from sigmoidf1.sweeps.study import load_study, open_study  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)


def fake_trainer(value: float, epoch: int) -> SimpleNamespace:
    return SimpleNamespace(
        sanity_checking=False,
        is_global_zero=True,
        callback_metrics={"val/f1_macro": torch.tensor(value)},
        current_epoch=epoch,
        strategy=SimpleNamespace(broadcast=lambda decision: decision),
        should_stop=False,
    )


def test_callback_reports_to_its_trial_stops_when_pruned_and_the_study_stores_pruned(tmp_path):
    journal = tmp_path / "optuna.journal"
    study = open_study("s", journal, "maximize")
    study.ask()
    trial = study.ask()  # trial 1 is this job's
    pruner = optuna.pruners.ThresholdPruner(lower=0.5, n_warmup_steps=1)
    callback = OptunaPruning("val/f1_macro", str(journal), "s", 1, pruner)
    callback.setup(fake_trainer(0.0, 0), None, "fit")

    for epoch, value, stops in [(0, 0.1, False), (1, 0.6, False), (2, 0.4, True)]:
        trainer = fake_trainer(value, epoch)
        callback.on_validation_end(trainer, None)
        assert trainer.should_stop is stops, epoch  # epoch 0 is warm-up; 0.4 < 0.5 prunes

    stored = load_study(journal, "s").trials[1]  # another process's view: the journal file
    assert stored.intermediate_values == pytest.approx({0: 0.1, 1: 0.6, 2: 0.4})
    assert stored.user_attrs[PRUNED_ATTR] == 2
    assert stored.state.name == "RUNNING"  # the sweeper finishes it
    assert tell(study, trial, JobResult(value=0.6)) == "Trial 1 pruned after epoch 2"
    stored = study.trials[1]
    assert stored.state.name == "PRUNED" and stored.value == pytest.approx(0.4)  # last report
    assert stored.last_step == 2


def test_callback_refuses_a_trial_that_is_not_running(tmp_path):
    journal = tmp_path / "optuna.journal"
    study = open_study("s", journal, "maximize")
    study.tell(study.ask(), 0.5)
    for number, state in [(0, "COMPLETE"), (3, "missing")]:
        callback = OptunaPruning("m", str(journal), "s", number, optuna.pruners.NopPruner())
        with pytest.raises(ConfigError, match=f"trial {number} of study 's' is {state}"):
            callback.setup(fake_trainer(0.0, 0), None, "fit")
    with pytest.raises(ConfigError, match="hparams_search"):
        OptunaPruning("m", "", "s", 0, optuna.pruners.NopPruner())


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


PRUNE_AT_EPOCH_1 = [
    "~callbacks.optuna_pruning.pruner",
    "+callbacks.optuna_pruning.pruner._target_=optuna.pruners.ThresholdPruner",
    "+callbacks.optuna_pruning.pruner.lower=0.99",
    "+callbacks.optuna_pruning.pruner.n_warmup_steps=1",
]


def check_pruned_sweep(workdir: Path) -> None:
    """Both trials stopped after epoch 1 (not at max_epochs=4) and are stored PRUNED there."""
    sweep = workdir / "logs" / "train" / "sweeps" / "yeast_sigmoid_f1_pruning"
    study = load_study(sweep / "optuna.journal")
    assert [t.state.name for t in study.trials] == ["PRUNED", "PRUNED"]
    for trial in study.trials:
        assert trial.user_attrs[PRUNED_ATTR] == 1 and trial.last_step == 1
        log = (sweep / str(trial.number) / "train.log").read_text()
        assert f"Pruned: trial {trial.number} stops after epoch 1" in log
        rows = read_rows(sweep / str(trial.number) / "metrics.csv")
        values = {int(r["epoch"]): float(r["val/f1_macro"]) for r in rows if r.get("val/f1_macro")}
        assert set(values) == {0, 1}
        assert trial.intermediate_values == pytest.approx(values, abs=1e-6)
        assert trial.value == pytest.approx(values[1], abs=1e-6)


@pytest.mark.slow
def test_a_real_sweep_prunes_its_trials(workdir):
    result = run_cli(
        "train",
        "-m",
        "hparams_search=yeast_optuna_pruning",
        *QUIET,
        "hydra.sweeper.n_trials=2",
        "trainer.max_epochs=4",
        *PRUNE_AT_EPOCH_1,
        cwd=workdir,
    )
    check_pruned_sweep(workdir)
    assert "Trial 1 pruned after epoch 1" in result.stdout + result.stderr


@pytest.mark.slow
def test_trials_in_processes_of_their_own_report_to_the_shared_study(workdir):
    """submitit's local launcher: both trials at once (n_jobs=2), each in its own process."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    run_cli(
        "train",
        "-m",
        "hparams_search=yeast_optuna_pruning",
        "hydra/launcher=submitit_local",
        "hydra.sweeper.n_jobs=2",
        *QUIET,
        "hydra.sweeper.n_trials=2",
        "trainer.max_epochs=4",
        *PRUNE_AT_EPOCH_1,
        cwd=workdir,
    )
    check_pruned_sweep(workdir)
