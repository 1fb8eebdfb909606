"""The `lmctl` command: a table of sub-commands, each in its own module.

Only Typer, PyYAML and pydantic load here, so `lmctl --help` stays fast; torch and
transformers are imported inside the commands that need them.
"""

from __future__ import annotations

import typer

from lmctl.cli import common, compare, config_cmd, evaluate, export, finetune, predict, pretrain, prune, serve, sweep

app = typer.Typer(
    name="lmctl",
    help="Pretrain and finetune Hugging Face models (BERT, GPT-2, T5) from YAML configs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

COMMANDS = {
    "pretrain": pretrain.pretrain,
    "finetune": finetune.finetune,
    "evaluate": evaluate.evaluate,
    "predict": predict.predict,
    "export": export.export,
    "prune": prune.prune,
    "compare": compare.compare,
    "serve": serve.serve,
    "sweep": sweep.sweep,
}
for _name, _fn in COMMANDS.items():
    app.command(_name)(_fn)
app.add_typer(config_cmd.app, name="config")


def _print_version(value: bool) -> None:
    # An eager option's callback runs while the arguments are parsed, before Click asks for a
    # command; a check inside the group callback never ran ("Missing command").
    if value:
        from lmctl import __version__

        typer.echo(__version__)
        raise typer.Exit(0)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors."),
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True,
                                 callback=_print_version),
) -> None:
    common.DEBUG = debug


def main() -> None:
    app()
