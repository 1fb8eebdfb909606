"""Every registered task implements the whole `Task` interface, and nothing below the command
layer names a command-line flag."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from lmctl import config as config_lib
from lmctl.console import Console
from lmctl.tasks import TASKS, get_task_class
from lmctl.tasks.base import Task

PACKAGE = Path(__file__).resolve().parents[1] / "lmctl"

# Hooks with no sensible default: each task writes its own (listed by hand, not read from Task).
REQUIRED = ("columns", "texts", "build_model", "load_model", "encode", "collate", "eval_step",
            "compute_metrics", "predict_records")
# Hooks with a default in Task, which a task may override.
DEFAULTED = ("fit", "bind", "on_bind", "eval_collate", "count_examples", "confusion", "arrange_predictions",
             "explanation_inputs")
ATTRIBUTES = ("name", "auto_class", "main_metric", "greater_is_better", "metric_names", "predict_modes", "mode",
              "explains", "streams")

# The columns each task needs set to validate.
EXTRA = {"reranking": {"data": {"text_pair_column": "candidate"}}}


def _hooks(cls) -> set[str]:
    return {n for n, v in vars(cls).items() if callable(v) and not n.startswith("_")}


def test_the_protocol_declares_every_hook_callers_use():
    assert _hooks(Task) == set(REQUIRED) | set(DEFAULTED)
    assert set(ATTRIBUTES) <= set(Task.__annotations__)


@pytest.mark.parametrize("name", list(TASKS))
def test_task_satisfies_the_interface(name):
    cls = get_task_class(name)
    assert Task in cls.__mro__  # explicit subclass: inherits the defaults
    for hook in REQUIRED:
        assert getattr(cls, hook) is not getattr(Task, hook), f"{name} does not write {hook}"
    for hook in REQUIRED + DEFAULTED:
        mine = list(inspect.signature(getattr(cls, hook)).parameters)
        declared = list(inspect.signature(getattr(Task, hook)).parameters)
        assert mine == declared, f"{name}.{hook}{mine} differs from Task.{hook}{declared}"

    cfg = config_lib.validate({"task": name, **EXTRA.get(name, {})})
    task = cls(cfg, Console(enabled=False))
    for attribute in ATTRIBUTES:
        assert hasattr(task, attribute), f"{name} lacks {attribute}"
    assert task.name == name
    assert task.main_metric in task.metric_names
    assert isinstance(task.greater_is_better, bool)
    assert task.predict_modes and all(isinstance(m, str) for m in task.predict_modes)
    import transformers

    assert task.auto_class.startswith("AutoModelFor") and hasattr(transformers, task.auto_class)
    bound = task.bind(None, task.predict_modes[-1]) if "on_bind" not in vars(cls) else None
    if bound is not None:  # a copy in that mode; the unbound task keeps its own
        assert bound.mode == task.predict_modes[-1] and bound is not task and bound.tokenizer is None
        assert task.mode == cls.mode
    # A task that says it explains gives the inputs to explain.
    assert task.explains == (cls.explanation_inputs is not Task.explanation_inputs)
    if "arrange_predictions" not in vars(cls):  # reranking orders by query; the rest keep input order
        assert task.arrange_predictions([{"a": 2}, {"a": 1}]) == [{"a": 2}, {"a": 1}]


def test_run_py_probes_no_hooks():
    source = (PACKAGE / "run.py").read_text()
    assert "getattr(task" not in source and "task.mode =" not in source


def _strings_below_the_command_layer():
    """String constants (docstrings left out) in tasks/ and engine/."""
    for path in sorted((PACKAGE / "tasks").glob("*.py")) + sorted((PACKAGE / "engine").glob("*.py")):
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and node.body
                      and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                yield path.name, node.value


def test_tasks_and_engine_name_no_command_line_flags():
    import re

    flags = [(f, s) for f, s in _strings_below_the_command_layer() if re.search(r"--[a-z]", s)]
    assert flags == []
