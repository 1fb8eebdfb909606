"""Pictures of runs: training curves (curves.png), several runs overlaid, confusion matrices.

Everything is drawn with matplotlib's non-interactive Agg backend from the files a run
directory already holds (train_log.jsonl, metrics.json), so a picture can be redrawn at any
time and never disagrees with the numbers beside it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def read_series(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """train_log.jsonl → {"loss": [(step, value), ...], "lr": [...], "eval_<metric>": [...]}."""
    series: dict[str, list[tuple[int, float]]] = {}
    log = Path(run_dir) / "train_log.jsonl"
    if not log.is_file():
        return series
    for line in log.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        for key, value in record.items():
            if (key in ("loss", "lr") or key.startswith("eval_")) and isinstance(value, (int, float)):
                series.setdefault(key, []).append((record["step"], float(value)))
    return series


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    """Write by rename, like every other file of a run directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)  # checked up front by rundir.check_output_file
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100, bbox_inches="tight")
    os.replace(tmp, path)
    return path


def curves_figure(run_dir: Path):
    """One panel per series: training loss, learning rate, each evaluation metric; the kept
    (best) step marked on every evaluation panel. None when the run logged nothing."""
    series = read_series(run_dir)
    if not series:
        return None
    best = None
    metrics_file = Path(run_dir) / "metrics.json"
    if metrics_file.is_file():
        best = json.loads(metrics_file.read_text(encoding="utf-8")).get("best_step")
    names = [n for n in ("loss", "lr") if n in series] + sorted(n for n in series if n.startswith("eval_"))
    plt = _pyplot()
    cols = min(3, len(names))
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        steps, values = zip(*series[name])
        ax.plot(steps, values, marker="o" if name.startswith("eval_") else None, markersize=3, label=name)
        ax.set_title(name if name != "loss" else "training loss")
        ax.set_xlabel("step")
        if name.startswith("eval_") and best is not None:
            ax.axvline(best, color="tab:red", linestyle="--", linewidth=1, label=f"kept: step {best}")
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    fig.suptitle(str(run_dir))
    fig.tight_layout()
    return fig


def write_curves(run_dir: Path) -> Path | None:
    """curves.png in the run directory (None when there is nothing to draw)."""
    fig = curves_figure(run_dir)
    if fig is None:
        return None
    try:
        return _save(fig, Path(run_dir) / "curves.png")
    finally:
        _pyplot().close(fig)


def overlay(run_dirs: list[Path], metric: str, path: Path) -> Path:
    """Several runs' training loss and `metric` (an evaluation metric) against step, one line per run."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for run in run_dirs:
        series = read_series(run)
        for ax, name in ((left, "loss"), (right, f"eval_{metric}")):
            if series.get(name):
                steps, values = zip(*series[name])
                ax.plot(steps, values, label=Path(run).name, marker="o" if ax is right else None, markersize=3)
    left.set_title("training loss")
    right.set_title(f"eval {metric}")
    for ax in (left, right):
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    try:
        return _save(fig, Path(path))
    finally:
        plt.close(fig)


def write_confusion(path: Path, labels: list[str], matrix) -> Path:
    """The confusion matrix as a picture: true labels down, predicted across, counts in the cells."""
    import numpy as np

    plt = _pyplot()
    values = np.asarray(matrix)
    size = max(3.0, 0.6 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(values, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    top = values.max() if values.size else 0
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            ax.text(j, i, str(int(values[i, j])), ha="center", va="center",
                    color="white" if top and values[i, j] > top / 2 else "black")
    fig.tight_layout()
    try:
        return _save(fig, Path(path))
    finally:
        plt.close(fig)


def write_study_plots(study, out_dir: Path) -> dict[str, str]:
    """A sweep's pictures, drawn by Optuna's matplotlib plots: history.png (each complete trial's score
    and the best so far) and importances.png (how much each searched key explains the score). Returns
    file name → path written, or the one-line reason it was not (importances need two complete trials
    that differ)."""
    import warnings

    from optuna.visualization import matplotlib as optuna_plots

    plt = _pyplot()
    done = {}
    for name, draw in (("history.png", optuna_plots.plot_optimization_history),
                       ("importances.png", optuna_plots.plot_param_importances)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna's ExperimentalWarning on every matplotlib plot
                ax = draw(study)
            fig = ax.figure
            fig.tight_layout()
            done[name] = str(_save(fig, Path(out_dir) / name))
            plt.close(fig)
        except Exception as exc:  # noqa: BLE001 - too few complete trials, nothing varies: the sweep's result stands
            done[name] = f"not drawn: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
    return done
