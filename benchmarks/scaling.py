"""How the cost of a training step grows with the number of labels: head + loss + metrics.

    python benchmarks/scaling.py                    # 100, 1k, 10k, 100k labels; 3 rounds
    python benchmarks/scaling.py --sizes 100 1000 --steps 3 --rounds 1 --json /tmp/s.json

For each label count ``L``, one fresh process (one torch thread) builds what grows with ``L`` in
``sigmoidf1-train``: the linear head ``[features -> L]`` (AdamW), the default loss (sigmoidF1) and
the metric collection of ``sigmoidf1.metrics.build_metrics``, and runs training steps on synthetic
data (``--batch`` examples of ``--features`` random features, each with ``--positives`` random
labels): forward, loss, backward, optimizer step, then a metric update on the probabilities.
Measured per ``L``:

- seconds per step (median of ``--steps`` after one warm-up step), split into
  ``model`` (forward, loss, backward, step) and ``metrics`` (sigmoid + update);
- peak resident memory of the process (``ru_maxrss``) and its growth over the process after
  imports and data generation;
- the metric states' size after 1 and after ``--state-batches`` updates: equal when no state grows
  with the number of examples.

``--metrics large`` (the default) measures the large-label collection at every ``L`` (the one
``build_metrics`` picks above ``model.metrics.large_labels``, 1,000 by default), so that the curve
is one implementation; ``--metrics default`` lets ``build_metrics`` choose by size (exact average
precision below the switch, whose state grows with the examples).

Rounds run the sizes in a rotated order (each a fresh process); the JSON holds every round, the
medians, their spread (min, max) and the slope of a least-squares line through
``log(seconds per step)`` against ``log(L)`` from 1,000 labels up (the exponent of the growth: 1 is
linear). The PNG draws the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "benchmarks" / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10_000, 100_000])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--features", type=int, default=128)
    parser.add_argument("--positives", type=int, default=9, help="labels per example")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--state-batches", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--metrics", choices=("large", "default"), default="large")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=str(RESULTS / "scaling.json"))
    parser.add_argument("--png", default=str(RESULTS / "scaling.png"))
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def state_bytes(collection) -> int:
    """Bytes held by a collection's metric states (states shared in a compute group: once)."""
    seen, total = set(), 0
    for metric in collection.values():
        for value in metric.metric_state.values():
            for tensor in value if isinstance(value, list) else [value]:
                if tensor.data_ptr() not in seen:
                    seen.add(tensor.data_ptr())
                    total += tensor.numel() * tensor.element_size()
    return total


def worker(args: argparse.Namespace, num_labels: int) -> dict:
    """One label count, in this process: the measurements of the module docstring."""
    import resource
    import time

    import torch

    from sigmoidf1.losses import get_loss
    from sigmoidf1.metrics import build_metrics

    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(num_labels)
    features = torch.randn(args.batch, args.features, generator=generator)
    targets = torch.zeros(args.batch, num_labels)
    chosen = torch.rand(args.batch, num_labels, generator=generator).topk(args.positives).indices
    targets.scatter_(1, chosen, 1.0)
    counts = targets.sum(0).long() * 100  # a stand-in for training label counts (psp@k)
    large = 0 if args.metrics == "large" else 1000
    options = {"large_labels": large, "train_label_counts": counts, "train_size": 100 * args.batch}
    head = torch.nn.Linear(args.features, num_labels)
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-3)
    loss_fn = get_loss("sigmoid_f1")
    metrics = build_metrics(num_labels, "train/", **options)
    resident_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    model_times, metric_times = [], []
    for step in range(args.steps + 1):
        start = time.perf_counter()
        logits = head(features)
        loss = loss_fn(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        middle = time.perf_counter()
        metrics.update(torch.sigmoid(logits.detach()), targets.int())
        end = time.perf_counter()
        if step:  # the first step warms up allocations and lazy initialisation
            model_times.append(middle - start)
            metric_times.append(end - middle)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    fresh = build_metrics(num_labels, "train/", **options)
    sizes = []
    for batches in (1, args.state_batches):
        fresh.reset()
        for _ in range(batches):
            fresh.update(torch.sigmoid(logits.detach()), targets.int())
        sizes.append(state_bytes(fresh))
    return {
        "labels": num_labels,
        "seconds_per_step": statistics.median(
            m + t for m, t in zip(model_times, metric_times, strict=True)
        ),
        "model_seconds": statistics.median(model_times),
        "metric_seconds": statistics.median(metric_times),
        "peak_rss_mb": round(peak, 1),
        "rss_growth_mb": round(peak - resident_before, 1),
        "metric_state_bytes": {f"after_{args.batch}": sizes[0]},
        "metric_state_bytes_after_more": {f"after_{args.batch * args.state_batches}": sizes[1]},
        "metric_names": sorted(k.removeprefix("train/") for k in metrics),
    }


def run_worker(args: argparse.Namespace, num_labels: int) -> dict:
    command = [sys.executable, __file__, "--worker", str(num_labels), *_passed_options(args)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONWARNINGS": "ignore"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "src"), env.get("PYTHONPATH", "")])
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"worker for {num_labels} labels failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _passed_options(args: argparse.Namespace) -> list[str]:
    return [
        *("--batch", str(args.batch), "--features", str(args.features)),
        *("--positives", str(args.positives), "--steps", str(args.steps)),
        *("--state-batches", str(args.state_batches), "--metrics", args.metrics),
        *("--threads", str(args.threads)),
    ]


def log_log_slope(sizes: list[int], seconds: list[float], smallest: int = 1000) -> float | None:
    """Least-squares slope of ``log(seconds)`` against ``log(size)`` over sizes >= ``smallest``."""
    import numpy as np

    points = [(s, t) for s, t in zip(sizes, seconds, strict=True) if s >= smallest]
    if len(points) < 2:
        return None
    x, y = np.log([p[0] for p in points]), np.log([p[1] for p in points])
    return float(np.polyfit(x, y, 1)[0])


def summarise(rounds: list[list[dict]]) -> list[dict]:
    """Median and spread over rounds of each measurement, per label count."""
    by_size: dict[int, list[dict]] = {}
    for round_ in rounds:
        for row in round_:
            by_size.setdefault(row["labels"], []).append(row)
    summary = []
    for size in sorted(by_size):
        rows = by_size[size]
        entry = {"labels": size, "rounds": len(rows)}
        for key in ("seconds_per_step", "model_seconds", "metric_seconds", "peak_rss_mb"):
            values = [row[key] for row in rows]
            entry[key] = statistics.median(values)
            entry[f"{key}_range"] = [min(values), max(values)]
        entry["metric_state_bytes"] = rows[0]["metric_state_bytes"]
        entry["metric_state_bytes_after_more"] = rows[0]["metric_state_bytes_after_more"]
        summary.append(entry)
    return summary


def plot(summary: list[dict], slope: float | None, path: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    time_axis, memory_axis = figure.subplots(1, 2)
    sizes = [row["labels"] for row in summary]
    for key, label in (
        ("seconds_per_step", "step (head + loss + metrics)"),
        ("model_seconds", "head + loss, forward and backward, AdamW"),
        ("metric_seconds", "metric update"),
    ):
        values = [row[key] for row in summary]
        low = [v - row[f"{key}_range"][0] for v, row in zip(values, summary, strict=True)]
        high = [row[f"{key}_range"][1] - v for v, row in zip(values, summary, strict=True)]
        time_axis.errorbar(sizes, values, yerr=[low, high], marker="o", capsize=3, label=label)
    time_axis.set_xscale("log")
    time_axis.set_yscale("log")
    time_axis.set_xlabel("labels")
    time_axis.set_ylabel("seconds (median; bars: min-max over rounds)")
    title = "Time per training step"
    time_axis.set_title(title + (f" (slope 1k-100k: {slope:.2f})" if slope is not None else ""))
    time_axis.grid(alpha=0.3, which="both")
    time_axis.legend(fontsize="small")
    memory_axis.plot(sizes, [row["peak_rss_mb"] for row in summary], marker="o", label="peak RSS")
    state = [next(iter(row["metric_state_bytes"].values())) / 2**20 for row in summary]
    memory_axis.plot(sizes, state, marker="s", label="metric states (any number of examples)")
    memory_axis.set_xscale("log")
    memory_axis.set_yscale("log")
    memory_axis.set_xlabel("labels")
    memory_axis.set_ylabel("MiB")
    memory_axis.set_title("Memory")
    memory_axis.grid(alpha=0.3, which="both")
    memory_axis.legend(fontsize="small")
    figure.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.worker is not None:
        print(json.dumps(worker(args, args.worker)))
        return {}
    rounds = []
    for index in range(args.rounds):
        shift = index % len(args.sizes)
        order = args.sizes[shift:] + args.sizes[:shift]
        rounds.append([run_worker(args, size) for size in order])
        print(f"round {index + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    summary = summarise(rounds)
    slope = log_log_slope(
        [row["labels"] for row in summary], [row["seconds_per_step"] for row in summary]
    )
    result = {
        "command": "python benchmarks/scaling.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "options": {k: v for k, v in vars(args).items() if k not in ("worker", "json", "png")},
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_at_end": os.getloadavg(),
        },
        "slope_seconds_vs_labels_1k_up": slope,
        "summary": summary,
        "rounds": rounds,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    plot(summary, slope, args.png)
    for row in summary:
        print(
            f"{row['labels']:>7} labels: {row['seconds_per_step']:.4f} s/step "
            f"(model {row['model_seconds']:.4f}, metrics {row['metric_seconds']:.4f}), "
            f"peak RSS {row['peak_rss_mb']:.0f} MB, metric states "
            f"{next(iter(row['metric_state_bytes'].values())):,} B"
        )
    print(f"slope of log(s/step) vs log(labels), 1k and up: {slope}")
    return result


if __name__ == "__main__":
    main()
