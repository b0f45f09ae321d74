"""Every DataModule available offline, as the pipeline uses it: ``prepare_data`` and
``setup("fit")`` before the model is built, then Lightning's own ``setup`` calls, which must not
load again; the facts the model is sized from must survive a ``weights_only`` checkpoint load."""

from __future__ import annotations

import pytest
import torch

from sigmoidf1.data import (
    CocoDataModule,
    CsvImageDataModule,
    CsvTextDataModule,
    MultiFashionMNISTDataModule,
    ReutersDataModule,
    VocDataModule,
    YeastDataModule,
)
from sigmoidf1.data.base import MultilabelDataModule, plain_data
from tests.data_fixtures import (
    VOC_IMAGES,
    VOC_SPLITS,
    image_rows,
    text_rows,
    write_coco,
    write_fashion_mnist,
    write_reuters_tarball,
    write_text_file,
    write_voc,
)

PLAIN = (str, int, float, bool, type(None))


def yeast(tmp_path) -> MultilabelDataModule:
    return YeastDataModule(batch_size=32)


def reuters(tmp_path) -> MultilabelDataModule:
    archive = write_reuters_tarball(tmp_path / "r.tgz")
    return ReutersDataModule(
        archive=str(archive),
        integrity=None,
        data_dir=str(tmp_path / "data"),
        min_freq=1,
        batch_size=8,
    )


def csv_text(tmp_path) -> MultilabelDataModule:
    path = write_text_file(tmp_path / "d.csv", text_rows(40))
    return CsvTextDataModule(
        path=str(path), data_dir=str(tmp_path / "data"), min_freq=1, batch_size=8
    )


def csv_image(tmp_path) -> MultilabelDataModule:
    path = write_text_file(tmp_path / "labels.jsonl", image_rows(tmp_path, 12))
    return CsvImageDataModule(
        path=str(path), image_size=8, batch_size=4, val_fraction=0.25, test_fraction=0.25
    )


def coco(tmp_path) -> MultilabelDataModule:
    write_coco(tmp_path, "train", [[1], [3, 18], [18], [1, 3], [3], [1], [18], [3], [1, 18], [1]])
    write_coco(tmp_path, "val", [[18], [1, 3]])
    return CocoDataModule(root=str(tmp_path), val_fraction=0.2, image_size=8, batch_size=2)


def voc(tmp_path) -> MultilabelDataModule:
    write_voc(tmp_path, VOC_IMAGES, VOC_SPLITS)
    return VocDataModule(root=str(tmp_path), image_size=8, batch_size=1)


def multi_fashion_mnist(tmp_path) -> MultilabelDataModule:
    source = write_fashion_mnist(tmp_path / "fmnist")
    return MultiFashionMNISTDataModule(
        data_dir=str(tmp_path / "data"),
        source_dir=str(source),
        download=False,
        num_train=16,
        num_val=8,
        num_test=8,
        batch_size=8,
    )


MAKERS = [yeast, reuters, csv_text, csv_image, coco, voc, multi_fashion_mnist]


def assert_plain(value, name):
    if isinstance(value, list):
        for item in value:
            assert_plain(item, name)
    elif isinstance(value, dict):
        for key, item in value.items():
            assert type(key) is str, f"{name}: key {key!r} is a {type(key).__name__}"
            assert_plain(item, name)
    else:
        assert type(value) in PLAIN, (
            f"{name}: {value!r} is a {type(value).__module__}.{type(value).__name__}"
        )


@pytest.mark.parametrize("make", MAKERS, ids=lambda make: make.__name__)
def test_setup_twice_loads_once_and_exposes_plain_data(make, tmp_path, monkeypatch):
    dm = make(tmp_path)
    dm.prepare_data()
    dm.prepare_data()  # Lightning calls it again inside fit
    dm.setup("fit")
    train_set, names, inputs = dm.train_set, list(dm.label_names), dict(dm.backbone_inputs)
    assert names and inputs
    monkeypatch.setattr(dm, "_load", lambda: pytest.fail("setup loaded the data a second time"))
    for stage in ("fit", "validate", "test"):
        dm.setup(stage)
    assert dm.train_set is train_set and dm.label_names == names and dm.backbone_inputs == inputs
    assert type(dm.label_names) is list and all(type(name) is str for name in dm.label_names)
    assert type(dm.backbone_inputs) is dict
    assert_plain(dm.backbone_inputs, "backbone_inputs")
    assert_plain(dm.state_dict(), "state_dict")
    stored = tmp_path / "hparams.pt"
    torch.save({"label_names": dm.label_names, "backbone_inputs": dm.backbone_inputs}, stored)
    loaded = torch.load(stored, weights_only=True)
    assert loaded == {"label_names": names, "backbone_inputs": inputs}
    images_or_inputs, targets = next(iter(dm.train_dataloader()))
    assert targets.shape[-1] == dm.num_labels


def test_plain_data_converts_numpy_and_refuses_objects():
    import numpy as np

    converted = plain_data(
        {"n": np.int64(3), "sizes": (np.float32(0.5), 2), "names": np.array(["a"])},
        "backbone_inputs",
    )
    assert converted == {"n": 3, "sizes": [0.5, 2], "names": ["a"]}
    assert type(converted["n"]) is int and type(converted["sizes"][0]) is float
    assert plain_data({"shape": torch.Size([1, 2])}, "b") == {"shape": [1, 2]}
    with pytest.raises(TypeError, match=r"backbone_inputs\.vocab\[1\] must be plain"):
        plain_data({"vocab": [3, torch.tensor(4)]}, "backbone_inputs")
    with pytest.raises(TypeError, match="backbone_inputs"):
        plain_data({1: 2}, "backbone_inputs")


def test_pin_memory_follows_cuda_by_default(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    dm = YeastDataModule(batch_size=32)
    dm.setup("fit")
    assert dm.pin_memory == "auto" and dm.val_dataloader().pin_memory is False
    assert YeastDataModule(pin_memory=True)._pin_memory() is True
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert dm._pin_memory() is True and YeastDataModule(pin_memory=False)._pin_memory() is False


def test_loader_settings_are_checked_and_workers_persist(tmp_path):
    with pytest.raises(ValueError, match="pin_memory must be true, false or auto, got 'yes'"):
        YeastDataModule(pin_memory="yes")
    with pytest.raises(ValueError, match="num_workers must be >= 0, got -1"):
        YeastDataModule(num_workers=-1)
    dm = YeastDataModule(batch_size=32, num_workers=1, pin_memory=False)
    dm.setup("fit")
    assert dm.val_dataloader().persistent_workers and dm.train_dataloader().persistent_workers
    assert not YeastDataModule(num_workers=0)._loader(dm.val_set, 32, False).persistent_workers
