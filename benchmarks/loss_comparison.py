"""Does sigmoidF1 beat BCE, focal, ASL and unboundedF1? Each loss x dataset x seed, by the CLI.

    python benchmarks/loss_comparison.py                      # full: 5 losses x 3 datasets x 3
    seeds
    python benchmarks/loss_comparison.py --datasets yeast     # one dataset
    python benchmarks/loss_comparison.py --quick --datasets yeast --out /tmp/q   # CI-sized check
    python benchmarks/loss_comparison.py --report-only        # rebuild table and chart from the
    JSON

Every run is a real ``sigmoidf1-train`` process with ``callbacks=tuned``: model selection and the
``test_untuned/*`` metrics use the fixed threshold 0.5, and ``test/*`` the per-label thresholds
tuned
on the validation set of the selected epoch (see ``sigmoidf1.callbacks.ThresholdTuning``). Within a
dataset, every loss gets the same backbone, data, budget (``BUDGETS``) and early stopping.

sigmoidF1's ``beta``/``eta`` are chosen per dataset before the comparison by a small sweep
(``SIGMOID_F1_GRID``, seed ``SWEEP_SEED``, selected on the best validation macro-F1 at 0.5; the test
split is not looked at), recorded in ``sigmoid_f1_sweep.json``. ``beta=1, eta=0`` on logits is
exactly unboundedF1; the grid also holds the authors' code (S applied to sigmoid probabilities).

Outputs in ``--out`` (default ``benchmarks/results``): ``loss_comparison.json`` (one record per
run: dataset, loss, seed, metrics under their logged names, command, ...), ``loss_comparison.md``
and ``loss_comparison.png``. Resumable: a run whose command is already recorded is skipped, and the
JSON is rewritten after every run. Run logs go under ``--log-dir`` (default ``logs/bench``).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
LOSSES = ("sigmoid_f1", "unbounded_f1", "bce", "focal", "asl")
DATASETS = ("yeast", "reuters", "multi_fashion_mnist")
SEEDS = (0, 1, 2)
SWEEP_SEED = 1000

# Same for every run: threshold tuning on, CSV logs, no display. (Display flags do not change
# results.)
COMMON = [
    "callbacks=tuned",
    "logger=csv",
    "task_name=bench",
    "extras.print_config=false",
    "callbacks.progress_bar=null",
    "callbacks.model_summary=null",
    "callbacks.per_label_report=null",
    "++trainer.enable_progress_bar=false",
]

# Per dataset: backbone, budget and early stopping, identical for every loss. "quick" is CI-sized.
BUDGETS: dict[str, dict[str, list[str]]] = {
    "yeast": {  # MLP 256-256, 1,450 training genes, batch 128
        "full": ["data=yeast", "trainer.max_epochs=60", "callbacks.early_stopping.patience=10"],
        "quick": ["data=yeast", "trainer.max_epochs=3"],
    },
    "reuters": {  # the data config's mean-of-word-embeddings model, all 6.5k training stories
        "full": ["data=reuters", "trainer.max_epochs=20", "callbacks.early_stopping.patience=5"],
        "quick": ["data=reuters", "trainer.max_epochs=1", "trainer.limit_train_batches=5"],
    },
    "multi_fashion_mnist": {  # the data config's CNN on 5,000 training canvases (of its 10,000)
        "full": [
            "data=multi_fashion_mnist",
            "data.num_train=5000",
            "data.num_val=1000",
            "data.num_test=2000",
            "trainer.max_epochs=6",
            "callbacks.early_stopping.patience=3",
        ],
        "quick": [
            "data=multi_fashion_mnist",
            "data.num_train=512",
            "data.num_val=256",
            "data.num_test=256",
            "trainer.max_epochs=1",
        ],
    },
}

# sigmoidF1 candidates: S(u) = sigmoid(beta * (u + eta)) on the logits u, and the authors' code
# (gabriben/sigmoidF1 trains with S=-1, E=0 on sigmoid probabilities: official_compat=true).
SIGMOID_F1_GRID: list[dict[str, object]] = [
    {"loss.beta": 1.0, "loss.eta": 0.0, "loss.official_compat": True},
    {"loss.beta": 1.0, "loss.eta": 0.0},  # identical to unbounded_f1
    {"loss.beta": 2.0, "loss.eta": 0.0},
    {"loss.beta": 1.0, "loss.eta": -1.0},  # S crosses 0.5 at u = 1: pushes positives further up
]
QUICK_SIGMOID_F1 = SIGMOID_F1_GRID[0]

# Reported metrics (logged names without the stage prefix) and how they are shown.
THRESHOLDED = ("f1_micro", "f1_macro", "f1_weighted", "f1_samples", "card_mae")
REPORTED = (*THRESHOLDED[:4], "map_macro", "card_mae")
LOWER_IS_BETTER = {"card_mae"}
LABELS = {
    "f1_micro": "micro-F1",
    "f1_macro": "macro-F1",
    "f1_weighted": "weighted-F1",
    "f1_samples": "sample-F1",
    "map_macro": "mAP",
    "card_mae": "card. MAE",
}


# --- running ------------------------------------------------------------------------------------
def train_command() -> list[str]:
    """The ``sigmoidf1-train`` console script of this interpreter, or its ``-m`` equivalent."""
    script = Path(sys.executable).with_name("sigmoidf1-train")
    return [str(script)] if script.exists() else [sys.executable, "-m", "sigmoidf1.train"]


def display_command(overrides: Sequence[str], threads: int) -> str:
    return f"OMP_NUM_THREADS={threads} sigmoidf1-train " + " ".join(
        shlex.quote(o) for o in overrides
    )


def format_params(params: dict[str, object]) -> list[str]:
    return [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in params.items()]


def run_training(overrides: list[str], log_dir: Path, threads: int) -> dict:
    """One ``sigmoidf1-train`` process; returns its test metrics, run directory and timings."""
    command = [*train_command(), *overrides, f"paths.log_dir={log_dir}"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"}
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise RuntimeError(f"exit code {result.returncode}\n{output[-3000:]}")
    lines = [line for line in output.splitlines() if "Run directory:" in line]
    if not lines:
        raise RuntimeError(f"no 'Run directory:' line in the output\n{output[-3000:]}")
    run_dir = Path(lines[-1].split("Run directory:")[-1].strip())
    metrics = json.loads((run_dir / "test_metrics.json").read_text())
    best_val, epochs = read_fit_history(run_dir / "metrics.csv")
    return {
        "metrics": metrics,
        "best_val_f1_macro": best_val,
        "epochs": epochs,
        "wall_time_s": round(wall, 1),
        "run_dir": str(
            run_dir.relative_to(REPO_ROOT) if run_dir.is_relative_to(REPO_ROOT) else run_dir
        ),
    }


def read_fit_history(path: Path) -> tuple[float | None, int | None]:
    """``(best val/f1_macro over epochs, number of epochs trained)`` from the CSV logger's file."""
    best, epochs = None, None
    with open(path) as handle:
        for row in csv.DictReader(handle):
            if row.get("val/f1_macro"):
                value = float(row["val/f1_macro"])
                best = value if best is None else max(best, value)
                epochs = int(row["epoch"]) + 1
    return best, epochs


class Store:
    """A JSON list of run records, rewritten atomically after every addition (thread-safe)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: list[dict] = json.loads(path.read_text()) if path.exists() else []
        self.lock = threading.Lock()

    def done(self, command: str) -> dict | None:
        return next((r for r in self.records if r["command"] == command), None)

    def add(self, record: dict) -> None:
        with self.lock:
            self.records = [r for r in self.records if r["command"] != record["command"]]
            self.records.append(record)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.records, indent=1) + "\n")
            tmp.replace(self.path)


def run_all(jobs: list[dict], store: Store, log_dir: Path, threads: int, workers: int) -> int:
    """Run the jobs not yet in ``store`` (``workers`` at a time); return the number of failures."""
    todo = [job for job in jobs if store.done(job["command"]) is None]
    print(
        f"{len(jobs) - len(todo)} of {len(jobs)} runs already recorded in {store.path}", flush=True
    )
    failures = 0
    started = time.perf_counter()

    def work(job: dict) -> dict:
        return {**job, **run_training(job["overrides"], log_dir, threads)}

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(work, job): job for job in todo}
        for done, future in enumerate(as_completed(futures), start=1):
            job = futures[future]
            name = f"{job['dataset']}/{job['loss']}/seed {job['seed']}"
            try:
                record = future.result()
            except Exception as error:  # keep going: the other runs are still useful
                failures += 1
                print(f"[{done}/{len(todo)}] FAILED {name}: {error}", flush=True)
                continue
            record.pop("overrides")
            store.add(record)
            elapsed = time.perf_counter() - started
            print(
                f"[{done}/{len(todo)}] {name}: test_untuned/f1_macro "
                f"{record['metrics'].get('test_untuned/f1_macro', float('nan')):.4f}, "
                f"test/f1_macro {record['metrics']['test/f1_macro']:.4f}, "
                f"{record['epochs']} epochs, {record['wall_time_s']:.0f} s "
                f"(elapsed {elapsed / 60:.1f} min, "
                f"~{elapsed / done * (len(todo) - done) / 60:.1f} min left)",
                flush=True,
            )
    return failures


def make_job(dataset: str, loss: str, seed: int, budget: str, params: dict, threads: int) -> dict:
    overrides = [*BUDGETS[dataset][budget], f"loss={loss}", *format_params(params), f"seed={seed}"]
    overrides += COMMON
    return {
        "dataset": dataset,
        "loss": loss,
        "seed": seed,
        "loss_params": params,
        "budget": budget,
        "threads": threads,
        "overrides": overrides,
        "command": display_command(overrides, threads),
    }


def choose_sigmoid_f1(sweep: Store, dataset: str) -> dict:
    """The grid entry with the best validation macro-F1 (at 0.5) on ``dataset`` in the sweep."""
    candidates = [r for r in sweep.records if r["dataset"] == dataset and r["budget"] == "full"]
    candidates = [r for r in candidates if r["loss_params"] in SIGMOID_F1_GRID]
    if len(candidates) < len(SIGMOID_F1_GRID):
        raise RuntimeError(f"the sigmoid_f1 sweep on {dataset} is incomplete")
    return max(candidates, key=lambda r: r["best_val_f1_macro"])["loss_params"]


# --- reporting ----------------------------------------------------------------------------------
def mean_std(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(records: list[dict]) -> dict[tuple[str, str], dict[str, tuple[float, float, int]]]:
    """``{(dataset, loss): {logged name: (mean, std, n)}}`` over seeds."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for record in records:
        groups.setdefault((record["dataset"], record["loss"]), []).append(record["metrics"])
    summary = {}
    for key, runs in groups.items():
        names = set.intersection(*(set(m) for m in runs))
        summary[key] = {n: (*mean_std([m[n] for m in runs]), len(runs)) for n in sorted(names)}
    return summary


def markdown_report(records: list[dict], sweep: list[dict], note: str) -> str:
    summary = summarise(records)
    datasets = [d for d in DATASETS if any(k[0] == d for k in summary)]
    lines = ["# Loss comparison", "", note, ""]
    for title, prefix, names in (
        ("Test metrics at threshold 0.5", "test_untuned/", REPORTED),
        ("Test metrics at per-label thresholds tuned on validation", "test/", THRESHOLDED),
    ):
        lines += [f"## {title}", ""]
        for dataset in datasets:
            rows = [loss for loss in LOSSES if (dataset, loss) in summary]
            n = {summary[(dataset, loss)][f"{prefix}f1_macro"][2] for loss in rows}
            lines += [f"### {dataset} (seeds per loss: {', '.join(map(str, sorted(n)))})", ""]
            lines.append("| loss | " + " | ".join(LABELS[m] for m in names) + " |")
            lines.append("|---|" + "---:|" * len(names))
            best = {}
            for metric in names:
                means = [summary[(dataset, loss)][prefix + metric][0] for loss in rows]
                best[metric] = min(means) if metric in LOWER_IS_BETTER else max(means)
            for loss in rows:
                cells = []
                for metric in names:
                    mean, std, count = summary[(dataset, loss)][prefix + metric]
                    cell = f"{mean:.3f} ± {std:.3f}" if count > 1 else f"{mean:.3f}"
                    cells.append(f"**{cell}**" if math.isclose(mean, best[metric]) else cell)
                lines.append(f"| {loss} | " + " | ".join(cells) + " |")
            lines.append("")
    if sweep:
        lines += [
            "## sigmoidF1 hyperparameters (validation sweep)",
            "",
            f"Seed {SWEEP_SEED}; chosen by the best validation macro-F1 at 0.5 (test not used).",
            "",
            "| dataset | parameters | best val macro-F1 | chosen |",
            "|---|---|---:|:---:|",
        ]
        for dataset in datasets:
            entries = [r for r in sweep if r["dataset"] == dataset]
            entries.sort(
                key=lambda r: next(
                    (i for i, p in enumerate(SIGMOID_F1_GRID) if p == r["loss_params"]),
                    len(SIGMOID_F1_GRID),
                )
            )
            if not entries:
                continue
            chosen = max(entries, key=lambda r: r["best_val_f1_macro"])
            for r in entries:
                params = " ".join(format_params(r["loss_params"]))
                mark = "yes" if r is chosen else ""
                lines.append(f"| {dataset} | `{params}` | {r['best_val_f1_macro']:.3f} | {mark} |")
        lines.append("")
    budget = records[0].get("budget", "full")
    lines += ["## Setup", "", "Every run: `" + " ".join(COMMON) + "`, plus per dataset:", ""]
    for dataset in datasets:
        lines.append(f"- {dataset}: `" + " ".join(BUDGETS[dataset][budget]) + "`")
    walls = [r["wall_time_s"] for r in [*records, *sweep]]
    lines += [
        "",
        f"{len(records)} runs and {len(sweep)} sweep runs; the sum of their wall times is "
        f"{sum(walls) / 60:.1f} min (runs go two at a time, one thread each).",
        "",
    ]
    lines += [
        "## Runs",
        "",
        "| dataset | loss | seed | epochs | wall time (s) |",
        "|---|---|---:|---:|---:|",
    ]
    for r in sorted(
        records, key=lambda r: (DATASETS.index(r["dataset"]), LOSSES.index(r["loss"]), r["seed"])
    ):
        lines.append(
            f"| {r['dataset']} | {r['loss']} | {r['seed']} | {r['epochs']} "
            f"| {r['wall_time_s']:.0f} |"
        )
    lines.append("")
    return "\n".join(lines)


def plot(records: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = summarise(records)
    datasets = [d for d in DATASETS if any(k[0] == d for k in summary)]
    metrics = THRESHOLDED[:4]
    fig, axes = plt.subplots(
        2, len(datasets), figsize=(4.6 * len(datasets), 6.4), squeeze=False, sharey="col"
    )
    width = 0.8 / len(LOSSES)
    for row, (prefix, title) in enumerate(
        (("test_untuned/", "threshold 0.5"), ("test/", "tuned thresholds"))
    ):
        for col, dataset in enumerate(datasets):
            ax = axes[row][col]
            for i, loss in enumerate(LOSSES):
                if (dataset, loss) not in summary:
                    continue
                stats = [summary[(dataset, loss)][prefix + m] for m in metrics]
                ax.bar(
                    [j + (i - (len(LOSSES) - 1) / 2) * width for j in range(len(metrics))],
                    [s[0] for s in stats],
                    width,
                    yerr=[s[1] for s in stats],
                    capsize=2,
                    label=loss,
                )
            ax.set_xticks(range(len(metrics)), [LABELS[m] for m in metrics], fontsize=8)
            ax.set_title(f"{dataset}: test, {title}", fontsize=10)
            ax.grid(axis="y", alpha=0.3)
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=len(LOSSES), fontsize=8)
    fig.suptitle("Test F1 by loss (mean ± std over seeds)")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_reports(out: Path, store: Store, sweep: Store, note: str) -> None:
    if not store.records:
        return
    (out / "loss_comparison.md").write_text(markdown_report(store.records, sweep.records, note))
    plot(store.records, out / "loss_comparison.png")


# --- main ---------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one seed, tiny budgets, no sweep")
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--losses", nargs="+", choices=LOSSES, default=list(LOSSES))
    parser.add_argument(
        "--seeds", nargs="+", type=int, default=None, help="default 0 1 2 (quick: 0)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="default benchmarks/results (quick: logs/bench/quick)",
    )
    parser.add_argument(
        "--log-dir", type=Path, default=REPO_ROOT / "logs", help="paths.log_dir of the runs"
    )
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each run")
    parser.add_argument(
        "--report-only", action="store_true", help="only rebuild the table and chart"
    )
    args = parser.parse_args(argv)

    budget = "quick" if args.quick else "full"
    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else list(SEEDS))
    out = args.out or (REPO_ROOT / ("logs/bench/quick" if args.quick else "benchmarks/results"))
    store = Store(out / "loss_comparison.json")
    sweep = Store(out / "sigmoid_f1_sweep.json")
    note = (
        "Generated by `benchmarks/loss_comparison.py`"
        + (" --quick (CI-sized budgets: not a result)" if args.quick else "")
        + ". Mean ± std over seeds of each run's test split; every run is the `command` recorded "
        "in `loss_comparison.json`. Best mean per column in bold (lowest for card. MAE)."
    )
    if args.report_only:
        write_reports(out, store, sweep, note)
        return 0

    failures = 0
    started = time.perf_counter()
    for dataset in args.datasets:
        if budget == "quick":
            params = QUICK_SIGMOID_F1
        else:
            sweep_jobs = [
                {**make_job(dataset, "sigmoid_f1", SWEEP_SEED, budget, p, args.threads)}
                for p in SIGMOID_F1_GRID
            ]
            print(f"== {dataset}: sigmoid_f1 sweep ({len(sweep_jobs)} settings, seed {SWEEP_SEED})")
            failures += run_all(sweep_jobs, sweep, args.log_dir, args.threads, args.jobs)
            params = choose_sigmoid_f1(sweep, dataset)
            print(f"== {dataset}: sigmoid_f1 uses {' '.join(format_params(params))}")
        jobs = [
            make_job(
                dataset, loss, seed, budget, params if loss == "sigmoid_f1" else {}, args.threads
            )
            for seed in seeds
            for loss in args.losses
        ]
        print(f"== {dataset}: {len(jobs)} runs ({len(args.losses)} losses x {len(seeds)} seeds)")
        failures += run_all(jobs, store, args.log_dir, args.threads, args.jobs)
        write_reports(out, store, sweep, note)
    print(f"Done in {(time.perf_counter() - started) / 60:.1f} min; results in {out}")
    if failures:
        print(f"{failures} runs FAILED (rerun to retry them)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
