"""`lmctl prune`: fewer layers and narrower feed-forward blocks, chosen on data, as a plain checkpoint."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from lmctl.cli.common import MergeOpt, ModelConfigOpt, OverwriteOpt, SetOpt, TaskOpt, guarded


@guarded
def prune(
    model: Annotated[str, typer.Option("--model", "-m", help="Run directory (or model directory) to prune.")],
    output: Annotated[str, typer.Option("--output", "-o", help="Directory to write the pruned model to.")],
    layers: Annotated[Optional[int], typer.Option("--layers", help="Layers to keep (the least important go).")] = None,
    ffn: Annotated[Optional[float], typer.Option("--ffn", help="Share of the feed-forward width to keep, e.g. 0.5.")] = None,
    data: Annotated[Optional[str], typer.Option("--data", "-d", help="Labelled rows to score importance on; default: the run's training file.")] = None,
    rows: Annotated[int, typer.Option("--rows", min=1, help="Rows of that data to use (a seeded sample).")] = 512,
    merge: MergeOpt = False,
    config: ModelConfigOpt = None,
    set_: SetOpt = None,
    task: TaskOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Drop MODEL's least important layers (--layers N keeps N) and/or narrow every feed-forward
    block (--ffn 0.5 keeps half), scoring importance on labelled data. OUTPUT loads with
    `from_pretrained`; finetune or distil it to recover accuracy, export it to serve."""
    from lmctl import config as config_lib
    from lmctl import run
    from lmctl.console import Console

    cfg = config_lib.config_for_model(model, config, set_ or [], task, overrides_key="--set")
    run.prune(cfg, model, output, layers, ffn, data, rows, merge, overwrite, Console())
