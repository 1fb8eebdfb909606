"""`lmctl predict`: predictions for a file or stdin, as JSON lines in input order."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from lmctl.cli.common import MinLabelsOpt, ModelConfigOpt, SetOpt, TaskOpt, guarded, with_min_labels
from lmctl.data import CHUNK_ROWS


@guarded
def predict(
    model: Annotated[str, typer.Option("--model", "-m", help="Run directory or model directory (or hub id).")],
    input: Annotated[str, typer.Option("--input", "-i", help="csv, tsv, json, jsonl, parquet or txt file; '-' for stdin.")] = "-",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="JSONL file; default: stdout.")] = None,
    config: ModelConfigOpt = None,
    set_: SetOpt = None,
    task: TaskOpt = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1)] = None,
    max_tokens: Annotated[Optional[int], typer.Option(
        "--max-tokens", min=1, help="Token budget per batch: a batch of the longest-first rows holds at most "
                                    "max(1, N // its longest row's tokens) rows (and at most --batch-size).")] = None,
    chunk_rows: Annotated[int, typer.Option(
        "--chunk-rows", min=1, help="Rows read, run and written at a time; memory does not grow with the input.")] = CHUNK_ROWS,
    mode: Annotated[Optional[str], typer.Option(
        "--mode", help="classify | generate | score | fill-mask | tag (default: the task's first).")] = None,
    explain: Annotated[bool, typer.Option(
        "--explain", help="Text classification: each word's attribution to the predicted label (Integrated "
                          "Gradients), in 'attributions' (and 'pair_attributions').")] = False,
    explain_steps: Annotated[int, typer.Option("--explain-steps", min=2, help="Integrated Gradients steps.")] = 50,
    explain_html: Annotated[Optional[Path], typer.Option(
        "--explain-html", help="Also write the explanations as a self-contained HTML page (implies --explain).")] = None,
    min_labels: MinLabelsOpt = None,
) -> None:
    """Predict with MODEL for every row of INPUT; one JSON object per line, in input order."""
    from lmctl import config as config_lib
    from lmctl import run
    from lmctl.console import Console
    from lmctl.rundir import atomic_write_lines, check_output_file

    for path, key in ((output, "--output"), (explain_html, "--explain-html")):
        if path is not None:
            check_output_file(path, key)  # before the model loads, not after every row was predicted
    cfg = config_lib.config_for_model(model, config, with_min_labels(set_, min_labels), task, overrides_key="--set")
    explaining = explain or explain_html is not None
    records = run.predict(cfg, model, input, batch_size, Console(), mode, explain_steps if explaining else None,
                          chunk_rows, max_tokens)
    if explain_html is not None:
        records = list(records)  # the page shows every row (explanations are too slow for inputs that need a stream)
    lines = (json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    if output:
        atomic_write_lines(output, lines)  # lines are written as chunks finish; the file appears whole at the end
    else:
        Console(stream=sys.stdout).write_lines(lines)
    if explain_html is not None:
        from lmctl.explain import write_html

        write_html(explain_html, records, f"lmctl predict --explain: {model}")
