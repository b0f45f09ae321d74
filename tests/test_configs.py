"""Every option of every config group composes, resolves, and names importable targets."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf

from tests.conftest import CONFIG_DIR, compose_train

GROUPS = [
    "data",
    "loss",
    "model/backbone",
    "trainer",
    "logger",
    "callbacks",
    "debug",
    "experiment",
    "hparams_search",
    "extras",
    "paths",
    "hydra",
    "trust",
]
REQUIRED_GROUPS = [g for g in GROUPS if g != "hparams_search"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def targets(node) -> list[str]:
    """Every `_target_` string in a config tree."""
    found = []
    if isinstance(node, DictConfig):
        for key, value in node.items_ex(resolve=False):
            if key == "_target_":
                found.append(value)
            else:
                found += targets(value)
    elif isinstance(node, ListConfig):
        for value in node:
            found += targets(value)
    return found


CASES = [(group, option) for group in GROUPS for option in options(group)]


def test_every_group_has_options():
    for group in REQUIRED_GROUPS:
        assert options(group), f"config group {group} is empty"


@pytest.mark.parametrize(("group", "option"), CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_option_composes_resolves_and_imports(group: str, option: str, tmp_path: Path):
    if group in ("paths", "hydra", "extras", "trust"):  # one option each, already in the default
        cfg = compose_train([], tmp_path)
    else:
        cfg = compose_train([f"{group}={option}"], tmp_path)
    run_part = {k: v for k, v in cfg.items() if k != "hydra"}
    resolved = OmegaConf.create(OmegaConf.to_container(OmegaConf.create(run_part), resolve=False))
    for key in run_part:
        OmegaConf.to_container(cfg[key], resolve=True) if isinstance(cfg[key], DictConfig) else None
    assert str(cfg.paths.output_dir) == str(tmp_path / "run")
    for target in targets(resolved):
        if target.startswith(("wandb", "lightning.pytorch.loggers.wandb")):
            pytest.importorskip("wandb")
        assert get_object(target) is not None, f"{group}={option}: cannot import {target}"


def test_default_is_yeast_sigmoid_f1_csv(tmp_path: Path):
    cfg = compose_train([], tmp_path)
    assert cfg.data._target_.endswith("YeastDataModule")
    assert cfg.loss.name == "sigmoid_f1"
    assert list(cfg.logger) == ["csv"]
    assert cfg.callbacks.model_checkpoint.monitor == "val/f1_macro"
    assert cfg.callbacks.model_checkpoint.save_last is True
    assert cfg.callbacks.model_checkpoint.dirpath == str(tmp_path / "run" / "checkpoints")


def test_eval_config_composes(tmp_path: Path):
    cfg = compose_train(["ckpt_path=some.ckpt"], tmp_path, config_name="eval")
    assert cfg.ckpt_path == "some.ckpt" and cfg.task_name == "eval"


def test_no_config_states_num_labels():
    offenders = [str(p) for p in CONFIG_DIR.rglob("*.yaml") if "num_labels" in p.read_text()]
    assert not offenders, f"num_labels must come from the DataModule, found in {offenders}"
