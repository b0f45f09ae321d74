"""Which multilabel loss to use? Every loss x dataset variant x seed, each a real training run.

    python benchmarks/loss_comparison.py                            # all studies, all variants
    python benchmarks/loss_comparison.py --datasets yeast           # one variant
    python benchmarks/loss_comparison.py --studies compare --datasets reuters
    python benchmarks/loss_comparison.py --reproduce                # re-run one recorded command
    python benchmarks/loss_comparison.py --reproduce --datasets reuters_minilm   # one of a variant
    python benchmarks/loss_comparison.py --report-only              # tables and figures from JSON
    python benchmarks/loss_comparison.py --quick --datasets yeast --out /tmp/q   # CI-sized check

Three studies, in this order per dataset variant:

1. ``sweep``: ``sigmoid_f1`` over ``SIGMOID_F1_GRID`` (``beta``, ``eta``) on ``SWEEP_SEEDS``; the
   setting with the best mean validation macro-F1 at 0.5 is chosen (the test split is not used).
2. ``compare``: every loss of ``LOSSES`` (``sigmoid_f1`` with the chosen setting) on ``SEEDS``.
3. ``batch_size``: ``sigmoid_f1`` (chosen setting) and ``bce`` at each of ``BATCH_SIZES`` on
   ``BATCH_SEEDS``, for the variants named by ``--batch-size-datasets`` (Yeast by default):
   sigmoidF1's soft counts are batch statistics.

Every run is a ``sigmoidf1-train`` process with ``callbacks=tuned`` (the safe per-label strategy):
the ``test_untuned/*`` metrics are at threshold 0.5, ``test/*`` at thresholds tuned on validation.
Within a variant every loss gets the same backbone, data, epochs and early stopping.

A dataset variant is one entry of ``VARIANTS``: a name, a title and the Hydra overrides that pick
the data, the backbone and the budget. Runs go one at a time with one thread
(``OMP_NUM_THREADS=1``), by default inside this process (``sigmoidf1-train``'s own main, called
with the recorded overrides: the start-up of Python and Lightning is paid once, not per run);
``--subprocess`` starts a real process per run, and ``--reproduce`` re-runs a recorded command
as a real process to check that both give the same result.

Outputs in ``--out`` (default ``benchmarks/results``):
``loss_comparison.json`` (``runs``: one record per run with its exact ``command``;
``summary``: every statistic; ``reproductions``), ``loss_comparison.md``,
``loss_comparison.png`` (forest plot of the paired differences to BCE) and
``loss_comparison_batch_size.png``. Resumable: a run whose command is
already recorded is skipped, each run is recorded as soon as it ends, and Ctrl-C stops after saving.
Statistics: ``loss_comparison_report.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import shlex
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import loss_comparison_report as report

REPO_ROOT = Path(__file__).resolve().parents[1]
LOSSES = ("sigmoid_f1", "unbounded_f1", "bce", "focal", "asl", "zlpr", "two_way")
SEEDS = (0, 1, 2, 3, 4)
SWEEP_SEEDS = (1000, 1001)
BATCH_SIZES = (32, 64, 128, 256, 512, 1024)
BATCH_SEEDS = (0, 1, 2)
STUDIES = ("sweep", "compare", "batch_size")


@dataclass(frozen=True)
class Variant:
    """A dataset variant: Hydra overrides choosing data, backbone and budget (same for all losses);
    ``quick`` is added on top for the CI-sized check."""

    title: str
    overrides: tuple[str, ...]
    quick: tuple[str, ...] = ("trainer.max_epochs=1", "++trainer.limit_train_batches=4")


MFMNIST_SPLIT = ("data.num_train=3000", "data.num_val=1000", "data.num_test=2000")
MFMNIST_QUICK = (
    "data.num_train=256",
    "data.num_val=128",
    "data.num_test=128",
    "trainer.max_epochs=1",
)
# One entry per variant. The frozen-encoder variants fix the data split (``data.seed=42``: the
# split of the SVM reference) so that the features are encoded once and every later run reuses the
# cache; their seeds vary the head's initialisation and the batch order only.
VARIANTS: dict[str, Variant] = {
    "yeast": Variant(
        "Yeast, MLP",
        ("data=yeast", "trainer.max_epochs=60", "callbacks.early_stopping.patience=10"),
    ),
    "reuters": Variant(
        "Reuters-21578, embedding bag",
        ("data=reuters", "trainer.max_epochs=20", "callbacks.early_stopping.patience=5"),
    ),
    "multi_fashion_mnist": Variant(
        "multi Fashion-MNIST, CNN",
        (
            "data=multi_fashion_mnist",
            *MFMNIST_SPLIT,
            "trainer.max_epochs=5",
            "callbacks.early_stopping.patience=2",
        ),
        quick=MFMNIST_QUICK,
    ),
    "reuters_minilm": Variant(
        "Reuters-21578, frozen MiniLM",
        (
            "data=reuters",
            "encoder=minilm",
            "data.seed=42",
            "trainer.max_epochs=40",
            "callbacks.early_stopping.patience=5",
        ),
    ),
    "wordnet_minilm": Variant(
        "WordNet nouns (962 labels), frozen MiniLM",
        (
            "data=wordnet",
            "encoder=minilm",
            "data.seed=42",
            "data.min_label_count=50",  # the 962 labels on >= 50 glosses: 17,161 take 6 h here
            "trainer.max_epochs=5",
            "callbacks.early_stopping.patience=2",
        ),
    ),
    "multi_fashion_mnist_effnet": Variant(
        "multi Fashion-MNIST, frozen EfficientNet-Lite0",
        (
            "data=multi_fashion_mnist",
            "encoder=efficientnet_lite0",
            "data.seed=42",
            *MFMNIST_SPLIT,
            "trainer.max_epochs=40",
            "callbacks.early_stopping.patience=5",
        ),
        quick=MFMNIST_QUICK,
    ),
}

# Same for every run: threshold tuning on, CSV logs, nothing printed that the records do not need.
COMMON = (
    "callbacks=tuned",
    "logger=csv",
    "task_name=bench",
    "extras.print_config=false",
    "callbacks.progress_bar=null",
    "callbacks.model_summary=null",
    "callbacks.per_label_report=null",
    "++trainer.enable_progress_bar=false",
)
# The batch-size study lets early stopping, not the epoch budget, end each run: a batch of 1024 on
# Yeast's 1,450 training genes is 2 steps per epoch.
BATCH_STUDY = ("trainer.max_epochs=150", "callbacks.early_stopping.patience=10")

# S(u) = sigmoid(beta * (u + eta)) on the logits u. beta=1, eta=0 is exactly unbounded_f1.
SIGMOID_F1_GRID: tuple[dict[str, float], ...] = (
    {"loss.beta": 1.0, "loss.eta": 0.0},
    {"loss.beta": 2.0, "loss.eta": 0.0},
    {"loss.beta": 1.0, "loss.eta": -1.0},  # S crosses 0.5 at u = 1: positives pushed further up
    {"loss.beta": 2.0, "loss.eta": -1.0},
)


# --- one run ------------------------------------------------------------------------------------
def train_command() -> list[str]:
    """The ``sigmoidf1-train`` console script of this interpreter, or its ``-m`` equivalent."""
    script = Path(sys.executable).with_name("sigmoidf1-train")
    return [str(script)] if script.exists() else [sys.executable, "-m", "sigmoidf1.train"]


def display_command(overrides: Sequence[str]) -> str:
    """The command as recorded: what a user types to repeat the run (output folder aside)."""
    return "OMP_NUM_THREADS=1 sigmoidf1-train " + " ".join(shlex.quote(o) for o in overrides)


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


def run_training(overrides: Sequence[str], log_dir: Path) -> dict:
    """One ``sigmoidf1-train`` process with one thread; its test metrics, history and timing."""
    command = [*train_command(), *overrides, f"paths.log_dir={log_dir}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    output = result.stdout + result.stderr
    if result.returncode == 130:
        raise KeyboardInterrupt
    if result.returncode != 0:
        raise RuntimeError(f"exit code {result.returncode}\n{output[-3000:]}")
    lines = [line for line in output.splitlines() if "Run directory:" in line]
    if not lines:
        raise RuntimeError(f"no 'Run directory:' line in the output\n{output[-3000:]}")
    run_dir = Path(lines[-1].split("Run directory:")[-1].strip())
    return {**read_run(run_dir), "wall_time_s": round(wall, 1), "runner": "subprocess"}


def run_in_process(overrides: Sequence[str], log_dir: Path) -> dict:
    """The same ``sigmoidf1-train`` main, called in this process (one torch thread): the same
    run as the recorded command, without paying Python's and Lightning's start-up for every run
    (10-20 s on a busy 2-core machine). ``--reproduce`` re-runs a record as a real process."""
    import torch

    import sigmoidf1.train

    saved_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # restored below: the caller's process keeps its own setting
    run_dir = log_dir / "bench" / "runs" / time.strftime("%Y-%m-%d_%H-%M-%S") / uuid.uuid4().hex[:8]
    argv = ["sigmoidf1-train", *overrides, f"paths.log_dir={log_dir}", f"hydra.run.dir={run_dir}"]
    output, saved_argv = io.StringIO(), sys.argv
    start = time.perf_counter()
    try:
        sys.argv = argv
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
                sigmoidf1.train.main()
    except SystemExit as error:
        if error.code == 130:
            raise KeyboardInterrupt from error
        if error.code:
            raise RuntimeError(f"exit code {error.code}\n{output.getvalue()[-3000:]}") from error
    finally:
        sys.argv = saved_argv
        torch.set_num_threads(saved_threads)
    wall = time.perf_counter() - start
    return {**read_run(run_dir), "wall_time_s": round(wall, 1), "runner": "in-process"}


def read_run(run_dir: Path) -> dict:
    """A finished run's test metrics, best validation macro-F1 and epoch count, from its files."""
    best_val, epochs = read_fit_history(run_dir / "metrics.csv")
    return {
        "metrics": json.loads((run_dir / "test_metrics.json").read_text()),
        "best_val_f1_macro": best_val,
        "epochs": epochs,
        "run_dir": str(run_dir),
    }


Runner = Callable[[Sequence[str], Path], dict]


# --- the record store ---------------------------------------------------------------------------
class Store:
    """``loss_comparison.json``: ``{"runs": [...], "summary": {...}, "reproductions": [...]}``,
    rewritten atomically (temporary file, then rename) after every change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        data = json.loads(path.read_text()) if path.exists() else {}
        if isinstance(data, list):  # the first edition's file: a plain list of runs
            data = {}
        self.runs: list[dict] = data.get("runs", [])
        self.summary: dict = data.get("summary", {})
        self.reproductions: list[dict] = data.get("reproductions", [])

    def find(self, command: str) -> dict | None:
        return next((r for r in self.runs if r["command"] == command), None)

    def add(self, record: dict) -> None:
        self.runs = [r for r in self.runs if r["command"] != record["command"]] + [record]
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {"runs": self.runs, "summary": self.summary, "reproductions": self.reproductions}
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        tmp.replace(self.path)


# --- jobs ---------------------------------------------------------------------------------------
def make_job(
    study: str,
    dataset: str,
    loss: str,
    seed: int,
    params: dict | None = None,
    batch_size: int | None = None,
    quick: bool = False,
) -> dict:
    """A run's record without its results: identity, budget and the exact command."""
    variant = VARIANTS[dataset]
    params = dict(params or {})
    overrides = list(variant.overrides)
    if batch_size is not None:
        overrides += [*BATCH_STUDY, f"data.batch_size={batch_size}"]
    overrides += variant.quick if quick else ()
    overrides += [f"loss={loss}", *(f"{k}={v}" for k, v in params.items()), f"seed={seed}"]
    overrides += COMMON
    return {
        "study": study,
        "dataset": dataset,
        "loss": loss,
        "seed": seed,
        "loss_params": params,
        "batch_size": batch_size,
        "budget": "quick" if quick else "full",
        "overrides": overrides,
        "command": display_command(overrides),
    }


def run_all(jobs: list[dict], store: Store, log_dir: Path, runner: Runner) -> int:
    """Run the jobs that ``store`` lacks, one at a time, recording each as it ends. A failed run is
    reported and left out (rerun to retry); returns the number of failures."""
    todo = [job for job in jobs if store.find(job["command"]) is None]
    print(
        f"{len(jobs) - len(todo)} of {len(jobs)} runs already recorded in {store.path}", flush=True
    )
    failures, started = 0, time.perf_counter()
    for done, job in enumerate(todo, start=1):
        name = f"{job['study']} {job['dataset']}/{job['loss']}"
        name += f" {' '.join(f'{k}={v}' for k, v in job['loss_params'].items())}".rstrip()
        name += f" batch {job['batch_size']}" if job["batch_size"] else ""
        name += f" seed {job['seed']}"
        try:
            result = runner(job["overrides"], log_dir)
        except KeyboardInterrupt:
            print(f"[{done}/{len(todo)}] interrupted {name}: recorded runs are kept", flush=True)
            raise
        except Exception as error:  # keep going: the other runs are still useful
            failures += 1
            print(f"[{done}/{len(todo)}] FAILED {name}: {error}", flush=True)
            continue
        record = {k: v for k, v in job.items() if k != "overrides"}
        store.add({**record, **result, "finished": time.strftime("%Y-%m-%dT%H:%M:%S")})
        elapsed = time.perf_counter() - started
        metrics = result["metrics"]
        print(
            f"[{done}/{len(todo)}] {name}: macro-F1 {metrics['test_untuned/f1_macro']:.4f} at 0.5, "
            f"{metrics['test/f1_macro']:.4f} tuned; {result['epochs']} epochs, "
            f"{result['wall_time_s']:.0f} s (~{elapsed / done * (len(todo) - done) / 60:.0f} min "
            "left)",
            flush=True,
        )
    return failures


def sigmoid_f1_setting(store: Store, dataset: str, quick: bool) -> dict:
    """The chosen ``sigmoid_f1`` setting of ``dataset`` (the first grid point when quick)."""
    if quick:
        return SIGMOID_F1_GRID[0]
    sweep = report.select(store.runs, study="sweep", dataset=dataset, budget="full")
    return report.chosen_params(sweep, dataset)[0]


def study_jobs(study: str, dataset: str, store: Store, quick: bool, losses: Sequence[str]):
    if study == "sweep":
        seeds = SWEEP_SEEDS[:1] if quick else SWEEP_SEEDS
        grid = SIGMOID_F1_GRID[:1] if quick else SIGMOID_F1_GRID
        return [
            make_job("sweep", dataset, "sigmoid_f1", s, p, quick=quick) for s in seeds for p in grid
        ]
    needs_setting = study == "batch_size" or "sigmoid_f1" in losses  # else no sweep is needed
    params = {"sigmoid_f1": sigmoid_f1_setting(store, dataset, quick)} if needs_setting else {}
    if study == "compare":
        seeds = SEEDS[:1] if quick else SEEDS
        return [
            make_job("compare", dataset, loss, s, params.get(loss), quick=quick)
            for s in seeds
            for loss in losses
        ]
    sizes = BATCH_SIZES[:2] if quick else BATCH_SIZES
    seeds = BATCH_SEEDS[:1] if quick else BATCH_SEEDS
    return [
        make_job("batch_size", dataset, loss, s, params.get(loss), batch_size=b, quick=quick)
        for loss in ("sigmoid_f1", "bce")
        for b in sizes
        for s in seeds
    ]


# --- outputs ------------------------------------------------------------------------------------
def write_reports(out: Path, store: Store, quick: bool) -> None:
    """Summary into the JSON, the Markdown tables and both figures, from the recorded runs."""
    budget = "quick" if quick else "full"
    runs = report.select(store.runs, budget=budget)
    if not report.select(runs, study="compare"):
        return
    datasets = list(VARIANTS)
    store.summary = report.summarise(runs, LOSSES, datasets)
    store.save()
    setup = {}
    for name, variant in VARIANTS.items():
        setup[name] = " ".join([*variant.overrides, *(variant.quick if quick else ())])
    note = (
        "Generated by `python benchmarks/loss_comparison.py`"
        + (" --quick (CI-sized budgets: not a result)" if quick else "")
        + ". Every run is the `command` recorded in `loss_comparison.json` (one process, one "
        "thread), plus `" + " ".join(COMMON) + "`. Test metrics at threshold 0.5 "
        "(`test_untuned/*`) and at the per-label thresholds tuned on validation by "
        "`callbacks=tuned` (`test/*`)."
    )
    text = report.markdown_report(runs, LOSSES, datasets, setup, note, store.reproductions)
    (out / "loss_comparison.md").write_text(text)
    report.forest_plot(runs, LOSSES, datasets, out / "loss_comparison.png")
    if report.select(runs, study="batch_size"):
        report.batch_size_plot(runs, out / "loss_comparison_batch_size.png")


def reproduce(
    store: Store,
    log_dir: Path,
    runner: Runner = run_training,
    datasets: Sequence[str] | None = None,
) -> dict:
    """Re-run the first recorded ``compare`` run (of one of ``datasets``, default any) as a real
    ``sigmoidf1-train`` process by default, and compare its test macro-F1 at 0.5 and with the
    tuned thresholds."""
    record = next(
        r
        for r in store.runs
        if r["study"] == "compare" and (datasets is None or r["dataset"] in datasets)
    )
    job = make_job(
        "compare",
        record["dataset"],
        record["loss"],
        record["seed"],
        record["loss_params"],
        quick=record["budget"] == "quick",
    )
    if job["command"] != record["command"]:
        raise RuntimeError(f"the recorded command is not this script's: {record['command']}")
    result = runner(job["overrides"], log_dir / "reproduce")
    names = ("test_untuned/f1_macro", "test/f1_macro")
    check = {
        "command": record["command"],
        "recorded": {name: record["metrics"][name] for name in names},
        "reproduced": {name: result["metrics"][name] for name in names},
    }
    check["within_0.01"] = all(
        abs(check["reproduced"][name] - check["recorded"][name]) <= 0.01 for name in names
    )
    store.reproductions = [r for r in store.reproductions if r["command"] != record["command"]]
    store.reproductions.append(check)
    store.save()
    for name in names:
        print(
            f"reproduced {name}: recorded {check['recorded'][name]:.6f}, "
            f"re-run {check['reproduced'][name]:.6f}",
            flush=True,
        )
    print("within 0.01" if check["within_0.01"] else "NOT within 0.01", flush=True)
    return check


def main(argv: Sequence[str] | None = None, runner: Runner | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="CI-sized: one seed, 1 epoch")
    parser.add_argument("--datasets", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--losses", nargs="+", choices=LOSSES, default=list(LOSSES))
    parser.add_argument("--studies", nargs="+", choices=STUDIES, default=list(STUDIES))
    parser.add_argument(
        "--batch-size-datasets", nargs="+", choices=list(VARIANTS), default=["yeast"]
    )
    parser.add_argument("--out", type=Path, default=None, help="default benchmarks/results")
    parser.add_argument("--log-dir", type=Path, default=REPO_ROOT / "logs", help="runs' log_dir")
    parser.add_argument(
        "--subprocess", action="store_true", help="each run in its own process (slower start-up)"
    )
    parser.add_argument("--reproduce", action="store_true", help="re-run one recorded command")
    parser.add_argument("--report-only", action="store_true", help="only tables and figures")
    args = parser.parse_args(argv)

    out = args.out or REPO_ROOT / ("logs/bench/quick" if args.quick else "benchmarks/results")
    store = Store(out / "loss_comparison.json")
    if args.reproduce:
        check = reproduce(store, args.log_dir, runner or run_training, args.datasets)
        write_reports(out, store, args.quick)
        return 0 if check["within_0.01"] else 1
    if args.report_only:
        write_reports(out, store, args.quick)
        return 0

    runner = runner or (run_training if args.subprocess else run_in_process)
    failures = 0
    try:
        for dataset in args.datasets:
            for study in args.studies:
                if study == "batch_size" and dataset not in args.batch_size_datasets:
                    continue
                if study == "sweep" and "sigmoid_f1" not in args.losses:
                    continue
                jobs = study_jobs(study, dataset, store, args.quick, args.losses)
                print(f"== {study} on {dataset} ({VARIANTS[dataset].title}): {len(jobs)} runs")
                failures += run_all(jobs, store, args.log_dir, runner)
                write_reports(out, store, args.quick)
    except KeyboardInterrupt:
        write_reports(out, store, args.quick)
        print(f"Interrupted; {len(store.runs)} runs recorded in {store.path}: rerun to continue")
        return 130
    print(f"Results in {out}" + (f"; {failures} runs FAILED (rerun to retry)" if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
