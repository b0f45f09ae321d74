"""What importing the core costs, against ``import torch`` alone, in fresh interpreters.

    python benchmarks/import_time.py --rounds 10 --json benchmarks/results/import_time.json

Each round runs every statement once, in a new process, in turn (interleaved, so that a busy
machine slows all of them alike), and times the whole process. Reports per statement the minimum,
median and maximum seconds, and per round its ratio to ``import torch``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

STATEMENTS = {
    "torch": "import torch",
    "core": "import sigmoidf1.losses, sigmoidf1.metrics, sigmoidf1.thresholds",
    "core + torchmetrics": "from sigmoidf1.metrics import build_metrics",
    "template": "import sigmoidf1.pipeline",
}


def cpu_model() -> str:
    """The CPU's model name (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def seconds(statement: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", statement], check=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args(argv)
    times: dict[str, list[float]] = {name: [] for name in STATEMENTS}
    load_before = os.getloadavg()
    for _ in range(args.rounds):
        for name, statement in STATEMENTS.items():
            times[name].append(seconds(statement))
    report = {
        "command": " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]]),
        "cpu": cpu_model(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "statements": STATEMENTS,
        "seconds": {
            name: {"min": min(v), "median": statistics.median(v), "max": max(v)}
            for name, v in times.items()
        },
        "ratio_to_torch_per_round": {
            name: [t / base for t, base in zip(v, times["torch"], strict=True)]
            for name, v in times.items()
            if name != "torch"
        },
    }
    for name, stats in report["seconds"].items():
        ratios = report["ratio_to_torch_per_round"].get(name)
        spread = f"  ratio to torch {min(ratios):.2f}-{max(ratios):.2f}" if ratios else ""
        print(
            f"{name:22s} median {stats['median']:.2f} s (min {stats['min']:.2f}, "
            f"max {stats['max']:.2f}){spread}"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
