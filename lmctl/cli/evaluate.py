"""`lmctl evaluate`: metrics of a trained model on labelled data, with CI gates."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from lmctl.cli.common import MinLabelsOpt, ModelConfigOpt, SetOpt, TaskOpt, guarded, with_min_labels
from lmctl.errors import EXIT_GATE_FAILED, UserError


def parse_gates(gates: list[str]) -> dict[str, float]:
    parsed = {}
    for gate in gates:
        name, sep, value = gate.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            parsed[name.strip()] = float(value)
        except ValueError:
            raise UserError(f"--fail-under '{gate}': expected METRIC=NUMBER, e.g. --fail-under accuracy=0.85") from None
    return parsed


@guarded
def evaluate(
    model: Annotated[str, typer.Option("--model", "-m", help="Run directory or model directory (or hub id).")],
    data: Annotated[Optional[list[str]], typer.Option(
        "--data", "-d", help="Labelled file: csv, tsv, json, jsonl, parquet (repeatable; default: the run's validation files).")] = None,
    config: ModelConfigOpt = None,
    set_: SetOpt = None,
    task: TaskOpt = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1)] = None,
    max_tokens: Annotated[Optional[int], typer.Option(
        "--max-tokens", min=1, help="Token budget per batch (as in predict).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the metrics as JSON here.")] = None,
    fail_under: Annotated[
        Optional[list[str]],
        typer.Option("--fail-under", help="METRIC=VALUE: exit 1 if METRIC is below VALUE (repeatable)."),
    ] = None,
    min_labels: MinLabelsOpt = None,
) -> None:
    """Evaluate MODEL on labelled data: a metrics table, optional JSON, optional gates."""
    from lmctl import config as config_lib
    from lmctl import run
    from lmctl.console import Console
    from lmctl.rundir import check_output_file, write_json

    if output is not None:
        check_output_file(output, "--output")
    gates = parse_gates(fail_under or [])
    cfg = config_lib.config_for_model(model, config, with_min_labels(set_, min_labels), task, overrides_key="--set")
    console = Console()
    results = run.evaluate(cfg, model, data, batch_size, console, gates=gates, max_tokens=max_tokens)
    out = Console(stream=sys.stdout)
    failed = []
    for result in results:
        metrics = result["metrics"]
        out.table(f"{result['examples']} examples from {result['data']}",
                  [(k, f"{v:.4f}") for k, v in sorted(metrics.items())])
        if "confusion_matrix" in result:
            cm = result["confusion_matrix"]
            out.table("confusion matrix (rows: true, columns: predicted)",
                      [(name, *row) for name, row in zip(cm["labels"], cm["matrix"])], header=("", *cm["labels"]))
        # The gates hold for every evaluation file.
        result["gates"] = {"thresholds": gates, "failed": [f"{g} {metrics[g]:.4f} < {v}" for g, v in gates.items()
                                                           if metrics[g] < v]}
        failed += [f"{result['data']}: {line}" if len(results) > 1 else line for line in result["gates"]["failed"]]
    if output:
        # One file keeps the one-result shape; several are listed in order.
        write_json(output, results[0] if len(results) == 1 else {"model": str(model), "sets": results})
        for i, result in enumerate(results):
            if "confusion_matrix" in result:
                from lmctl.plots import write_confusion

                cm = result["confusion_matrix"]
                suffix = ".confusion.png" if len(results) == 1 else f".{i + 1}.confusion.png"
                write_confusion(output.with_suffix(suffix), cm["labels"], cm["matrix"])
    if failed:
        console.fail(f"gate failed: {'; '.join(failed)}")
        raise typer.Exit(EXIT_GATE_FAILED)
