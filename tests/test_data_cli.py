"""The real CLI on users' own files: default and overridden backbones, and what checkpoints carry
for prediction (the DataModule state, loads with ``weights_only=True``, without training data)."""

from __future__ import annotations

import shutil

import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from sigmoidf1.checkpoints import load_trained
from tests.conftest import QUIET, read_json, run_cli, run_dir_from_output
from tests.data_fixtures import text_rows, write_image, write_text_file

SHORT = [
    "trainer.max_epochs=2",
    "callbacks.early_stopping=null",
    "callbacks.per_label_report=null",
    "logger=csv",
]


def rebuild_for_prediction(checkpoint_path):
    """What `sigmoidf1-predict` does: model and DataModule from the checkpoint alone."""
    model, datamodule = load_trained(checkpoint_path)  # weights_only=True
    return OmegaConf.create(model.hparams.run_config), datamodule, model


@pytest.mark.slow
def test_csv_text_trains_with_the_embedding_bag_and_predicts_from_its_checkpoint(workdir):
    data = write_text_file(workdir / "inputs" / "train.jsonl.gz", text_rows(120))
    result = run_cli(
        "train",
        "data=csv_text",
        f"data.path={data}",
        "data.min_freq=1",
        *SHORT,
        *QUIET,
        cwd=workdir,
    )
    run_dir = run_dir_from_output(result)
    assert read_json(run_dir / "test_metrics.json")["test/f1_micro"] > 0.0
    assert list(
        (workdir / "data" / "csv_text" / "tokens").glob("tokens-*.pt")
    )  # under paths.data_dir

    shutil.rmtree(workdir / "inputs")  # prediction must not need the training data
    stored, datamodule, model = rebuild_for_prediction(run_dir / "checkpoints" / "last.ckpt")
    assert stored.model.backbone._target_.endswith("EmbeddingBag")
    assert datamodule.label_names == sorted(
        {name for row in text_rows(120) for name in row["labels"]}
    )
    new = write_text_file(
        workdir / "new.csv", [{"text": "sports sportsword"}, {"text": "unseen words"}]
    )
    batch = next(iter(DataLoader(datamodule.predict_dataset(str(new)), batch_size=2)))
    with torch.no_grad():
        assert model(batch).shape == (2, len(datamodule.label_names))


@pytest.mark.slow
def test_csv_image_trains_with_a_torchvision_backbone_from_the_command_line(workdir):
    rows = []
    for i in range(40):
        color, label = [((220, 20, 20), "red"), ((20, 220, 20), "green"), ((20, 20, 220), "blue")][
            i % 3
        ]
        write_image(workdir / "images" / f"{i}.png", color)
        rows.append({"image": f"images/{i}.png", "labels": [label, "any"]})
    data = write_text_file(workdir / "labels.csv", rows)
    result = run_cli(
        "train",
        "data=csv_image",
        f"data.path={data}",
        "data.image_size=32",
        "data.batch_size=8",
        "data.num_workers=0",
        "model/backbone=torchvision",
        "model.backbone.name=resnet18",
        *SHORT,
        *QUIET,
        cwd=workdir,
    )
    run_dir = run_dir_from_output(result)
    assert set(read_json(run_dir / "test_metrics.json")) >= {"test/f1_macro", "test/f1_micro"}

    stored, datamodule, model = rebuild_for_prediction(run_dir / "checkpoints" / "last.ckpt")
    assert stored.model.backbone._target_.endswith("TorchvisionBackbone")
    assert datamodule.label_names == ["any", "blue", "green", "red"]
    new = write_text_file(
        workdir / "predict.csv", [{"image": "images/0.png"}, {"image": "images/1.png"}]
    )
    batch = next(iter(DataLoader(datamodule.predict_dataset(str(new)), batch_size=2)))
    assert batch.shape == (2, 3, 32, 32)
    with torch.no_grad():
        assert model(batch).shape == (2, 4)
