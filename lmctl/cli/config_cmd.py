"""`lmctl config show CONFIG`: print the resolved config (defaults and overrides applied)."""

from __future__ import annotations

import typer

from lmctl.cli.common import ConfigArg, SetOpt, guarded

app = typer.Typer(help="Inspect configs.", no_args_is_help=True)


@app.command("show")
@guarded
def show(config: ConfigArg, set_: SetOpt = None) -> None:
    """Validate CONFIG and print it with every default filled in."""
    from lmctl import config as config_lib

    typer.echo(config_lib.dump(config_lib.load_config(config, set_ or [], overrides_key="--set")), nl=False)
