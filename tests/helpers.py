"""Shared test helpers."""

from __future__ import annotations

import traceback

from typer.testing import CliRunner

from lmctl.cli import app


def cli(*args, code: int | None = 0, input: str | None = None):
    """Run lmctl in process (torch imports once per session), stderr kept apart from stdout.

    `code`: the exit code to assert; None leaves the checking to the caller.
    """
    result = CliRunner().invoke(app, [str(a) for a in args], input=input)
    if result.exception and not isinstance(result.exception, SystemExit):
        traceback.print_exception(result.exception)  # shown by pytest when the test fails
    if code is not None:
        assert result.exit_code == code, (
            f"lmctl {' '.join(map(str, args))} exited {result.exit_code}, expected {code}\n"
            f"stderr:\n{result.stderr}\nexception: {result.exception!r}"
        )
    return result
