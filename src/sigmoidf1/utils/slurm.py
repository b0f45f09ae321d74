"""What a training process needs to know about the SLURM job it runs in.

SLURM sends ``SIGUSR1`` some time before a job's time limit when asked to
(``#SBATCH --signal=USR1@90``), and a preempting scheduler can ``scontrol requeue`` a job at any
time. A requeued job runs the same batch script again under the **same job id**, with
``SLURM_RESTART_COUNT`` set to the number of restarts. So a run directory named after the job id
(``hydra.run.dir=logs/train/runs/${SLURM_JOB_ID}``) is the same directory after the requeue, and
the restarted job finds there the checkpoint to continue from:

- ``InterruptCheckpoint`` (``callbacks/interrupt.py``) turns ``SIGUSR1`` into a stop at the end of
  the current batch on every process, saves ``checkpoints/interrupted.ckpt`` and, on the way out,
  requeues the job (``requeue_at_exit``);
- ``with_requeue_resume`` (around ``pipeline.train``) sets ``ckpt_path`` to the newest resumable
  checkpoint of the run directory when the job is a restart and no ``ckpt_path`` was given, before
  anything else reads the config (the W&B run id comes from that checkpoint).
"""

from __future__ import annotations

import atexit
import functools
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, open_dict

from sigmoidf1.utils.logging import get_logger

log = get_logger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

# Checkpoints a restarted job may continue from, newest first by (global step, time): the one saved
# on the requeue signal, the one after the latest epoch, and Lightning's own requeue checkpoints
# (``hpc_ckpt_<n>.ckpt`` in the run directory, written where Lightning's handler is active).
RESUMABLE_NAMES = ("interrupted.ckpt", "last.ckpt")
LIGHTNING_REQUEUE_PATTERN = "hpc_ckpt_*.ckpt"


def in_slurm_job() -> bool:
    """Whether this process is a task of a SLURM job that Lightning would treat as one (``srun``
    or ``sbatch``; not an interactive ``srun --job-name=bash``)."""
    from lightning.fabric.plugins.environments import SLURMEnvironment

    return SLURMEnvironment.detect()


def job_id() -> str | None:
    """The id ``scontrol`` knows the job by: ``<array job>_<task>`` for an array task (submitit
    submits sweeps as arrays), else ``SLURM_JOB_ID``; None outside SLURM."""
    array_job, array_task = (
        os.environ.get("SLURM_ARRAY_JOB_ID"),
        os.environ.get("SLURM_ARRAY_TASK_ID"),
    )
    if array_job and array_task:
        return f"{array_job}_{array_task}"
    return os.environ.get("SLURM_JOB_ID")


def restart_count() -> int:
    """How many times SLURM has restarted (requeued) this job: 0 for its first run."""
    try:
        return int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)
    except ValueError:
        return 0


def requeue(job: str) -> bool:
    """``scontrol requeue <job>``; False (and a warning) when SLURM refuses, e.g. a job submitted
    with ``--no-requeue`` or a cluster with ``JobRequeue=0`` (submit with ``--requeue``)."""
    try:
        result = subprocess.run(
            ["scontrol", "requeue", job], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        log.warning(f"could not requeue SLURM job {job}: {error}")
        return False
    if result.returncode != 0:
        log.warning(
            f"could not requeue SLURM job {job} (scontrol: {result.stderr.strip()}); submit with "
            "`sbatch --requeue` and resume by hand with ckpt_path=..."
        )
        return False
    log.info(f"Requeued SLURM job {job}: it resumes from its checkpoint when it restarts")
    return True


def requeue_at_exit(job: str) -> None:
    """Requeue ``job`` when this process exits: after the loggers and W&B have finished, since
    SLURM stops the job's processes as soon as it is requeued."""
    atexit.register(requeue, job)


def global_step_of(path: Path) -> int:
    """The global step stored in a checkpoint (-1 when it cannot be read)."""
    import torch

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return int(checkpoint.get("global_step", -1))
    except Exception:  # a truncated file (killed while writing) is not a candidate
        return -1


def resumable_checkpoint(checkpoint_dir: Path, run_dir: Path) -> Path | None:
    """The checkpoint a restarted job continues from: of ``interrupted.ckpt`` and ``last.ckpt`` in
    ``checkpoint_dir`` and ``hpc_ckpt_*.ckpt`` in ``run_dir``, the one with the highest global step
    (the most recent file on a tie); None when there is none."""
    candidates = [checkpoint_dir / name for name in RESUMABLE_NAMES]
    candidates += sorted(run_dir.glob(LIGHTNING_REQUEUE_PATTERN))
    ranked = [
        (global_step_of(path), path.stat().st_mtime, path) for path in candidates if path.is_file()
    ]
    ranked = [entry for entry in ranked if entry[0] >= 0]
    return max(ranked)[2] if ranked else None


def _checkpoint_dir(cfg: DictConfig) -> Path:
    """Where the config's checkpoint callback writes (``<run dir>/checkpoints`` by default)."""
    callback = (cfg.get("callbacks") or {}).get("model_checkpoint") or {}
    dirpath = callback.get("dirpath") if isinstance(callback, DictConfig) else None
    return Path(dirpath) if dirpath else Path(cfg.paths.output_dir) / "checkpoints"


def resume_after_requeue(cfg: DictConfig) -> None:
    """In a restarted SLURM job with no ``ckpt_path``, set ``ckpt_path`` to the run directory's
    newest resumable checkpoint (nothing changes for a first run, or when none exists)."""
    count = restart_count()
    if count == 0 or cfg.get("ckpt_path") or not cfg.get("train", True):
        return
    found = resumable_checkpoint(_checkpoint_dir(cfg), Path(cfg.paths.output_dir))
    if found is None:
        log.info(f"SLURM job {job_id()} restarted ({count}): no checkpoint yet, training anew")
        return
    with open_dict(cfg):
        cfg.ckpt_path = str(found)
    log.info(f"SLURM job {job_id()} restarted ({count}): continuing from {found}")


def with_requeue_resume(job: F) -> F:
    """Decorate ``job(cfg)`` with ``resume_after_requeue(cfg)`` first."""

    @functools.wraps(job)
    def wrapper(cfg: DictConfig, *args: Any, **kwargs: Any) -> Any:
        resume_after_requeue(cfg)
        return job(cfg, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
