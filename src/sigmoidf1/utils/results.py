"""Write and show the final metrics of a run."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_only
from rich.console import Console
from rich.table import Table


def scalar_metrics(metrics: Mapping, prefix: str) -> dict[str, float]:
    """The entries of ``metrics`` whose name starts with ``prefix``, as Python floats."""
    return {k: float(v) for k, v in sorted(metrics.items()) if k.startswith(prefix)}


@rank_zero_only
def write_json(values: Mapping[str, float], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(values), indent=2, sort_keys=True) + "\n")


@rank_zero_only
def print_metrics_table(values: Mapping[str, float], title: str) -> None:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in values.items():
        table.add_row(name, f"{value:.4f}")
    Console().print(table)
