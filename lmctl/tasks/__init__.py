"""The tasks: one module per task behind the `Task` protocol (lmctl.tasks.base).

The registry itself (name → import path) is `lmctl.task_registry`, on the ground floor, so that
config validation reads the names without importing upwards; `get_task_class` imports the one
module a run needs. A new task is one file in this package plus one line in the registry.
"""

from __future__ import annotations

import importlib

from lmctl.task_registry import PRETRAINING_TASKS, TASK_NAMES, TASKS

__all__ = ["PRETRAINING_TASKS", "TASK_NAMES", "TASKS", "get_task_class"]


def get_task_class(name: str):
    module_name, _, class_name = TASKS[name].partition(":")
    return getattr(importlib.import_module(module_name), class_name)
