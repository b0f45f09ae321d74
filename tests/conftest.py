"""Shared fixtures: run the real CLI in a subprocess, with every output under a temporary folder.

Hydra and OmegaConf are imported where they are used: the core's tests (tests/core/) run in an
environment with torch and torchmetrics alone.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.forked import exit_status, needs_a_fresh_interpreter, run_forked

if TYPE_CHECKING:
    from omegaconf import DictConfig

# One torch thread per process, for this process and every one a test starts (they inherit the
# environment): `make test` runs two workers on two cores, and a torch process with a thread per
# core next to another one spins its threads against the other's. Two 5-epoch Yeast runs side by
# side took 10-12 s each with torch's default threads and 5.6 s with one (a run alone: 5.9 s and
# 5.5 s). A value the user set wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "configs"

# Keep test runs quiet and fast: no rich progress bar, no config tree.
QUIET = ["extras.print_config=false", "callbacks.progress_bar=null", "callbacks.model_summary=null"]


# The test metrics every run reports (DESIGN.md, "Logged metric names").
DESIGN_NAMES = {
    "f1_micro",
    "f1_macro",
    "f1_weighted",
    "f1_samples",
    "precision_macro",
    "recall_macro",
    "map_macro",
    "hamming",
    "exact_match",
    "card_mae",
}
DESIGN_TEST_METRICS = {f"test/{name}" for name in DESIGN_NAMES}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest tests first: the pages of the documentation (each runs many commands), then the
    other ``slow`` tests, then the rest. Two workers take tests in this order (pytest-xdist keeps
    it for tests outside a group), so the short ones fill the gaps at the end instead of one
    worker finishing a page alone while the other is idle. The order within each kind is kept."""

    def rank(item: pytest.Item) -> int:
        if item.nodeid.startswith("tests/test_docs.py::test_the_page_runs_as_written"):
            return 0
        return 1 if item.get_closest_marker("slow") else 2

    items.sort(key=rank)


def compose_train(overrides: list[str], tmp_path: Path, config_name: str = "train") -> DictConfig:
    """Compose like the CLI does, with a fake runtime so that `${hydra:...}` resolves."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            config_name,
            overrides=[f"paths.root_dir={tmp_path}", *overrides],
            return_hydra_config=True,
        )
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp_path / "run")
        cfg.hydra.runtime.cwd = str(tmp_path)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    return cfg


def run_cli(
    module: str,
    *overrides: str,
    cwd: Path,
    timeout: int = 600,
    check: bool = True,
    env: dict | None = None,
) -> subprocess.CompletedProcess:
    """Run ``python -m sigmoidf1.<module> overrides...`` with outputs under ``cwd``: in a fork of
    a warm helper interpreter, or a new interpreter where that matters (``tests/forked.py``)."""
    command = [sys.executable, "-m", f"sigmoidf1.{module}", *overrides]
    full_env = {**os.environ, "SIGMOIDF1_ROOT": str(cwd), "PYTHONWARNINGS": "ignore", **(env or {})}
    if needs_a_fresh_interpreter(overrides, env):
        result = subprocess.run(
            command, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
        )
    else:
        result = run_forked(module, overrides, cwd, full_env, timeout)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} exited {result.returncode}\n--- stdout\n{result.stdout[-4000:]}"
            f"\n--- stderr\n{result.stderr[-6000:]}"
        )
    return result


def train_text_model(workdir: Path, train_file: Path) -> Path:
    """Two epochs of the default model on the ``data=csv_text`` file ``train_file``, run into
    ``workdir/run``; returns its ``last.ckpt``."""
    run_cli(
        "train",
        *QUIET,
        "data=csv_text",
        f"data.path={train_file}",
        "data.batch_size=16",
        "trainer.max_epochs=2",
        f"hydra.run.dir={workdir / 'run'}",
        cwd=workdir,
    )
    return workdir / "run" / "checkpoints" / "last.ckpt"


def run_dir_from_output(result: subprocess.CompletedProcess) -> Path:
    """The run directory named on the last 'Run directory:' line a command logged."""
    lines = [
        line for line in (result.stdout + result.stderr).splitlines() if "Run directory:" in line
    ]
    assert lines, (
        f"no 'Run directory:' line in the output:\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
    )
    return Path(lines[-1].split("Run directory:")[-1].strip())


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty project root for one CLI run (logs/ and data/ land here)."""
    return tmp_path


@pytest.fixture
def cli(workdir, monkeypatch, capsys):
    """``cli("train", *overrides)``: run an entry point's ``main()`` in this process; returns a
    ``CompletedProcess`` with the exit code and the captured output, like ``run_cli``."""
    from hydra.core.global_hydra import GlobalHydra

    def run(module: str, *overrides: str) -> subprocess.CompletedProcess:
        main = importlib.import_module(f"sigmoidf1.{module}").main
        monkeypatch.setenv("SIGMOIDF1_ROOT", str(workdir))
        monkeypatch.setattr(sys, "argv", [f"sigmoidf1-{module}", *overrides])
        GlobalHydra.instance().clear()
        capsys.readouterr()
        code = 0
        try:
            main()
        except SystemExit as exit_:
            code = exit_status(exit_)
        finally:
            GlobalHydra.instance().clear()
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(overrides, code, out, err)

    return run


def once_per_session(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """A directory that ``build(directory)`` fills once per test session, shared by the xdist
    workers (the first one builds it under a lock; the others wait and reuse it)."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        directory = tmp_path_factory.mktemp(name)
        build(directory)
        return directory
    directory = tmp_path_factory.getbasetemp().parent / f"shared_{name}"  # this session's root
    lock, done = directory.with_suffix(".lock"), directory / ".done"
    while True:
        try:
            lock.mkdir()  # atomic: exactly one worker gets it
            break
        except FileExistsError:
            time.sleep(0.5)
    try:
        if not done.exists():
            directory.mkdir(exist_ok=True)
            build(directory)
            done.touch()
    finally:
        lock.rmdir()
    return directory
