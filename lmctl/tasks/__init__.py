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
