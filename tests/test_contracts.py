"""What every backbone and every dataset of the configs must do, the template's and yours alike
(the contracts are listed in ``sigmoidf1/backbones/__init__.py`` and ``sigmoidf1/data/base.py``).
Run after adding one::

    pytest tests/test_contracts.py tests/core/test_loss_contract.py

The options come from ``configs/model/backbone/`` and ``configs/data/``: nothing here lists them by
hand. Each failure names the contract that was broken and how to meet it. A dataset whose files
are not on this machine (a download, a folder, ``data.path``) is skipped with the reason.
"""

from __future__ import annotations

import urllib.request
from typing import Any

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from sigmoidf1.backbones import build_backbone
from sigmoidf1.data.base import MultilabelDataModule, plain_data
from sigmoidf1.keywords import accepted_keywords
from tests.conftest import CONFIG_DIR, compose_train

BACKBONES = sorted(path.stem for path in (CONFIG_DIR / "model" / "backbone").glob("*.yaml"))
DATASETS = sorted(path.stem for path in (CONFIG_DIR / "data").glob("*.yaml"))
# Sizes that keep the template's larger datasets quick here (a user's dataset runs as configured).
SMALL = {
    "multi_fashion_mnist": ["data.num_train=400", "data.num_val=100", "data.num_test=100"],
}
# Synthetic inputs for each data fact a backbone may take (what DataModules put in
# backbone_inputs): tabular features, images, token ids.
FACTS = {
    "in_features": ({"in_features": 7}, lambda: torch.randn(4, 7)),
    "in_channels": ({"in_channels": 3}, lambda: torch.randn(4, 3, 32, 32)),
    "vocab_size": (
        {"vocab_size": 50, "padding_idx": 0},
        lambda: {
            "input_ids": torch.randint(1, 50, (4, 6)),
            "attention_mask": torch.ones(4, 6, dtype=torch.int64),
        },
    ),
}


def broken(kind: str, name: str, contract: str, how: str) -> str:
    return f"{kind} {name!r} breaks the contract '{contract}': {how}"


def mandatory_missing(node: Any) -> list[str]:
    """Keys of a config left ``???`` (the user must set them)."""
    return [key for key in node if OmegaConf.is_missing(node, key)]


# --- backbones ------------------------------------------------------------------------------------
@pytest.mark.parametrize("option", BACKBONES)
def test_backbone_maps_its_inputs_to_features(option, tmp_path):
    node = compose_train([f"model/backbone={option}"], tmp_path).model.backbone
    missing = mandatory_missing(node)
    if missing:
        pytest.skip(f"model/backbone={option} needs {', '.join(missing)} (a pretrained model)")
    factory = instantiate(node)
    takes = [fact for fact in FACTS if fact in (accepted_keywords(factory) or [])]
    assert takes, broken(
        "backbone",
        option,
        "takes the data facts it needs by name",
        f"its constructor takes none of {', '.join(FACTS)}: name the argument after the fact the "
        "DataModule provides (backbone_inputs), and the template fills it in",
    )
    facts, make_inputs = FACTS[takes[0]]
    backbone = build_backbone(factory, facts)
    out_features = backbone.out_features
    features = backbone(make_inputs())
    assert isinstance(features, torch.Tensor) and features.shape == (4, out_features), broken(
        "backbone",
        option,
        "returns [batch, out_features]",
        f"it returned {getattr(features, 'shape', type(features))} for a batch of 4 with "
        f"out_features={out_features}; pool or flatten to one vector per example",
    )
    assert features.is_floating_point() and torch.isfinite(features).all(), broken(
        "backbone", option, "returns finite float features", f"got {features.dtype}"
    )
    trainable = [p for p in backbone.parameters() if p.requires_grad]
    if trainable:
        features.sum().backward()
        assert any(p.grad is not None for p in trainable), broken(
            "backbone",
            option,
            "is differentiable",
            "no parameter received a gradient: compute the features from the inputs with "
            "differentiable operations",
        )


# --- datasets -------------------------------------------------------------------------------------
def check_datamodule(dm: MultilabelDataModule, name: str) -> None:
    """The DataModule contract, after ``prepare_data()`` and ``setup()`` (see ``data/base.py``)."""

    def expect(condition: bool, contract: str, how: str) -> None:
        assert condition, broken("dataset", name, contract, how)

    labels = dm.label_names
    expect(
        bool(labels) and all(isinstance(label, str) for label in labels),
        "names its labels",
        "set self.label_names (a list of str, one per target column) in _load",
    )
    for split in ("train_set", "val_set", "test_set"):
        dataset = getattr(dm, split)
        expect(
            dataset is not None and len(dataset) > 0,
            "has three non-empty splits",
            f"set self.{split} to a non-empty Dataset in _load",
        )
    inputs, targets = next(iter(dm.train_dataloader()))
    expect(
        isinstance(targets, torch.Tensor)
        and targets.is_floating_point()
        and targets.shape[1:] == (len(labels),),
        "yields (inputs, targets [batch, num_labels] float)",
        f"got targets {getattr(targets, 'shape', type(targets))}; items must be (inputs, "
        "float tensor of 0/1 per label)",
    )
    expect(
        bool(((targets == 0) | (targets == 1)).all()),
        "has binary targets",
        "targets must be 0 or 1 (multi-hot rows)",
    )
    try:
        plain_data(dm.backbone_inputs, "backbone_inputs")
        state = plain_data(dm.state_dict(), "state_dict()")
    except TypeError as error:
        raise AssertionError(
            broken(
                "dataset",
                name,
                "stores plain data in checkpoints",
                f"{error}; backbone_inputs and state_dict() may hold str, numbers, lists and "
                "dicts only (checkpoints load with weights_only=True)",
            )
        ) from error
    expect(
        state.get("label_names") == labels,
        "stores its label names",
        "state_dict() must include the base class's (call super().state_dict())",
    )


def offline(*args: Any, **kwargs: Any) -> None:
    raise FileNotFoundError("its data is downloaded on first use (no network in tests)")


@pytest.mark.parametrize("option", DATASETS)
def test_dataset_meets_the_datamodule_contract(option, tmp_path, monkeypatch):
    cfg = compose_train([f"data={option}", *SMALL.get(option, [])], tmp_path)
    if "train_path" in cfg.data and not (cfg.data.get("path") or cfg.data.get("train_path")):
        pytest.skip(f"data={option} reads the user's files: needs data.path")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.setattr("sigmoidf1.data.npm.fetch_npm_tarball", offline, raising=False)
    dm = instantiate(cfg.data)
    assert isinstance(dm, MultilabelDataModule), broken(
        "dataset",
        option,
        "is a MultilabelDataModule",
        "subclass sigmoidf1.data.base.MultilabelDataModule and implement _load",
    )
    try:
        dm.prepare_data()
    except FileNotFoundError as error:
        pytest.skip(f"data={option}: {error}")
    dm.setup("fit")
    check_datamodule(dm, option)


def test_the_data_contract_check_discriminates(tmp_path):
    """A DataModule that forgets its label names fails with the contract's message."""

    class Nameless(MultilabelDataModule):
        def _load(self) -> None:
            data = torch.utils.data.TensorDataset(torch.randn(8, 3), torch.ones(8, 2))
            self.train_set = self.val_set = self.test_set = data
            self.label_names = ["a", "b"]

    dm = Nameless(batch_size=4)
    dm.setup("fit")
    dm.label_names = [0, 1]
    with pytest.raises(AssertionError, match="breaks the contract 'names its labels'"):
        check_datamodule(dm, "nameless")
