"""benchmarks/scaling.py at a tiny size: the JSON, the PNG, state sizes and the log-log slope."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

import scaling  # noqa: E402


def test_log_log_slope_recovers_the_exponent():
    sizes = [100, 1000, 10_000, 100_000]
    assert scaling.log_log_slope(sizes, [3e-6 * s**1.3 for s in sizes]) == pytest.approx(1.3)
    assert scaling.log_log_slope(sizes, [1.0, 5.0, 5.0, 5.0]) == pytest.approx(0.0, abs=1e-12)
    assert scaling.log_log_slope([100, 1000], [1.0, 2.0]) is None  # one point from 1k up


@pytest.mark.slow  # a fresh process per size and round
def test_a_tiny_run_writes_the_results_and_states_do_not_grow(tmp_path):
    out, png = tmp_path / "s.json", tmp_path / "s.png"
    arguments = ["--sizes", "30", "1200", "--batch", "16", "--steps", "2", "--rounds", "2"]
    scaling.main([*arguments, "--positives", "3", "--json", str(out), "--png", str(png)])
    result = json.loads(out.read_text())
    assert [row["labels"] for row in result["summary"]] == [30, 1200]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result["slope_seconds_vs_labels_1k_up"] is None  # only one size from 1k up
    for row in result["summary"]:
        assert row["rounds"] == 2 and row["seconds_per_step"] > 0
        low, high = row["seconds_per_step_range"]
        assert low <= row["seconds_per_step"] <= high
        # the large-label states: the same bytes after 16 and after 64 examples
        assert list(row["metric_state_bytes"].values()) == list(
            row["metric_state_bytes_after_more"].values()
        )
    names = result["rounds"][0][0]["metric_names"]
    assert "psp_at_5" in names and "map_macro" not in names
