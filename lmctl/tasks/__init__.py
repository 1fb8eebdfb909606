"""Task registry: task name → the class that implements the `Task` protocol.

Entries are import paths so that reading a config (and `lmctl --help`) never imports
torch; `get_task` imports the one module a run needs. A new task is one file in this
package plus one line here.
"""

from __future__ import annotations

import importlib

TASKS: dict[str, str] = {
    "text-classification": "lmctl.tasks.classification:ClassificationTask",
    "question-answering": "lmctl.tasks.question_answering:QuestionAnsweringTask",
    "seq2seq": "lmctl.tasks.seq2seq:Seq2SeqTask",
    "reranking": "lmctl.tasks.reranking:RerankingTask",
    "masked-lm": "lmctl.tasks.masked_lm:MaskedLMTask",
    "causal-lm": "lmctl.tasks.causal_lm:CausalLMTask",
    "span-corruption": "lmctl.tasks.span_corruption:SpanCorruptionTask",
}

TASK_NAMES = tuple(TASKS)
# The objectives `lmctl pretrain` runs (and the only tasks that read a corpus as a stream).
PRETRAINING_TASKS = ("masked-lm", "causal-lm", "span-corruption")


def get_task_class(name: str):
    module_name, _, class_name = TASKS[name].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def make_task(cfg, console):
    """The (unbound) task a config names."""
    return get_task_class(cfg.task)(cfg, console)


def text_columns(task, with_labels: bool = False) -> tuple[str, ...]:
    """The columns a task reads as text: kept as strings when files are parsed (a CSV target of
    digits is still text to generate), and the inputs echoed by predict. Labels and SQuAD
    answers keep their parsed types."""
    return tuple(c for key, c in task.columns(with_labels).items()
                 if c and key not in ("data.label_column", "data.answers_column"))
