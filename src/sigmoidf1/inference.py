"""What ``sigmoidf1-predict`` does: rebuild a trained model and label new inputs.

checkpoint → ``load_trained`` (``sigmoidf1.checkpoints``: the model with its weights and per-label
thresholds, and the DataModule with the stored preprocessing) → ``predict_dataset(input)`` → one
JSON line per input row, in input order::

    {"labels": ["Class3", "Class4"], "scores": {"Class1": 0.0213, "Class2": 0.1187, ...}}

``scores`` are the probabilities ``sigmoid(logit)``; ``labels`` are the labels whose probability
reaches that label's threshold (the thresholds tuned during training, stored in the checkpoint).
The output is written to a temporary file renamed at the end, so an interrupted run never leaves
a partial file under the requested name. ``sigmoidf1-serve`` (``sigmoidf1.serving``) uses the same
steps on rows held in memory: ``rows_dataset``, ``predict_batches``, ``prediction_records``.

``top_k=k`` (for large label spaces, where a row of every score is hundreds of kilobytes):
``scores`` holds only the row's ``k`` highest probabilities, highest first, and ``labels`` those
of them that reach their threshold (the threshold still decides; ``top_k`` only bounds the
output, so a row can have fewer than ``k`` labels, or none).
"""

from __future__ import annotations

import gzip
import json
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import torch
from omegaconf import DictConfig
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import Tensor
from torch.utils.data import Dataset

from sigmoidf1.checkpoints import load_trained
from sigmoidf1.module import MultilabelClassifier
from sigmoidf1.utils.config import apply_extras
from sigmoidf1.utils.errors import ConfigError, DataError
from sigmoidf1.utils.files import atomic_path
from sigmoidf1.utils.logging import get_logger

log = get_logger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def to_device(inputs: Any, device: torch.device) -> Any:
    if isinstance(inputs, Tensor):
        return inputs.to(device, non_blocking=True)
    if isinstance(inputs, dict):
        return {key: to_device(value, device) for key, value in inputs.items()}
    if isinstance(inputs, (list, tuple)):
        return type(inputs)(to_device(value, device) for value in inputs)
    return inputs


@torch.inference_mode()
def predict_batches(
    model: MultilabelClassifier, batches: Any, device: torch.device
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(probabilities [batch, L], predicted [batch, L] bool)`` per batch of inputs.

    ``predicted`` thresholds ``predict_proba`` at 0.5, the rule the test metrics use, which equals
    ``probabilities >= thresholds`` per label.
    """
    for batch in batches:
        inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
        logits = model(to_device(inputs, device)).float()
        yield torch.sigmoid(logits).cpu(), (model.predict_proba(logits) >= 0.5).cpu()


def prediction_records(
    probabilities: Tensor,
    predicted: Tensor,
    label_names: Sequence[str],
    decimals: int | None,
    top_k: int | None = None,
) -> Iterator[dict[str, Any]]:
    """One ``{"labels": [...], "scores": {name: probability}}`` per row of ``[rows, L]`` tensors.

    With ``top_k``, only the ``k`` highest probabilities of a row, highest first, and the labels
    among them that ``predicted`` marks (in that order).
    """
    if top_k is not None:
        yield from _top_k_records(probabilities, predicted, label_names, decimals, top_k)
        return
    for row_probs, row_predicted in zip(probabilities.tolist(), predicted.tolist(), strict=True):
        scores = {
            name: (round(p, decimals) if decimals is not None else p)
            for name, p in zip(label_names, row_probs, strict=True)
        }
        labels = [name for name, hit in zip(label_names, row_predicted, strict=True) if hit]
        yield {"labels": labels, "scores": scores}


def format_rows(
    probabilities: Tensor,
    predicted: Tensor,
    label_names: Sequence[str],
    decimals: int | None,
    top_k: int | None = None,
) -> Iterator[str]:
    """One JSON line per row: ``{"labels": [...], "scores": {name: probability}}``."""
    for record in prediction_records(probabilities, predicted, label_names, decimals, top_k):
        yield json.dumps(record) + "\n"


def rows_dataset(datamodule: Any, rows: Sequence[Mapping[str, Any]]) -> Dataset:
    """``datamodule.predict_dataset`` for rows held in memory (a row as in an input file).

    The rows go through the very reader and checks a file goes through: they are written as JSON
    Lines to a temporary file, one row per line. A ``DataError`` names the row as ``inputs[i]``
    (0-based) instead of the temporary file's line ``i + 1``.
    """
    with tempfile.TemporaryDirectory(prefix="sigmoidf1-rows-") as folder:
        path = Path(folder) / "inputs.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        try:
            return datamodule.predict_dataset(str(path))
        except DataError as error:
            message = re.sub(
                rf"{re.escape(str(path))} line (\d+)",
                lambda found: f"inputs[{int(found.group(1)) - 1}]",
                str(error),
            )
            raise DataError(message.replace(str(path), "inputs")) from None


def _top_k_records(
    probabilities: Tensor,
    predicted: Tensor,
    label_names: Sequence[str],
    decimals: int | None,
    top_k: int,
) -> Iterator[dict[str, Any]]:
    values, indices = torch.topk(probabilities, min(top_k, probabilities.shape[1]), dim=1)
    hits = predicted.gather(1, indices)
    for row_values, row_indices, row_hits in zip(
        values.tolist(), indices.tolist(), hits.tolist(), strict=True
    ):
        scores = {
            label_names[i]: (round(p, decimals) if decimals is not None else p)
            for p, i in zip(row_values, row_indices, strict=True)
        }
        labels = [label_names[i] for i, hit in zip(row_indices, row_hits, strict=True) if hit]
        yield {"labels": labels, "scores": scores}


def _open_output(path: Path, compress: bool) -> IO[str]:
    if compress:
        return gzip.open(path, "wt", encoding="utf-8")
    return open(path, "w", encoding="utf-8")


def predict(cfg: DictConfig) -> Path:
    """Write predictions for ``cfg.input`` to ``cfg.output``; return the output path."""
    top_k = cfg.get("top_k")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ConfigError(f"top_k must be null or an integer >= 1, got {top_k!r}")
    apply_extras(cfg)
    if cfg.batch_size is not None and int(cfg.batch_size) < 1:
        raise ConfigError(f"batch_size must be >= 1, got {cfg.batch_size}")
    model, datamodule = load_trained(cfg.ckpt_path, cfg.get("data"), cfg.get("trusted_targets"))
    dataset = datamodule.predict_dataset(str(cfg.input))
    loader = datamodule.predict_loader(dataset, batch_size=cfg.batch_size)

    device = resolve_device(str(cfg.device))
    model = model.to(device)
    label_names = model.label_names

    output = Path(cfg.output)
    log.info(f"Predicting {len(dataset)} rows of {cfg.input} with {cfg.ckpt_path} on {device}")
    console = Console(stderr=True)
    progress = Progress(
        TextColumn("predicting"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not (cfg.progress_bar and console.is_terminal),
    )
    rows = 0
    with (
        atomic_path(output) as partial,
        progress,
        _open_output(partial, output.suffix == ".gz") as handle,
    ):
        task = progress.add_task("predict", total=len(dataset))
        for probabilities, predicted in predict_batches(model, loader, device):
            handle.writelines(
                format_rows(probabilities, predicted, label_names, cfg.decimals, top_k)
            )
            rows += len(probabilities)
            progress.advance(task, len(probabilities))
    log.info(f"Wrote {rows} predictions to {output}")
    log.info(f"Run directory: {cfg.paths.output_dir}")
    return output
