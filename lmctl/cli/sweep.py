"""`lmctl sweep SWEEP.yaml`: hyperparameter and model search with Optuna (lmctl/sweep.py)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from lmctl.cli.common import SetOpt, guarded
from lmctl.console import Console


@guarded
def sweep(
    sweep_file: Annotated[str, typer.Argument(help="Sweep YAML: base config, space, n_trials/timeout, sampler, "
                                              "pruner, metric, output_dir.", show_default=False)],
    set_: SetOpt = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Trials at once on this machine, one process "
                                         "each; the cores are split between them.")] = 1,
    storage: Annotated[Optional[str], typer.Option("--storage", help="An Optuna RDB URL (postgresql://, mysql://, "
                                                   "sqlite:///) that machines share; default: the journal file in "
                                                   "the sweep directory.")] = None,
    keep: Annotated[str, typer.Option("--keep", help="best: delete the weights of every trial but the best at "
                                      "the end; all: keep them.")] = "all",
) -> None:
    """Search a config's hyperparameters (or models) with Optuna: each trial a run directory in the
    sweep's output_dir, pruned on its evaluations; run it again to continue a stopped sweep.
    --set reaches the sweep file's keys (n_trials=4, sampler.seed=1) and, for any other key, the base
    config (training.max_steps=100)."""
    from lmctl import sweep as sweep_lib

    spec = sweep_lib.load_sweep(sweep_file, set_ or [])
    try:
        sweep_lib.sweep(spec, workers=workers, storage=storage, keep=keep)
    except sweep_lib.Stopped as exc:
        Console().fail(f"stopped: {exc}")
        raise typer.Exit(128 + exc.signum) from None
