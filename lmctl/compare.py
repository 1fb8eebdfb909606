"""`lmctl compare`: runs side by side, ranked by the task's main metric, with a regression gate.

Runs are read through their run directories (config.yaml, metrics.json, data.json). Only runs
of one task, scored on the same data (data.json fingerprints), are compared; anything else is
refused rather than mixed. Runs whose configs differ only in `training.seed` fold into one row
with mean ± standard deviation over the seeds.

Differences are in points: percentage points for scores in [0, 1] (accuracy 0.85 → 85), the
metric's own units otherwise (loss, perplexity, SQuAD's 0-100 F1). Which way is better is the
runs' task's declaration (`lmctl.tasks.greater_is_better`), the one training keeps its model by.
"""

from __future__ import annotations

import glob
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from lmctl.config import flatten, read_yaml
from lmctl.errors import UserError
from lmctl.tasks import greater_is_better

# Keys that name a run, not a choice that could explain its score.
_IGNORED_KEYS = {"output_dir"}
SEED_KEY = "training.seed"


@dataclass
class Run:
    path: Path
    config: dict
    metrics: dict
    data: dict

    @property
    def task(self) -> str:
        return self.config.get("task", "?")

    def score(self, metric: str) -> float | None:
        value = self.metrics.get(f"eval_{metric}")
        return float(value) if isinstance(value, (int, float)) else None

    def saved_megabytes(self) -> float | None:
        files = list(self.path.glob("*.safetensors"))
        return sum(f.stat().st_size for f in files) / 1e6 if files else None


@dataclass
class Row:
    """One configuration: a run, or several that differ only in their seed."""

    runs: list[Run]
    keys: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        names = [str(r.path) for r in self.runs]
        return names[0] if len(names) == 1 else f"{names[0]} (+{len(names) - 1})"

    def values(self, metric: str) -> list[float]:
        return [v for r in self.runs if (v := r.score(metric)) is not None]

    def mean(self, metric: str) -> float | None:
        values = self.values(metric)
        return statistics.fmean(values) if values else None

    def std(self, metric: str) -> float | None:
        values = self.values(metric)
        return statistics.stdev(values) if len(values) > 1 else None

    def stat(self, key: str) -> float | None:
        values = [r.metrics[key] for r in self.runs if isinstance(r.metrics.get(key), (int, float))]
        return statistics.fmean(values) if values else None


def read_run(path: Path) -> Run:
    """A finished run directory, or one line saying what it lacks."""
    if not (path / "config.yaml").is_file():
        raise UserError(f"{path}: not an lmctl run directory (no config.yaml)")
    if not (path / "metrics.json").is_file():
        raise UserError(f"{path}: no metrics.json (the run did not finish); finish it with --resume or leave it out")
    data = _read_json(path / "data.json") if (path / "data.json").is_file() else {}
    return Run(path, read_yaml(path / "config.yaml"), _read_json(path / "metrics.json"), data)


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise UserError(f"{path}: not a JSON file lmctl wrote (damaged or edited); rerun that run or leave it out") from None
    if not isinstance(value, dict):
        raise UserError(f"{path}: expected a JSON object; rerun that run or leave it out")
    return value


def expand(specs: list[str]) -> list[Path]:
    """Run directories named, or matched by globs (a glob keeps only the directories that hold a run)."""
    paths: list[Path] = []
    for spec in specs:
        if any(ch in spec for ch in "*?["):
            matched = sorted(Path(p) for p in glob.glob(spec) if (Path(p) / "config.yaml").is_file())
            if not matched:
                raise UserError(f"{spec}: matches no run directory")
            paths += matched
        else:
            paths.append(Path(spec))
    return list(dict.fromkeys(paths))


def _content(fingerprint) -> object:
    """A file's (or a folder's files') sha256: the same data under another path is the same data."""
    if isinstance(fingerprint, list):
        return [_content(f) for f in fingerprint]
    if isinstance(fingerprint, dict):
        if "sha256" in fingerprint:
            return fingerprint["sha256"]
        return {name: _content(f) for name, f in fingerprint.items()}  # named evaluation sets
    return fingerprint


def _data_identity(run: Run) -> str:
    """What a run was scored on: its validation file, or the split carved from its training file."""
    d = run.data
    if "validation_file" in d:
        return json.dumps(_content(d["validation_file"]), sort_keys=True)
    return json.dumps([_content(d.get("train_file")), d.get("dataset"), d.get("validation_split"), d.get("split_by")],
                      sort_keys=True)


def _check_comparable(runs: list[Run]) -> None:
    first = runs[0]
    for run in runs[1:]:
        if run.task != first.task:
            raise UserError(f"compare: {first.path} is {first.task} but {run.path} is {run.task}; compare runs of "
                            "one task")
        if _data_identity(run) != _data_identity(first):
            raise UserError(f"compare: {first.path} and {run.path} were scored on different data (data.json "
                            "fingerprints differ); compare runs on the same data")


def main_metric(runs: list[Run]) -> str:
    """The metric the runs kept their model by (metrics.json best_metric), else the first eval metric."""
    for run in runs:
        if run.metrics.get("best_metric"):
            return run.metrics["best_metric"]
    keys = [k.removeprefix("eval_") for k in runs[0].metrics if k.startswith("eval_")]
    if not keys:
        raise UserError(f"{runs[0].path}: metrics.json has no eval_ metric to compare")
    return keys[0]


def points(task: str, metric: str, values: list[float]) -> float:
    """The factor that turns a difference into points (see the module docstring)."""
    return 100.0 if greater_is_better(task, metric) and all(-1.0 <= v <= 1.0 for v in values) else 1.0


@dataclass
class Comparison:
    task: str
    rows: list[Row]
    metric: str
    metrics: list[str]
    keys: list[str]
    baseline: Row | None
    factor: float
    failures: list[str]

    def delta(self, row: Row) -> float | None:
        if self.baseline is None:
            return None
        return (row.mean(self.metric) - self.baseline.mean(self.metric)) * self.factor


def compare(specs: list[str], baseline: str | None = None, sort_by: str | None = None, all_keys: bool = False,
            fail_if_worse: str | None = None, tolerance: float = 0.5) -> Comparison:
    paths = expand(specs)
    reference = baseline or fail_if_worse
    if reference and Path(reference) not in paths:
        paths.append(Path(reference))
    runs = [read_run(p) for p in paths]
    _check_comparable(runs)
    metric = main_metric(runs)
    for run in runs:
        if run.score(metric) is None:
            raise UserError(f"{run.path}: metrics.json has no eval_{metric}, the main metric of the others")

    flat = {run.path: {k: v for k, v in flatten(run.config).items() if k not in _IGNORED_KEYS} for run in runs}
    every = sorted({k for f in flat.values() for k in f})
    differing = [k for k in every if len({json.dumps(f.get(k), sort_keys=True) for f in flat.values()}) > 1]
    # Seeds fold: runs that agree on every other differing key are one row.
    identity = [k for k in differing if k != SEED_KEY]
    rows: dict[str, Row] = {}
    for run in runs:
        key = json.dumps([flat[run.path].get(k) for k in identity], sort_keys=True)
        row = rows.setdefault(key, Row([], {k: flat[run.path].get(k) for k in identity}))
        row.runs.append(run)

    order_metric = sort_by or metric
    if not any(row.mean(order_metric) is not None for row in rows.values()):
        raise UserError(f"--sort-by {order_metric}: no run reports it; choose one of {', '.join(_eval_names(runs))}")
    task = runs[0].task  # one task: _check_comparable
    sign = -1 if greater_is_better(task, order_metric) else 1

    def rank_key(row: Row) -> tuple:
        value = row.mean(order_metric)
        return (value is None, sign * (value or 0.0))  # rows without the metric last

    ranked = sorted(rows.values(), key=rank_key)
    by_run = {run.path: row for row in ranked for run in row.runs}
    base_row = by_run[Path(reference)] if reference else None
    factor = points(task, metric, [v for row in ranked for v in row.values(metric)])

    failures = []
    if fail_if_worse:
        gate = by_run[Path(fail_if_worse)]
        sign = 1 if greater_is_better(task, metric) else -1
        for row in ranked:
            if row is gate:
                continue
            drop = sign * (gate.mean(metric) - row.mean(metric)) * factor
            if drop > tolerance:
                failures.append(f"{row.label}: {metric} {row.mean(metric):.4f} is {drop:.2f} points worse than "
                                f"{gate.label} ({gate.mean(metric):.4f}; tolerance {tolerance:g})")
    keys = (every if all_keys else identity) + ([SEED_KEY] if SEED_KEY in differing and not all_keys else [])
    metrics = [metric] + [m for m in _eval_names(runs) if m != metric]
    return Comparison(task, ranked, metric, metrics, keys, base_row, factor, failures)


def _eval_names(runs: list[Run]) -> list[str]:
    """Eval metrics every run reports, in the first run's order."""
    names = [k.removeprefix("eval_") for k in runs[0].metrics if k.startswith("eval_")]
    return [n for n in names if all(r.score(n) is not None for r in runs)]


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return "" if value is None else str(value)


def records(c: Comparison) -> list[dict]:
    """One plain record per row: what every output format prints."""
    out = []
    for rank, row in enumerate(c.rows, 1):
        rec = {"rank": rank, "run": row.label, "runs": [str(r.path) for r in row.runs], "seeds": len(row.runs)}
        first = flatten(row.runs[0].config)
        for key in c.keys:
            if key == SEED_KEY:
                rec[key] = [flatten(r.config).get(SEED_KEY) for r in row.runs]
            else:
                rec[key] = row.keys.get(key, first.get(key))
        for m in c.metrics:
            rec[m] = row.mean(m)
            if len(row.runs) > 1:
                rec[f"{m}_std"] = row.std(m)
        if c.baseline is not None:
            rec["delta_points"] = c.delta(row)
        for key, name in (("parameters", "parameters"), ("train_samples_per_second", "rows_per_second")):
            value = row.stat(key)
            if value is not None:
                rec[name] = value
        sizes = [s for r in row.runs if (s := r.saved_megabytes()) is not None]
        if sizes:
            rec["saved_mb"] = statistics.fmean(sizes)
        out.append(rec)
    return out


def table(c: Comparison) -> tuple[list[str], list[list[str]]]:
    """Header and text cells: metrics as mean ± std over seeds, ↑/↓ for their direction."""
    recs = records(c)
    extra = [k for k in ("parameters", "saved_mb", "rows_per_second") if any(k in r for r in recs)]
    header = ["#", "run", "seeds", *c.keys,
              *[f"{m} {'↑' if greater_is_better(c.task, m) else '↓'}" for m in c.metrics],
              *(["Δ points"] if c.baseline is not None else []), *extra]
    cells = []
    for rec in recs:
        row = [str(rec["rank"]), rec["run"], str(rec["seeds"]), *[_cell(rec[k]) for k in c.keys]]
        for m in c.metrics:
            value, std = rec[m], rec.get(f"{m}_std")
            row.append("" if value is None else f"{value:.4f}" + (f" ± {std:.4f}" if std is not None else ""))
        if c.baseline is not None:
            row.append(f"{rec['delta_points']:+.2f}")
        for k in extra:
            value = rec.get(k)
            row.append("" if value is None else f"{value:,.0f}" if k == "parameters" else f"{value:.1f}")
        cells.append(row)
    return header, cells


def markdown(c: Comparison) -> str:
    header, cells = table(c)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in cells]
    return "\n".join(lines) + "\n"


def csv_text(c: Comparison) -> str:
    import csv
    import io

    recs = records(c)
    columns = list(dict.fromkeys(k for r in recs for k in r if k != "runs"))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for rec in recs:
        writer.writerow({k: _cell(rec.get(k)) for k in columns})
    return buffer.getvalue()


def json_text(c: Comparison) -> str:
    return json.dumps({"task": c.task, "main_metric": c.metric, "rows": records(c),
                       "failures": c.failures}, indent=2) + "\n"
