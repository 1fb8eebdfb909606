"""The `lmctl` entry point: --version, --help listing every command, and no torch on the way."""

from __future__ import annotations

import subprocess
import sys

from helpers import cli
from lmctl import __version__
from lmctl.cli import COMMANDS


def test_version_prints_and_exits_0():
    assert cli("--version").stdout.strip() == __version__


def test_help_lists_every_command():
    out = cli("--help").stdout
    assert all(name in out for name in [*COMMANDS, "config"])


def test_the_cli_and_the_package_import_no_torch():
    # `lmctl --help` and config checks stay fast: torch, transformers and datasets load inside commands,
    # and `from lmctl import Predictor` only when it is asked for.
    code = ("import sys, lmctl, lmctl.cli, lmctl.config; "
            "print(sorted(m for m in ('torch', 'transformers', 'datasets', 'accelerate', 'optuna') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
