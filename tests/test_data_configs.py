"""Data configs: each dataset picks its default backbone, the command line still wins, and every
DataModule instantiates from its config."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate

from tests.conftest import CONFIG_DIR, compose_train
from tests.data_fixtures import (
    text_rows,
    tiny_bert_fixture,  # noqa: F401  (fixture `tiny_bert`)
    write_fashion_mnist,
    write_reuters_tarball,
    write_text_file,
)

# the default backbone of each of the template's datasets (a cloner's may pick any)
DEFAULT_BACKBONES = {
    "yeast": "MLP",
    "reuters": "EmbeddingBag",
    "csv_text": "EmbeddingBag",
    "multi_fashion_mnist": "CNN",
    "csv_image": "CNN",
    "coco": "CNN",
    "voc": "CNN",
    "wordnet": "EmbeddingBag",
}


def backbone_of(cfg) -> str:
    return cfg.model.backbone._target_.rsplit(".", 1)[-1]


@pytest.mark.parametrize("data", sorted(p.stem for p in (CONFIG_DIR / "data").glob("*.yaml")))
def test_every_data_option_composes_with_a_backbone(data, tmp_path):
    """Every data config, a cloner's too, leaves the model a backbone to build (its own default
    or the model's); the template's own datasets pick the one below."""
    assert backbone_of(compose_train([f"data={data}"], tmp_path))


@pytest.mark.parametrize(("data", "backbone"), DEFAULT_BACKBONES.items())
def test_dataset_picks_its_default_backbone(data, backbone, tmp_path):
    assert backbone_of(compose_train([f"data={data}"], tmp_path)) == backbone


@pytest.mark.parametrize("order", ["data_first", "backbone_first"])
def test_command_line_backbone_wins_over_the_dataset_default(order, tmp_path):
    overrides = [
        "data=reuters",
        "model/backbone=transformer",
        "model.backbone.model_name_or_path=/m",
    ]
    if order == "backbone_first":
        overrides = overrides[1:] + overrides[:1]
    cfg = compose_train(overrides, tmp_path)
    assert backbone_of(cfg) == "TransformerBackbone"
    assert cfg.data.tokenizer == "/m"  # the data tokenises with the transformer's own tokenizer
    assert cfg.model.optimizer.lr == pytest.approx(5e-5)  # the transformer's fine-tuning rate
    image = compose_train(["data=multi_fashion_mnist", "model/backbone=torchvision"], tmp_path)
    assert backbone_of(image) == "TorchvisionBackbone"


def test_text_data_uses_a_word_vocabulary_with_the_embedding_bag(tmp_path):
    cfg = compose_train(["data=csv_text", "data.path=x.csv"], tmp_path)
    assert cfg.data.tokenizer is None and cfg.model.optimizer.lr == pytest.approx(2e-2)


def test_command_line_values_win_over_dataset_presets(tmp_path):
    cfg = compose_train(
        ["data=reuters", "trainer.max_epochs=3", "model.optimizer.lr=0.5", "data.batch_size=32"],
        tmp_path,
    )
    assert (
        cfg.trainer.max_epochs == 3 and cfg.model.optimizer.lr == 0.5 and cfg.data.batch_size == 32
    )
    default = compose_train(["data=reuters"], tmp_path)
    assert default.trainer.max_epochs != 3
    debug = compose_train(["data=multi_fashion_mnist", "debug=fdr"], tmp_path)
    assert debug.trainer.max_epochs == 1  # debug configs (later in the defaults) still win


def test_yeast_stays_the_default(tmp_path):
    cfg = compose_train([], tmp_path)
    assert cfg.data._target_.endswith("YeastDataModule") and backbone_of(cfg) == "MLP"
    assert cfg.model.optimizer.lr == pytest.approx(1e-3)


def test_data_dir_comes_from_paths(tmp_path):
    for data in ("reuters", "multi_fashion_mnist", "csv_text"):
        cfg = compose_train([f"data={data}"], tmp_path)
        assert cfg.data.data_dir == cfg.paths.data_dir


# --- instantiation from the configs (fixture data) ----------------------------------------------
def setup_from_config(overrides, tmp_path):
    cfg = compose_train(overrides, tmp_path)
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def test_reuters_config_instantiates(tmp_path):
    archive = write_reuters_tarball(tmp_path / "r.tgz")
    dm = setup_from_config(
        ["data=reuters", f"data.archive={archive}", "data.integrity=null", "data.min_freq=1"],
        tmp_path,
    )
    assert dm.label_names == ["grain", "trade"] and dm.batch_size == 256


def test_csv_text_config_with_a_transformer_tokenizer(tmp_path, tiny_bert):
    path = write_text_file(tmp_path / "d.jsonl", text_rows(30))
    dm = setup_from_config(
        [
            "data=csv_text",
            f"data.path={path}",
            "model/backbone=transformer",
            f"model.backbone.model_name_or_path={tiny_bert}",
        ],
        tmp_path,
    )
    assert dm.state_dict()["text_encoder"]["kind"] == "pretrained"


def test_multi_fashion_mnist_config_instantiates(tmp_path):
    source = write_fashion_mnist(tmp_path / "fmnist")
    dm = setup_from_config(
        [
            "data=multi_fashion_mnist",
            f"data.source_dir={source}",
            "data.download=false",
            "data.num_train=32",
            "data.num_val=8",
            "data.num_test=8",
        ],
        tmp_path,
    )
    assert dm.num_labels == 10 and len(dm.train_set) == 32
