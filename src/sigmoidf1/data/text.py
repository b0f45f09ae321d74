"""Text → token ids: a word vocabulary built from the training split, or a Hugging Face tokenizer.

Both encoders turn a list of strings into lists of token ids (at least one id per text) and describe
themselves as plain data (``state()``), which checkpoints store so that prediction rebuilds the same
encoder without the training data. ``encode_cached`` tokenises a corpus once and caches the result
under the data directory, keyed by a hash of the texts and the encoder.

``TokenizedTexts`` holds a ragged corpus (one flat id tensor plus offsets) and yields
``inputs = {"input_ids": LongTensor [T_i], "attention_mask": LongTensor [T_i]}`` per example
(``T_i`` at most ``max_length`` tokens). ``pad_token_batch``, the collate function of the text
loaders, pads a batch to its longest example and stacks it into ``[batch, T]`` tensors. Padding is
the loader's job, not the dataset's, so that any dataset of such items (a ``Subset``, a
``ConcatDataset`` of requests) batches correctly.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, default_collate

from sigmoidf1.utils.errors import ConfigError, DataError
from sigmoidf1.utils.files import atomic_write, atomic_write_text
from sigmoidf1.utils.hashing import tensor_bytes
from sigmoidf1.utils.logging import get_logger
from sigmoidf1.utils.pretrained import resolve_pretrained

log = get_logger(__name__)

_WORD = re.compile(r"\w+")


class WordVocabulary:
    """Word-level tokenizer: ``\\w+`` words (lowercased by default).

    Ids: 0 = ``<pad>``, 1 = ``<unk>`` (words not in the vocabulary), then the vocabulary by
    decreasing training frequency. Texts are cut to their first ``max_length`` words.
    """

    PAD, UNK = "<pad>", "<unk>"
    pad_id, unk_id = 0, 1

    def __init__(
        self, tokens: Sequence[str], max_length: int = 512, lowercase: bool = True
    ) -> None:
        if list(tokens[:2]) != [self.PAD, self.UNK]:
            raise ValueError("a WordVocabulary's first two tokens must be '<pad>' and '<unk>'")
        if max_length < 1:
            raise ConfigError(f"max_length must be >= 1, got {max_length}")
        self.tokens = list(tokens)
        self.index = {token: i for i, token in enumerate(self.tokens)}
        self.max_length = max_length
        self.lowercase = lowercase

    @classmethod
    def build(
        cls,
        texts: Sequence[str],
        max_length: int = 512,
        lowercase: bool = True,
        min_freq: int = 2,
        max_size: int | None = 50_000,
        cache_dir: str | Path | None = None,
    ) -> WordVocabulary:
        """Vocabulary of the terms seen at least ``min_freq`` times in ``texts`` (the training
        split), the ``max_size`` most frequent (ties broken alphabetically, so it is deterministic).

        With ``cache_dir`` the vocabulary is cached in ``vocab-<hash>.json``, keyed by the texts and
        the settings.
        """
        settings = {
            "max_length": max_length,
            "lowercase": lowercase,
            "min_freq": min_freq,
            "max_size": max_size,
        }
        path = None
        if cache_dir is not None:
            path = Path(cache_dir) / f"vocab-{_digest(settings, texts)}.json"
            if path.is_file():
                try:
                    return cls(json.loads(path.read_text()), max_length, lowercase)
                except (OSError, ValueError) as error:
                    log.warning(f"ignoring unreadable vocabulary cache {path} ({error})")
        vocabulary = cls._count(texts, max_length, lowercase, min_freq, max_size)
        if path is not None:
            atomic_write_text(path, json.dumps(vocabulary.tokens))
        return vocabulary

    @classmethod
    def _count(
        cls,
        texts: Sequence[str],
        max_length: int,
        lowercase: bool,
        min_freq: int,
        max_size: int | None,
    ) -> WordVocabulary:
        probe = cls([cls.PAD, cls.UNK], max_length, lowercase)
        counts: Counter = Counter()
        for text in texts:
            counts.update(probe.terms(text))
        kept = sorted(
            (t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t)
        )
        if max_size is not None:
            kept = kept[:max_size]
        return cls([cls.PAD, cls.UNK, *kept], max_length, lowercase)

    def terms(self, text: str) -> list[str]:
        return _WORD.findall(text.lower() if self.lowercase else text)[: self.max_length]

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        get = self.index.get
        return [[get(t, self.unk_id) for t in self.terms(text)] or [self.unk_id] for text in texts]

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def state(self) -> dict[str, Any]:
        return {
            "kind": "words",
            "tokens": self.tokens,
            "max_length": self.max_length,
            "lowercase": self.lowercase,
        }


class PretrainedTokenizer:
    """A Hugging Face tokenizer (``AutoTokenizer.from_pretrained``) from a local path, a hub name or
    ``pip:<module>`` (see ``sigmoidf1.utils.pretrained``).

    Adds the model's special tokens (``[CLS] ... [SEP]``) and truncates to ``max_length`` ids.
    """

    def __init__(self, name_or_path: str, max_length: int = 256) -> None:
        from transformers import AutoTokenizer  # optional dependency (the `text` extra)

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(resolve_pretrained(name_or_path))
        except (OSError, ValueError) as error:
            raise ConfigError(
                f"cannot load a Hugging Face tokenizer from {name_or_path!r}: give a local folder "
                f"holding tokenizer files (tokenizer.json ...) or a reachable hub name ({error})"
            ) from error
        if self.tokenizer.pad_token_id is None:
            raise ConfigError(f"the tokenizer of {name_or_path!r} has no padding token")
        self.name_or_path = str(name_or_path)
        self.max_length = max_length
        self.pad_id = int(self.tokenizer.pad_token_id)

    def encode(self, texts: Sequence[str], chunk: int = 2048) -> list[list[int]]:
        ids: list[list[int]] = []
        for start in range(0, len(texts), chunk):
            batch = self.tokenizer(
                list(texts[start : start + chunk]), truncation=True, max_length=self.max_length
            )
            ids += batch["input_ids"]
        return ids

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def fingerprint(self) -> str:
        vocab = json.dumps(self.tokenizer.get_vocab(), sort_keys=True)
        return hashlib.sha256(vocab.encode()).hexdigest()

    def state(self) -> dict[str, Any]:
        return {
            "kind": "pretrained",
            "name_or_path": self.name_or_path,
            "max_length": self.max_length,
        }


TextEncoder = WordVocabulary | PretrainedTokenizer


def encoder_from_state(state: dict[str, Any]) -> TextEncoder:
    """Rebuild the encoder that ``state()`` described (prediction, checkpoint restore)."""
    kind = state.get("kind")
    if kind == "words":
        return WordVocabulary(state["tokens"], state["max_length"], state["lowercase"])
    if kind == "pretrained":
        return PretrainedTokenizer(state["name_or_path"], state["max_length"])
    raise ValueError(f"unknown text encoder kind {kind!r} in the stored state")


# --- tokenised corpora ----------------------------------------------------------------------------
def encode_cached(
    encoder: TextEncoder, texts: Sequence[str], cache_dir: str | Path | None
) -> tuple[Tensor, Tensor]:
    """Token ids of ``texts`` as ``(ids [total] int32, offsets [n + 1] int64)``; text ``i`` is
    ``ids[offsets[i]:offsets[i + 1]]``.

    With ``cache_dir`` the result is cached in ``tokens-<hash>.pt`` keyed by the texts and the
    encoder (the file is written to a temporary name and renamed, so it is never half-written).
    """
    path = None
    if cache_dir is not None:
        described = encoder.state() | (
            {"vocab": encoder.fingerprint()} if isinstance(encoder, PretrainedTokenizer) else {}
        )
        path = Path(cache_dir) / f"tokens-{_digest(described, texts)}.pt"
        if path.is_file():
            try:
                cached = torch.load(path, weights_only=True)
                return cached["ids"], cached["offsets"]
            except Exception as error:  # a corrupt cache is rebuilt, not fatal
                log.warning(f"ignoring unreadable token cache {path} ({type(error).__name__})")
    encoded = encoder.encode(texts)
    lengths = torch.tensor([len(ids) for ids in encoded], dtype=torch.int64)
    offsets = torch.zeros(len(encoded) + 1, dtype=torch.int64)
    torch.cumsum(lengths, 0, out=offsets[1:])
    ids = torch.tensor([i for seq in encoded for i in seq], dtype=torch.int32)
    if path is not None:
        atomic_write(path, lambda tmp: torch.save({"ids": ids, "offsets": offsets}, tmp))
    return ids, offsets


def _digest(settings: dict[str, Any], texts: Sequence[str]) -> str:
    """A short hash of some settings and a corpus (cache keys)."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:24]


class TokenizedTexts(Dataset):
    """Ragged token ids (+ optional targets ``[n, num_labels]``); see the module docstring.

    Items are ``(inputs, target)``, or ``inputs`` alone when there are no targets (prediction).
    """

    def __init__(
        self, ids: Tensor, offsets: Tensor, pad_id: int, targets: Tensor | None = None
    ) -> None:
        if targets is not None and len(targets) != len(offsets) - 1:
            raise DataError(f"{len(offsets) - 1} texts but {len(targets)} target rows")
        self.ids, self.offsets, self.pad_id, self.targets = ids, offsets, int(pad_id), targets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def fingerprint(self) -> Iterator[bytes]:
        """What a frozen encoder sees: the token ids and the padding id (feature cache keys)."""
        yield f"tokens:{self.pad_id}:".encode()
        yield tensor_bytes(self.ids)
        yield tensor_bytes(self.offsets)

    def lengths(self) -> Tensor:
        """Tokens per text ``[n]``."""
        return self.offsets.diff()

    def __getitem__(self, index: int) -> Any:
        start, end = int(self.offsets[index]), int(self.offsets[index + 1])
        input_ids = self.ids[start:end].to(torch.int64)
        inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
        return inputs if self.targets is None else (inputs, self.targets[index])


def pad_token_batch(items: list[Any], pad_id: int) -> Any:
    """Collate ``TokenizedTexts`` items (``inputs`` or ``(inputs, target)``) into a batch whose
    ``input_ids`` and ``attention_mask`` are ``[batch, T]``, ``T`` the longest text of the batch:
    ids padded with ``pad_id``, the mask with 0. Items whose inputs are not token dicts (the
    features of a frozen encoder) are collated by ``default_collate``."""
    with_targets = isinstance(items[0], tuple)
    inputs = [item[0] for item in items] if with_targets else items
    if not (isinstance(inputs[0], dict) and "input_ids" in inputs[0]):
        return default_collate(items)
    width = max(len(example["input_ids"]) for example in inputs)
    ids = torch.full((len(inputs), width), pad_id, dtype=torch.int64)
    mask = torch.zeros_like(ids)
    for row, example in enumerate(inputs):
        length = len(example["input_ids"])
        ids[row, :length] = example["input_ids"]
        mask[row, :length] = example["attention_mask"]
    batch = {"input_ids": ids, "attention_mask": mask}
    return (batch, default_collate([item[1] for item in items])) if with_targets else batch
