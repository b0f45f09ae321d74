"""The model summary printed when fitting starts: Lightning's rich table, without a FLOPs count
that was never measured.

Lightning 2.6 counts FLOPs by running the module's ``example_input_array`` through it; a module
without one (ours: its inputs depend on the data) gets a FLOPs column of zeros and a ``Total FLOPs:
0`` line, which reads as a measurement. This summary shows FLOPs only when they were counted.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import RichModelSummary
from lightning.pytorch.utilities.model_summary import get_human_readable_count
from lightning.pytorch.utilities.model_summary.model_summary import get_formatted_model_size

FLOPS_COLUMN = "FLOPs"
RIGHT_ALIGNED = {"Params", "Params per Device", FLOPS_COLUMN, "In sizes", "Out sizes"}


class ModelSummary(RichModelSummary):
    """``RichModelSummary`` (same arguments) whose table and totals leave FLOPs out when none were
    counted (``total_flops == 0``: the module has no ``example_input_array``)."""

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int,
        **summarize_kwargs: Any,
    ) -> None:
        from rich import get_console
        from rich.table import Table

        if not total_flops:
            summary_data = [column for column in summary_data if column[0] != FLOPS_COLUMN]
        table = Table(header_style=summarize_kwargs.get("header_style", "bold magenta"))
        for index, (name, _) in enumerate(summary_data):
            table.add_column(
                name,
                justify="right" if name in RIGHT_ALIGNED else "left",
                style="dim" if index == 0 else None,
                no_wrap=name == "Name",
            )
        for row in zip(*(values for _, values in summary_data), strict=True):
            table.add_row(*row)

        totals = [
            ("Trainable params", get_human_readable_count(int(trainable_parameters))),
            (
                "Non-trainable params",
                get_human_readable_count(int(total_parameters - trainable_parameters)),
            ),
            ("Total params", get_human_readable_count(int(total_parameters))),
            ("Total estimated model params size (MB)", get_formatted_model_size(model_size)),
            ("Modules in train mode", str(total_training_modes["train"])),
            ("Modules in eval mode", str(total_training_modes["eval"])),
        ]
        if total_flops:
            totals.append(("Total FLOPs", get_human_readable_count(total_flops)))
        grid = Table.grid(expand=True)
        grid.add_column()
        for name, value in totals:
            grid.add_row(f"[bold]{name}[/]: {value}")
        console = get_console()
        console.print(table)
        console.print(grid)
