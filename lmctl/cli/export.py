"""`lmctl export`: a run's model as a directory that serves on its own: plain transformers, or
ONNX (optionally int8) that evaluate/predict run through ONNX Runtime."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

import typer

from lmctl.cli.common import MergeOpt, ModelConfigOpt, OverwriteOpt, SetOpt, TaskOpt, guarded


class Format(str, Enum):
    transformers = "transformers"
    onnx = "onnx"


@guarded
def export(
    model: Annotated[str, typer.Option("--model", "-m", help="Run directory (or model directory) to export.")],
    output: Annotated[str, typer.Option("--output", "-o", help="Directory to write the exported model to.")],
    format: Annotated[Optional[Format], typer.Option("--format", help="transformers (safetensors; the default) or onnx (the default with --quantize).")] = None,
    quantize: Annotated[Optional[str], typer.Option("--quantize", help="With --format onnx: int8 (ONNX Runtime dynamic quantization).")] = None,
    merge: MergeOpt = False,
    config: ModelConfigOpt = None,
    set_: SetOpt = None,
    task: TaskOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Write MODEL to OUTPUT with its tokenizer and config.yaml: a plain transformers model
    (`from_pretrained(OUTPUT)` loads it; a classifier with model.pooling mean is refused, as
    from_pretrained would pool the last token) or, with --format onnx, model.onnx checked
    against PyTorch. `lmctl evaluate/predict --model OUTPUT` run either."""
    from lmctl import config as config_lib
    from lmctl import run
    from lmctl.console import Console

    cfg = config_lib.config_for_model(model, config, set_ or [], task, overrides_key="--set")
    fmt = format.value if format else "onnx" if quantize else "transformers"
    run.export(cfg, model, output, merge, overwrite, Console(), fmt, quantize)
