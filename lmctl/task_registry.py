"""Task registry: task name → the class that implements the `Task` protocol, as an import path.

Plain strings on the ground floor: config validation (lmctl.config) checks task names against
this table without importing the task modules, which live a floor above it, and reading a
config (and `lmctl --help`) never imports torch. `lmctl.tasks.get_task_class` imports the one
module a run needs. A new task is one file in lmctl/tasks/ plus one line here.
"""

from __future__ import annotations

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
