"""`lmctl compare RUN...`: runs side by side, ranked by the main metric, with a CI gate."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from lmctl.cli.common import guarded
from lmctl.errors import EXIT_GATE_FAILED, UserError

FORMATS = ("table", "md", "csv", "json")


@guarded
def compare(
    runs: Annotated[list[str], typer.Argument(help="Run directories or globs (e.g. 'runs/*').", show_default=False)],
    baseline: Annotated[Optional[str], typer.Option("--baseline", help="Add a column of differences to this run (points).")] = None,
    sort_by: Annotated[Optional[str], typer.Option("--sort-by", help="Rank by this metric (default: the main metric).")] = None,
    format: Annotated[str, typer.Option("--format", "-f", help="table | md | csv | json")] = "table",
    all_keys: Annotated[bool, typer.Option("--all-keys", help="Show every config key, not only those that differ.")] = False,
    fail_if_worse: Annotated[Optional[str], typer.Option(
        "--fail-if-worse", help="Exit 1 if a run's main metric is worse than this run's by more than --tolerance.")] = None,
    tolerance: Annotated[float, typer.Option("--tolerance", min=0, help="Points a run may fall below the gate's run.")] = 0.5,
    plot: Annotated[Optional[str], typer.Option("--plot", help="Write the runs' curves overlaid to this PNG.")] = None,
) -> None:
    """Compare finished runs of one task on the same data: one row per configuration (seeds folded
    into mean ± std), ranked by the task's main metric."""
    from lmctl import compare as compare_lib

    if format not in FORMATS:
        raise UserError(f"--format {format}: use one of {', '.join(FORMATS)}")
    if plot:
        from lmctl.rundir import check_output_file

        check_output_file(plot, "--plot")
    result = compare_lib.compare(runs, baseline, sort_by, all_keys, fail_if_worse, tolerance)
    from lmctl.console import Console

    out, console = Console(stream=sys.stdout), Console()
    if format == "table":
        header, cells = compare_lib.table(result)
        out.table(f"{result.rows[0].runs[0].task}, ranked by {sort_by or result.metric}", cells, header=header)
    else:
        write = {"md": compare_lib.markdown, "csv": compare_lib.csv_text, "json": compare_lib.json_text}[format]
        out.write(write(result))
    if plot:
        from lmctl.plots import overlay

        overlay([run.path for row in result.rows for run in row.runs], result.metric, plot)
        console.log(f"curves of {sum(len(row.runs) for row in result.rows)} runs: {plot}")
    if result.failures:
        for line in result.failures:
            console.fail(f"gate failed: {line}")
        raise typer.Exit(EXIT_GATE_FAILED)
