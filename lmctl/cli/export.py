"""`lmctl export`: a run's model as a plain transformers directory that serves on its own."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from lmctl.cli.common import OverwriteOpt, SetOpt, guarded


@guarded
def export(
    model: Annotated[str, typer.Option("--model", "-m", help="Run directory (or model directory) to export.")],
    output: Annotated[str, typer.Option("--output", "-o", help="Directory to write the exported model to.")],
    merge: Annotated[bool, typer.Option("--merge", help="Fold a LoRA adapter into its base model's weights.")] = False,
    config: Annotated[Optional[str], typer.Option("--config", "-c", help="Config for the task; default: the run's config.yaml.")] = None,
    set_: SetOpt = None,
    task: Annotated[Optional[str], typer.Option("--task", help="Task, when the model directory has no config.yaml.")] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Write MODEL to OUTPUT as a plain transformers model with its tokenizer and config.yaml;
    `lmctl evaluate/predict --model OUTPUT` and `from_pretrained(OUTPUT)` load it."""
    from lmctl import config as config_lib
    from lmctl import run
    from lmctl.console import Console

    cfg = config_lib.config_for_model(model, config, set_ or [], task)
    run.export(cfg, model, output, merge, overwrite, Console())
