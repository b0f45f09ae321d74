"""Image data: multi Fashion-MNIST (fixture idx files, the Debian package), COCO, VOC, csv_image."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from sigmoidf1.data import (
    CocoDataModule,
    CsvImageDataModule,
    MultiFashionMNISTDataModule,
    VocDataModule,
)
from sigmoidf1.data.fashion_mnist import CLASSES, DEBIAN_DIR, compose, load_fashion_mnist, read_idx
from sigmoidf1.data.images import IMAGENET_MEAN, ImagePreprocessing
from sigmoidf1.data.voc import CLASSES as VOC_CLASSES
from tests.data_fixtures import (
    VOC_IMAGES,
    VOC_SPLITS,
    image_rows,
    write_coco,
    write_fashion_mnist,
    write_idx,
    write_image,
    write_text_file,
    write_voc,
)


# --- preprocessing --------------------------------------------------------------------------------
def test_preprocessing_resizes_converts_and_normalises(tmp_path):
    image = write_image(tmp_path / "a.png", (255, 0, 0), size=(40, 30))
    rgb = ImagePreprocessing(16, 3)(Image.open(image))
    assert rgb.shape == (3, 16, 16) and rgb.dtype == torch.float32
    # the bottom-right quarter stays pure red: (1 - mean) / std in channel 0
    assert rgb[0, -1, -1].item() == pytest.approx((1 - IMAGENET_MEAN[0]) / 0.229, abs=1e-4)
    grey = ImagePreprocessing(8, 1, [0.0], [1.0])(Image.open(image))
    assert grey.shape == (1, 8, 8) and grey.min() >= 0.0 and grey.max() <= 1.0
    with pytest.raises(ValueError, match="channels"):
        ImagePreprocessing(8, 2)
    with pytest.raises(ValueError, match="3 value"):
        ImagePreprocessing(8, 3, [0.5], [0.5])


# --- multi Fashion-MNIST --------------------------------------------------------------------------
def test_idx_reader_round_trips_and_rejects_garbage(tmp_path):
    array = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    assert np.array_equal(read_idx(write_idx(tmp_path / "x.gz", array)), array)
    (tmp_path / "bad").write_bytes(b"\x00\x00\x09\x03" + b"\x00" * 20)
    with pytest.raises(ValueError, match="not an unsigned-byte idx"):
        read_idx(tmp_path / "bad")


def test_composites_hold_the_articles_their_labels_name():
    labels = np.arange(50) % 10
    articles = np.repeat((10 + labels * 20).astype(np.uint8)[:, None, None], 28, 1).repeat(28, 2)
    canvases, targets = compose(articles, labels, 300, np.random.default_rng(0))
    assert canvases.shape == (300, 56, 56) and canvases.dtype == np.uint8
    assert targets.shape == (300, 10) and targets.dtype == np.float32
    cells = canvases.reshape(300, 2, 28, 2, 28).transpose(0, 1, 3, 2, 4).reshape(300, 4, 28 * 28)
    present = cells[:, :, 0]  # each fixture article is one flat value; 0 = empty cell
    occupied = (present > 0).sum(1)
    assert occupied.min() == 1 and occupied.max() == 4
    assert (
        set(np.bincount(occupied)[1:]) and abs(np.bincount(occupied)[1:] / 300 - 0.25).max() < 0.08
    )
    for canvas_cells, target in zip(present, targets, strict=True):
        classes = {(v - 10) // 20 for v in canvas_cells if v}
        assert set(np.flatnonzero(target)) == classes
    again, _ = compose(articles, labels, 300, np.random.default_rng(0))
    assert np.array_equal(canvases, again)


def make_mfm(tmp_path: Path, **kwargs) -> MultiFashionMNISTDataModule:
    source = write_fashion_mnist(tmp_path / "fmnist")
    kwargs = {
        "data_dir": str(tmp_path / "data"),
        "source_dir": str(source),
        "download": False,
        "num_train": 64,
        "num_val": 16,
        "num_test": 16,
        "batch_size": 16,
    } | kwargs
    dm = MultiFashionMNISTDataModule(**kwargs)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_multi_fashion_mnist_shapes_splits_and_cache(tmp_path):
    dm = make_mfm(tmp_path)
    assert dm.label_names == CLASSES and dm.backbone_inputs == {"in_channels": 1}
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (64, 16, 16)
    images, targets = next(iter(dm.train_dataloader()))
    assert images.shape == (16, 1, 56, 56) and images.dtype == torch.float32
    assert targets.shape == (16, 10) and targets.dtype == torch.float32
    assert targets.sum(1).min() >= 1 and targets.sum(1).max() <= 4
    train = torch.stack([dm.train_set[i][0] for i in range(len(dm.train_set))])
    assert abs(train.mean().item()) < 1e-3 and train.std().item() == pytest.approx(1.0, abs=1e-3)
    (cache,) = (tmp_path / "data" / "multi_fashion_mnist").glob("composites-*.npz")
    mtime = cache.stat().st_mtime_ns
    make_mfm(tmp_path)
    assert cache.stat().st_mtime_ns == mtime  # reused, not regenerated


def cell_values(pixels: torch.Tensor) -> set[int]:
    """The fixture article (a unique flat value) in every non-empty 28x28 cell of the canvases."""
    cells = pixels.numpy().reshape(-1, 2, 28, 2, 28)[:, :, 0, :, 0].reshape(-1)
    return {int(v) for v in cells if v}


def test_multi_fashion_mnist_is_deterministic_and_splits_use_disjoint_articles(tmp_path):
    a, b, c = (
        make_mfm(tmp_path / "a", seed=1),
        make_mfm(tmp_path / "b", seed=1),
        make_mfm(tmp_path / "c", seed=2),
    )
    assert torch.equal(a.test_set.pixels, b.test_set.pixels) and torch.equal(
        a.val_set.targets, b.val_set.targets
    )
    assert not torch.equal(a.train_set.pixels, c.train_set.pixels)
    train, val, test = (cell_values(s.pixels) for s in (a.train_set, a.val_set, a.test_set))
    assert not train & val  # validation canvases use held-out training articles
    assert max(train | val) <= 200 < min(test)  # test canvases use the Fashion-MNIST test set only
    # labels are the classes (article index % 10) of the articles present
    pixels, targets = a.train_set.pixels[0].numpy(), a.train_set.targets[0]
    classes = {(v - 1) % 10 for v in cell_values(a.train_set.pixels[:1])}
    assert set(np.flatnonzero(targets.numpy())) == classes and pixels.shape == (56, 56)


def test_multi_fashion_mnist_missing_source_is_named(tmp_path):
    dm = MultiFashionMNISTDataModule(data_dir=None, source_dir=str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="empty"):
        dm.prepare_data()


def test_image_predict_dataset_uses_the_stored_preprocessing(tmp_path):
    dm = make_mfm(tmp_path)
    state = dm.state_dict()
    torch.save(state, tmp_path / "state.pt")
    restored = MultiFashionMNISTDataModule()
    restored.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert restored.preprocessing.state() == dm.preprocessing.state()
    write_image(tmp_path / "in" / "shirt.png", (90, 90, 90), size=(56, 56))
    inputs = write_text_file(tmp_path / "in" / "inputs.csv", [{"image": "shirt.png"}])
    (image,) = list(restored.predict_dataset(str(inputs)))
    assert image.shape == (1, 56, 56)
    missing = write_text_file(
        tmp_path / "in" / "missing.jsonl", [{"image": "shirt.png"}, {"image": "nope.png"}]
    )
    with pytest.raises(
        FileNotFoundError, match=r"missing.jsonl line 2: image not found: .*nope.png"
    ):
        restored.predict_dataset(str(missing))


def test_fashion_mnist_falls_back_to_torchvision(tmp_path):
    """Without the Debian files, torchvision's FashionMNIST reads (or downloads)
    <data_dir>/fashion_mnist."""
    raw = tmp_path / "data" / "fashion_mnist" / "FashionMNIST" / "raw"
    write_fashion_mnist(tmp_path / "gz", n_train=30, n_test=20)
    raw.mkdir(parents=True)
    for gz in (tmp_path / "gz").glob("*.gz"):  # torchvision reads the uncompressed files
        (raw / gz.stem).write_bytes(gzip.decompress(gz.read_bytes()))
    source = load_fashion_mnist(tmp_path / "no_debian_files", tmp_path / "data", download=False)
    assert source["train"][0].shape == (30, 28, 28) and source["test"][1].tolist() == [
        i % 10 for i in range(20)
    ]
    with pytest.raises(FileNotFoundError, match="nor downloadable into"):
        load_fashion_mnist(tmp_path / "no_debian_files", tmp_path / "empty", download=False)


@pytest.mark.skipif(not Path(DEBIAN_DIR).is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_real_fashion_mnist_from_the_debian_package(tmp_path):
    source = load_fashion_mnist(DEBIAN_DIR, None, download=False)
    assert source["train"][0].shape == (60000, 28, 28) and source["test"][0].shape == (
        10000,
        28,
        28,
    )
    assert np.bincount(source["train"][1]).tolist() == [6000] * 10
    dm = MultiFashionMNISTDataModule(
        data_dir=str(tmp_path), num_train=500, num_val=100, num_test=100
    )
    dm.setup("fit")
    images, targets = next(iter(dm.train_dataloader()))
    assert images.shape == (64, 1, 56, 56) and targets.sum(1).min() >= 1


# --- COCO -----------------------------------------------------------------------------------------
def test_coco_multi_hot_in_category_order(tmp_path):
    write_coco(
        tmp_path, "train", [[1], [3, 18], [18, 18], [], [1, 3], [3], [1], [18], [3], [1, 18]]
    )
    write_coco(tmp_path, "val", [[18], [1, 3], []])
    dm = CocoDataModule(root=str(tmp_path), val_fraction=0.2, image_size=32, batch_size=4)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.label_names == ["person", "car", "dog"]  # ascending category id
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (
        7,
        2,
        2,
    )  # empty images dropped
    assert dm.test_set.targets.tolist() == [[0, 0, 1], [1, 1, 0]]
    images, targets = next(iter(dm.train_dataloader()))
    assert (
        images.shape == (4, 3, 32, 32) and images.dtype == torch.float32 and targets.shape == (4, 3)
    )
    kept = CocoDataModule(root=str(tmp_path), keep_empty=True)
    kept.setup("fit")
    assert len(kept.test_set) == 3 and kept.test_set.targets[2].sum() == 0


def test_coco_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="instances_train2017.json"):
        CocoDataModule(root=str(tmp_path), year=2017).prepare_data()
    write_coco(tmp_path, "train", [[1], [99]])
    write_coco(tmp_path, "val", [[1]])
    with pytest.raises(
        ValueError, match="instances_train2014.json: annotation 2 has unknown category_id 99"
    ):
        CocoDataModule(root=str(tmp_path)).setup("fit")


# --- VOC ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("use_difficult", [False, True])
def test_voc_labels_splits_and_difficult_objects(tmp_path, use_difficult):
    write_voc(tmp_path, VOC_IMAGES, VOC_SPLITS)
    dm = VocDataModule(root=str(tmp_path), use_difficult=use_difficult, image_size=24, batch_size=3)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.label_names == VOC_CLASSES and dm.num_labels == 20
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (3, 1, 2)
    names = [[VOC_CLASSES[j] for j in np.flatnonzero(row)] for row in dm.train_set.targets.numpy()]
    assert names[0] == ["chair"] and names[1] == ["car"]
    assert names[2] == (["horse", "person"] if use_difficult else ["horse"])
    assert dm.test_set.targets[0].sum().item() == (
        1 if use_difficult else 0
    )  # only a difficult bicycle
    images, targets = next(iter(dm.train_dataloader()))
    assert images.shape == (3, 3, 24, 24) and targets.shape == (3, 20)


def test_voc_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="VOC2007"):
        VocDataModule(root=str(tmp_path)).prepare_data()
    voc = write_voc(
        tmp_path,
        {"000001": [("unicorn", 0)]},
        {"train": ["000001"], "val": ["000001"], "test": ["000001"]},
    )
    with pytest.raises(ValueError, match=r"000001.xml: unknown VOC class 'unicorn'"):
        VocDataModule(root=str(tmp_path)).setup("fit")
    (voc / "ImageSets" / "Main" / "test.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"ImageSets/Main/test.txt"):
        VocDataModule(root=str(tmp_path)).prepare_data()


# --- csv_image ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["labels.csv", "labels.jsonl.gz"])
def test_csv_image_reads_paths_relative_to_the_file(tmp_path, name):
    path = write_text_file(tmp_path / name, image_rows(tmp_path))
    dm = CsvImageDataModule(
        path=str(path),
        image_size=16,
        channels=1,
        batch_size=5,
        val_fraction=0.2,
        test_fraction=0.2,
        num_workers=0,
    )
    dm.prepare_data()
    dm.setup("fit")
    assert dm.label_names == ["blue", "green", "red"] and dm.backbone_inputs == {"in_channels": 1}
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (18, 6, 6)
    images, targets = next(iter(dm.train_dataloader()))
    assert (
        images.shape == (5, 1, 16, 16)
        and targets.shape == (5, 3)
        and targets.dtype == torch.float32
    )


def test_csv_image_errors_and_unknown_labels(tmp_path, caplog):
    rows = image_rows(tmp_path, 12)
    bad = write_text_file(
        tmp_path / "bad.csv", rows[:5] + [{"image": "images/missing.png", "labels": ["red"]}]
    )
    with pytest.raises(FileNotFoundError, match=r"bad.csv line 7: image not found: .*missing.png"):
        CsvImageDataModule(path=str(bad)).setup("fit")
    train = write_text_file(tmp_path / "train.csv", rows[:9])
    test = write_text_file(
        tmp_path / "test.csv", rows[9:] + [{"image": "images/0.png", "labels": ["purple"]}]
    )
    dm = CsvImageDataModule(
        train_path=str(train), test_path=str(test), val_fraction=0.3, image_size=8
    )
    with caplog.at_level(logging.WARNING):
        dm.setup("fit")
    assert dm.unknown_labels == {"test": {"purple": 1}}
    assert any("'purple' (1)" in r.getMessage() for r in caplog.records)
    corrupt = tmp_path / "images" / "corrupt.png"
    corrupt.write_bytes(b"not a png")
    broken = write_text_file(tmp_path / "broken.csv", [{"image": "images/corrupt.png"}])
    dataset = dm.predict_dataset(str(broken))
    with pytest.raises(ValueError, match="cannot read image .*corrupt.png"):
        dataset[0]


def test_csv_image_predict_dataset(tmp_path):
    path = write_text_file(tmp_path / "labels.csv", image_rows(tmp_path, 12))
    dm = CsvImageDataModule(path=str(path), image_size=16, val_fraction=0.25, test_fraction=0.25)
    dm.setup("fit")
    restored = CsvImageDataModule()
    restored.load_state_dict(dm.state_dict())
    assert restored.backbone_inputs == {"in_channels": 3}
    inputs = write_text_file(
        tmp_path / "inputs.jsonl", [{"image": str(tmp_path / "images" / "1.png")}] * 3
    )
    batch = next(iter(DataLoader(restored.predict_dataset(str(inputs)), batch_size=3)))
    assert batch.shape == (3, 3, 16, 16)
    assert torch.allclose(batch[0], dm.preprocessing(Image.open(tmp_path / "images" / "1.png")))
