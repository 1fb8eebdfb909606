"""The tasks: one module per task behind the `Task` protocol (lmctl.tasks.base).

Shipped entries are import paths so that `lmctl --help` never imports a task module; a config's
validation imports the one module its task names (task modules keep torch and transformers out of
their top-level imports, so that costs milliseconds). A new task is one file in this package plus
one line in `TASKS`, or, from outside lmctl (a plugin, a test), one `register(name, cls)` call.

Everything task-specific is declared on the class (`lmctl.tasks.base.Task`): the config rules
that config validation applies through the hook installed below (`lmctl.wiring`), the columns read as text, the
ONNX outputs, the direction of each metric, whether it pretrains, finetunes or distils.
"""

from __future__ import annotations

import importlib

from lmctl import wiring

TASKS: dict[str, str | type] = {
    "text-classification": "lmctl.tasks.classification:ClassificationTask",
    "multi-label-classification": "lmctl.tasks.multi_label:MultiLabelTask",
    "question-answering": "lmctl.tasks.question_answering:QuestionAnsweringTask",
    "seq2seq": "lmctl.tasks.seq2seq:Seq2SeqTask",
    "reranking": "lmctl.tasks.reranking:RerankingTask",
    "masked-lm": "lmctl.tasks.masked_lm:MaskedLMTask",
    "causal-lm": "lmctl.tasks.causal_lm:CausalLMTask",
    "span-corruption": "lmctl.tasks.span_corruption:SpanCorruptionTask",
    "token-classification": "lmctl.tasks.token_classification:TokenClassificationTask",
}


def register(name: str, cls: type) -> None:
    """Add a task defined outside this package; `task: NAME` in a config then runs it everywhere."""
    from lmctl.tasks.base import Task

    if Task not in getattr(cls, "__mro__", ()):
        raise TypeError(f"task '{name}': {cls!r} does not subclass lmctl.tasks.base.Task")
    if getattr(cls, "name", None) != name:
        raise ValueError(f"task '{name}': the class's `name` is {getattr(cls, 'name', None)!r}; they must agree")
    TASKS[name] = cls


def task_names() -> tuple[str, ...]:
    return tuple(TASKS)


def get_task_class(name: str):
    entry = TASKS[name]
    if isinstance(entry, type):
        return entry
    module_name, _, class_name = entry.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def make_task(cfg, console):
    """The (unbound) task a config names."""
    return get_task_class(cfg.task)(cfg, console)



def names_where(attribute: str) -> tuple[str, ...]:
    """The registered tasks whose class declares `attribute` true (e.g. `pretraining`). It imports every
    task module: for error messages, which list the alternatives, not for the path every run takes."""
    return tuple(name for name in TASKS if getattr(get_task_class(name), attribute))


def greater_is_better(task: str, metric: str) -> bool:
    """The direction of `metric` as a run of `task` reports it: the task's declaration
    (`Task.greater_is_better`); a task this process does not know (a plugin's, in a run
    directory read elsewhere) leaves it to the name rule, the fallback every task has."""
    if task in TASKS:
        return get_task_class(task).greater_is_better(metric)
    from lmctl.metrics import greater_is_better_by_name

    return greater_is_better_by_name(metric)


# Config validation applies each task's declared rules without importing this package (config is
# the floor below the tasks): it reaches the registry through lmctl.wiring, installed here.
wiring.use_tasks(task_names, get_task_class, names_where)
