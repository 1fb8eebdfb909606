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
from lmctl.tasks.base import Task, metric_direction

PACKAGE = Path(__file__).resolve().parents[1] / "lmctl"

# Hooks with no sensible default: each task writes its own (listed by hand, not read from Task).
REQUIRED = ("columns", "texts", "build_model", "load_model", "encode", "collate", "eval_step",
            "compute_metrics", "predict_records")
# Hooks with a default in Task, which a task may override.
DEFAULTED = ("fit", "bind", "on_bind", "text_columns", "eval_collate", "count_examples", "confusion",
             "arrange_predictions", "explanation_inputs", "tune")
# Class-level hooks with a default, which config validation, compare and training call on the class.
CLASS_HOOKS = ("check_config", "greater_is_better")
ATTRIBUTES = ("name", "auto_class", "main_metric", "metric_names", "higher_is_better", "lower_is_better",
              "predict_modes", "mode", "explains", "streams", "pretraining", "finetunes", "distills",
              "chooses_pooling", "label_keys", "config_defaults", "onnx_outputs")

# The columns each task needs set to validate.
EXTRA = {"reranking": {"data": {"text_pair_column": "candidate"}}}


def _hooks(cls) -> set[str]:
    return {n for n, v in vars(cls).items() if callable(v) and not n.startswith("_")}


def test_the_protocol_declares_every_hook_callers_use():
    assert _hooks(Task) == set(REQUIRED) | set(DEFAULTED)
    assert {n for n, v in vars(Task).items() if isinstance(v, classmethod)} == set(CLASS_HOOKS)
    assert set(ATTRIBUTES) <= set(Task.__annotations__)


@pytest.mark.parametrize("name", list(TASKS))
def test_task_satisfies_the_interface(name):
    cls = get_task_class(name)
    assert Task in cls.__mro__  # explicit subclass: inherits the defaults
    for hook in REQUIRED:
        assert getattr(cls, hook) is not getattr(Task, hook), f"{name} does not write {hook}"
    for hook in REQUIRED + DEFAULTED + CLASS_HOOKS:
        mine = list(inspect.signature(getattr(cls, hook)).parameters)
        declared = list(inspect.signature(getattr(Task, hook)).parameters)
        assert mine == declared, f"{name}.{hook}{mine} differs from Task.{hook}{declared}"

    cfg = config_lib.validate({"task": name, **EXTRA.get(name, {})})
    task = cls(cfg, Console(enabled=False))
    for attribute in ATTRIBUTES:
        assert hasattr(task, attribute), f"{name} lacks {attribute}"
    assert task.name == name
    assert task.main_metric in task.metric_names
    # Every metric the task reports has a declared direction, so training, compare and sweeps
    # never fall back to guessing from its name.
    for metric in task.metric_names:
        assert metric_direction(cls, metric) is not None, f"{name} declares no direction for {metric}"
        assert cls.greater_is_better(f"eval_dev_{metric}") == cls.greater_is_better(metric)
    assert set(task.label_keys) <= set(task.columns(with_labels=True))
    assert set(task.text_columns(with_labels=True)) == {
        c for k, c in task.columns(with_labels=True).items() if c and k not in task.label_keys}
    assert all(key.count(".") == 1 for key in task.config_defaults)
    assert all(isinstance(o, str) for o in task.onnx_outputs)
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


def test_config_imports_no_task_and_task_modules_no_torch():
    """config (the ground floor) reaches the task rules through lmctl.wiring, not by importing
    lmctl.tasks; and validating a config imports its task's module, which must not pull torch or
    transformers (seconds) into `lmctl config show` or a refused config."""
    import subprocess
    import sys

    tree = ast.parse((PACKAGE / "config.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | \
        {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any(m and m.startswith("lmctl.tasks") for m in imported), imported
    modules = sorted({path.split(":")[0] for path in TASKS.values() if isinstance(path, str)})
    code = (f"import sys\nfor m in {modules!r}: __import__(m)\n"
            "print(sorted({'torch', 'transformers', 'datasets', 'evaluate'} & set(sys.modules)))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
