"""benchmarks/gpu_check.py: its CPU form runs end to end; its GPU form's command lines compose."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import hydra
import pytest

from tests.conftest import REPO_ROOT, compose_train

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

import gpu_check  # noqa: E402


def plan(tmp_path: Path, gpus: int, quick: bool) -> gpu_check.Plan:
    return gpu_check.Plan(
        gpus=gpus, quick=quick, root=tmp_path, fashion_mnist_dir=Path(gpu_check.FASHION_MNIST_DIR)
    )


@pytest.mark.parametrize(("gpus", "quick"), [(1, False), (4, False), (2, True)])
def test_gpu_form_command_lines_compose(tmp_path, gpus, quick):
    """Every CLI part of the GPU form composes to the config it means to run (no GPU needed)."""
    overrides = gpu_check.cli_overrides(plan(tmp_path, gpus, quick))
    assert set(overrides) <= set(gpu_check.PARTS)
    configs = {
        name: compose_train([*args, *gpu_check.probe_overrides(tmp_path / "probe")], tmp_path)
        for name, args in overrides.items()
    }
    for name, cfg in configs.items():
        assert cfg.trainer.accelerator == "gpu", name
        probe = hydra.utils.instantiate(cfg.callbacks.gpu_check_probe)
        assert isinstance(probe, gpu_check.Probe), name
    assert configs["fit_test"].trainer.devices == 1
    assert configs["fit_test"].trainer.max_epochs == (1 if quick else 3)
    assert configs["fit_test"].trainer.precision == "32-true"
    assert configs["bf16_mixed"].trainer.precision == "bf16-mixed"
    assert configs["fp16_mixed"].trainer.precision == "16-mixed"
    assert configs["compile"].model.compile is True
    assert configs["fit_test"].model.compile is False
    ddp = configs["ddp"]
    assert (ddp.trainer.strategy, ddp.trainer.devices) == ("ddp", gpus)
    assert ddp.data.batch_size % gpus == 0
    fashion = configs["fashion_resnet"]
    assert fashion.data._target_.endswith("MultiFashionMNISTDataModule")
    assert (fashion.model.backbone.name, fashion.model.backbone.weights) == ("resnet18", None)
    assert fashion.data.download is False
    if quick:
        assert configs["fit_test"].trainer.limit_train_batches == 4


def test_cpu_form_command_lines_compose(tmp_path):
    overrides = gpu_check.cli_overrides(plan(tmp_path, 0, True))
    for name, args in overrides.items():
        cfg = compose_train(args, tmp_path)
        assert cfg.trainer.accelerator == "cpu", name
    ddp = compose_train(overrides["ddp"], tmp_path)
    assert (ddp.trainer.devices, ddp.trainer.strategy.process_group_backend) == (2, "gloo")


@pytest.mark.slow
def test_cpu_form_runs_every_part(tmp_path):
    report_path = tmp_path / "report.json"
    python_path = os.pathsep.join(
        p for p in (str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH")) if p
    )
    result = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "benchmarks" / "gpu_check.py"),
            "--cpu",
            "--json",
            str(report_path),
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": python_path, "PYTHONWARNINGS": "ignore"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "running the reduced CPU form" in result.stdout

    report = json.loads(report_path.read_text())
    env = report["environment"]
    assert env["form"] == "cpu" and env["gpu_count"] == 0
    for key in ("torch", "lightning", "cuda_version", "torch_threads", "load_average", "date"):
        assert key in env, key
    parts = {part["name"]: part for part in report["parts"]}
    assert list(parts) == list(gpu_check.PARTS)
    for name, part in parts.items():
        assert part["status"] in ("pass", "skip"), (name, part.get("error"))
        assert part["seconds"] >= 0, name
        if part["status"] == "skip":
            assert part["reason"], name
    assert parts["fp16_mixed"]["status"] == "skip"
    for name in ("fit_test", "bf16_mixed", "compile", "ddp"):
        part = parts[name]
        assert part["status"] == "pass", name
        assert part["device"] == "cpu", name
        assert 0 <= part["test_f1_macro"] <= 1, name
        assert part["peak_gpu_mb"] is None, name
    assert parts["bf16_mixed"]["train_logits_dtype"] == "bfloat16"
    assert parts["ddp"]["world_size"] == 2
    gradients = parts["ddp_gradients"]
    assert gradients["world_size"] == 2 and gradients["backend"] == "gloo"
    assert gradients["max_grad_diff"] < 1e-5
    assert parts["throughput"]["ratio_template_to_plain"] > 0
    for labels in (1000, 10000):
        assert parts["loss_time"][f"{labels}_labels"]["ratio_sigmoid_f1_to_bce"] > 0
