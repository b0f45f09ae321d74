"""`tuner.lr_find=true`: Lightning's learning-rate range test before fit; its suggestion is the
learning rate the fit uses."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from sigmoidf1.lr_find import find_learning_rate
from sigmoidf1.utils.errors import ConfigError
from tests.conftest import QUIET, compose_train, read_json, run_cli, run_dir_from_output


def test_lr_find_is_off_by_default_and_then_does_nothing(tmp_path):
    cfg = compose_train([], tmp_path)
    assert cfg.tuner.lr_find is False
    assert find_learning_rate(None, None, None, cfg) is None


def test_lr_find_refuses_several_processes():
    cfg = OmegaConf.create({"tuner": {"lr_find": True}})
    with pytest.raises(ConfigError, match="one process"):
        find_learning_rate(SimpleNamespace(world_size=2), None, None, cfg)


@pytest.mark.slow
def test_lr_find_writes_its_curve_and_the_fit_uses_the_suggestion(workdir):
    configured = 0.0123
    run = run_cli(
        "train",
        "tuner.lr_find=true",
        "tuner.num_training=30",
        "tuner.min_lr=2e-6",
        f"model.optimizer.lr={configured}",
        "trainer.max_epochs=1",
        *QUIET,
        cwd=workdir,
    )
    run_dir = run_dir_from_output(run)
    assert (run_dir / "lr_find.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    found = read_json(run_dir / "lr_find.json")
    suggested = found["suggested_lr"]
    assert len(found["lr"]) == len(found["loss"]) > 10
    assert min(found["lr"]) <= suggested <= max(found["lr"])
    assert suggested != configured
    assert "Learning-rate finder suggests lr=" in run.stdout + run.stderr

    checkpoint = torch.load(
        run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True
    )
    assert checkpoint["hyper_parameters"]["optimizer"]["lr"] == pytest.approx(suggested, rel=1e-12)
    # the optimizer that trained (no scheduler: its rate is still the initial one)
    assert checkpoint["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(
        suggested, rel=1e-12
    )
    # the run's config keeps what was configured (a resume with the same command line passes)
    assert checkpoint["hyper_parameters"]["run_config"]["model"]["optimizer"]["lr"] == configured
    assert not list(run_dir.glob(".lr_find_*.ckpt"))  # the finder's temporary checkpoint is gone
