"""The one place that prints.

Rich progress bars and tables on a terminal; plain periodic lines when stdout is not a
terminal (CI logs). Off the main process everything is silent, so an 8-GPU run logs once.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager


def is_main_process() -> bool:
    """Rank 0, or a single process. Works before and without an Accelerator: launchers set RANK / LOCAL_RANK."""
    return os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) in ("0", "")


class Console:
    def __init__(self, enabled: bool | None = None, stream=None):
        self.enabled = is_main_process() if enabled is None else enabled
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty() and os.environ.get("CI") is None
        self._rich = None
        self._counts: dict | None = None  # inside summed_counts(): message → [n, total]

    @property
    def rich(self):
        if self._rich is None:
            from rich.console import Console as RichConsole

            # Off a terminal rich assumes 80 columns and would wrap every cell of a wide table.
            # No emoji codes: a path or message with ':name:' in it is printed as given.
            self._rich = RichConsole(file=self.stream, highlight=False, emoji=False, soft_wrap=True,
                                     width=None if self.stream.isatty() else 1000)
        return self._rich

    def log(self, message: str) -> None:
        if not self.enabled:
            return
        if self.stream.isatty():
            self.rich.print(message, markup=False)
        else:
            # The same line as rich writes off a terminal (no markup, no wrapping), without importing
            # rich (0.1-0.2 s): the whole of a small `predict` on an ONNX export takes under a second.
            print(message, file=self.stream, flush=True)

    def warn(self, message: str) -> None:
        if self.enabled:
            print(f"warning: {message}", file=sys.stderr, flush=True)

    def fail(self, message: str) -> None:
        """The line a command ends with when it fails (an error, a failed gate, a stop), on stderr.
        Printed by every process, unlike the rest: whichever rank exits, its reason is on screen."""
        print(message, file=sys.stderr, flush=True)

    def write(self, text: str) -> None:
        """A command's output as is (CSV, JSON, Markdown) on this console's stream."""
        if self.enabled:
            self.stream.write(text)
            self.stream.flush()

    def write_lines(self, lines) -> None:
        """A stream of output lines (predict's JSON lines), written as they come, flushed at the end."""
        if self.enabled:
            self.stream.writelines(lines)
            self.stream.flush()

    def warn_count(self, n: int, total: int, message) -> None:
        """A warning about `n` of `total` rows; `message(n, total)` words it. Printed at once when
        n > 0, or, inside `summed_counts()`, added up with the same warning's other counts."""
        if self._counts is not None:
            counts = self._counts.setdefault(message(0, 0), [0, 0, message])
            counts[0] += n
            counts[1] += total
        elif n:
            self.warn(message(n, total))

    @contextmanager
    def summed_counts(self):
        """For an input read and encoded in pieces (predict's chunks): each `warn_count` warning
        prints once, for the whole input, and only if all of it went through."""
        self._counts = {}
        try:
            yield
            counts, self._counts = self._counts, None
            for n, total, message in counts.values():
                self.warn_count(n, total, message)
        finally:
            self._counts = None

    def table(self, title: str, rows: list[tuple[str, str]], header=("metric", "value")) -> None:
        if not self.enabled:
            return
        self.rich.print(_rich_table(title, rows, header))

    @contextmanager
    def live_table(self, title: str, header):
        """Yields `show(rows)`, which redraws a table in place on a terminal (a sweep's trials as they
        run); elsewhere `show` does nothing and the caller logs its events as lines."""
        if not (self.enabled and self.interactive):
            yield lambda rows: None
            return
        from rich.live import Live

        with Live(_rich_table(title, [], header), console=self.rich, auto_refresh=False) as live:
            yield lambda rows: live.update(_rich_table(title, rows, header), refresh=True)

    def progress(self, total: int | None, description: str, unit: str | None = None) -> "Progress":
        return Progress(self, total, description, unit=unit)


class Progress:
    """A bar with loss / lr / samples/s on a terminal; one line per interval otherwise.

    `total` None: not known ahead (a stream), so no eta. `unit` (e.g. "rows"): show the rate
    `completed` counts at, in units/s."""

    def __init__(self, console: Console, total: int | None, description: str, interval_s: float = 30.0,
                 unit: str | None = None):
        self.console = console
        self.total = total
        self.description = description
        self.interval_s = interval_s
        self.unit = unit
        self._bar = None
        self._last_line = float("-inf")  # seconds after the start; `_lined`: the count that line showed
        self._lined = 0
        self._text = ""
        self._start = time.perf_counter()
        self.completed = 0

    def __enter__(self) -> "Progress":
        if self.console.enabled and self.console.interactive:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress
            from rich.progress import TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._bar = RichProgress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                TextColumn("{task.fields[stats]}"), console=self.console.rich, transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total, stats="")
        return self

    def update(self, completed: int, stats: dict | None = None) -> None:
        self.completed = completed
        elapsed = time.perf_counter() - self._start
        if self.unit:
            rate = completed / elapsed if elapsed > 0 else 0.0
            stats = {**(stats or {}), f"{self.unit}/s": round(rate) if rate >= 100 else round(rate, 1)}
        self._text = "  ".join(f"{k} {_fmt(v)}" for k, v in (stats or {}).items())
        if self._bar is not None:
            self._bar.update(self._task, completed=completed, stats=self._text)
        elif self.console.enabled and (elapsed - self._last_line >= self.interval_s or completed == self.total):
            self._line(elapsed)

    def _line(self, elapsed: float) -> None:
        self._last_line, self._lined = elapsed, self.completed
        done = self.completed if self.total is None else f"{self.completed}/{self.total}"
        eta = "" if self.total is None or not self.completed else \
            f"  eta {elapsed / self.completed * (self.total - self.completed):.0f}s"
        self.console.log(f"{self.description} {done}  {self._text}  elapsed {elapsed:.0f}s{eta}")

    def __exit__(self, exc_type, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif self.console.enabled and exc_type is None and self._lined != self.completed:
            # The last count, where it never reached a known total (a stream's rows are counted as read).
            self._line(time.perf_counter() - self._start)


def _rich_table(title: str, rows, header):
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for name in header:
        table.add_column(name)
    for row in rows:
        table.add_row(*[str(c) for c in row])
    return table


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-3 or abs(value) >= 1e4 else f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)


def quiet_libraries() -> None:
    """Silence the libraries' own progress bars and notes: lmctl's console reports what matters."""
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from datasets.utils.logging import disable_progress_bar, set_verbosity_error
    from transformers.utils import logging as hf_logging

    disable_progress_bar()
    set_verbosity_error()  # e.g. "couldn't be hashed" notes about our in-memory map functions
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message=".*sequence length is longer than the specified maximum.*")
