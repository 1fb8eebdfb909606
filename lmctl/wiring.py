"""How the ground floor reaches the task registry without importing it.

config (the ground floor) validates each task's own rules, which live on the task classes a floor
above it. Instead of importing upward, config asks the callbacks kept here; `lmctl.tasks` installs
them when it is imported, and the package's `__init__` imports `lmctl.tasks`, so any use of lmctl
has them. This module imports nothing, so that wiring costs `lmctl --help` nothing.
"""

from __future__ import annotations

from typing import Any, Callable

_tasks: dict[str, Callable] = {}


def use_tasks(names: Callable[[], tuple[str, ...]], task_class: Callable[[str], Any],
              names_where: Callable[[str], tuple[str, ...]]) -> None:
    """Install the task registry: its names, name → task class, and the names of the tasks whose
    class declares an attribute true (for messages that list the alternatives)."""
    _tasks.update(names=names, task_class=task_class, names_where=names_where)


def task_names() -> tuple[str, ...]:
    return _registry()["names"]()


def task_class(name: str):
    return _registry()["task_class"](name)


def task_names_where(attribute: str) -> tuple[str, ...]:
    return _registry()["names_where"](attribute)


def _registry() -> dict[str, Callable]:
    if not _tasks:
        # Only reachable when lmctl/__init__ did not run its import: a broken install, not a user error.
        raise RuntimeError("the task registry is not installed: lmctl.tasks was never imported")
    return _tasks
