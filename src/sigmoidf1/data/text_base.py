"""Shared base of the text DataModules (``reuters``, ``csv_text``).

Batches are ``(inputs, targets)`` with ``inputs = {"input_ids": LongTensor [batch, T],
"attention_mask": LongTensor [batch, T]}`` (``T`` = the longest text of the batch, at most
``max_length`` tokens; padding positions have mask 0) and ``targets`` float ``[batch, num_labels]``.

``tokenizer`` picks the encoder: ``null`` builds a word vocabulary from the training split (for the
``embedding_bag`` backbone); a local folder or hub name loads that Hugging Face tokenizer (for the
``transformer`` backbone; the data configs default it to the backbone's ``model_name_or_path``).
``backbone_inputs`` = ``{"vocab_size", "padding_idx"}``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from sigmoidf1.data.base import MultilabelDataModule
from sigmoidf1.data.records import read_records
from sigmoidf1.data.text import (
    PretrainedTokenizer,
    TextEncoder,
    TokenizedTexts,
    WordVocabulary,
    encode_cached,
    encoder_from_state,
    pad_token_batch,
)
from sigmoidf1.utils.errors import DataError
from sigmoidf1.utils.logging import get_logger

log = get_logger(__name__)


def check_text(value: Any, where: str) -> str:
    """A text cell must be a string (an empty string is allowed)."""
    if not isinstance(value, str):
        raise DataError(f"{where}: the text must be a string, got {value!r}")
    return value


class TextDataModule(MultilabelDataModule):
    """Base class: subclasses' ``_load`` calls ``_build_splits`` with texts and targets.

    Args:
        data_dir: where token caches go (``<data_dir>/<cache_name>/``); ``None`` disables caching.
        tokenizer: ``None`` (word vocabulary from the training split) or a Hugging Face tokenizer's
            local folder / hub name.
        max_length: maximum tokens per text (words for the word vocabulary).
        min_freq, max_vocab_size, lowercase: word-vocabulary settings (see ``WordVocabulary``).
        text_column: the column of input files read by ``predict_dataset``.
    """

    cache_name = "text"

    def __init__(
        self,
        data_dir: str | None = None,
        tokenizer: str | None = None,
        max_length: int = 256,
        min_freq: int = 2,
        max_vocab_size: int | None = 50_000,
        lowercase: bool = True,
        text_column: str = "text",
        **loader_kwargs,
    ) -> None:
        super().__init__(**loader_kwargs)
        self.data_dir = data_dir
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.min_freq = min_freq
        self.max_vocab_size = max_vocab_size
        self.lowercase = lowercase
        self.text_column = text_column
        self.encoder: TextEncoder | None = None

    @property
    def collate_fn(self) -> Callable[[list[Any]], Any] | None:
        """Pads each batch of texts to its longest (``pad_token_batch``)."""
        if self.encoder is None:
            return None
        return functools.partial(pad_token_batch, pad_id=self.encoder.pad_id)

    @property
    def cache_dir(self) -> Path | None:
        return Path(self.data_dir) / self.cache_name / "tokens" if self.data_dir else None

    def _make_encoder(self, train_texts: Sequence[str]) -> TextEncoder:
        if self.tokenizer:
            return PretrainedTokenizer(self.tokenizer, self.max_length)
        return WordVocabulary.build(
            train_texts,
            self.max_length,
            self.lowercase,
            self.min_freq,
            self.max_vocab_size,
            self.cache_dir,
        )

    def _build_splits(
        self, texts: dict[str, Sequence[str]], targets: dict[str, np.ndarray | Dataset]
    ) -> None:
        """Fit the encoder on ``texts["train"]``, tokenise every split (cached), set the splits.

        ``targets[split]`` is a float ``[n, num_labels]`` array, or a ``Dataset`` whose item ``i``
        is row ``i`` as a float tensor ``[num_labels]`` (sparse targets densified per example, for
        label spaces too large to hold dense: ``wordnet.SparseTargets``).
        """
        self.encoder = self._make_encoder(texts["train"])
        for split in ("train", "val", "test"):
            ids, offsets = encode_cached(self.encoder, texts[split], self.cache_dir)
            rows = targets[split]
            if not isinstance(rows, Dataset):
                rows = torch.from_numpy(np.asarray(rows, dtype=np.float32))
            dataset = TokenizedTexts(ids, offsets, self.encoder.pad_id, rows)
            setattr(self, f"{split}_set", dataset)
        self.backbone_inputs = {
            "vocab_size": self.encoder.vocab_size,
            "padding_idx": self.encoder.pad_id,
        }
        log.info(
            f"{type(self).__name__}: {self.encoder.vocab_size} token ids, "
            f"{len(self.train_set)}/{len(self.val_set)}/{len(self.test_set)} train/val/test texts, "
            f"{len(self.label_names)} labels"
        )

    # --- prediction -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict() | {"text_column": self.text_column}
        if self.encoder is not None:
            state["text_encoder"] = self.encoder.state()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.text_column = state.get("text_column", self.text_column)
        stored = state.get("text_encoder")
        if stored is None:
            return
        if self.encoder is not None and self.encoder.state() != stored:
            raise DataError(
                f"{type(self).__name__}: the checkpoint's text encoder differs from the one built "
                "from this data (other training texts or tokenizer settings)"
            )
        if self.encoder is None:
            self.encoder = encoder_from_state(stored)
            self.backbone_inputs = {
                "vocab_size": self.encoder.vocab_size,
                "padding_idx": self.encoder.pad_id,
            }

    def predict_dataset(self, path: str) -> Dataset:
        """Texts of the ``text_column`` column of a CSV/TSV/JSONL(.gz) file, tokenised as in
        training.

        Items are ``{"input_ids", "attention_mask"}`` (see the module docstring).
        """
        if self.encoder is None:
            raise RuntimeError(f"{type(self).__name__}: call setup() or load_state_dict() first")
        rows, lines, _ = read_records(path, [self.text_column])
        texts = [
            check_text(row[self.text_column], f"{path} line {line}")
            for row, line in zip(rows, lines, strict=True)
        ]
        ids, offsets = encode_cached(self.encoder, texts, cache_dir=None)
        return TokenizedTexts(ids, offsets, self.encoder.pad_id)
