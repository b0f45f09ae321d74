"""Forward+backward time of every registered loss relative to BCE-with-logits, on CPU.

    python benchmarks/losses.py                         # labels 100 1000 10000, batch 256
    python benchmarks/losses.py --quick                 # fewer repeats, for a smoke run
    python benchmarks/losses.py --labels 1000 --repeats 50 --json results.json

For each label count, float32 logits ``[batch, labels]`` (requires_grad) and 10%-positive binary
targets are made once. After a warm-up, every repeat times each loss once, round-robin (the
order rotates between repeats), where one sample is ``inner`` iterations of
``loss = fn(logits, targets); loss.backward()`` with ``inner`` chosen so that the reference takes
about ``--min-sample-ms``. The default, 100 ms, averages 3-7 iterations at 10,000 labels: a sample
of one iteration there swings by 2x between rounds. Reported: the ratio of the median time per
iteration to the median of the reference ``torch.nn.functional.binary_cross_entropy_with_logits``
("bce_ref", no input checks), the min-max of the per-round ratios, the median time, and the median
minor page faults per iteration ("pf"). Page faults are fresh 4 KiB pages the kernel zeroes: glibc
hands large freed blocks back to the system (how many depends on what ran before), and every op
that allocates a ``[batch, labels]`` tensor may pay for it. At 10,000 labels they add 3-7 ms to an
iteration of bce_ref and are the main source of the spread between runs; with
``MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=4294967296`` in the environment glibc
keeps freed blocks (as jemalloc and tcmalloc do), no loss faults, and the ratios compare compute
alone. Threads are left at torch's default unless ``--threads`` is given. On a busy machine
wall-clock ratios are unreliable (the load average is printed); ``--clock cpu`` measures process
CPU time instead.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # run from a checkout

from sigmoidf1.losses import available_losses, get_loss  # noqa: E402

try:
    import resource
except ImportError:  # Windows
    resource = None

REFERENCE = "bce_ref"


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]


def minor_page_faults() -> int:
    """Minor page faults of this process so far (0 where there is no ``resource``: Windows)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt if resource else 0


def time_once(
    fn: Callable, logits: torch.Tensor, targets: torch.Tensor, inner: int
) -> tuple[float, float]:
    """Seconds and minor page faults per forward+backward, means over ``inner`` iterations."""
    faults = minor_page_faults()
    start = clock()
    for _ in range(inner):
        logits.grad = None
        fn(logits, targets).backward()
    return (clock() - start) / inner, (minor_page_faults() - faults) / inner


def bench_labels(
    losses: dict[str, Callable],
    batch: int,
    labels: int,
    repeats: int,
    warmup: int,
    min_sample_s: float,
    seed: int,
) -> dict[str, dict[str, float]]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, labels, generator=generator).requires_grad_()
    targets = (torch.rand(batch, labels, generator=generator) < 0.1).float()

    for fn in losses.values():
        for _ in range(warmup):
            time_once(fn, logits, targets, 1)
    reference_s = statistics.median(
        time_once(losses[REFERENCE], logits, targets, 1)[0] for _ in range(3)
    )
    inner = max(1, round(min_sample_s / max(reference_s, 1e-9)))

    names = list(losses)
    samples: dict[str, list[float]] = {name: [] for name in names}
    faults: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            seconds, page_faults = time_once(losses[name], logits, targets, inner)
            samples[name].append(seconds)
            faults[name].append(page_faults)

    reference = statistics.median(samples[REFERENCE])
    return {
        name: {
            "ms": 1e3 * statistics.median(times),
            "ms_min": 1e3 * min(times),
            "ms_max": 1e3 * max(times),
            "ratio": statistics.median(times) / reference,
            # per round: this loss over the reference of the same round (interleaved samples)
            "round_ratios": [t / r for t, r in zip(times, samples[REFERENCE], strict=True)],
            # each fault is a fresh 4 KiB page the kernel zeroes: large buffers that the
            # allocator handed back to the system and took again (10,000 labels: 2,500 per tensor)
            "page_faults_per_iter": statistics.median(faults[name]),
            "inner": inner,
            "repeats": repeats,
        }
        for name, times in samples.items()
    }


def cell(result: dict) -> str:
    """``median ratio (min-max of the per-round ratios), median ms, median page faults``."""
    ratios = result["round_ratios"]
    return (
        f"{result['ratio']:.2f}x ({min(ratios):.2f}-{max(ratios):.2f}), {result['ms']:.2f} ms, "
        f"{result['page_faults_per_iter']:,.0f} pf"
    )


def print_table(results: dict[int, dict[str, dict[str, float]]], batch: int) -> None:
    label_counts = list(results)
    names = list(next(iter(results.values())))
    title = f"fwd+bwd time relative to F.binary_cross_entropy_with_logits (batch {batch}, CPU fp32)"
    cells = {(name, n): cell(results[n][name]) for name in names for n in label_counts}
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title)
        header = f"{'loss':<18}" + "".join(f"{f'{n} labels':>42}" for n in label_counts)
        print(header)
        print("-" * len(header))
        for name in names:
            print(f"{name:<18}" + "".join(f"{cells[name, n]:>42}" for n in label_counts))
        return
    table = Table(title=title)
    table.add_column("loss")
    for n in label_counts:
        table.add_column(f"{n} labels", justify="right")
    for name in names:
        table.add_row(name, *(cells[name, n] for n in label_counts))
    Console().print(table)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=None, help="default 30 (5 with --quick)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--min-sample-ms",
        type=float,
        default=None,
        help="target duration of one timing sample (default 100, 5 with --quick)",
    )
    parser.add_argument(
        "--losses", nargs="+", default=None, help="registered names to time (default: all)"
    )
    parser.add_argument("--quick", action="store_true", help="few repeats: a smoke run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="wall = perf_counter; cpu = process CPU time of all threads (robust to other load)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    repeats = args.repeats or (5 if args.quick else 30)
    min_sample_ms = args.min_sample_ms or (5.0 if args.quick else 100.0)
    warmup = 1 if args.quick else args.warmup
    if args.threads:
        torch.set_num_threads(args.threads)
    global clock
    clock = CLOCKS[args.clock]

    losses: dict[str, Callable] = {REFERENCE: F.binary_cross_entropy_with_logits}
    for name in args.losses or available_losses():
        losses[name] = get_loss(name)

    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    results = {
        n: bench_labels(losses, args.batch, n, repeats, warmup, min_sample_ms / 1e3, args.seed)
        for n in args.labels
    }
    load_after = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print_table(results, args.batch)
    print(
        f"{args.clock} clock, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{repeats} repeats; "
        f"1-min load average {load_before:.2f} before, {load_after:.2f} after"
    )
    if max(load_before, load_after) > 0.5 * (os.cpu_count() or 1):
        print("warning: the machine was busy; other processes skew these timings")
    report = {
        "batch": args.batch,
        "repeats": repeats,
        "clock": args.clock,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "load_average": [load_before, load_after],
        "results": {str(n): r for n, r in results.items()},
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
