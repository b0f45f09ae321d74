"""Statistics, tables and figures of the loss comparison, computed from its run records alone.

A run record is a dict written by ``loss_comparison.py``: ``study`` (``compare``, ``sweep`` or
``batch_size``), ``dataset`` (a variant name), ``loss``, ``seed``, ``loss_params``, ``batch_size``,
``metrics`` (the run's ``test_metrics.json``: ``test_untuned/*`` at threshold 0.5, ``test/*`` at the
thresholds tuned on validation), ``best_val_f1_macro``, ``epochs``, ``wall_time_s``, ``command``.

Statistics over seeds (n runs, one per seed):

- mean and 95 % confidence interval ``mean ± t_{0.975, n-1} · s / sqrt(n)`` (Student t, s the
  sample standard deviation);
- the paired difference to BCE: ``d_s = metric(loss, seed s) - metric(bce, seed s)`` over the seeds
  both have, with the same interval on the ``d_s``. Pairing removes what a seed does to every loss
  alike (the Yeast split, the initialisation), so it is narrower than comparing two intervals.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from scipy import stats  # installed with river, the Yeast dependency

UNTUNED, TUNED = "test_untuned/", "test/"
STAGES = {UNTUNED: "threshold 0.5", TUNED: "tuned thresholds"}
REFERENCE_LOSS = "bce"
TUNING_TOLERANCE = 0.01  # tuned F1 may fall at most this far below the 0.5 figure (mean over seeds)
LABELS = {
    "f1_micro": "micro-F1",
    "f1_macro": "macro-F1",
    "f1_weighted": "weighted-F1",
    "f1_samples": "sample-F1",
    "map_macro": "mAP",
    "card_mae": "card. MAE",
}
LOWER_IS_BETTER = {"card_mae"}


@dataclass(frozen=True)
class Interval:
    """A mean over ``n`` values with its 95 % Student-t confidence interval ``[low, high]``."""

    mean: float
    low: float
    high: float
    n: int

    def excludes_zero(self) -> bool:
        return self.n > 1 and (self.low > 0 or self.high < 0)

    def format(self, signed: bool = False) -> str:
        sign = "+" if signed else ""
        if self.n < 2:
            return f"{self.mean:{sign}.3f}"
        return f"{self.mean:{sign}.3f} [{self.low:{sign}.3f}, {self.high:{sign}.3f}]"


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """Mean of ``values`` and its two-sided Student-t interval (zero width when n = 1)."""
    if not values:
        raise ValueError("mean_ci needs at least one value")
    n, mean = len(values), statistics.fmean(values)
    if n == 1:
        return Interval(mean, mean, mean, 1)
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * statistics.stdev(values) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


def paired_difference(by_seed: dict[int, float], reference_by_seed: dict[int, float]) -> Interval:
    """Mean of ``by_seed[s] - reference_by_seed[s]`` over the seeds both have, with its interval."""
    seeds = sorted(set(by_seed) & set(reference_by_seed))
    if not seeds:
        raise ValueError("no seed in common for a paired difference")
    return mean_ci([by_seed[s] - reference_by_seed[s] for s in seeds])


# --- grouping -----------------------------------------------------------------------------------
def select(records: Iterable[dict], **fields) -> list[dict]:
    return [r for r in records if all(r.get(k) == v for k, v in fields.items())]


def ordered(values: Iterable[str], order: Sequence[str]) -> list[str]:
    """The distinct ``values`` in ``order`` first, then any others in first-seen order."""
    seen = list(dict.fromkeys(values))
    return [v for v in order if v in seen] + [v for v in seen if v not in order]


def by_seed(records: Iterable[dict], name: str) -> dict[int, float]:
    return {r["seed"]: r["metrics"][name] for r in records if name in r["metrics"]}


def cell_statistics(
    runs: list[dict], dataset: str, loss: str, name: str
) -> tuple[Interval, Interval | None]:
    """``(mean CI, paired difference to BCE or None)`` of metric ``name`` in one dataset x loss."""
    values = by_seed(select(runs, dataset=dataset, loss=loss), name)
    reference = by_seed(select(runs, dataset=dataset, loss=REFERENCE_LOSS), name)
    interval = mean_ci(list(values.values()))
    if loss == REFERENCE_LOSS or not set(values) & set(reference):
        return interval, None
    return interval, paired_difference(values, reference)


def tuning_check(runs: list[dict], dataset: str, loss: str) -> dict[str, float | bool]:
    """Tuned minus 0.5 mean micro- and macro-F1 of one cell; ``ok`` if neither drops > tolerance."""
    cell = select(runs, dataset=dataset, loss=loss)
    check: dict[str, float | bool] = {}
    for metric in ("f1_micro", "f1_macro"):
        tuned = statistics.fmean(r["metrics"][TUNED + metric] for r in cell)
        untuned = statistics.fmean(r["metrics"][UNTUNED + metric] for r in cell)
        check[f"{metric}_change"] = tuned - untuned
    check["ok"] = all(v >= -TUNING_TOLERANCE for v in check.values())
    return check


def chosen_params(sweep: list[dict], dataset: str) -> tuple[dict, list[tuple[dict, Interval]]]:
    """The grid point with the best mean validation macro-F1 (at 0.5) over the sweep seeds, and
    every grid point with its interval, in the order first recorded."""
    grid: dict[str, tuple[dict, list[float]]] = {}
    for r in select(sweep, dataset=dataset):
        key = repr(sorted(r["loss_params"].items()))
        grid.setdefault(key, (r["loss_params"], []))[1].append(r["best_val_f1_macro"])
    scored = [(params, mean_ci(values)) for params, values in grid.values()]
    if not scored:
        raise ValueError(f"no sweep runs for {dataset}")
    return max(scored, key=lambda item: item[1].mean)[0], scored


# --- the summary (what the JSON and the Markdown hold) -------------------------------------------
def summarise(runs: list[dict], losses: Sequence[str], datasets: Sequence[str]) -> dict:
    """Every statistic of the comparison study as plain data: ``{dataset: {loss: {...}}}``."""
    compare = select(runs, study="compare")
    summary: dict = {}
    for dataset in ordered((r["dataset"] for r in compare), datasets):
        cells = {}
        for loss in ordered((r["loss"] for r in select(compare, dataset=dataset)), losses):
            cell = {"seeds": sorted(r["seed"] for r in select(compare, dataset=dataset, loss=loss))}
            for prefix in (UNTUNED, TUNED):
                for metric in LABELS:
                    name = prefix + metric
                    if not all(name in r["metrics"] for r in select(compare, dataset=dataset)):
                        continue
                    interval, difference = cell_statistics(compare, dataset, loss, name)
                    cell[name] = {"mean": interval.mean, "ci95": [interval.low, interval.high]}
                    if difference is not None:
                        cell[name]["diff_to_bce"] = {
                            "mean": difference.mean,
                            "ci95": [difference.low, difference.high],
                            "n_pairs": difference.n,
                        }
            cell["tuning_check"] = tuning_check(compare, dataset, loss)
            cells[loss] = cell
        summary[dataset] = cells
    return summary


def batch_size_curve(runs: list[dict]) -> dict[tuple[str, str], list[tuple[int, Interval]]]:
    """``{(dataset, loss): [(batch size, test macro-F1 at 0.5 over seeds), ...]}``."""
    study = select(runs, study="batch_size")
    curves: dict[tuple[str, str], list[tuple[int, Interval]]] = {}
    for dataset, loss in dict.fromkeys((r["dataset"], r["loss"]) for r in study):
        cell = select(study, dataset=dataset, loss=loss)
        sizes = sorted({r["batch_size"] for r in cell})
        curves[(dataset, loss)] = [
            (
                size,
                mean_ci(
                    [r["metrics"][UNTUNED + "f1_macro"] for r in cell if r["batch_size"] == size]
                ),
            )
            for size in sizes
        ]
    return curves


# --- Markdown -----------------------------------------------------------------------------------
def _cell(interval: Interval, difference: Interval | None) -> tuple[str, str]:
    if difference is None:
        return interval.format(), "—"
    mark = " *" if difference.excludes_zero() else ""
    return interval.format(), difference.format(signed=True) + mark


def markdown_report(
    runs: list[dict],
    losses: Sequence[str],
    datasets: Sequence[str],
    setup: dict[str, str],
    note: str,
    reproductions: Sequence[dict] = (),
) -> str:
    """The whole report: setup, sigmoidF1 selection, per-dataset tables, checks, batch sizes."""
    compare = select(runs, study="compare")
    names = ordered((r["dataset"] for r in compare), datasets)
    lines = ["# Loss comparison, second edition", "", note, ""]
    lines += [
        "## Setup",
        "",
        "| dataset | overrides (identical for every loss) | runs | mean s/run |",
    ]
    lines.append("|---|---|---:|---:|")
    for dataset in ordered([*names, *(r["dataset"] for r in runs)], datasets):
        mine = select(runs, dataset=dataset)
        wall = statistics.fmean(r["wall_time_s"] for r in mine)
        lines.append(f"| {dataset} | `{setup.get(dataset, '?')}` | {len(mine)} | {wall:.0f} |")
    lines.append("")

    sweep = select(runs, study="sweep")
    if sweep:
        lines += [
            "## sigmoidF1's beta and eta, chosen on validation",
            "",
            "Best mean validation macro-F1 at 0.5 (the best epoch of each run) over the sweep "
            "seeds; the test split is not looked at. The chosen setting is what `sigmoid_f1` "
            "means in every table below.",
            "",
            "| dataset | setting | val macro-F1 [95 % CI] | seeds | chosen |",
            "|---|---|---:|---:|:---:|",
        ]
        for dataset in ordered((r["dataset"] for r in sweep), datasets):
            best, scored = chosen_params(sweep, dataset)
            for params, interval in scored:
                setting = " ".join(f"{k}={v}" for k, v in params.items()) or "defaults"
                chosen = "yes" if params == best else ""
                lines.append(
                    f"| {dataset} | `{setting}` | {interval.format()} | {interval.n} | {chosen} |"
                )
        lines.append("")

    lines += [
        "## Test F1 per dataset",
        "",
        "Mean [95 % CI] over seeds; Δ BCE = the paired difference to BCE on the same seed, "
        "[95 % CI]; * = the interval excludes 0.",
        "",
    ]
    for dataset in names:
        seeds = sorted({r["seed"] for r in select(compare, dataset=dataset)})
        lines += [f"### {dataset} (seeds {', '.join(map(str, seeds))})", ""]
        for metric in ("f1_macro", "f1_micro"):
            lines += [
                f"| loss | {LABELS[metric]} at 0.5 | Δ BCE at 0.5 | {LABELS[metric]} tuned "
                "| Δ BCE tuned |",
                "|---|---:|---:|---:|---:|",
            ]
            for loss in ordered((r["loss"] for r in select(compare, dataset=dataset)), losses):
                cells = []
                for prefix in (UNTUNED, TUNED):
                    cells += _cell(*cell_statistics(compare, dataset, loss, prefix + metric))
                lines.append(f"| {loss} | " + " | ".join(cells) + " |")
            lines.append("")
        other = ("f1_weighted", "f1_samples", "map_macro")
        lines += [
            "| loss | " + " | ".join(f"{LABELS[m]} at 0.5" for m in other) + " |",
            "|---|" + "---:|" * len(other),
        ]
        for loss in ordered((r["loss"] for r in select(compare, dataset=dataset)), losses):
            cells = [
                cell_statistics(compare, dataset, loss, UNTUNED + m)[0].format() for m in other
            ]
            lines.append(f"| {loss} | " + " | ".join(cells) + " |")
        lines.append("")

    lines += [
        "## Label-count error (card. MAE, lower is better)",
        "",
        "Mean absolute error between the predicted and the true number of labels per test example; "
        "mean [95 % CI] over seeds, and the paired difference to BCE.",
        "",
        "| dataset | loss | at 0.5 | Δ BCE at 0.5 | tuned | Δ BCE tuned |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for dataset in names:
        for loss in ordered((r["loss"] for r in select(compare, dataset=dataset)), losses):
            cells = []
            for prefix in (UNTUNED, TUNED):
                cells += _cell(*cell_statistics(compare, dataset, loss, prefix + "card_mae"))
            lines.append(f"| {dataset} | {loss} | " + " | ".join(cells) + " |")
    lines.append("")

    lines += [
        "## Check: tuned thresholds never cost more than 0.01",
        "",
        f"Mean over seeds of tuned minus 0.5 test F1; a cell passes when neither drops by more "
        f"than {TUNING_TOLERANCE}.",
        "",
        "| dataset | loss | micro-F1 change | macro-F1 change | check |",
        "|---|---|---:|---:|:---:|",
    ]
    verdicts = []
    for dataset in names:
        results = []
        for loss in ordered((r["loss"] for r in select(compare, dataset=dataset)), losses):
            check = tuning_check(compare, dataset, loss)
            results.append(check["ok"])
            lines.append(
                f"| {dataset} | {loss} | {check['f1_micro_change']:+.3f} "
                f"| {check['f1_macro_change']:+.3f} | {'pass' if check['ok'] else 'FAIL'} |"
            )
        verdicts.append(f"{dataset}: {sum(results)} of {len(results)} losses pass")
    lines += ["", "; ".join(verdicts) + ".", ""]

    curves = batch_size_curve(runs)
    if curves:
        lines += [
            "## Macro-F1 against batch size",
            "",
            "Test macro-F1 at 0.5, mean [95 % CI] over seeds; learning rate and every other "
            "setting fixed, the epoch budget large enough for early stopping to end each run.",
            "",
            "| dataset | loss | " + " | ".join(str(s) for s, _ in next(iter(curves.values()))),
        ]
        lines[-1] += " |"
        lines.append("|---|---|" + "---:|" * len(next(iter(curves.values()))))
        for (dataset, loss), points in curves.items():
            cells = " | ".join(f"{i.format()} (n={i.n})" for _, i in points)
            lines.append(f"| {dataset} | {loss} | {cells} |")
        lines.append("")

    if reproductions:
        lines += [
            "## Reproduction",
            "",
            "| command | test macro-F1 | recorded | re-run | difference |",
            "|---|---|---:|---:|---:|",
        ]
        for rep in reproductions:
            for name, recorded in rep["recorded"].items():
                rerun = rep["reproduced"][name]
                lines.append(
                    f"| `{rep['command']}` | `{name}` | {recorded:.6f} | {rerun:.6f} "
                    f"| {rerun - recorded:+.6f} |"
                )
        lines.append("")

    lines += ["## Runs", "", "| study | dataset | loss | setting | seed | epochs | s |"]
    lines.append("|---|---|---|---|---:|---:|---:|")
    for r in runs:
        setting = " ".join(f"{k}={v}" for k, v in r["loss_params"].items())
        if r.get("batch_size"):
            setting = f"batch {r['batch_size']} {setting}".strip()
        lines.append(
            f"| {r['study']} | {r['dataset']} | {r['loss']} | {setting} | {r['seed']} "
            f"| {r['epochs']} | {r['wall_time_s']:.0f} |"
        )
    lines.append("")
    return "\n".join(lines)


# --- figures ------------------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def forest_plot(runs: list[dict], losses: Sequence[str], datasets: Sequence[str], path: Path):
    """Paired difference to BCE (mean, 95 % CI) of test macro- and micro-F1, per dataset."""
    plt = _pyplot()
    compare = select(runs, study="compare")
    names = ordered((r["dataset"] for r in compare), datasets)
    metrics = ("f1_macro", "f1_micro")
    fig, axes = plt.subplots(
        len(names), len(metrics), figsize=(9, 0.5 + 2.2 * len(names)), squeeze=False
    )
    for row, dataset in enumerate(names):
        others = [
            loss
            for loss in ordered((r["loss"] for r in select(compare, dataset=dataset)), losses)
            if loss != REFERENCE_LOSS
        ]
        for col, metric in enumerate(metrics):
            ax = axes[row][col]
            for offset, (prefix, colour) in zip(
                (-0.15, 0.15), ((UNTUNED, "tab:blue"), (TUNED, "tab:orange")), strict=True
            ):
                for y, loss in enumerate(others):
                    difference = cell_statistics(compare, dataset, loss, prefix + metric)[1]
                    if difference is None:
                        continue
                    ax.errorbar(
                        difference.mean,
                        y + offset,
                        xerr=[
                            [difference.mean - difference.low],
                            [difference.high - difference.mean],
                        ],
                        fmt="o",
                        color=colour,
                        capsize=2,
                        markersize=4,
                        label=STAGES[prefix] if y == 0 else None,
                    )
            ax.axvline(0, color="grey", linewidth=0.8)
            ax.set_yticks(range(len(others)), others, fontsize=8)
            ax.invert_yaxis()
            ax.set_title(f"{dataset}: Δ {LABELS[metric]} vs BCE", fontsize=9)
            ax.grid(axis="x", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8)
    fig.suptitle("Paired test-F1 difference to BCE (same seed), mean and 95 % CI", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def batch_size_plot(runs: list[dict], path: Path) -> None:
    """Test macro-F1 at 0.5 against batch size (log scale), mean and 95 % CI, per dataset."""
    plt = _pyplot()
    curves = batch_size_curve(runs)
    datasets = list(dict.fromkeys(d for d, _ in curves))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 3.6), squeeze=False)
    for col, dataset in enumerate(datasets):
        ax = axes[0][col]
        for (name, loss), points in curves.items():
            if name != dataset:
                continue
            sizes = [s for s, _ in points]
            means = [i.mean for _, i in points]
            ax.plot(sizes, means, marker="o", label=loss)
            ax.fill_between(
                sizes, [i.low for _, i in points], [i.high for _, i in points], alpha=0.2
            )
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.set_xlabel("batch size")
        ax.set_ylabel("test macro-F1 at 0.5")
        ax.set_title(f"{dataset}: macro-F1 against batch size (95 % CI)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
