"""Exact resumption through the real CLI: from last.ckpt, and after a real SIGTERM / Ctrl-C."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import QUIET, REPO_ROOT, once_per_session, read_json, run_cli

pytestmark = pytest.mark.slow

# a step scheduler, so that its state has to survive the resume too
SCHEDULER = (
    "model.scheduler={_target_:torch.optim.lr_scheduler.StepLR,_partial_:true,"
    "step_size:1,gamma:0.7}"
)
# 1571 training rows / 64 = 25 batches per epoch; step 70 is in the middle of the third epoch
SIGNAL_RUN = [*QUIET, SCHEDULER, "data.batch_size=64", "trainer.max_epochs=4"]
SIGNAL_STEP = 70
TOTAL_STEPS = 100


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_tensors(a, b, where: str = "") -> None:
    """Recursively equal: tensors bit for bit, everything else with ==."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"{where}: keys differ"
        for key in a:
            assert_same_tensors(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: lengths differ"
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_tensors(x, y, f"{where}[{index}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_same_training_state(run_a: Path, run_b: Path) -> None:
    """Weights, the thresholds buffer, optimizer and scheduler states of two last.ckpt files."""
    a, b = load(run_a / "checkpoints" / "last.ckpt"), load(run_b / "checkpoints" / "last.ckpt")
    assert "thresholds" in a["state_dict"]
    assert_same_tensors(a["state_dict"], b["state_dict"], "state_dict")
    assert_same_tensors(a["optimizer_states"], b["optimizer_states"], "optimizer_states")
    assert_same_tensors(a["lr_schedulers"], b["lr_schedulers"], "lr_schedulers")
    assert a["global_step"] == b["global_step"] and a["epoch"] == b["epoch"]


@pytest.fixture(scope="session")
def uninterrupted(tmp_path_factory) -> Path:
    """The reference run of every test here: same config, never stopped (trained once)."""

    def build(root: Path) -> None:
        run_cli("train", *SIGNAL_RUN, f"hydra.run.dir={root / 'run'}", cwd=root)

    return once_per_session(tmp_path_factory, "resume_reference", build) / "run"


def test_resume_from_last_checkpoint_equals_an_uninterrupted_run(workdir, uninterrupted):
    """2 epochs, then resume from last.ckpt to 4 epochs == 4 epochs in one go."""
    half = workdir / "half"
    run_cli("train", *SIGNAL_RUN, "trainer.max_epochs=2", f"hydra.run.dir={half}", cwd=workdir)
    resumed = workdir / "resumed"
    last = half / "checkpoints" / "last.ckpt"
    result = run_cli(
        "train", *SIGNAL_RUN, f"ckpt_path={last}", f"hydra.run.dir={resumed}", cwd=workdir
    )

    assert f"Resuming training from {last}" in result.stdout + result.stderr
    assert read_json(resumed / "test_metrics.json") == read_json(
        uninterrupted / "test_metrics.json"
    )
    assert_same_training_state(uninterrupted, resumed)


def start_training(workdir: Path, run_dir: Path, marker: Path) -> subprocess.Popen:
    """Training that waits at SIGNAL_STEP (after writing ``marker``) until it is signalled."""
    command = [
        sys.executable,
        "-m",
        "sigmoidf1.train",
        *SIGNAL_RUN,
        f"hydra.run.dir={run_dir}",
        "+callbacks.wait._target_=tests.helpers.WaitForSignalAtStep",
        f"+callbacks.wait.step={SIGNAL_STEP}",
        f"+callbacks.wait.marker={marker}",
    ]
    env = {
        **os.environ,
        "SIGMOIDF1_ROOT": str(workdir),
        "PYTHONWARNINGS": "ignore",
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(
        command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def wait_for(marker: Path, process: subprocess.Popen, timeout: float = 400.0) -> None:
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if process.poll() is not None:
            raise AssertionError(
                f"training ended before step {SIGNAL_STEP}:\n{process.stdout.read()[-4000:]}"
            )
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"step {SIGNAL_STEP} not reached in {timeout} s")
        time.sleep(0.2)


def interrupt(workdir: Path, signum: int) -> tuple[subprocess.Popen, str, Path]:
    """Train, send ``signum`` at SIGNAL_STEP, wait for the end: (process, output, run dir)."""
    stopped, marker = workdir / "stopped", workdir / "step.marker"
    process = start_training(workdir, stopped, marker)
    try:
        wait_for(marker, process)
        process.send_signal(signum)
        output, _ = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    return process, output, stopped


def test_sigterm_mid_epoch_leaves_a_checkpoint_that_resumes_exactly(workdir, uninterrupted):
    process, output, stopped = interrupt(workdir, signal.SIGTERM)
    assert process.returncode == 143, output[-4000:]

    checkpoint = stopped / "checkpoints" / "interrupted.ckpt"
    assert f"Saved a resumable checkpoint: {checkpoint}" in output
    assert f"global step {SIGNAL_STEP})" in output
    assert f"error: stopped by SIGTERM; resume with ckpt_path={checkpoint}" in output
    assert "Traceback" not in output
    state = load(checkpoint)  # plain data: loads with weights_only=True
    assert state["global_step"] == SIGNAL_STEP and state["epoch"] == 2
    assert not (stopped / "test_metrics.json").exists()

    resumed = workdir / "resumed"
    result = run_cli(
        "train",
        *SIGNAL_RUN,
        f"ckpt_path={checkpoint}",
        f"hydra.run.dir={resumed}",
        cwd=workdir,
        env={"PYTHONWARNINGS": "default"},
    )
    log = result.stdout + result.stderr
    assert f"Resuming training from {checkpoint}" in log
    assert "not resumable" not in log  # Lightning's warning for loaders that restart the epoch
    assert read_json(resumed / "test_metrics.json") == read_json(
        uninterrupted / "test_metrics.json"
    )
    assert_same_training_state(uninterrupted, resumed)


def test_ctrl_c_stops_after_the_batch_like_sigterm(workdir):
    """The first Ctrl-C takes SIGTERM's path (whose resume is tested above)."""
    process, output, stopped = interrupt(workdir, signal.SIGINT)
    assert process.returncode == 130, output[-4000:]
    checkpoint = stopped / "checkpoints" / "interrupted.ckpt"
    assert "Ctrl-C: stopping after the current batch" in output
    assert f"error: stopped by SIGINT; resume with ckpt_path={checkpoint}" in output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output
    state = load(checkpoint)
    assert state["global_step"] == SIGNAL_STEP and state["epoch"] == 2


def test_a_crash_in_the_middle_of_a_step_leaves_a_checkpoint_that_resumes(workdir, uninterrupted):
    """The interrupted batch is trained again on resume: no batch is lost or repeated."""
    crashed = workdir / "crashed"
    result = run_cli(
        "train",
        *SIGNAL_RUN,
        f"hydra.run.dir={crashed}",
        "+callbacks.crash._target_=tests.helpers.CrashAtStep",
        f"+callbacks.crash.step={SIGNAL_STEP}",
        cwd=workdir,
        check=False,
        env={"PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])},
    )
    assert result.returncode == 1 and "simulated crash" in result.stderr  # a bug: traceback kept
    checkpoint = crashed / "checkpoints" / "interrupted.ckpt"
    assert f"Stopped by RuntimeError in epoch 2 after 20 batch(es) (global step {SIGNAL_STEP})" in (
        result.stdout + result.stderr
    )

    resumed = workdir / "resumed"
    run_cli(
        "train", *SIGNAL_RUN, f"ckpt_path={checkpoint}", f"hydra.run.dir={resumed}", cwd=workdir
    )
    final, reference = (load(run / "checkpoints" / "last.ckpt") for run in (resumed, uninterrupted))
    assert final["global_step"] == reference["global_step"] == TOTAL_STEPS
    assert set(read_json(resumed / "test_metrics.json")) == set(
        read_json(uninterrupted / "test_metrics.json")
    )


def test_a_restarted_slurm_job_continues_in_its_own_run_directory(workdir, uninterrupted):
    """A requeued job runs its command again (same run directory, named after the job id) with
    SLURM_RESTART_COUNT set: it continues from the directory's newest checkpoint by itself, and
    its metrics.csv keeps the rows logged before the restart (test_cluster.py does it on SLURM)."""
    run_dir = workdir / "logs" / "train" / "runs" / "123"
    run_cli("train", *SIGNAL_RUN, "trainer.max_epochs=2", f"hydra.run.dir={run_dir}", cwd=workdir)
    restart = {"SLURM_JOB_ID": "123", "SLURM_RESTART_COUNT": "1"}
    result = run_cli("train", *SIGNAL_RUN, f"hydra.run.dir={run_dir}", cwd=workdir, env=restart)

    last = run_dir / "checkpoints" / "last.ckpt"
    log = result.stdout + result.stderr
    assert f"SLURM job 123 restarted (1): continuing from {last}" in log
    assert read_json(run_dir / "test_metrics.json") == read_json(
        uninterrupted / "test_metrics.json"
    )
    assert_same_training_state(uninterrupted, run_dir)
    with open(run_dir / "metrics.csv") as got, open(uninterrupted / "metrics.csv") as expected:
        assert list(csv.DictReader(got)) == list(csv.DictReader(expected))
