"""Make Lightning's per-rank relaunch run *this* Hydra job, in *this* job's directory.

Under ``strategy=ddp`` (and fsdp, deepspeed) Lightning starts ranks ``1..devices-1`` by re-running
``sys.argv`` with ``hydra.run.dir=<HydraConfig.run.dir>`` appended
(``lightning/fabric/strategies/launchers/subprocess_script.py``). Left alone, that breaks in three
ways, which ``one_job_per_launch`` fixes around each job:

1. Multirun (``-m``): the children's argv still holds ``-m`` and the whole sweep, so every child
   starts a sweep of its own (lightning #11300); and ``hydra.run.dir`` is the single-run pattern,
   not this job's directory. Fix: while the job runs, ``sys.argv`` is this job's own command line
   (its config flags and overrides, no ``-m``) and ``hydra.run.dir`` is this job's output directory.
2. A second job in the same process: the first launch left ``LOCAL_RANK``, ``WORLD_SIZE`` ... in
   ``os.environ``, from which Lightning concludes that processes are created externally and starts
   no children (the job then waits for peers forever). Fix: those variables are restored after the
   job.
3. A second job in the same process again: the first job's process group is still initialised, its
   peers gone, and Lightning would reuse it. Fix: it is destroyed after the job.

With a single run the relaunch is already right (Hydra's ``${now:...}`` is cached, so the appended
run dir is rank 0's); pinning ``hydra.run.dir`` to the output directory makes that explicit.

Processes started by torchrun or srun do not go through Lightning's relaunch: each resolves its own
``${now:...}`` and would write into a directory of its own, so a shared ``hydra.run.dir=...`` is
required there (``check_shared_run_dir``; README, "Scaling out").
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf, open_dict, read_write

# What Lightning's subprocess launcher writes into the launching process's environment.
LAUNCHER_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")

T = TypeVar("T")


def single_job_argv(
    argv: list[str], task_overrides: list[str], hydra_overrides: list[str]
) -> list[str]:
    """The command line that runs one job of a sweep as a single run.

    Keeps the program and the config flags of ``argv`` (``--config-name``, ``--config-path``,
    ``--config-dir``), drops ``-m`` and the sweep, and appends the job's overrides: Hydra's own
    (``hydra.mode=RUN`` instead of the sweep's mode: a config such as ``hparams_search`` may set
    ``hydra.mode: MULTIRUN``, which would make the child a sweep worker) then the task's (e.g.
    ``loss=bce``, with the sweep value resolved).
    """
    # Hydra's own argument parser (stable since Hydra 1.0), so flags parse exactly as hydra.main's
    from hydra._internal.utils import get_args_parser

    args, _ = get_args_parser().parse_known_args(argv[1:])
    command = [argv[0]]
    for flag, value in (
        ("--config-path", args.config_path),
        ("--config-name", args.config_name),
        ("--config-dir", args.config_dir),
    ):
        if value is not None:
            command += [flag, value]
    command += [o for o in hydra_overrides if not o.startswith("hydra.mode=")]
    return [*command, "hydra.mode=RUN", *task_overrides]


def externally_launched_ranks() -> int:
    """How many processes torchrun or srun started for this run (1 when neither did)."""
    if "TORCHELASTIC_RUN_ID" in os.environ:
        return int(os.environ.get("WORLD_SIZE", "1"))
    if "SLURM_PROCID" in os.environ and "SLURM_STEP_ID" in os.environ:  # a task started by srun
        return int(os.environ.get("SLURM_NTASKS", "1"))
    return 1


def check_shared_run_dir(hydra_overrides: list[str]) -> None:
    """Raise ``ValueError`` when torchrun/srun started several processes of a single run without
    an explicit ``hydra.run.dir`` (each would time-stamp a run directory of its own)."""
    ranks = externally_launched_ranks()
    if ranks > 1 and not any(o.startswith("hydra.run.dir=") for o in hydra_overrides):
        raise ValueError(
            f"{ranks} processes were started by torchrun/srun, and each would create its own run "
            "directory: pass one shared directory, e.g. "
            "hydra.run.dir=logs/train/runs/$(date +%Y-%m-%d_%H-%M-%S) (torchrun) or "
            "hydra.run.dir=logs/train/runs/${SLURM_JOB_ID} (srun)"
        )


@contextmanager
def relaunch_this_job() -> Iterator[None]:
    """Within the block, a Lightning relaunch of ``sys.argv`` re-runs the current Hydra job only."""
    if not HydraConfig.initialized():  # called from Python, not through hydra.main
        yield
        return
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.RUN:
        check_shared_run_dir(list(hydra_cfg.overrides.hydra))
    saved_argv, saved_env = list(sys.argv), {k: os.environ.get(k) for k in LAUNCHER_ENV}
    saved_run_dir = OmegaConf.to_container(hydra_cfg.run, resolve=False)["dir"]
    if hydra_cfg.mode == RunMode.MULTIRUN:
        sys.argv = single_job_argv(
            saved_argv, list(hydra_cfg.overrides.task), list(hydra_cfg.overrides.hydra)
        )
    with read_write(hydra_cfg), open_dict(hydra_cfg):  # read by _hydra_subprocess_cmd
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir
    try:
        yield
        if dist.is_available() and dist.is_initialized():
            dist.barrier()  # every rank is done with the job's collectives before the group goes
            dist.destroy_process_group()
    finally:
        sys.argv = saved_argv
        with read_write(hydra_cfg), open_dict(hydra_cfg):
            hydra_cfg.run.dir = saved_run_dir
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def one_job_per_launch(function: Callable[..., T]) -> Callable[..., T]:
    """Decorator form of ``relaunch_this_job`` for the pipeline's entry functions."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs) -> T:
        with relaunch_this_job():
            return function(*args, **kwargs)

    return wrapper
