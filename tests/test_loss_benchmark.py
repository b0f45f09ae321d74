"""benchmarks/losses.py at a tiny size: the report's ratios, per-round ratios and page faults."""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

import losses as loss_benchmark  # noqa: E402


def test_a_tiny_run_reports_ratios_against_the_reference(tmp_path, capsys):
    out = tmp_path / "losses.json"
    arguments = ["--labels", "8", "40", "--batch", "16", "--losses", "sigmoid_f1", "bce"]
    report = loss_benchmark.main([*arguments, "--quick", "--repeats", "3", "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    assert "sigmoid_f1" in capsys.readouterr().out
    for labels in ("8", "40"):
        results = report["results"][labels]
        assert list(results) == [loss_benchmark.REFERENCE, "sigmoid_f1", "bce"]
        reference = results[loss_benchmark.REFERENCE]
        assert reference["ratio"] == 1.0 and reference["round_ratios"] == [1.0] * 3
        for result in results.values():
            assert result["repeats"] == 3 and result["inner"] >= 1
            assert result["ms_min"] <= result["ms"] <= result["ms_max"]
            assert result["page_faults_per_iter"] >= 0
            assert len(result["round_ratios"]) == 3
