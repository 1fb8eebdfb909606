"""Pictures: every training run writes curves.png whose plotted series are train_log.jsonl's values;
classification evaluation writes its confusion matrix as a PNG; compare --plot overlays runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from helpers import REPO, cli

DATA = REPO / "configs" / "finetune" / "data"


@pytest.fixture(scope="module")
def runs(tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("plots")
    for name, lr in (("a", 1e-3), ("b", 3e-4)):
        cfg = {"task": "text-classification", "model": {"name_or_path": str(tiny_models["bert"])},
               "data": {"train_file": str(DATA / "train.tsv"), "validation_file": str(DATA / "dev.tsv"),
                        "text_column": "sentence"},
               "training": {"max_steps": 30, "batch_size": 16, "learning_rate": lr, "max_length": 32,
                            "eval_strategy": "steps", "eval_steps": 10, "logging_steps": 5},
               "output_dir": str(root / name)}
        (root / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
        cli("finetune", root / f"{name}.yaml")
    return root


def png_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_curves_png_plots_the_logged_values(runs):
    from lmctl.plots import curves_figure

    run = runs / "a"
    width, height = png_size(run / "curves.png")
    assert width > 400 and height > 300
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    fig = curves_figure(run)
    plotted = {ax.get_title(): ax.lines[0].get_xydata().tolist() for ax in fig.axes if ax.get_visible()}
    assert plotted["training loss"] == [[r["step"], r["loss"]] for r in log if "loss" in r]
    assert plotted["lr"] == [[r["step"], r["lr"]] for r in log if "lr" in r]
    assert plotted["eval_accuracy"] == [[r["step"], r["eval_accuracy"]] for r in log if "eval_accuracy" in r]
    assert len(plotted["eval_accuracy"]) == 3  # steps 10, 20, 30
    best = json.loads((run / "metrics.json").read_text())["best_step"]
    marked = [ax for ax in fig.axes if ax.get_title() == "eval_accuracy"][0].lines[1].get_xdata()
    assert list(marked) == [best, best]


def test_evaluate_writes_the_confusion_matrix_as_png(runs):
    out = runs / "eval-a.json"
    cli("evaluate", "--model", runs / "a", "--data", DATA / "dev.tsv", "--output", out)
    matrix = json.loads(out.read_text())["confusion_matrix"]["matrix"]
    assert sum(map(sum, matrix)) == len((DATA / "dev.tsv").read_text().splitlines()) - 1
    width, height = png_size(runs / "eval-a.confusion.png")
    assert width > 100 and height > 100


def test_compare_plot_overlays_the_runs(runs):
    result = cli("compare", runs / "a", runs / "b", "--plot", runs / "both.png")
    assert "curves of 2 runs" in result.stderr
    assert png_size(runs / "both.png")[0] > 400
