"""Experiment tracking: W&B (offline), TensorBoard, MLflow, and the two sweep definitions."""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from sigmoidf1.utils import wandb_run
from sigmoidf1.utils.wandb_run import (
    CHECKPOINT_KEY,
    RunIdInCheckpoint,
    finish_wandb,
    prepare_wandb,
    run_id_from_checkpoint,
)
from tests.conftest import QUIET, REPO_ROOT, compose_train, read_json, run_cli, run_dir_from_output
from tests.helpers import check_report_of_a_yeast_run

OFFLINE_LINE = "W&B: no API key found"
FAKE_KEY = "0123456789abcdef0123456789abcdef01234567"  # 40 characters, the format of a W&B key


@pytest.fixture
def no_wandb_credentials(monkeypatch, tmp_path):
    """A process environment where wandb finds no key and no mode: as on a fresh machine."""
    for name in (
        "WANDB_API_KEY",
        "WANDB_MODE",
        "WANDB_IDENTITY_TOKEN_FILE",
        "WANDB_BASE_URL",
        "WANDB_DIR",
        "WANDB_RUN_ID",
        "WANDB_RESUME",
        "WANDB_PROJECT",
    ):
        # set, then deleted: monkeypatch records it and restores the value (or its absence), also
        # after prepare_wandb has set WANDB_MODE itself
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setattr(wandb_run, "_mode_set_here", False)
    return tmp_path


def wandb_cfg(tmp_path: Path, **top_level):
    return OmegaConf.create(
        {
            "logger": {
                "wandb": {
                    "_target_": "lightning.pytorch.loggers.WandbLogger",
                    "project": "p",
                    "save_dir": str(tmp_path / "run"),
                    "id": None,
                    "offline": False,
                }
            },
            **top_level,
        }
    )


# --- offline fallback ---------------------------------------------------------------------------
def test_no_credentials_means_offline_with_one_line_on_how_to_sync(no_wandb_credentials, caplog):
    pytest.importorskip("wandb")
    cfg = wandb_cfg(no_wandb_credentials)
    with caplog.at_level(logging.INFO, logger="sigmoidf1"):
        prepare_wandb(cfg)
    assert os.environ["WANDB_MODE"] == "offline"
    lines = [r.getMessage() for r in caplog.records if OFFLINE_LINE in r.getMessage()]
    assert len(lines) == 1
    assert f"wandb sync {no_wandb_credentials / 'run'}/wandb/offline-run-*" in lines[0]


@pytest.mark.parametrize("setting", ["api_key", "netrc", "mode", "offline_flag", "no_wandb_logger"])
def test_credentials_or_a_chosen_mode_are_left_alone(
    setting, no_wandb_credentials, monkeypatch, caplog
):
    pytest.importorskip("wandb")
    cfg = wandb_cfg(no_wandb_credentials)
    if setting == "api_key":
        monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    elif setting == "netrc":
        netrc = no_wandb_credentials / "netrc"
        netrc.write_text(f"machine api.wandb.ai\n  login user\n  password {FAKE_KEY}\n")
        netrc.chmod(0o600)
        monkeypatch.setenv("NETRC", str(netrc))
    elif setting == "mode":
        monkeypatch.setenv("WANDB_MODE", "disabled")
    elif setting == "offline_flag":
        cfg.logger.wandb.offline = True
    else:
        cfg.logger.wandb._target_ = "lightning.pytorch.loggers.CSVLogger"
    with caplog.at_level(logging.INFO, logger="sigmoidf1"):
        prepare_wandb(cfg)
    assert os.environ.get("WANDB_MODE") == ("disabled" if setting == "mode" else None)
    assert not [r for r in caplog.records if OFFLINE_LINE in r.getMessage()]


# --- resume: the run id travels in the checkpoint -----------------------------------------------
def test_run_id_is_stored_in_checkpoints_on_rank_zero_only():
    run = SimpleNamespace(id="abc123", project="p", entity="me")
    callback = RunIdInCheckpoint(SimpleNamespace(experiment=run))
    checkpoint: dict = {}
    callback.on_save_checkpoint(SimpleNamespace(is_global_zero=True), None, checkpoint)
    assert checkpoint[CHECKPOINT_KEY] == {"run_id": "abc123", "project": "p", "entity": "me"}
    other_rank: dict = {}
    callback.on_save_checkpoint(SimpleNamespace(is_global_zero=False), None, other_rank)
    assert other_rank == {}


def test_resume_passes_the_stored_run_id_to_the_logger(no_wandb_credentials, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    ckpt = no_wandb_credentials / "last.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, CHECKPOINT_KEY: {"run_id": "abc123"}}, ckpt)
    assert run_id_from_checkpoint(ckpt) == "abc123"

    cfg = wandb_cfg(no_wandb_credentials, ckpt_path=str(ckpt), train=True)
    prepare_wandb(cfg)
    assert cfg.logger.wandb.id == "abc123" and cfg.logger.wandb.resume == "allow"

    explicit = wandb_cfg(no_wandb_credentials, ckpt_path=str(ckpt), train=True)
    explicit.logger.wandb.id = "chosen"
    prepare_wandb(explicit)
    assert explicit.logger.wandb.id == "chosen"

    evaluation = wandb_cfg(no_wandb_credentials, ckpt_path=str(ckpt))  # eval: no `train` key
    prepare_wandb(evaluation)
    assert evaluation.logger.wandb.id is None


def test_checkpoints_without_a_run_id_start_a_new_run(tmp_path):
    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {}}, plain)
    assert run_id_from_checkpoint(plain) is None
    assert run_id_from_checkpoint(tmp_path / "missing.ckpt") is None
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    assert run_id_from_checkpoint(tmp_path / "junk.ckpt") is None


def test_finish_without_a_run_is_a_no_op():
    finish_wandb()
    finish_wandb(exit_code=1)


# --- sweep definitions --------------------------------------------------------------------------
def test_wandb_sweep_drives_the_train_entry_point_with_valid_overrides(tmp_path):
    pytest.importorskip("wandb")
    from wandb.sdk.launch.sweeps.utils import create_sweep_command, create_sweep_command_args

    sweep = yaml.safe_load((REPO_ROOT / "sweeps" / "wandb_yeast.yaml").read_text())
    assert sweep["metric"] == {"name": "val/f1_macro_best", "goal": "maximize"}  # the best epoch
    sample = {"loss.beta": 3.5, "loss.eta": -0.25, "model.optimizer.lr": 0.002}
    assert set(sweep["parameters"]) == set(sample)
    # what `wandb agent` runs: the command with its macros expanded as the agent expands them
    macros = create_sweep_command_args({"args": {k: {"value": v} for k, v in sample.items()}})
    macros |= {"env": ["/usr/bin/env"], "interpreter": ["python"]}
    command = []
    for part in create_sweep_command(sweep["command"]):
        command += macros[part[2:-1]] if part.startswith("${") else [part]
    assert command[:4] == ["/usr/bin/env", "python", "-m", "sigmoidf1.train"]
    cfg = compose_train(command[4:], tmp_path)
    assert list(cfg.logger) == ["wandb"] and cfg.logger.wandb.project == sweep["project"]
    for key, value in sample.items():
        assert OmegaConf.select(cfg, key) == value, key


def test_optuna_search_space_names_existing_keys(tmp_path):
    pytest.importorskip("optuna")
    cfg = compose_train(["hparams_search=yeast_optuna"], tmp_path)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper")
    assert set(sweeper.params) == {"loss.beta", "loss.eta", "model.optimizer.lr"}
    for key in sweeper.params:
        assert OmegaConf.select(cfg, key) is not None, f"{key} is not a key of the train config"
    assert sweeper.direction == {"max": "maximize", "min": "minimize"}[cfg.optimized_mode]


# --- real runs ----------------------------------------------------------------------------------
def offline_run_dirs(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "wandb").glob("offline-run-*"))


@pytest.mark.slow
def test_wandb_offline_run_holds_config_metrics_report_and_resumes(workdir, no_wandb_credentials):
    pytest.importorskip("wandb")
    from tests.wandb_offline import read_offline_run

    result = run_cli(
        "train",
        "logger=wandb",
        "logger.wandb.log_model=true",
        "trainer.max_epochs=2",
        "tags=[wandb_test]",
        *QUIET,
        cwd=workdir,
    )
    output = result.stdout + result.stderr
    assert sum(OFFLINE_LINE in line for line in output.splitlines()) == 1, output[-3000:]
    run_dir = run_dir_from_output(result)
    (offline_dir,) = offline_run_dirs(run_dir)
    run = read_offline_run(offline_dir)
    assert offline_dir.name.endswith(run.run_id)
    assert (run.project, run.job_type, run.tags) == ("sigmoidf1", "train", ["wandb_test"])

    # the whole resolved config, once
    stored = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    assert set(run.config) == set(stored)
    assert run.config["paths"]["output_dir"] == str(run_dir)  # resolved, not "${hydra:...}"
    assert run.config["trainer"]["max_epochs"] == 2
    assert run.config["model"]["optimizer"]["lr"] == stored["model"]["optimizer"]["lr"]
    assert run.config["logger"]["wandb"]["log_model"] is True

    # metrics as stage/name: the test metrics in the summary, one validation row per epoch
    test_metrics = read_json(run_dir / "test_metrics.json")
    for name, value in test_metrics.items():
        assert run.summary[name] == pytest.approx(value, rel=1e-6), name
    assert len([row for row in run.history if "val/f1_macro" in row]) == 2
    # the per-label report: table, charts and images, also as files in the run directory
    assert run.summary["test/per_label.nrows"] == 14 and run.summary["test/per_label.ncols"] == 11
    for name in ("f1_per_label", "pr_curves", "label_counts"):
        image = offline_dir / "files" / run.summary[f"test/plots/{name}.path"]
        assert image.stat().st_size > 0 and (run_dir / "report" / f"{name}.png").stat().st_size > 0
    assert "test/pr_curves_chart_table.path" in run.summary
    assert ("model", f"model-{run.run_id}") in run.artifacts  # log_model: checkpoints as artifacts

    # resuming from the checkpoint continues the same run
    last = run_dir / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)[CHECKPOINT_KEY]["run_id"] == run.run_id
    resumed = run_cli(
        "train", "logger=wandb", f"ckpt_path={last}", "trainer.max_epochs=3", *QUIET, cwd=workdir
    )
    assert f"W&B: continuing run {run.run_id}" in resumed.stdout + resumed.stderr
    (resumed_dir,) = offline_run_dirs(run_dir_from_output(resumed))
    continued = read_offline_run(resumed_dir)
    assert continued.run_id == run.run_id
    assert [row["epoch"] for row in continued.history if "val/f1_macro" in row] == [2]


@pytest.mark.slow
def test_csv_tensorboard_and_mlflow_write_their_files_and_the_report(workdir):
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = run_cli(
        "train", "logger=[csv,tensorboard,mlflow]", "trainer.max_epochs=2", *QUIET, cwd=workdir
    )
    run_dir = run_dir_from_output(result)
    test_metrics = read_json(run_dir / "test_metrics.json")
    check_report_of_a_yeast_run(run_dir)  # the same report files whatever the logger
    assert (run_dir / "metrics.csv").stat().st_size > 0 and (run_dir / "hparams.yaml").is_file()

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0}).Reload()
    (scalar,) = events.Scalars("test/f1_macro")
    assert scalar.value == pytest.approx(test_metrics["test/f1_macro"], rel=1e-6)
    assert len(events.Scalars("val/f1_macro")) == 2
    assert {"test/f1_per_label", "test/pr_curves", "test/label_counts"} <= set(
        events.Tags()["images"]
    )
    assert (run_dir / "tensorboard" / "hparams.yaml").is_file()

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'logs' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("sigmoidf1").experiment_id])
    assert run.data.metrics["test/f1_macro"] == pytest.approx(
        test_metrics["test/f1_macro"], rel=1e-6
    )
    assert float(run.data.params["trainer/max_epochs"]) == 2
    assert run.data.params["paths/output_dir"] == str(run_dir)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
    assert {"report/per_label.csv", "report/f1_per_label.png"} <= artifacts


@pytest.mark.slow
def test_optuna_sweep_runs_two_trials_each_in_its_own_wandb_run(workdir, monkeypatch):
    pytest.importorskip("wandb")
    pytest.importorskip("optuna")
    monkeypatch.setenv("WANDB_MODE", "offline")
    from tests.wandb_offline import read_offline_run

    result = run_cli(
        "train",
        "-m",
        "hparams_search=yeast_optuna",
        "hydra.sweeper.n_trials=2",
        "trainer.max_epochs=1",
        "logger=wandb",
        *QUIET,
        cwd=workdir,
    )
    (sweep_dir,) = (workdir / "logs" / "train" / "sweeps").iterdir()
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    runs = [read_offline_run(d) for job in ("0", "1") for d in offline_run_dirs(sweep_dir / job)]
    assert len(runs) == 2 and runs[0].run_id != runs[1].run_id  # wandb.finish() between the jobs
    assert [run.group for run in runs] == ["yeast_sigmoid_f1"] * 2  # the study's name
    # the summary keeps the best epoch (define_metric(summary="max")): what train.py returned
    returned = [run.summary["val/f1_macro"]["max"] for run in runs]
    assert results["best_value"] == pytest.approx(max(returned), rel=1e-6)
    best = runs[returned.index(max(returned))].config
    assert results["best_params"]["loss.beta"] == pytest.approx(best["loss"]["beta"])
    assert results["best_params"]["model.optimizer.lr"] == pytest.approx(
        best["model"]["optimizer"]["lr"]
    )
    assert result.stdout.count("Run directory:") == 2


@pytest.mark.slow
def test_optuna_sweep_returns_each_trials_best_epoch_not_its_last(workdir):
    """Early stopping ends a run up to `patience` epochs after its best one: the objective a
    search sees must be the best epoch's value, as logged in metrics.csv."""
    pytest.importorskip("optuna")
    run_cli(
        "train",
        "-m",
        "hparams_search=yeast_optuna",
        "hydra.sweeper.n_trials=2",
        "trainer.max_epochs=3",
        "callbacks.per_label_report=null",
        "test=false",
        *QUIET,
        cwd=workdir,
    )
    (sweep_dir,) = (workdir / "logs" / "train" / "sweeps").iterdir()
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    best_per_trial = []
    for job in ("0", "1"):
        with open(sweep_dir / job / "metrics.csv") as handle:
            rows = list(csv.DictReader(handle))
        values = [float(r["val/f1_macro"]) for r in rows if r.get("val/f1_macro")]
        logged_best = [float(r["val/f1_macro_best"]) for r in rows if r.get("val/f1_macro_best")]
        assert len(values) == 3 and len(logged_best) == 3
        assert logged_best == [max(values[: i + 1]) for i in range(3)]  # the running maximum
        best_per_trial.append(max(values))
    assert results["best_value"] == pytest.approx(max(best_per_trial), abs=1e-6)
