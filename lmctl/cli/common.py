"""What every command shares: the error boundary and the common options."""

from __future__ import annotations

import functools
from typing import Annotated, Optional

import typer

from lmctl.console import Console
from lmctl.errors import EXIT_USER_ERROR, UserError

DEBUG = False

ConfigArg = Annotated[str, typer.Argument(help="YAML config file.", show_default=False)]
SetOpt = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", help="Override a config key, e.g. --set training.learning_rate=3e-5 (repeatable)."),
]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty output_dir.")]
# The options of the commands that read a trained model (evaluate, predict, export, prune).
ModelConfigOpt = Annotated[Optional[str], typer.Option(
    "--config", "-c", help="Config for columns/task; default: the run's config.yaml.")]
TaskOpt = Annotated[Optional[str], typer.Option("--task", help="Task, when the model directory has no config.yaml.")]
MinLabelsOpt = Annotated[Optional[int], typer.Option(
    "--min-labels", min=0, help="Multi-label classification: a row with fewer labels past their thresholds gets its "
                                "highest-scoring other labels up to N (default: the run's training.min_labels).")]
MergeOpt = Annotated[bool, typer.Option("--merge", help="Fold a LoRA adapter into its base model's weights first.")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue from the newest checkpoint in output_dir.")]
ResumeFromOpt = Annotated[Optional[str], typer.Option("--resume-from", help="Continue from this checkpoint folder.")]


def with_min_labels(overrides: list[str] | None, min_labels: int | None) -> list[str]:
    """The --set overrides plus --min-labels, as the config key it stands for (training.min_labels)."""
    return [*(overrides or []), *([f"training.min_labels={min_labels}"] if min_labels is not None else [])]


def guarded(fn):
    """Turn `UserError` (and Ctrl-C) into one line on stderr and exit code 2; `--debug` keeps tracebacks."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            if DEBUG:
                raise
            Console().fail(f"error: {exc}")
            raise typer.Exit(EXIT_USER_ERROR) from None
        except KeyboardInterrupt:
            Console().fail("error: interrupted")
            raise typer.Exit(130) from None
        except Exception as exc:
            from lmctl.engine.train import Interrupted  # only reached when training ran

            if not isinstance(exc, Interrupted):
                raise
            Console().fail(f"stopped: {exc}; continue with the same command plus --resume")
            raise typer.Exit(128 + exc.signum) from None

    return wrapper
