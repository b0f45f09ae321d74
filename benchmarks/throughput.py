"""What does the template cost? Training throughput of ``sigmoidf1-train`` vs a plain PyTorch loop.

    python benchmarks/throughput.py                          # Yeast + MLP, 5 interleaved rounds
    python benchmarks/throughput.py --rounds 3 --epochs 6 --json benchmarks/results/throughput.json
    python benchmarks/throughput.py --dataset multi_fashion_mnist --overrides data.num_train=2000

Three kinds of process run in interleaved rounds (the order rotates every round), all with the same
config (data, model, batch size, loss, seed) and ``OMP_NUM_THREADS=--threads``:

- ``template``: the real ``sigmoidf1-train`` with its default callbacks (checkpointing, progress
bar,
  CSV logger, LR monitor, summary) minus early stopping, ``test=false``, plus ``ThroughputProbe``;
- ``plain``: a hand-written loop (``forward, loss, zero_grad, backward, step``) over the same
  DataModule's train loader, on the model the config builds (``--plain-worker``);
- ``plain+metrics``: the same loop plus the template's training ``MetricCollection``
  (``build_train_metrics``; update every step on sigmoid probabilities, compute and reset at epoch
  end): the cost of the metrics alone;
- ``lightning``: the same model and loss in a minimal ``LightningModule`` (``training_step`` returns
  the loss, nothing logged) under a bare ``Trainer`` (no logger, checkpointing, progress bar or
  validation): what Lightning itself costs, so that the template's own share can be told apart.

Throughput is training examples per second over the epochs after the first (warm-up), counting
``steps`` (first batch fetched to last optimizer step done) and, for the template, the ``epoch``
cycle too: everything from one training epoch start to the next *except validation* (epoch-end
metric
computation, logging, checkpointing). Medians over rounds. Also measured: the cost of one
``MetricCollection.update`` per step, and the wall time of ``sigmoidf1-train --help`` and of a
``debug=fdr`` run (fresh processes, median of ``--startup-repeats``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from lightning.pytorch.callbacks import Callback

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(__file__).resolve().parent
QUIET = ["extras.print_config=false"]


class ThroughputProbe(Callback):
    """Records, per training epoch, the examples seen, the time of the training steps, and the whole
    epoch cycle minus validation; writes them as JSON to ``path`` when fitting ends."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.epochs: list[dict] = []
        self._start = self._last = self._val_start = None
        self._examples = 0
        self._val_time = 0.0

    def _close_cycle(self, now: float) -> None:
        if self._start is not None:
            self.epochs.append(
                {
                    "examples": self._examples,
                    "steps_s": self._last - self._start,
                    "epoch_s": now - self._start - self._val_time,
                }
            )

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        now = time.perf_counter()
        self._close_cycle(now)
        self._start, self._examples, self._val_time = now, 0, 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._last = time.perf_counter()
        self._examples += len(batch[1])

    def on_validation_start(self, trainer, pl_module) -> None:
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        self._val_time += time.perf_counter() - self._val_start

    def on_fit_end(self, trainer, pl_module) -> None:
        self._close_cycle(time.perf_counter())
        Path(self.path).write_text(json.dumps(self.epochs))


# --- the plain loop (runs in its own process: --plain-worker) -------------------------------------
def data_and_model(cfg):
    """The DataModule (set up) and the model, built as ``sigmoidf1-train`` builds them."""
    import hydra

    from sigmoidf1.pipeline import setup_datamodule

    datamodule = setup_datamodule(cfg.data)
    model = hydra.utils.instantiate(
        cfg.model,
        label_names=datamodule.label_names,
        backbone_inputs=datamodule.backbone_inputs,
        loss=cfg.loss,
        _recursive_=False,
    )
    return datamodule, model


def compose(overrides: Sequence[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from sigmoidf1 import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return hydra_compose(config_name="train", overrides=list(overrides))


def plain_worker(overrides: Sequence[str], epochs: int, with_metrics: bool, out: Path) -> None:
    """Train ``epochs`` epochs with a hand-written loop on the config's data, model and loss."""
    import lightning as L
    import torch

    from sigmoidf1.metrics import build_train_metrics

    cfg = compose(overrides)
    L.seed_everything(cfg.seed, workers=True)
    datamodule, model = data_and_model(cfg)
    optimizer = model.configure_optimizers()
    loss_fn = model.loss_fn
    metrics = build_train_metrics(len(datamodule.label_names)) if with_metrics else None
    loader = datamodule.train_dataloader()
    records = []
    model.train()
    for _ in range(epochs):
        start, examples = time.perf_counter(), 0
        for inputs, targets in loader:
            logits = model(inputs)
            loss = loss_fn(logits, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if metrics is not None:
                metrics.update(torch.sigmoid(logits.detach()), targets.int())
            examples += len(targets)
        steps = time.perf_counter() - start
        if metrics is not None:
            metrics.compute()
            metrics.reset()
        records.append(
            {"examples": examples, "steps_s": steps, "epoch_s": time.perf_counter() - start}
        )
    out.write_text(json.dumps(records))


def lightning_worker(overrides: Sequence[str], epochs: int, out: Path) -> None:
    """Train ``epochs`` epochs of the config's model and loss under a bare Lightning ``Trainer``."""
    import lightning as L

    cfg = compose(overrides)
    L.seed_everything(cfg.seed, workers=True)
    datamodule, model = data_and_model(cfg)

    class Bare(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = model

        def training_step(self, batch, batch_idx):
            inputs, targets = batch
            return self.net.loss_fn(self.net(inputs), targets)

        def configure_optimizers(self):
            return self.net.configure_optimizers()

    probe = ThroughputProbe(str(out))
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[probe],
    )
    trainer.fit(Bare(), train_dataloaders=datamodule.train_dataloader())


# --- the driver ---------------------------------------------------------------------------------
def train_command() -> list[str]:
    script = Path(sys.executable).with_name("sigmoidf1-train")
    return [str(script)] if script.exists() else [sys.executable, "-m", "sigmoidf1.train"]


def environment(threads: int, root: Path) -> dict[str, str]:
    python_path = os.pathsep.join(
        p for p in (str(BENCH_DIR), os.environ.get("PYTHONPATH", "")) if p
    )
    return {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "PYTHONWARNINGS": "ignore",
        "PYTHONPATH": python_path,
        "SIGMOIDF1_ROOT": str(root),
    }


def run_variant(kind: str, overrides: list[str], epochs: int, env: dict, tmp: Path) -> list[dict]:
    out = tmp / f"{kind}-{time.time_ns()}.json"
    if kind == "template":
        command = [
            *train_command(),
            *overrides,
            *QUIET,
            f"trainer.max_epochs={epochs}",
            "test=false",
            "callbacks.early_stopping=null",
            f"paths.log_dir={tmp / 'logs'}",
            "+callbacks.throughput_probe._target_=throughput.ThroughputProbe",
            f"+callbacks.throughput_probe.path={out}",
        ]
    else:
        command = [
            sys.executable,
            __file__,
            "--plain-worker",
            "--epochs",
            str(epochs),
            "--out",
            str(out),
        ]
        command += ["--with-metrics"] if kind == "plain+metrics" else []
        command += ["--lightning"] if kind == "lightning" else []
        command += ["--overrides", *overrides]
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{(result.stdout + result.stderr)[-3000:]}")
    return json.loads(out.read_text())


def examples_per_s(epochs: list[dict], key: str) -> float:
    measured = epochs[1:]  # the first epoch warms up
    return sum(e["examples"] for e in measured) / sum(e[key] for e in measured)


def metric_update_cost(overrides: list[str], repeats: int = 200) -> dict[str, float]:
    """Median seconds of one training-metrics update, and of one plain forward+backward+step, on a
    batch of the configured size; and of one epoch of metric bookkeeping as the module does it
    (chunked updates, compute, reset) for the training collection and for the full one that
    validation uses (in this process)."""
    import lightning as L
    import torch

    from sigmoidf1.metrics import ChunkedUpdates, build_metrics, build_train_metrics

    cfg = compose(overrides)
    L.seed_everything(cfg.seed)
    datamodule, model = data_and_model(cfg)
    optimizer = model.configure_optimizers()
    inputs, targets = next(iter(datamodule.train_dataloader()))
    num_labels = len(datamodule.label_names)
    metrics = build_train_metrics(num_labels)

    epoch_batches = [
        (torch.sigmoid(model(x)).detach(), y.int()) for x, y in datamodule.train_dataloader()
    ]

    def epoch_cost(collection) -> float:
        chunks, times = ChunkedUpdates(collection), []
        for _ in range(21):
            start = time.perf_counter()
            for batch in epoch_batches:
                chunks.add(*batch)
            chunks.flush()
            collection.compute()
            collection.reset()
            times.append(time.perf_counter() - start)
        return 1e3 * statistics.median(times[1:])

    def step() -> torch.Tensor:
        logits = model(inputs)
        loss = model.loss_fn(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return logits.detach()

    logits = step()
    probabilities, int_targets = torch.sigmoid(logits), targets.int()
    step_times, update_times = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        step_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        metrics.update(probabilities, int_targets)
        update_times.append(time.perf_counter() - start)
    start = time.perf_counter()
    metrics.compute()
    compute = time.perf_counter() - start
    return {
        "batch_size": len(targets),
        "step_ms": 1e3 * statistics.median(step_times),
        "metrics_update_ms": 1e3 * statistics.median(update_times),
        f"metrics_compute_after_{repeats}_updates_ms": 1e3 * compute,
        "train_metrics_per_epoch_ms": epoch_cost(build_train_metrics(num_labels)),
        "full_metrics_per_epoch_ms": epoch_cost(build_metrics(num_labels, "val/")),
    }


def lightning_log_cost(values: int = 10, repeats: int = 200) -> float:
    """Median milliseconds per value of Lightning's epoch-level logging: ``values`` scalar tensors
    logged into a fresh result collection (what ``self.log`` does in an epoch-end hook) and
    reduced once (``metrics()``, what the logger connector does at the epoch end). Uses Lightning's
    internal ``_ResultCollection``; ``nan`` where that is not importable."""
    try:
        from lightning.pytorch.trainer.connectors.logger_connector.result import _ResultCollection
    except ImportError:
        return float("nan")
    import torch

    logged = {f"train/metric_{i}": torch.tensor(0.5) for i in range(values)}
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        results = _ResultCollection(training=True)
        for name, value in logged.items():
            results.log("on_train_epoch_end", name, value, on_step=False, on_epoch=True)
        results.metrics(False)
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times) / values


def startup_times(env: dict, repeats: int, tmp: Path) -> dict[str, float]:
    """Median wall seconds of fresh processes: ``--help``, ``debug=fdr``, and bare imports."""
    cases = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import torch'": [sys.executable, "-c", "import torch"],
        "python -c 'import lightning'": [sys.executable, "-c", "import lightning"],
        "sigmoidf1-train --help": [*train_command(), "--help"],
        "sigmoidf1-train debug=fdr": [
            *train_command(),
            "debug=fdr",
            *QUIET,
            f"paths.log_dir={tmp / 'logs'}",
        ],
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, command in cases.items():  # interleaved
            start = time.perf_counter()
            result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
            times[name].append(time.perf_counter() - start)
            if result.returncode != 0:
                raise RuntimeError(f"{name} failed:\n{(result.stdout + result.stderr)[-3000:]}")
    heavy = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, sigmoidf1.train; "
            "print(sorted(m for m in ('torch', 'lightning', 'torchmetrics') if m in sys.modules))",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    return {
        **{name: statistics.median(values) for name, values in times.items()},
        "heavy modules imported by `import sigmoidf1.train`": heavy.stdout.strip(),
    }


def ratios(results: dict[str, list[list[dict]]]) -> dict:
    """Median examples/s of each variant, the ratios to the plain loop, and their per-round
    values (the spread)."""
    summary = {
        kind: {
            key: statistics.median(examples_per_s(r, key) for r in runs)
            for key in ("steps_s", "epoch_s")
        }
        for kind, runs in results.items()
    }
    plain = summary["plain"]["steps_s"]

    def per_round(kind: str, key: str, reference: str) -> list[float]:
        """``kind``'s examples/s over ``reference``'s steps, round by round."""
        return [
            round(examples_per_s(a, key) / examples_per_s(b, "steps_s"), 3)
            for a, b in zip(results[kind], results[reference], strict=True)
        ]

    return {
        "examples_per_s": summary,
        "ratio_template_steps_to_plain": summary["template"]["steps_s"] / plain,
        "ratio_template_epoch_to_plain": summary["template"]["epoch_s"] / plain,
        "ratio_plain_with_metrics_to_plain": summary["plain+metrics"]["steps_s"] / plain,
        "ratio_lightning_epoch_to_plain": summary["lightning"]["epoch_s"] / plain,
        "ratio_template_epoch_to_lightning_epoch": summary["template"]["epoch_s"]
        / summary["lightning"]["epoch_s"],
        "per_round": {
            "template_steps_to_plain": per_round("template", "steps_s", "plain"),
            "template_epoch_to_plain": per_round("template", "epoch_s", "plain"),
            "lightning_epoch_to_plain": per_round("lightning", "epoch_s", "plain"),
            "plain_with_metrics_to_plain": per_round("plain+metrics", "steps_s", "plain"),
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="yeast")
    parser.add_argument("--loss", default="sigmoid_f1")
    parser.add_argument("--overrides", nargs="*", default=[], help="extra Hydra overrides for both")
    parser.add_argument("--epochs", type=int, default=6, help="per process; the first is warm-up")
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="interleaved rounds of the 4 variants; 0: only the per-step costs and start-up",
    )
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of every process")
    parser.add_argument("--startup-repeats", type=int, default=5)
    parser.add_argument("--skip-startup", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    # internal: the plain loop's own process
    parser.add_argument("--plain-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--with-metrics", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--lightning", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.plain_worker and args.lightning:
        lightning_worker(args.overrides, args.epochs, args.out)
        return 0
    if args.plain_worker:
        plain_worker(args.overrides, args.epochs, args.with_metrics, args.out)
        return 0

    overrides = [f"data={args.dataset}", f"loss={args.loss}", "seed=0", *args.overrides]
    variants = ["template", "lightning", "plain", "plain+metrics"]
    results: dict[str, list[list[dict]]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="sigmoidf1-throughput-") as tmp_name:
        tmp = Path(tmp_name)
        env = environment(args.threads, REPO_ROOT)
        for round_index in range(args.rounds):
            shift = round_index % len(variants)
            order = variants[shift:] + variants[:shift]
            for kind in order:
                epochs = run_variant(kind, overrides, args.epochs, env, tmp)
                results[kind].append(epochs)
                print(
                    f"round {round_index + 1}/{args.rounds} {kind:>13}: "
                    f"{examples_per_s(epochs, 'steps_s'):8.0f} examples/s (steps), "
                    f"{examples_per_s(epochs, 'epoch_s'):8.0f} (epoch without validation)",
                    flush=True,
                )
        os.environ["SIGMOIDF1_ROOT"] = str(REPO_ROOT)
        import torch

        torch.set_num_threads(args.threads)  # as the measured processes
        per_step = metric_update_cost(overrides)
        per_step["lightning_log_ms_per_value"] = lightning_log_cost()
        startup = {} if args.skip_startup else startup_times(env, args.startup_repeats, tmp)

    report = {
        "command": "python benchmarks/throughput.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "overrides": overrides,
        "threads": args.threads,
        "epochs_per_process": args.epochs,
        "rounds": args.rounds,
        "machine": (
            f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
        ),
        "load_average_at_end": os.getloadavg(),
        **(ratios(results) if args.rounds else {}),
        "per_step": per_step,
        "startup_s": startup,
    }
    print(json.dumps(report, indent=2))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
