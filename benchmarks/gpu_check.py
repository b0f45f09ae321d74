"""The one-command GPU check: does the whole GPU path of the template work, and how fast is it?

    python benchmarks/gpu_check.py                             # every part (target: < 8 min)
    python benchmarks/gpu_check.py --parts fit_test ddp        # some parts only
    python benchmarks/gpu_check.py --json /tmp/report.json     # report elsewhere
    python benchmarks/gpu_check.py --quick                     # the reduced sizes, also on a GPU
    python benchmarks/gpu_check.py --cpu                       # the CPU form even with a GPU

Writes one JSON report (default ``benchmarks/results/gpu_check.json``) and prints a summary table;
exits 1 when any part fails. Each part reports ``name``, ``status`` (pass, fail or skip),
``seconds``, ``error`` (on failure: the message and the last traceback lines), ``reason`` (on a
skip) and its measured figures; the report also records the environment (versions, devices, CUDA,
threads, load average, date). On a machine without a GPU the same parts run on the CPU in a reduced
form (1 epoch, small limits, 2 gloo processes for DDP, 1k/10k labels): that form runs in the test
suite (``tests/test_gpu_check.py``).

Parts (``--parts`` takes these names):

- ``fit_test``: ``sigmoidf1-train trainer=gpu`` on Yeast (MLP), fit + test through the real CLI;
  the test metrics, and the device, precision and peak GPU memory seen inside the run.
- ``fashion_resnet``: ``data=multi_fashion_mnist model/backbone=torchvision`` (resnet18, random
  init), small sizes; skipped unless the Fashion-MNIST idx files are in ``--fashion-mnist-dir``
  (the Debian package dataset-fashion-mnist).
- ``bf16_mixed``, ``fp16_mixed``: ``trainer.precision=bf16-mixed`` / ``16-mixed`` on Yeast; the
  logits' dtype under autocast is checked (16-mixed is GPU-only: skipped in the CPU form).
- ``compile``: ``model.compile=true`` on Yeast (torch inductor; needs a C compiler on CPU).
- ``ddp``: ``trainer=ddp trainer.devices=<all GPUs>`` (CPU form: ``trainer=ddp_cpu``, 2 gloo
  processes) with the global sigmoidF1 (``sync_dist`` auto); every rank's device and world size.
- ``ddp_gradients``: in this script, N processes (one per GPU over nccl; CPU form: 2 over gloo) run
  sigmoidF1 with ``sync_dist=True`` under ``DistributedDataParallel`` on uneven shards of one
  batch; their gradients must equal one process's on the whole batch (max abs difference < 1e-5).
- ``throughput``: the template (``benchmarks/throughput.py``'s ``template`` variant, on the
  device) against a plain PyTorch loop on the same device, data and model; the ratio is recorded
  (no threshold).
- ``loss_time``: sigmoid_f1 against ``binary_cross_entropy_with_logits``, forward + backward at
  batch 256 and 10k/100k labels (CPU form: 1k/10k), synchronised timing; the ratio is recorded.

The CLI runs happen in subprocesses under a temporary root (``SIGMOIDF1_ROOT``); a callback of this
file (``Probe``, added as ``+callbacks.gpu_check_probe``) records from inside each run what it ran
on and the peak GPU memory (``torch.cuda.max_memory_allocated``) of fit and test.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(__file__).resolve().parent
SRC_DIR = REPO_ROOT / "src"
sys.path[:0] = [str(SRC_DIR), str(BENCH_DIR)]  # run from a checkout; throughput.py is a sibling

DEFAULT_JSON = BENCH_DIR / "results" / "gpu_check.json"
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist
QUIET = ["extras.print_config=false", "callbacks.progress_bar=null", "callbacks.model_summary=null"]
GRADIENT_TOLERANCE = 1e-5  # max abs gradient difference, DDP vs one process (float64)
AVERAGES = ("macro", "micro")  # the sigmoidF1 variants of the gradient check


class Skip(Exception):
    """A part that cannot run here; the message is the reason."""


@dataclass
class Plan:
    """What this machine runs: the GPU form, or the reduced CPU form."""

    gpus: int  # 0 = the CPU form
    quick: bool
    root: Path  # temporary root of every run
    fashion_mnist_dir: Path
    timeout: int = 300  # seconds per CLI run (or process group)
    runs: int = 0  # CLI runs so far (each gets its own folder)

    @property
    def on_gpu(self) -> bool:
        return self.gpus > 0

    @property
    def device(self) -> str:
        return "cuda" if self.on_gpu else "cpu"

    @property
    def trainer(self) -> str:
        return "gpu" if self.on_gpu else "cpu"

    @property
    def epochs(self) -> int:
        return 1 if self.quick else 3

    @property
    def limits(self) -> list[str]:
        """Batch limits of the short Yeast runs (the reduced form only: Yeast is small)."""
        if not self.quick:
            return []
        return ["+trainer.limit_train_batches=4", "+trainer.limit_val_batches=1"]

    @property
    def world(self) -> int:
        """DDP processes: one per GPU, or 2 on CPU (trainer=ddp_cpu)."""
        return self.gpus if self.on_gpu else 2

    @property
    def threads(self) -> int:
        """OMP threads of the throughput processes (1 on CPU as in benchmarks/throughput.py)."""
        return min(8, os.cpu_count() or 1) if self.on_gpu else 1


# --- the environment ------------------------------------------------------------------------------
def environment(plan: Plan) -> dict:
    import lightning

    cuda = torch.cuda.is_available()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "form": "gpu" if plan.on_gpu else "cpu",
        "quick": plan.quick,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python", *sys.argv]),
        "git_commit": commit or None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "cuda_available": cuda,
        "cuda_version": torch.version.cuda,
        "cudnn_version": torch.backends.cudnn.version() if cuda else None,
        "gpu_count": torch.cuda.device_count() if cuda else 0,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if cuda
        else [],
        "bf16_supported": torch.cuda.is_bf16_supported() if cuda else None,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "torch_threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


# --- a callback that every CLI run of this check loads ----------------------------------------
class Probe(Callback):
    """Records, from inside a run, what it ran on (device, precision, world size, strategy, compiled
    backbone, the dtype of the logits in training) and the peak GPU memory of fit and test; writes
    ``<path>.rank<r>.json`` per process."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.record: dict = {}
        self._hook = None

    def _write(self, trainer) -> None:
        Path(f"{self.path}.rank{trainer.global_rank}.json").write_text(json.dumps(self.record))

    @staticmethod
    def _peak_mb() -> float | None:
        return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None

    def _see_logits(self, module, inputs, output) -> None:
        self.record.setdefault("train_logits_dtype", str(output.dtype).removeprefix("torch."))

    def on_fit_start(self, trainer, pl_module) -> None:
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self.record.update(
            device=str(pl_module.device),
            precision=str(trainer.precision),
            world_size=trainer.world_size,
            strategy=type(trainer.strategy).__name__,
            compiled=getattr(pl_module.backbone, "_compiled_call_impl", None) is not None,
        )
        self._hook = pl_module.register_forward_hook(self._see_logits)
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._hook is not None:  # the first batch shows the training dtype; stop looking
            self._hook.remove()
            self._hook = None

    def on_fit_end(self, trainer, pl_module) -> None:
        self.record.update(fit_s=time.perf_counter() - self._start, peak_fit_mb=self._peak_mb())
        self._write(trainer)

    def on_test_start(self, trainer, pl_module) -> None:
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    def on_test_end(self, trainer, pl_module) -> None:
        self.record.update(peak_test_mb=self._peak_mb())
        self._write(trainer)


# --- running the CLI ---------------------------------------------------------------------------
def child_env(root: Path, extra: dict | None = None) -> dict:
    """This checkout's sources and benchmarks first on the path (the probe's module), quiet."""
    path = [str(SRC_DIR), str(BENCH_DIR), os.environ.get("PYTHONPATH", "")]
    return {
        **os.environ,
        "SIGMOIDF1_ROOT": str(root),
        "PYTHONPATH": os.pathsep.join(p for p in path if p),
        "PYTHONWARNINGS": "ignore",
        **(extra or {}),
    }


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def probe_overrides(path: Path) -> list[str]:
    return [
        "+callbacks.gpu_check_probe._target_=gpu_check.Probe",
        f"+callbacks.gpu_check_probe.path={path}",
    ]


def train_cli(plan: Plan, overrides: list[str]) -> dict:
    """``python -m sigmoidf1.train overrides...`` in its own folder; returns the command, its wall
    time, the test metrics and the probe's records (one per process)."""
    plan.runs += 1
    root = plan.root / f"run{plan.runs}"
    root.mkdir(parents=True)
    probe = root / "probe"
    command = [
        sys.executable,
        "-m",
        "sigmoidf1.train",
        *QUIET,
        *overrides,
        *probe_overrides(probe),
    ]
    start = time.perf_counter()
    result = subprocess.run(
        command,
        cwd=root,
        env=child_env(root),
        capture_output=True,
        text=True,
        timeout=plan.timeout,
    )
    seconds = time.perf_counter() - start
    shown = "sigmoidf1-train " + " ".join(overrides)
    if result.returncode != 0:
        raise RuntimeError(
            f"`{shown}` exited {result.returncode}:\n{tail(result.stdout + result.stderr, 25)}"
        )
    lines = [
        line for line in (result.stdout + result.stderr).splitlines() if "Run directory:" in line
    ]
    if not lines:
        raise RuntimeError(f"`{shown}` logged no run directory:\n{tail(result.stderr)}")
    run_dir = Path(lines[-1].split("Run directory:")[-1].strip())
    metrics_file = run_dir / "test_metrics.json"
    if not metrics_file.exists():
        raise RuntimeError(f"`{shown}` wrote no {metrics_file.name} in {run_dir}")
    metrics = json.loads(metrics_file.read_text())
    records = [json.loads(p.read_text()) for p in sorted(root.glob("probe.rank*.json"))]
    if not records:
        raise RuntimeError(f"`{shown}`: the probe callback wrote nothing")
    return {"command": shown, "cli_s": seconds, "test_metrics": metrics, "processes": records}


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def summarise_run(run: dict, device: str, precision: str = "32-true", world: int = 1) -> dict:
    """Check what the run ran on; keep the headline figures."""
    records = run["processes"]
    expect(len(records) == world, f"{len(records)} processes reported, expected {world}")
    for record in records:
        expect(
            record["device"].startswith(device),
            f"the model ran on {record['device']}, not {device}",
        )
        expect(record["precision"] == precision, f"precision {record['precision']} != {precision}")
        expect(record["world_size"] == world, f"world size {record['world_size']} != {world}")
    metrics = run["test_metrics"]
    for name in ("test/f1_macro", "test/f1_micro", "test/map_macro"):
        value = metrics.get(name)
        expect(value is not None and 0 <= value <= 1, f"{name} = {value}")
    peaks = [r.get(key) for r in records for key in ("peak_fit_mb", "peak_test_mb")]
    return {
        "command": run["command"],
        "cli_s": round(run["cli_s"], 2),
        "fit_s": round(max(r["fit_s"] for r in records), 2),
        "device": records[0]["device"],
        "precision": records[0]["precision"],
        "world_size": records[0]["world_size"],
        "strategy": records[0]["strategy"],
        "train_logits_dtype": records[0].get("train_logits_dtype"),
        "peak_gpu_mb": max(p for p in peaks if p is not None) if any(peaks) else None,
        "test_f1_macro": metrics["test/f1_macro"],
        "test_f1_micro": metrics["test/f1_micro"],
        "test_map_macro": metrics["test/map_macro"],
    }


def cli_overrides(plan: Plan) -> dict[str, list[str]]:
    """The overrides of every part that runs ``sigmoidf1-train`` (tests/test_gpu_check.py composes
    the GPU form's, so that a typo here shows without a GPU)."""
    yeast = ["data=yeast", f"trainer={plan.trainer}", f"trainer.max_epochs={plan.epochs}"]
    yeast += plan.limits
    if plan.on_gpu:  # a global batch of 64 per GPU: any number of GPUs divides it
        ddp = ["trainer=ddp", f"trainer.devices={plan.gpus}", f"data.batch_size={64 * plan.gpus}"]
    else:
        ddp = ["trainer=ddp_cpu"]
    fashion = [
        "data=multi_fashion_mnist",
        "model/backbone=torchvision",
        "model.backbone.name=resnet18",
        f"data.source_dir={plan.fashion_mnist_dir}",
        "data.download=false",
        f"trainer={plan.trainer}",
    ]
    if plan.quick:
        fashion += ["trainer.max_epochs=1", "data.num_train=256", "data.num_val=64"]
        fashion += ["data.num_test=64", "data.batch_size=32", "+trainer.limit_train_batches=4"]
    else:
        fashion += ["trainer.max_epochs=2", "data.num_train=4000", "data.num_val=1000"]
        fashion += ["data.num_test=1000"]
    return {
        "fit_test": yeast,
        "fashion_resnet": fashion,
        "bf16_mixed": [*yeast, "trainer.precision=bf16-mixed"],
        "fp16_mixed": [*yeast, "trainer.precision=16-mixed"],
        "compile": [*yeast, "model.compile=true"],
        "ddp": ["data=yeast", *ddp, f"trainer.max_epochs={plan.epochs}", *plan.limits],
        # the template variant of benchmarks/throughput.py (which adds its own overrides)
        "throughput": ["data=yeast", "loss=sigmoid_f1", "seed=0", f"trainer={plan.trainer}"],
    }


# --- the parts ------------------------------------------------------------------------------------
def part_fit_test(plan: Plan) -> dict:
    run = train_cli(plan, cli_overrides(plan)["fit_test"])
    return summarise_run(run, plan.device)


def part_fashion_resnet(plan: Plan) -> dict:
    folder = plan.fashion_mnist_dir
    needed = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"]
    missing = [n for n in needed if not any((folder / (n + s)).exists() for s in ("", ".gz"))]
    if missing:
        raise Skip(
            f"no Fashion-MNIST idx files in {folder} (apt-get install dataset-fashion-mnist, or "
            "--fashion-mnist-dir)"
        )
    run = train_cli(plan, cli_overrides(plan)["fashion_resnet"])
    return summarise_run(run, plan.device)


def part_bf16_mixed(plan: Plan) -> dict:
    if plan.on_gpu and not torch.cuda.is_bf16_supported():
        raise Skip(f"{torch.cuda.get_device_name(0)} has no bfloat16 support")
    run = train_cli(plan, cli_overrides(plan)["bf16_mixed"])
    figures = summarise_run(run, plan.device, precision="bf16-mixed")
    dtype = figures["train_logits_dtype"]
    expect(dtype == "bfloat16", f"logits under bf16-mixed are {dtype}, not bfloat16")
    return figures


def part_fp16_mixed(plan: Plan) -> dict:
    if not plan.on_gpu:
        raise Skip("16-mixed (float16 autocast with a gradient scaler) is GPU-only")
    run = train_cli(plan, cli_overrides(plan)["fp16_mixed"])
    figures = summarise_run(run, plan.device, precision="16-mixed")
    dtype = figures["train_logits_dtype"]
    expect(dtype == "float16", f"logits under 16-mixed are {dtype}, not float16")
    return figures


def part_compile(plan: Plan) -> dict:
    run = train_cli(plan, cli_overrides(plan)["compile"])
    figures = summarise_run(run, plan.device)
    expect(run["processes"][0]["compiled"], "the backbone was not compiled")
    return figures


def part_ddp(plan: Plan) -> dict:
    run = train_cli(plan, cli_overrides(plan)["ddp"])
    figures = summarise_run(run, plan.device, world=plan.world)
    figures["peak_gpu_mb_per_rank"] = [r.get("peak_fit_mb") for r in run["processes"]]
    return figures


def part_ddp_gradients(plan: Plan) -> dict:
    """N processes with DDP and sigmoidF1(sync_dist=True) vs one process on the global batch."""
    world, backend = plan.world, ("nccl" if plan.on_gpu else "gloo")
    out = plan.root / "ddp_gradients"
    out.mkdir()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    import torch.multiprocessing as mp

    context = mp.get_context("spawn")
    processes = [
        context.Process(target=gradient_worker, args=(rank, world, port, backend, str(out)))
        for rank in range(world)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=plan.timeout)
    hung = [p for p in processes if p.is_alive()]
    for process in hung:
        process.terminate()
        process.join(10)
    errors = "\n".join(tail(p.read_text()) for p in sorted(out.glob("rank*.err")))
    expect(not hung, f"{len(hung)} of {world} processes hung\n{errors}")
    codes = [p.exitcode for p in processes]
    expect(all(code == 0 for code in codes), f"processes exited {codes}\n{errors}")

    ranks = [torch.load(out / f"rank{rank}.pt") for rank in range(world)]
    figures: dict = {"backend": backend, "world_size": world, "shards": shard_sizes(world)}
    worst = 0.0
    for index, average in enumerate(AVERAGES):
        loss, grads = one_process_reference(average, world, plan.device)
        for rank, results in enumerate(ranks):
            got = results["cases"][index]
            loss_diff = abs(got["loss"] - loss)
            grad_diff = max(
                (g - r).abs().max().item() for g, r in zip(got["grads"], grads, strict=True)
            )
            worst = max(worst, grad_diff)
            figures[f"{average}_rank{rank}"] = {"loss_diff": loss_diff, "max_grad_diff": grad_diff}
            expect(
                loss_diff < GRADIENT_TOLERANCE, f"{average} rank {rank}: loss off by {loss_diff}"
            )
            expect(
                grad_diff < GRADIENT_TOLERANCE,
                f"{average} rank {rank}: gradients off by {grad_diff} (>= {GRADIENT_TOLERANCE})",
            )
    figures["max_grad_diff"] = worst
    figures["peak_gpu_mb_per_rank"] = [r["peak_gpu_mb"] for r in ranks]
    if world == 1:
        figures["note"] = "one GPU: one process, so the all-reduce sums a single shard"
    return figures


def shard_sizes(world: int) -> list[int]:
    return [5 + 2 * rank for rank in range(world)]  # uneven on purpose


def gradient_problem(world: int) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """A small float64 MLP and one global batch, identical in every process."""
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 12)
    ).double()
    size = sum(shard_sizes(world))
    inputs = torch.randn(size, 16, generator=generator, dtype=torch.float64)
    targets = (torch.rand(size, 12, generator=generator) < 0.3).double()
    targets[:5, 11] = 1  # label 11: positives in the first shard only
    targets[5:, 11] = 0
    return model, inputs, targets


def gradient_worker(rank: int, world: int, port: int, backend: str, out_dir: str) -> None:
    """One DDP process: the loss (sync_dist=True) and gradients of its shard, saved to a file."""
    try:
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel

        from sigmoidf1.losses import get_loss

        os.environ["MASTER_ADDR"] = "127.0.0.1"
        os.environ["MASTER_PORT"] = str(port)
        device = torch.device(f"cuda:{rank}" if backend == "nccl" else "cpu")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(
            backend, rank=rank, world_size=world, timeout=datetime.timedelta(seconds=120)
        )
        model, inputs, targets = gradient_problem(world)
        model = model.to(device)
        ddp = DistributedDataParallel(model, device_ids=[rank] if device.type == "cuda" else None)
        start = sum(shard_sizes(world)[:rank])
        shard = slice(start, start + shard_sizes(world)[rank])
        x, y = inputs[shard].to(device), targets[shard].to(device)
        cases = []
        for average in AVERAGES:
            model.zero_grad(set_to_none=True)
            loss = get_loss("sigmoid_f1", average=average, sync_dist=True)(ddp(x), y)
            loss.backward()
            grads = [p.grad.detach().cpu().clone() for p in model.parameters()]
            cases.append({"loss": loss.item(), "grads": grads})
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        torch.save({"cases": cases, "peak_gpu_mb": peak}, Path(out_dir) / f"rank{rank}.pt")
        dist.barrier()
        dist.destroy_process_group()
    except BaseException:
        (Path(out_dir) / f"rank{rank}.err").write_text(traceback.format_exc())
        raise


def one_process_reference(
    average: str, world: int, device: str
) -> tuple[float, list[torch.Tensor]]:
    """The loss and gradients of one process on the whole global batch."""
    from sigmoidf1.losses import get_loss

    model, inputs, targets = gradient_problem(world)
    model = model.to(device)
    loss = get_loss("sigmoid_f1", average=average, sync_dist=False)(
        model(inputs.to(device)), targets.to(device)
    )
    loss.backward()
    return loss.item(), [p.grad.detach().cpu() for p in model.parameters()]


def part_throughput(plan: Plan) -> dict:
    """The template's training throughput against a plain loop, both on the device."""
    import throughput  # benchmarks/throughput.py

    epochs = 2 if plan.quick else 4  # the first epoch is a warm-up, not counted
    overrides = cli_overrides(plan)["throughput"]
    root = plan.root / "throughput"
    root.mkdir()
    env = child_env(root, {"OMP_NUM_THREADS": str(plan.threads)})
    template = throughput.run_variant("template", overrides, epochs, env, root)
    out = root / "plain.json"
    command = [sys.executable, __file__, "--plain-worker", "--device", plan.device]
    command += ["--epochs", str(epochs), "--out", str(out), "--overrides", *overrides]
    result = subprocess.run(
        command, cwd=root, env=env, capture_output=True, text=True, timeout=plan.timeout
    )
    if result.returncode != 0:
        raise RuntimeError(f"the plain loop failed:\n{tail(result.stdout + result.stderr, 25)}")
    plain = json.loads(out.read_text())
    template_rate = throughput.examples_per_s(template, "steps_s")
    plain_rate = throughput.examples_per_s(plain, "steps_s")
    return {
        "device": plan.device,
        "epochs_per_process": epochs,
        "omp_threads": plan.threads,
        "template_examples_per_s": round(template_rate, 1),
        "template_epoch_examples_per_s": round(throughput.examples_per_s(template, "epoch_s"), 1),
        "plain_examples_per_s": round(plain_rate, 1),
        "ratio_template_to_plain": round(template_rate / plain_rate, 3),
    }


def compose_with_runtime(overrides: list[str], output_dir: Path):
    """The training config as the CLI composes it, ``${hydra:...}`` resolvable (build_model resolves
    the whole config; ``throughput.compose`` leaves the Hydra runtime unset, so it cannot)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from sigmoidf1 import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    return cfg


def plain_worker(overrides: list[str], device: str, epochs: int, out: Path) -> None:
    """benchmarks/throughput.py's plain loop, on ``device`` (the batches moved there)."""
    import lightning as L

    from sigmoidf1.pipeline import build_model, set_matmul_precision, setup_datamodule

    cfg = compose_with_runtime(overrides, out.parent)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    set_matmul_precision(cfg.get("float32_matmul_precision"))  # TF32 on CUDA, as the template
    datamodule = setup_datamodule(cfg.data)
    model = build_model(cfg, datamodule).to(device)
    optimizer = model.configure_optimizers()
    loss_fn = model.loss_fn
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    records = []
    model.train()
    for _ in range(epochs):
        sync()
        start, examples = time.perf_counter(), 0
        for inputs, targets in datamodule.train_dataloader():
            inputs, targets = inputs.to(device), targets.to(device)
            loss = loss_fn(model(inputs), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            examples += len(targets)
        sync()
        seconds = time.perf_counter() - start
        records.append({"examples": examples, "steps_s": seconds, "epoch_s": seconds})
    out.write_text(json.dumps(records))


def part_loss_time(plan: Plan) -> dict:
    """Forward + backward of sigmoid_f1 vs BCE-with-logits (batch 256), interleaved, synced."""
    import torch.nn.functional as F

    from sigmoidf1.losses import get_loss

    losses = {"bce": F.binary_cross_entropy_with_logits, "sigmoid_f1": get_loss("sigmoid_f1")}
    label_counts = [10_000, 100_000] if plan.on_gpu else [1_000, 10_000]
    repeats = 5 if plan.quick else 15
    threads = torch.get_num_threads()
    if not plan.on_gpu:  # as the throughput processes: on busy cores 2 threads wait on each other
        torch.set_num_threads(plan.threads)
    figures: dict = {"device": plan.device, "batch": 256, "repeats": repeats}
    figures["torch_threads"] = torch.get_num_threads()
    try:
        for labels in label_counts:
            timed = time_losses(losses, labels, torch.device(plan.device), repeats)
            figures[f"{labels}_labels"] = timed
    finally:
        torch.set_num_threads(threads)
    return figures


def time_losses(losses: dict[str, Callable], labels: int, device: torch.device, repeats: int):
    """Median ms per call of each loss on ``[256, labels]`` logits; the ratio; peak GPU memory."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def seconds_per_call(fn: Callable, inner: int) -> float:
        sync()
        start = time.perf_counter()
        for _ in range(inner):
            logits.grad = None
            fn(logits, targets).backward()
        sync()
        return (time.perf_counter() - start) / inner

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    generator = torch.Generator(device=device).manual_seed(0)
    logits = torch.randn(256, labels, device=device, generator=generator).requires_grad_()
    targets = (torch.rand(256, labels, device=device, generator=generator) < 0.1).float()
    for fn in losses.values():  # warm-up (kernels, allocator)
        seconds_per_call(fn, 3)
    inner = max(1, round(0.01 / max(seconds_per_call(losses["bce"], 3), 1e-9)))  # ~10 ms samples
    samples: dict[str, list[float]] = {name: [] for name in losses}
    for repeat in range(repeats):
        for name in list(losses) if repeat % 2 == 0 else list(reversed(losses)):
            samples[name].append(seconds_per_call(losses[name], inner))
    medians = {name: statistics.median(times) for name, times in samples.items()}
    return {
        "bce_ms": round(1e3 * medians["bce"], 4),
        "sigmoid_f1_ms": round(1e3 * medians["sigmoid_f1"], 4),
        "ratio_sigmoid_f1_to_bce": round(medians["sigmoid_f1"] / medians["bce"], 3),
        "inner": inner,
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None,
    }


PARTS: dict[str, Callable[[Plan], dict]] = {
    "fit_test": part_fit_test,
    "fashion_resnet": part_fashion_resnet,
    "bf16_mixed": part_bf16_mixed,
    "fp16_mixed": part_fp16_mixed,
    "compile": part_compile,
    "ddp": part_ddp,
    "ddp_gradients": part_ddp_gradients,
    "throughput": part_throughput,
    "loss_time": part_loss_time,
}


# --- the driver ----------------------------------------------------------------------------------
def run_part(name: str, plan: Plan) -> dict:
    print(f"[gpu_check] {name} ...", flush=True)
    start = time.perf_counter()
    report: dict = {"name": name}
    try:
        report |= {"status": "pass", **PARTS[name](plan)}
    except Skip as skip:
        report |= {"status": "skip", "reason": str(skip)}
    except Exception as error:  # a failed part is reported; the others still run
        trace = tail("".join(traceback.format_exception(error)), 8)
        report |= {"status": "fail", "error": f"{type(error).__name__}: {error}\n{trace}"}
    report["seconds"] = round(time.perf_counter() - start, 2)
    print(f"[gpu_check] {name}: {report['status']} ({report['seconds']:.1f} s)", flush=True)
    return report


def headline(part: dict) -> str:
    """One short line of the part's main figures for the summary table."""
    if part["status"] == "skip":
        return part["reason"]
    if part["status"] == "fail":
        return part["error"].splitlines()[0][:100]
    keys = [
        "test_f1_macro",
        "peak_gpu_mb",
        "train_logits_dtype",
        "world_size",
        "max_grad_diff",
        "ratio_template_to_plain",
    ]
    bits = [
        f"{k}={part[k]:.3g}" if isinstance(part[k], float) else f"{k}={part[k]}"
        for k in keys
        if part.get(k) is not None
    ]
    for key, value in part.items():
        if key.endswith("_labels"):
            bits.append(f"{key.split('_')[0]} labels: x{value['ratio_sigmoid_f1_to_bce']}")
    return ", ".join(bits)


def print_summary(report: dict) -> None:
    env = report["environment"]
    devices = ", ".join(env["gpus"]) or "CPU"
    print(
        f"\nGPU check ({env['form']} form) on {devices}: torch {env['torch']}, "
        f"lightning {env['lightning']}, CUDA {env['cuda_version']}"
    )
    print(f"{'part':<16}{'status':<8}{'seconds':>9}  figures")
    print("-" * 100)
    for part in report["parts"]:
        print(f"{part['name']:<16}{part['status']:<8}{part['seconds']:>9.1f}  {headline(part)}")
    counts = {s: sum(p["status"] == s for p in report["parts"]) for s in ("pass", "fail", "skip")}
    print(
        f"\n{counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped "
        f"in {report['seconds']:.0f} s; report: {report['json']}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS))
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="the report's path")
    parser.add_argument("--quick", action="store_true", help="the reduced sizes, also on a GPU")
    parser.add_argument("--cpu", action="store_true", help="the CPU form even with a GPU")
    parser.add_argument("--fashion-mnist-dir", type=Path, default=Path(FASHION_MNIST_DIR))
    # internal: the plain loop of the throughput part, in its own process
    parser.add_argument("--plain-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--device", help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--overrides", nargs="*", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.plain_worker:
        plain_worker(args.overrides, args.device, args.epochs, args.out)
        return 0

    gpus = 0 if args.cpu or not torch.cuda.is_available() else torch.cuda.device_count()
    if gpus == 0:
        why = "--cpu" if args.cpu else "no GPU visible (torch.cuda.is_available() is False)"
        print(f"[gpu_check] {why}: running the reduced CPU form of every part")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sigmoidf1-gpu-check-") as tmp:
        plan = Plan(
            gpus=gpus,
            quick=args.quick or gpus == 0,
            root=Path(tmp),
            fashion_mnist_dir=args.fashion_mnist_dir,
        )
        report = {"environment": environment(plan), "json": str(args.json)}
        report["parts"] = [run_part(name, plan) for name in args.parts]
    report["seconds"] = round(time.perf_counter() - start, 1)
    report["environment"]["load_average_at_end"] = list(os.getloadavg())
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print_summary(report)
    return 1 if any(part["status"] == "fail" for part in report["parts"]) else 0


if __name__ == "__main__":
    sys.exit(main())
