"""Distributed runs: per-device batches, unpadded evaluation, relaunching under Hydra, real DDP.

The slow tests start real DDP jobs (``trainer=ddp_cpu``: 2 CPU processes over gloo) through the CLI.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import hydra
import pytest
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import read_write
from torch.utils.data import DistributedSampler, TensorDataset

from sigmoidf1.data.base import MultilabelDataModule
from sigmoidf1.data.samplers import UnrepeatedDistributedSampler, check_even_batches
from sigmoidf1.utils.ddp_relaunch import check_shared_run_dir, relaunch_this_job, single_job_argv
from tests.conftest import (
    DESIGN_TEST_METRICS,
    REPO_ROOT,
    compose_train,
    read_json,
    run_cli,
    run_dir_from_output,
)

# the Yeast test split with the default fractions: 2417 * 0.2 -> 483 examples, odd, so that
# Lightning's DistributedSampler would pad it with a repeated example on 2 processes
YEAST_TEST_SIZE = 483
# tests.ddp_probe must be importable by the training processes
PROBE_ENV = {"PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), str(REPO_ROOT)])}
PROBE = "+callbacks.loss_probe._target_=tests.ddp_probe.LossProbe"


# --- per-device batch size and evaluation sampling (no processes) -------------------------------
class TinyData(MultilabelDataModule):
    def __init__(self, sizes=(40, 14, 11), **kwargs) -> None:
        super().__init__(**kwargs)
        self.sizes = sizes

    def _load(self) -> None:
        def split(n: int) -> TensorDataset:
            return TensorDataset(torch.arange(n).float()[:, None], torch.ones(n, 2))

        self.train_set, self.val_set, self.test_set = (split(n) for n in self.sizes)
        self.label_names = ["a", "b"]


def fake_trainer(world_size: int, rank: int = 0) -> SimpleNamespace:
    kwargs = {"num_replicas": world_size, "rank": rank} if world_size > 1 else None
    return SimpleNamespace(world_size=world_size, distributed_sampler_kwargs=kwargs)


def test_batch_size_is_global_and_must_divide_the_world_size():
    data = TinyData(batch_size=8, eval_batch_size=6)
    data.setup()
    data.trainer = fake_trainer(2)
    assert data.train_dataloader().batch_size == 4
    assert data.val_dataloader().batch_size == 3
    data.trainer = fake_trainer(3)
    with pytest.raises(ValueError, match="batch size 8 is not divisible by the world size 3"):
        data.train_dataloader()
    data.trainer = None
    assert data.train_dataloader().batch_size == 8


def test_evaluation_visits_every_example_once_in_global_batch_order():
    data = TinyData(batch_size=4, eval_batch_size=4)
    data.setup()
    per_rank = []
    for rank in range(2):
        data.trainer = fake_trainer(2, rank)
        loader = data.test_dataloader()
        assert isinstance(loader.sampler, UnrepeatedDistributedSampler)
        per_rank.append([batch[0].flatten().long().tolist() for batch in loader])
    assert len(per_rank[0]) == len(per_rank[1]) == 3  # same number of steps on every rank
    seen = sorted(i for batches in per_rank for batch in batches for i in batch)
    assert seen == list(range(11))  # every example once: no padding
    single = [list(range(j, min(j + 4, 11))) for j in range(0, 11, 4)]
    for j, global_batch in enumerate(single):  # batch j of the ranks = batch j of one process
        assert sorted(per_rank[0][j] + per_rank[1][j]) == global_batch
    # what Lightning's own sampler would have done: 12 indices for 11 examples
    assert len(list(DistributedSampler(data.test_set, 2, 0, shuffle=False))) * 2 == 12


@pytest.mark.parametrize(("n", "batch", "world"), [(483, 256, 2), (11, 2, 2), (9, 4, 3), (8, 1, 2)])
def test_even_batches_accepted(n, batch, world):
    check_even_batches(n, batch, world, "test")


def test_uneven_batches_rejected_with_working_suggestions():
    with pytest.raises(ValueError, match="the val split has 513 examples") as error:
        check_even_batches(513, 256, 2, "val")
    suggested = [int(s) for s in str(error.value).rsplit("e.g. ", 1)[1].split(", ")]
    assert suggested
    for global_batch in suggested:
        check_even_batches(513, global_batch // 2, 2, "val")
    with pytest.raises(ValueError):  # fewer examples than processes
        check_even_batches(1, 1, 2, "test")


# --- relaunching under Hydra (no processes) -------------------------------------------------
def test_single_job_argv_drops_the_sweep_and_keeps_config_flags():
    argv = ["train.py", "-m", "--config-name", "exp", "loss=bce,sigmoid_f1", "trainer=ddp_cpu"]
    command = single_job_argv(
        argv, ["loss=bce", "trainer=ddp_cpu"], ["hydra.sweep.dir=/s", "hydra.mode=MULTIRUN"]
    )
    assert command == [
        "train.py",
        "--config-name",
        "exp",
        "hydra.sweep.dir=/s",
        "hydra.mode=RUN",  # even where the config says MULTIRUN (hparams_search): one job
        "loss=bce",
        "trainer=ddp_cpu",
    ]


def test_relaunch_this_job_pins_the_job_and_restores_the_process(tmp_path, monkeypatch):
    cfg = compose_train(["trainer=ddp_cpu"], tmp_path)
    with read_write(cfg.hydra), read_write(cfg.hydra.overrides):
        cfg.hydra.mode = RunMode.MULTIRUN
        cfg.hydra.overrides.task = ["loss=bce", "trainer=ddp_cpu"]
        cfg.hydra.overrides.hydra = ["hydra.mode=MULTIRUN"]
    HydraConfig.instance().set_config(cfg)
    monkeypatch.setattr(sys, "argv", ["train.py", "-m", "loss=bce,sigmoid_f1", "trainer=ddp_cpu"])
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    with relaunch_this_job():
        assert sys.argv == ["train.py", "hydra.mode=RUN", "loss=bce", "trainer=ddp_cpu"]
        assert HydraConfig.get().run.dir == str(tmp_path / "run")
        os.environ["LOCAL_RANK"] = "0"  # what Lightning's launcher leaves behind
    assert "LOCAL_RANK" not in os.environ  # or the next job would not launch its processes
    assert sys.argv[1] == "-m"


def test_torchrun_without_a_shared_run_dir_is_refused(monkeypatch):
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "abc")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="hydra.run.dir="):
        check_shared_run_dir(["hydra.mode=RUN"])
    check_shared_run_dir(["hydra.mode=RUN", "hydra.run.dir=logs/train/runs/x"])
    monkeypatch.setenv("WORLD_SIZE", "1")
    check_shared_run_dir([])


# --- strategy configs (no processes) ----------------------------------------------------------
def test_every_trainer_config_names_its_process_layout(tmp_path):
    for option in ("default", "cpu", "gpu", "ddp", "ddp_spawn", "ddp_cpu", "fsdp", "deepspeed"):
        trainer = compose_train([f"trainer={option}"], tmp_path).trainer
        assert trainer.num_nodes == 1 and "devices" in trainer and "strategy" in trainer, option


@pytest.mark.skipif(
    bool(__import__("importlib").util.find_spec("deepspeed")), reason="deepspeed is installed"
)
def test_deepspeed_without_the_package_says_how_to_install_it(tmp_path):
    cfg = compose_train(["trainer=deepspeed"], tmp_path)
    with pytest.raises(Exception, match="pip install deepspeed"):
        hydra.utils.instantiate(cfg.trainer.strategy)


def test_slurm_launcher_config_composes(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    cfg = compose_train(["hydra/launcher=slurm", "trainer=ddp", "trainer.num_nodes=2"], tmp_path)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (2, 2, 2)


def test_loss_sync_can_be_switched_off(tmp_path):
    assert compose_train([], tmp_path).loss.sync_dist is None  # auto: global counts under DDP
    assert compose_train(["loss.sync_dist=false"], tmp_path).loss.sync_dist is False


# --- real DDP runs ----------------------------------------------------------------------------
def read_probe(run_dir: Path) -> list[list[dict]]:
    files = sorted(run_dir.glob("loss_probe_rank*.json"))
    assert [f.name for f in files] == ["loss_probe_rank0.json", "loss_probe_rank1.json"]
    return [json.loads(f.read_text()) for f in files]


@pytest.mark.slow
def test_ddp_cpu_trains_with_global_sigmoid_f1_and_tests_like_one_process(workdir):
    result = run_cli(
        "train",
        "trainer=ddp_cpu",
        "trainer.max_epochs=2",
        "data.batch_size=64",
        "model.backbone.dropout=0",
        PROBE,
        "extras.print_config=true",
        cwd=workdir,
        env=PROBE_ENV,
    )
    output = result.stdout + result.stderr
    run_dir = run_dir_from_output(result)

    # one run directory, one of each output, and rank 0 alone speaks
    assert [p.name for p in (workdir / "logs" / "train" / "runs").iterdir()] == [run_dir.name]
    for name in ("test_metrics.json", "metrics.csv", "hparams.yaml", "config_tree.log"):
        assert len(list((workdir / "logs").rglob(name))) == 1, name
    for line in ("Instantiating data", "Starting training", "Run directory:", "Test metrics"):
        assert output.count(line) == 1, line
    assert result.stdout.count("CONFIG") == 1  # the config tree
    with open(run_dir / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert sum(1 for row in rows if row.get("val/f1_macro")) == 2  # one row per epoch

    # the training loss on every rank was the loss of the concatenated global batch
    probe = read_probe(run_dir)
    assert len(probe[0]) == len(probe[1]) > 0
    for rank_records in probe:
        for record in rank_records:
            assert record["global_batch"] == 2 * record["local_batch"]
            assert record["used"] == pytest.approx(record["global"], abs=1e-5)
    assert max(abs(r["local"] - r["global"]) for r in probe[0]) > 1e-3  # the check discriminates

    # test metrics on 2 processes (483 examples: padding would have occurred) = one process
    assert YEAST_TEST_SIZE % 2 == 1
    test_metrics = read_json(run_dir / "test_metrics.json")
    assert DESIGN_TEST_METRICS | {"test/loss"} <= set(test_metrics)
    best = sorted((run_dir / "checkpoints").glob("epoch_*.ckpt"))
    assert len(best) == 1
    evaluation = run_cli(
        "eval",
        f"ckpt_path={best[0]}",
        "trainer=cpu",
        "callbacks.progress_bar=null",
        "extras.print_config=false",
        cwd=workdir,
    )
    single = read_json(run_dir_from_output(evaluation) / "test_metrics.json")
    assert set(single) == set(test_metrics)
    for name, value in test_metrics.items():
        assert single[name] == pytest.approx(value, abs=1e-6), name


@pytest.mark.slow
def test_ddp_cpu_with_loss_sync_off_uses_each_ranks_own_batch(workdir):
    result = run_cli(
        "train",
        "trainer=ddp_cpu",
        "loss.sync_dist=false",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=4",
        "data.batch_size=64",
        "model.backbone.dropout=0",
        PROBE,
        "extras.print_config=false",
        cwd=workdir,
        env=PROBE_ENV,
    )
    probe = read_probe(run_dir_from_output(result))
    assert len(probe[0]) == len(probe[1]) == 4
    for rank_records in probe:
        for record in rank_records:
            assert record["used"] == pytest.approx(record["local"], abs=1e-5)
    assert max(abs(r["local"] - r["global"]) for r in probe[0]) > 1e-3


@pytest.mark.slow
def test_multirun_over_ddp_runs_each_job_once_with_its_own_processes(workdir):
    result = run_cli(
        "train",
        "-m",
        "loss=bce,sigmoid_f1",
        "trainer=ddp_cpu",
        "trainer.max_epochs=1",
        "data.batch_size=64",
        "extras.print_config=false",
        cwd=workdir,
    )
    output = result.stdout + result.stderr
    assert output.count("Launching 2 jobs") == 1  # the relaunched ranks did not start sweeps
    assert not (workdir / "logs" / "train" / "runs").exists()  # nor single runs of their own
    sweeps = list((workdir / "logs" / "train" / "multiruns").iterdir())
    assert len(sweeps) == 1
    jobs = sorted(p for p in sweeps[0].iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1"]
    for job, loss in zip(jobs, ("bce", "sigmoid_f1"), strict=True):
        assert f"loss={loss}" in (job / ".hydra" / "overrides.yaml").read_text()
        assert set(read_json(job / "test_metrics.json")) >= DESIGN_TEST_METRICS
        assert len(list(job.rglob("metrics.csv"))) == 1


@pytest.mark.slow
def test_ddp_batch_size_not_divisible_fails_clearly(workdir):
    result = run_cli(
        "train",
        "trainer=ddp_cpu",
        "data.batch_size=65",
        "extras.print_config=false",
        cwd=workdir,
        check=False,
        timeout=300,
    )
    assert result.returncode != 0
    assert "batch size 65 is not divisible by the world size 2" in result.stderr


@pytest.mark.slow
def test_a_nan_on_one_process_stops_every_process_with_the_same_message(workdir):
    """Rank 1 alone gets NaN inputs at step 2; both processes must stop (no hang: run_cli's
    timeout would fail the test) and say why, and no checkpoint with NaN weights is written."""
    result = run_cli(
        "train",
        "trainer=ddp_cpu",
        "trainer.max_epochs=3",
        "trainer.log_every_n_steps=2",
        "+callbacks.nan._target_=tests.helpers.NonFiniteInputsOnRank",
        "+callbacks.nan.rank=1",
        "+callbacks.nan.step=2",
        cwd=workdir,
        check=False,
        timeout=300,
        env={"PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert "non-finite training loss at global step 3 on at least one process" in output
    assert "Traceback" not in output
    assert not list((workdir / "logs").rglob("*.ckpt"))


# --- FSDP on CPUs, resuming a DDP run ----------------------------------------------------------
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without a CUDA GPU")
@pytest.mark.parametrize("overrides", [(), ("trainer.accelerator=cpu", "trainer.precision=32")])
def test_fsdp_without_gpus_is_refused_before_the_data_is_read(overrides, cli, workdir):
    """Lightning 2.6 refuses FSDP on a CPU accelerator, but only once the data is set up and the
    model built: the template says so before anything runs."""
    result = cli("train", "trainer=fsdp", *overrides)
    assert result.returncode == 2, result.stderr
    assert "trainer=fsdp needs CUDA GPUs" in result.stderr
    assert "On CPUs, distribute with trainer=ddp_cpu" in result.stderr
    assert "Instantiating data" not in result.stdout + result.stderr
    assert not list((workdir / "logs").rglob("train.log"))


@pytest.mark.slow
def test_a_ddp_run_resumes_from_last_ckpt_with_the_default_callbacks(workdir):
    first = workdir / "first"
    one_epoch = ("trainer=ddp_cpu", "trainer.max_epochs=1", f"hydra.run.dir={first}")
    run_cli("train", *one_epoch, cwd=workdir)
    last = first / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=True)
    assert saved["epoch"] == 0
    steps = saved["global_step"]
    assert steps > 0

    resumed = workdir / "resumed"
    result = run_cli(
        "train",
        "trainer=ddp_cpu",
        "trainer.max_epochs=2",
        f"ckpt_path={last}",
        f"hydra.run.dir={resumed}",
        cwd=workdir,
    )
    output = result.stdout + result.stderr
    assert output.count(f"Resuming training from {last}") == 1  # rank 0 alone says it
    final = torch.load(resumed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert final["epoch"] == 1 and final["global_step"] == 2 * steps  # one more epoch, no more
    scores = {}
    for run in (first, resumed):
        with open(run / "metrics.csv") as handle:
            rows = [row for row in csv.DictReader(handle) if row.get("val/f1_macro")]
        scores |= {int(row["epoch"]): float(row["val/f1_macro"]) for row in rows}
    assert sorted(scores) == [0, 1]  # the resumed run validated the second epoch only
    assert set(read_json(resumed / "test_metrics.json")) >= DESIGN_TEST_METRICS
    # the best-checkpoint record came along: the test used the better epoch of the two runs
    best = max(scores, key=scores.get)
    tested = [line for line in output.splitlines() if "] - Testing " in line]
    assert len(tested) == 1 and tested[0].endswith(f"epoch_{best:03d}.ckpt"), (tested, scores)
