"""Optuna pruning of sweeper trials: callbacks=pruning, hparams_search=yeast_optuna_pruning.

Unit level: finding the job's trial among the study's running ones, and the callback's report /
prune / stop on a stand-in trainer. End to end: a real two-trial sweep with a pruner that prunes
deterministically (ThresholdPruner: every value below 0.99 after one warm-up epoch).
"""

from __future__ import annotations

import csv
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from sigmoidf1.utils.errors import ConfigError
from tests.conftest import QUIET, run_cli

optuna = pytest.importorskip("optuna", reason="pruning comes with sigmoidf1[sweeps]")

from sigmoidf1.callbacks.pruning import (  # noqa: E402  (needs optuna)
    PRUNED_ATTR,
    OptunaPruning,
    find_trial,
    in_process_storage,
)


def sweeper_trials(study, count: int) -> list[list[str]]:
    """Ask ``count`` trials the way the sweeper does; return each job's overrides."""
    jobs = []
    for _ in range(count):
        trial = study.ask()
        beta = trial.suggest_float("loss.beta", 0.5, 16.0, log=True)
        lr = trial.suggest_float("model.optimizer.lr", 1e-4, 1e-2)
        jobs.append([f"loss.beta={beta}", f"model.optimizer.lr={lr}", "trainer.max_epochs=3"])
    return jobs


def test_find_trial_picks_the_running_trial_with_this_jobs_parameters():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="s", direction="maximize")
    first, second = sweeper_trials(study, 2)
    assert find_trial(study, second).number == 1
    assert find_trial(study, first).number == 0
    study.tell(0, 0.5)  # finished trials are not candidates any more
    with pytest.raises(ConfigError, match="0 of the 1 running trials of study 's'"):
        find_trial(study, first)
    with pytest.raises(ConfigError, match="0 of the 1 running trials"):
        find_trial(study, ["loss.beta=1.0", "model.optimizer.lr=0.001"])


def test_in_process_storage_is_one_storage_per_process():
    assert in_process_storage() is in_process_storage()


def test_pruning_needs_a_shared_storage():
    with pytest.raises(ConfigError, match="study storage that the sweeper and its trials share"):
        OptunaPruning("val/f1_macro", None, "s", [], optuna.pruners.NopPruner())


def fake_trainer(value: float, epoch: int) -> SimpleNamespace:
    return SimpleNamespace(
        sanity_checking=False,
        is_global_zero=True,
        callback_metrics={"val/f1_macro": torch.tensor(value)},
        current_epoch=epoch,
        strategy=SimpleNamespace(broadcast=lambda decision: decision),
        should_stop=False,
    )


def test_callback_reports_every_epoch_and_stops_when_pruned():
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    (overrides,) = sweeper_trials(study, 1)
    pruner = optuna.pruners.ThresholdPruner(lower=0.5, n_warmup_steps=1)
    callback = OptunaPruning("val/f1_macro", storage, "s", overrides, pruner)
    callback.setup(fake_trainer(0.0, 0), None, "fit")

    for epoch, value, stops in [(0, 0.1, False), (1, 0.6, False), (2, 0.4, True)]:
        trainer = fake_trainer(value, epoch)
        callback.on_validation_end(trainer, None)
        assert trainer.should_stop is stops, epoch  # epoch 0 is warm-up; 0.4 < 0.5 prunes

    (trial,) = study.get_trials()
    assert trial.intermediate_values == pytest.approx({0: 0.1, 1: 0.6, 2: 0.4})
    assert trial.user_attrs[PRUNED_ATTR] == 2
    assert trial.state == optuna.trial.TrialState.RUNNING  # the sweeper finishes it


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_a_real_sweep_prunes_its_trials(workdir):
    """Two trials of up to 4 epochs; the pruner lets epoch 0 pass (warm-up) and prunes at epoch 1
    (validation macro F1 < 0.99): both stop after 2 epochs and return their best value so far."""
    result = run_cli(
        "train",
        "-m",
        "hparams_search=yeast_optuna_pruning",
        *QUIET,
        "hydra.sweeper.n_trials=2",
        "trainer.max_epochs=4",
        "test=false",
        "callbacks.per_label_report=null",
        "~callbacks.optuna_pruning.pruner",
        "+callbacks.optuna_pruning.pruner._target_=optuna.pruners.ThresholdPruner",
        "+callbacks.optuna_pruning.pruner.lower=0.99",
        "+callbacks.optuna_pruning.pruner.n_warmup_steps=1",
        cwd=workdir,
    )
    (sweep,) = (workdir / "logs" / "train" / "multiruns").iterdir()
    best_values = []
    for number in (0, 1):
        trial = sweep / str(number)
        log = (trial / "train.log").read_text()
        assert f"Pruned: trial {number} stops after epoch 1" in log
        rows = read_rows(trial / "metrics.csv")
        epochs = {int(row["epoch"]) for row in rows if row.get("val/f1_macro")}
        assert epochs == {0, 1}  # stopped after the pruned epoch, not at max_epochs=4
        values = [float(row["val/f1_macro"]) for row in rows if row.get("val/f1_macro")]
        assert max(values) < 0.99
        best_values.append(max(values))
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(max(best_values), abs=1e-6)
    assert "Pruned: trial" in result.stdout + result.stderr
