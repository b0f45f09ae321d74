"""The CLI tests' forked runs (``tests/forked.py``) behave as a new process does."""

from __future__ import annotations

import logging
import re
import subprocess
import sys

import pytest

from sigmoidf1.utils.config import route_lightning_logs_through_root
from tests.conftest import run_cli
from tests.forked import exit_status, needs_a_fresh_interpreter


def normalized(output: str, root: str) -> list[str]:
    """The lines with the run's folder, times and figures blanked."""
    lines = output.replace(root, "<root>").splitlines()
    return sorted(re.sub(r"[\d.]+", "N", line) for line in lines)


@pytest.mark.slow
def test_a_forked_run_prints_and_exits_like_a_new_process(tmp_path):
    forked_root, fresh_root = tmp_path / "forked", tmp_path / "fresh"
    forked_root.mkdir()
    fresh_root.mkdir()
    overrides = ("trainer.max_epochs=1",)
    assert not needs_a_fresh_interpreter(overrides, None)
    forked = run_cli("train", *overrides, cwd=forked_root)
    fresh = run_cli("train", *overrides, cwd=fresh_root, env={})  # env: a new interpreter
    assert forked.returncode == fresh.returncode == 0
    assert "GPU available" in forked.stdout  # Lightning's lines, in Hydra's format
    for stream in ("stdout", "stderr"):
        assert normalized(getattr(forked, stream), str(forked_root)) == normalized(
            getattr(fresh, stream), str(fresh_root)
        ), stream

    refused = run_cli("train", "trainer.max_epochs=0.5", cwd=forked_root, check=False)
    assert refused.returncode != 0 and refused.stderr.strip()


def test_commands_that_start_processes_or_set_the_environment_get_a_new_interpreter(tmp_path):
    launcher = ["-m", "hydra/launcher=submitit_local"]
    for overrides in (["trainer=ddp_cpu"], launcher, ["logger=wandb"]):
        assert needs_a_fresh_interpreter(tuple(overrides), None), overrides
    assert needs_a_fresh_interpreter((), {"PYTHONWARNINGS": ""})
    assert not needs_a_fresh_interpreter((), {"PYTHONPATH": str(tmp_path)})  # put first on sys.path


def test_a_forked_run_imports_from_the_pythonpath_it_is_given(tmp_path):
    """A package that only the command's ``PYTHONPATH`` names (a user's own loss class) is found,
    as in a new interpreter started with that environment."""
    packages = tmp_path / "packages"
    (packages / "mylab_fork").mkdir(parents=True)
    (packages / "mylab_fork" / "__init__.py").write_text(
        "from sigmoidf1.losses import get_loss as my_loss\n"
    )
    overrides = ("trainer.max_epochs=1", "loss=bce", "loss._target_=mylab_fork.my_loss")
    result = run_cli("train", *overrides, cwd=tmp_path, env={"PYTHONPATH": str(packages)})
    assert "Run directory:" in result.stdout
    assert not needs_a_fresh_interpreter(("logger=csv", "trainer=cpu", "loss=bce"), None)


def test_lightning_imported_before_logging_is_set_up_still_logs_through_the_root(monkeypatch):
    """Lightning imported while the root logger had no handlers keeps a console handler of its own
    and stops propagating (a script that imports Lightning before the pipeline, a forked test
    run): its lines must still go through the root logger, once."""
    lightning_logger = logging.getLogger("lightning.pytorch")
    monkeypatch.setattr(lightning_logger, "handlers", [logging.StreamHandler()])
    monkeypatch.setattr(lightning_logger, "propagate", False)
    route_lightning_logs_through_root()
    assert lightning_logger.handlers == [] and lightning_logger.propagate


@pytest.mark.parametrize("code", [None, 0, 3, "a message"])
def test_exit_status_is_what_python_gives_a_system_exit(code, capsys):
    python = subprocess.run(
        [sys.executable, "-c", f"raise SystemExit({code!r})"], capture_output=True, text=True
    )
    assert exit_status(SystemExit(code)) == python.returncode
    assert capsys.readouterr().err == python.stderr
