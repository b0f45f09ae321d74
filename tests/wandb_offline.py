"""Read an offline W&B run back from its ``run-<id>.wandb`` file (config, summary, history, ...).

wandb 0.31 keeps everything in that binary file and has no Python reader any more. The format is a
LevelDB-style log: a 7-byte header (``:W&B``, magic, version), then 32 KiB blocks of records, each
with a 7-byte header (CRC32C ``uint32``, length ``uint16``, type ``uint8``: 1 full, 2 first,
3 middle, 4 last); a block tail shorter than a header is zero padding. Each assembled payload is a
``wandb.proto.wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_BLOCK = 32 * 1024
_HEADER = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def iter_records(path: Path) -> Iterator[Any]:
    """Every ``Record`` of a ``.wandb`` file, in order."""
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B transaction log (header {data[:7]!r})")
    position, pending = _HEADER, b""
    while position + _HEADER <= len(data):
        left_in_block = _BLOCK - position % _BLOCK
        if left_in_block < _HEADER:
            position += left_in_block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + _HEADER])
        position += _HEADER
        chunk = data[position : position + length]
        position += length
        if kind == _FIRST:
            pending = chunk
            continue
        if kind == _MIDDLE:
            pending += chunk
            continue
        if kind not in (_FULL, _LAST):  # zero padding at the end of a block
            continue
        record = wandb_internal_pb2.Record()
        record.ParseFromString(chunk if kind == _FULL else pending + chunk)
        yield record


def _key(item: Any) -> str:
    return ".".join(item.nested_key) if item.nested_key else item.key


@dataclass
class OfflineRun:
    run_id: str = ""
    project: str = ""
    job_type: str = ""
    group: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)  # nested, as logged
    summary: dict[str, Any] = field(default_factory=dict)  # "key" or "key.sub" -> last value
    history: list[dict[str, Any]] = field(default_factory=list)
    artifacts: list[tuple[str, str]] = field(default_factory=list)  # (type, name)
    files: list[str] = field(default_factory=list)


def read_offline_run(run_dir: Path) -> OfflineRun:
    """Parse ``<run_dir>/run-*.wandb`` (``run_dir`` is ``.../wandb/offline-run-<time>-<id>``)."""
    (path,) = Path(run_dir).glob("run-*.wandb")
    run = OfflineRun()

    def update_config(items: Any) -> None:
        for item in items:
            keys = list(item.nested_key) or [item.key]
            node = run.config
            for key in keys[:-1]:
                node = node.setdefault(key, {})
            node[keys[-1]] = json.loads(item.value_json)

    for record in iter_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.run_id, run.project, run.job_type = (
                record.run.run_id,
                record.run.project,
                record.run.job_type,
            )
            run.tags = list(record.run.tags)
            run.group = record.run.run_group
            update_config(record.run.config.update)
        elif kind == "config":
            update_config(record.config.update)
        elif kind == "summary":
            for item in record.summary.update:
                run.summary[_key(item)] = json.loads(item.value_json)
        elif kind == "history":
            run.history.append(
                {_key(item): json.loads(item.value_json) for item in record.history.item}
            )
        elif kind == "artifact":
            run.artifacts.append((record.artifact.type, record.artifact.name))
        elif kind == "files":
            run.files += [f.path for f in record.files.files]
    run.config.pop("_wandb", None)
    return run
