"""Wall time per training epoch on 1 process vs N DDP CPU processes, same global batch (Yeast).

    python benchmarks/ddp.py                                  # 1 vs 2 processes, MLP 1024x1024
    python benchmarks/ddp.py --epochs 6 --hidden 2048 2048 --batch-size 256
    python benchmarks/ddp.py --processes 1 2 --json ddp.json
    python benchmarks/ddp.py -- trainer.deterministic=false     # extra Hydra overrides for every
    run

Each configuration is one real ``sigmoidf1-train`` run in a subprocess (outputs under a temporary
folder): ``trainer=cpu`` for 1 process, ``trainer=ddp_cpu trainer.devices=N`` otherwise, with the
same ``data.batch_size`` (the global batch: each of N processes loads batch/N examples per step),
no validation, no test, no checkpoints; plus one process limited to one thread (the compute each DDP
process does, without the communication). ``EpochTimer`` below (rank 0) times each training epoch
from its first batch to its end; the first epoch (warm-up) is left out of the median. "wall" is the
whole command, including Python start-up, imports and DDP process launch.

What to expect on a small CPU machine: DDP over gloo adds an all-reduce of every gradient per step
(4 bytes per parameter) and a process launch; Lightning gives each process cpu_count / N threads,
so with N = cores the arithmetic is the same as one process with all cores. The run checks
correctness and measures overhead; speed-ups need GPUs or several machines.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from lightning.pytorch import Callback  # EpochTimer runs inside the training subprocesses

BENCH_DIR = Path(__file__).resolve().parent
SRC_DIR = BENCH_DIR.parent / "src"
TIMES_FILE = "epoch_times.json"


class EpochTimer(Callback):
    """Seconds per training epoch on rank 0, written to ``<run dir>/epoch_times.json`` at the end.

    Measured from the first training batch to the epoch end; under DDP each step ends with the
    gradient all-reduce, so rank 0's epoch time is the slowest rank's.
    """

    def __init__(self) -> None:
        self.times: list[float] = []
        self._start: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == 0:
            self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._start is not None:
            self.times.append(time.perf_counter() - self._start)

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            facts = {
                "epoch_times_s": self.times,
                "steps_per_epoch": trainer.num_training_batches,
                "threads_per_process": torch.get_num_threads(),
            }
            Path(trainer.default_root_dir, TIMES_FILE).write_text(json.dumps(facts))


def run(processes: int, args: argparse.Namespace, root: Path, threads: int | None = None) -> dict:
    """One training run; returns its epoch times, wall time and batch facts.

    ``threads`` sets ``OMP_NUM_THREADS`` (torch's intra-op threads per process); ``None`` leaves
    torch's default for one process and Lightning's ``cpu_count / processes`` under DDP.
    """
    trainer = (
        ["trainer=cpu"] if processes == 1 else ["trainer=ddp_cpu", f"trainer.devices={processes}"]
    )
    hidden = "[" + ",".join(map(str, args.hidden)) + "]"
    command = [
        sys.executable,
        "-m",
        "sigmoidf1.train",
        *trainer,
        f"data.batch_size={args.batch_size}",
        f"model.backbone.hidden_sizes={hidden}",
        f"trainer.max_epochs={args.epochs}",
        "+trainer.limit_val_batches=0",
        "test=false",
        "callbacks=none",
        "+callbacks.epoch_timer._target_=ddp.EpochTimer",
        "extras.print_config=false",
        f"seed={args.seed}",
        *args.overrides,
    ]
    workdir = root / f"p{processes}_t{threads}"
    workdir.mkdir()
    path = os.pathsep.join([str(SRC_DIR), str(BENCH_DIR), os.environ.get("PYTHONPATH", "")])
    env = {
        **os.environ,
        "SIGMOIDF1_ROOT": str(workdir),
        "PYTHONPATH": path,
        "PYTHONWARNINGS": "ignore",
    }
    env.pop("OMP_NUM_THREADS", None)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-4000:]}")
    facts = json.loads(next(workdir.rglob(TIMES_FILE)).read_text())
    steady = facts["epoch_times_s"][1:] or facts["epoch_times_s"]
    return {
        "processes": processes,
        "per_process_batch": args.batch_size // processes,
        **facts,
        "median_epoch_s": statistics.median(steady),
        "min_epoch_s": min(steady),
        "wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128, help="global batch size")
    parser.add_argument("--hidden", type=int, nargs="+", default=[1024, 1024], help="MLP widths")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-single-thread",
        action="store_true",
        help="skip the row of one process with one thread",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = parser.parse_args()
    for n in args.processes:
        if args.batch_size % n:
            parser.error(f"--batch-size {args.batch_size} is not divisible by {n} processes")

    layouts = [(n, None) for n in args.processes]
    if 1 in args.processes and (os.cpu_count() or 1) > 1 and not args.no_single_thread:
        layouts.insert(
            1, (1, 1)
        )  # one process, one thread: a DDP process's compute, no communication
    with tempfile.TemporaryDirectory(prefix="bench_ddp_") as tmp:
        results = [run(n, args, Path(tmp), threads) for n, threads in layouts]

    base = results[0]["median_epoch_s"]
    print(
        f"Yeast, MLP {args.hidden}, global batch {args.batch_size}, {args.epochs} epochs, "
        f"{os.cpu_count()} CPUs (median over epochs 2..{args.epochs})"
    )
    header = (
        f"{'processes':>9} {'threads':>7} {'batch/proc':>10} {'steps/epoch':>11} {'epoch s':>8} "
        f"{'min s':>7} {'vs 1st':>7} {'wall s':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r['processes']:>9} {r['threads_per_process']:>7} {r['per_process_batch']:>10} "
            f"{r['steps_per_epoch']:>11} "
            f"{r['median_epoch_s']:>8.3f} {r['min_epoch_s']:>7.3f} "
            f"{r['median_epoch_s'] / base:>6.2f}x "
            f"{r['wall_s']:>7.1f}"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {"args": {k: str(v) for k, v in vars(args).items()}, "results": results}, indent=2
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
