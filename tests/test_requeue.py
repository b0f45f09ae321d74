"""SLURM preemption, piece by piece and without a cluster: the requeue signal's stop, the checkpoint
a restarted job continues from, and the job id (the real jobs are in test_cluster.py)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException

from sigmoidf1.callbacks import InterruptCheckpoint
from sigmoidf1.callbacks import interrupt as interrupt_module
from sigmoidf1.utils import interruption, slurm
from tests.conftest import compose_train


def save_step(path: Path, step: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"global_step": step, "epoch": 0}, path)
    return path


def test_the_restart_continues_from_the_checkpoint_with_the_most_steps(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    assert slurm.resumable_checkpoint(checkpoints, tmp_path) is None
    last = save_step(checkpoints / "last.ckpt", 50)
    interrupted = save_step(checkpoints / "interrupted.ckpt", 70)
    assert slurm.resumable_checkpoint(checkpoints, tmp_path) == interrupted
    # an interrupt checkpoint left from an earlier stop is older than the latest epoch
    save_step(interrupted, 30)
    assert slurm.resumable_checkpoint(checkpoints, tmp_path) == last
    hpc = save_step(tmp_path / "hpc_ckpt_2.ckpt", 80)  # Lightning's own requeue checkpoint
    assert slurm.resumable_checkpoint(checkpoints, tmp_path) == hpc
    hpc.write_bytes(b"truncated")  # killed while writing: not a candidate
    assert slurm.resumable_checkpoint(checkpoints, tmp_path) == last


def test_only_a_restarted_job_without_ckpt_path_resumes(tmp_path, monkeypatch):
    cfg = compose_train([], tmp_path)
    checkpoint = save_step(tmp_path / "run" / "checkpoints" / "last.ckpt", 25)
    monkeypatch.delenv("SLURM_RESTART_COUNT", raising=False)
    slurm.resume_after_requeue(cfg)
    assert cfg.ckpt_path is None  # a first run trains anew

    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    slurm.resume_after_requeue(cfg)
    assert cfg.ckpt_path == str(checkpoint)

    chosen = compose_train(["ckpt_path=/somewhere/else.ckpt"], tmp_path)
    slurm.resume_after_requeue(chosen)
    assert chosen.ckpt_path == "/somewhere/else.ckpt"  # the user's choice wins


def test_array_tasks_are_requeued_by_their_array_id(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "19")
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    assert slurm.job_id() == "19"
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "18")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    assert slurm.job_id() == "18_1"


def test_a_refused_requeue_warns_and_returns_false(monkeypatch, caplog):
    monkeypatch.setenv("PATH", "")  # no scontrol
    assert slurm.requeue("7") is False
    assert "could not requeue SLURM job 7" in caplog.text


def test_a_bad_requeue_signal_is_refused():
    with pytest.raises(ValueError, match="requeue_signal must name a signal"):
        InterruptCheckpoint(dirpath="x", requeue_signal="SIGNOPE")


class _Trainer(SimpleNamespace):
    def save_checkpoint(self, path, weights_only=False) -> None:
        self.saved = path


def test_the_requeue_signal_stops_at_the_batch_end_saves_and_requeues(tmp_path, monkeypatch):
    monkeypatch.setattr(interrupt_module, "in_slurm_job", lambda: True)
    monkeypatch.setattr(interrupt_module, "job_id", lambda: "42")
    requeued = []
    monkeypatch.setattr(interrupt_module, "requeue_at_exit", requeued.append)
    monkeypatch.setattr(interruption, "_state", dict.fromkeys(interruption._state))
    previous = signal.getsignal(signal.SIGUSR1)

    callback = InterruptCheckpoint(dirpath=str(tmp_path))
    progress = SimpleNamespace(current=SimpleNamespace(completed=11))
    trainer = _Trainer(
        state=SimpleNamespace(fn="fit"),
        global_step=11,
        current_epoch=0,
        fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress)),
        saved=None,
        world_size=1,
        is_global_zero=True,
        loggers=[],
        _signal_connector=SimpleNamespace(received_sigterm=False),
    )
    callback.setup(trainer, None, "fit")
    callback.on_train_batch_end(trainer)
    assert trainer._signal_connector.received_sigterm is False  # no signal, no stop

    os.kill(os.getpid(), signal.SIGUSR1)
    deadline = time.monotonic() + 5
    while not callback._requeue_asked and time.monotonic() < deadline:
        time.sleep(0.01)  # the handler runs in the main thread, between bytecodes
    assert trainer._signal_connector.received_sigterm is False  # nothing happens in the handler
    callback.on_train_batch_end(trainer)
    assert trainer._signal_connector.received_sigterm is True  # Lightning stops after this batch
    assert interruption.last_signal() == "SIGUSR1"

    callback.on_exception(trainer, torch.nn.Linear(2, 2), SIGTERMException())
    assert trainer.saved == callback.ckpt_path
    assert requeued == ["42"] and interruption.requeued_job() == "42"
    assert signal.getsignal(signal.SIGUSR1) == previous  # the handler is gone with the fit


def test_outside_slurm_the_requeue_signal_is_left_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(interrupt_module, "in_slurm_job", lambda: False)
    previous = signal.getsignal(signal.SIGUSR1)
    callback = InterruptCheckpoint(dirpath=str(tmp_path))
    callback.setup(SimpleNamespace(), None, "fit")
    assert signal.getsignal(signal.SIGUSR1) == previous


def test_the_requeue_signal_during_the_test_is_only_noted(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(interrupt_module, "in_slurm_job", lambda: True)
    monkeypatch.setattr(interrupt_module, "job_id", lambda: "42")
    previous = signal.getsignal(signal.SIGUSR1)
    callback = InterruptCheckpoint(dirpath=str(tmp_path))
    trainer = SimpleNamespace(is_global_zero=True)
    callback.setup(trainer, None, "test")
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        deadline = time.monotonic() + 5
        while "during test: not acted upon" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "during test: not acted upon" in caplog.text
        assert callback._requeue_asked is False
    finally:
        callback.teardown(trainer, None, "test")
    assert signal.getsignal(signal.SIGUSR1) == previous
