"""The config schema, YAML loading and `--set a.b=c` overrides.

Everything a run needs is validated here, before any model or data set loads, so a
typo costs a second rather than a half-hour of training. Defaults live in this file,
except the few a task declares for itself (`Task.config_defaults`).

Rules that belong to one task (QA's window length, span corruption's minimum length, which
tasks read streams, distil or choose a pooling) are declared on the task classes, and this
module reads them through the registry `lmctl.tasks` installs in `lmctl.wiring`: config is
the floor below the tasks and imports none of them.
"""

from __future__ import annotations

import difflib
from pathlib import Path
import re
from typing import Any, Literal, Optional, Union, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lmctl.errors import UserError
from lmctl.families import FAMILIES
from lmctl.wiring import task_class, task_names, task_names_where


class _Section(BaseModel):
    # Unknown keys are errors: a misspelt `learning_rat` must not silently train at the default.
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class FromScratchConfig(_Section):
    # Checked against lmctl.families.FAMILIES when a config is validated, not frozen into a Literal at
    # import: a family registered after this module loads is as valid as the built-in ones.
    family: str
    size: str = "mini"
    """A size preset of the family (the built-in families: tiny, mini, small, base)."""
    overrides: dict[str, Any] = {}
    """Any `BertConfig` / `GPT2Config` / `T5Config` field, e.g. {num_hidden_layers: 4}."""

    @field_validator("family")
    @classmethod
    def _known_family(cls, value: str) -> str:
        if value not in FAMILIES:
            raise ValueError(f"unknown family '{value}'{_did_you_mean(value, FAMILIES)}; known: {', '.join(FAMILIES)}")
        return value

    @model_validator(mode="after")
    def _known_size(self) -> "FromScratchConfig":
        sizes = FAMILIES[self.family].presets
        if self.size not in sizes:
            raise ValueError(f"model.from_scratch.size: unknown size '{self.size}'{_did_you_mean(self.size, sizes)} "
                             f"for family {self.family}; its sizes: {', '.join(sizes)}")
        return self


class TokenizerTrainingConfig(_Section):
    """A tokenizer trained on the corpus when a from-scratch model has none."""

    vocab_size: int = Field(8000, ge=100)
    min_frequency: int = Field(2, ge=1)
    lowercase: bool = True
    """WordPiece (BERT) only; byte-level BPE and Unigram keep case."""
    max_texts: Optional[int] = Field(None, gt=0)
    """Train the tokenizer on at most this many texts (all by default)."""


class PeftConfig(_Section):
    """Parameter-efficient finetuning: train low-rank adapters instead of every weight."""

    method: Literal["lora"] = "lora"
    r: int = Field(8, gt=0)
    """Rank of each adapter's two matrices."""
    alpha: float = Field(16, gt=0)
    """Scale: the adapter's update is multiplied by alpha / r."""
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: Optional[list[str]] = None
    """Modules that get adapters (names or name endings); default: the family's attention projections."""
    modules_to_save: Optional[list[str]] = None
    """Modules trained in full and saved with the adapter, beside those the checkpoint lacked (a new head)."""


class FromTeacherConfig(_Section):
    """A student built from the distillation teacher: its embeddings, these layers and its head."""

    layers: list[int]
    """Teacher layer indices (from 0) the student keeps, in order, e.g. [0, 2, 4] of 6 (DistilBERT's
    every other layer); for T5 the same layers of both stacks."""

    @field_validator("layers")
    @classmethod
    def _increasing(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("name at least one teacher layer, e.g. [0, 2, 4]")
        if any(i < 0 for i in value) or any(b <= a for a, b in zip(value, value[1:])):
            raise ValueError(f"layer indices count from 0 and must increase, e.g. [0, 2, 4]; got {value}")
        return value


class ModelConfig(_Section):
    name_or_path: Optional[str] = None
    """A hub id (e.g. `bert-base-uncased`) or a local directory with a checkpoint."""
    tokenizer: Optional[str] = None
    """Tokenizer hub id or directory; defaults to `name_or_path`."""
    from_scratch: Optional[FromScratchConfig] = None
    """Build a randomly initialised model of a family and size instead of loading one."""
    from_teacher: Optional[FromTeacherConfig] = None
    """Build the student of a distillation from distill.teacher's weights (needs a distill section)."""
    train_tokenizer: TokenizerTrainingConfig = TokenizerTrainingConfig()
    trust_remote_code: bool = False
    allow_pickle_weights: bool = False
    """Load *.bin (pickle) weights when a checkpoint has no safetensors; only for sources you trust."""
    peft: Optional[PeftConfig] = None
    """LoRA adapters on a checkpoint (finetune, or continued pretraining); the run saves only the adapter."""
    pooling: Optional[Literal["last", "mean"]] = None
    """text-classification with a decoder (GPT-2 family): classify from the last token (transformers'
    head) or the mean of all tokens; unset: the checkpoint's own (saved with the model)."""

    @model_validator(mode="after")
    def _one_source(self) -> "ModelConfig":
        sources = [k for k in ("name_or_path", "from_scratch", "from_teacher") if getattr(self, k)]
        if len(sources) > 1:
            raise ValueError(f"give one of model.name_or_path (a checkpoint), model.from_scratch or "
                             f"model.from_teacher, not {' and '.join('model.' + k for k in sources)}")
        if self.peft and self.from_teacher:
            raise ValueError("model.peft: a student built from the teacher trains in full; drop model.peft")
        if self.peft and self.from_scratch:
            raise ValueError("model.peft: adapters train on top of pretrained weights; set model.name_or_path to a "
                             "checkpoint instead of model.from_scratch, or drop model.peft")
        return self


class PretrainingConfig(_Section):
    """Objective settings for masked-lm, causal-lm and span-corruption."""

    mlm_probability: float = Field(0.15, gt=0, lt=1)
    whole_word_masking: bool = False
    noise_density: float = Field(0.15, gt=0, lt=1)
    mean_noise_span_length: float = Field(3.0, ge=1)
    eval_stride: Optional[int] = Field(None, gt=0)
    """Causal LM perplexity: sliding-window stride (default: max_length, i.e. no overlap)."""


class QAConfig(_Section):
    """Extractive question answering."""

    doc_stride: int = Field(128, gt=0)
    """Overlap (tokens) between the windows a long context is split into."""
    max_answer_length: int = Field(30, gt=0)
    n_best: int = Field(20, gt=0)
    """Start and end candidates considered per window."""
    version_2_with_negative: bool = False
    """SQuAD v2: questions may have no answer (the model may answer "")."""
    null_score_diff_threshold: float = 0.0
    """v2: answer "" when the no-answer score beats the best span by more than this."""


class TaggingConfig(_Section):
    """token-classification: which sub-tokens learn a word's tag, and how long sentences are windowed."""

    label_all_tokens: bool = False
    """Train every sub-token of a word on its tag (a B- tag becomes I- after the first); default: only
    the first, the others left out of the loss. Predictions always read the first."""
    stride: Optional[int] = Field(None, gt=0)
    """Overlap (tokens) between the windows a sentence longer than training.max_length is split into;
    default: a quarter of max_length."""


class RankingConfig(_Section):
    k: int = Field(10, gt=0)
    """Cut-off of MRR@k and nDCG@k."""


class GenerationConfig(_Section):
    max_new_tokens: int = Field(50, gt=0)
    do_sample: bool = False
    temperature: float = Field(1.0, gt=0)
    top_k: int = Field(50, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    num_beams: int = Field(1, gt=0)
    seed: int = 0
    fill_mask_top_k: int = Field(5, gt=0)
    """`predict --mode fill-mask`: candidates per [MASK]."""


class DataConfig(_Section):
    train_file: Optional[str] = None
    validation_file: Union[str, dict[str, str], None] = None
    """A file, or several named ones ({dev: a.tsv, hard: b.tsv}): metrics are reported per set as
    eval_<name>_<metric>, and training.metric_for_best names the set (dev_accuracy)."""
    test_file: Optional[str] = None
    dataset_name: Optional[str] = None
    """A hub data set, loaded with `datasets.load_dataset` (needs network)."""
    dataset_config: Optional[str] = None
    validation_split: float = Field(0.1, gt=0.0)
    """Held out of train for validation when no validation file is given: a share (< 1) or a count (>= 1)."""
    split_by: Optional[str] = None
    """Hold out whole groups of this column (e.g. `title`: SQuAD articles) instead of random rows; the
    last groups in file order are held out, `validation_split` of them (share or count)."""
    text_column: str = "text"
    """Text (classification, language modelling), the query (reranking), the source (seq2seq), the words
    (token-classification: default `tokens`, a list of words or a text to split)."""
    text_pair_column: Optional[str] = None
    """Second text of a pair (classification), the candidate (reranking)."""
    label_column: str = "label"
    """Labels; token-classification: a list of tags per row, one per word (default `tags`)."""
    question_column: str = "question"
    context_column: str = "context"
    answers_column: str = "answers"
    """Question answering: {text: [...], answer_start: [...]} per row (SQuAD JSON files are flattened to this)."""
    target_column: str = "target"
    """seq2seq: the text to generate."""
    source_prefix: str = ""
    """seq2seq: put before every source text, e.g. "summarize: " for T5."""
    prompt_column: Optional[str] = None
    completion_column: Optional[str] = None
    """causal-lm finetuning on pairs: the loss is on the completion only; eval also generates from the prompt."""
    query_id_column: Optional[str] = None
    """reranking: rows with the same id are one query's candidates (default: the same query text)."""
    streaming: bool = False
    """Read the corpus lazily (pretraining on corpora larger than memory); needs training.max_steps."""
    packing: bool = True
    """Language modelling: concatenate documents and cut blocks of max_length (false: one line per example)."""
    document_separator: Literal["line", "blank_line"] = "line"
    """Text files: one document per line, or documents separated by blank lines."""
    label_names: Optional[list[str]] = None
    """Fixes the label order (id 0, 1, ...); default: sorted labels seen in train."""
    label_separator: str = Field(",", min_length=1)
    """multi-label-classification: what splits a text cell of the label column into labels ("3,15")."""
    max_train_samples: Optional[int] = Field(None, gt=0)
    max_eval_samples: Optional[int] = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_source(self) -> "DataConfig":
        if self.validation_split >= 1 and self.validation_split != int(self.validation_split):
            raise ValueError("data.validation_split: a share below 1 (0.1) or a whole count (500), "
                             f"not {self.validation_split}")
        if (self.prompt_column is None) != (self.completion_column is None):
            raise ValueError("data.prompt_column and data.completion_column go together; set both or neither")
        if self.dataset_name and self.train_file:
            raise ValueError("give either data.dataset_name or data.train_file, not both")
        if isinstance(self.validation_file, dict):
            if not self.validation_file:
                raise ValueError("data.validation_file: an empty mapping; give a file or {name: file, ...}")
            bad = [n for n in self.validation_file if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]*", n)]
            if bad:
                raise ValueError(f"data.validation_file: set name '{bad[0]}' must be letters, digits and '-' (it "
                                 "becomes part of metric names such as eval_<name>_accuracy)")
        return self

    def eval_files(self) -> dict[str | None, str]:
        """The evaluation files by set name; a single file is the unnamed set (None)."""
        if isinstance(self.validation_file, dict):
            return dict(self.validation_file)
        return {None: self.validation_file} if self.validation_file else {}


class TrainingConfig(_Section):
    num_epochs: float = Field(3, gt=0)
    max_steps: Optional[int] = Field(None, gt=0)
    """Optimizer steps; overrides num_epochs when set."""
    batch_size: int = Field(32, gt=0)
    """Global batch per optimizer step before accumulation, whatever the process count."""
    eval_batch_size: Optional[int] = Field(None, gt=0)
    """Evaluation and prediction batch; default: twice batch_size (no gradients to hold)."""
    gradient_accumulation_steps: int = Field(1, gt=0)
    learning_rate: float = Field(5e-5, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    layer_lr_decay: float = Field(1.0, gt=0, le=1)
    """Layer-wise learning-rate decay: the task head gets learning_rate, the top layer this
    factor times it, each layer below the factor again, the embeddings the least (1: off)."""
    adam_beta1: float = Field(0.9, gt=0, lt=1)
    adam_beta2: float = Field(0.999, gt=0, lt=1)
    adam_epsilon: float = Field(1e-8, gt=0)
    lr_scheduler: Literal[
        "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
        "inverse_sqrt",
    ] = "linear"
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    warmup_steps: int = Field(0, ge=0)
    max_grad_norm: Optional[float] = Field(1.0, gt=0)
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    max_length: int = Field(128, gt=0)
    """Tokens per input (the source for seq2seq); default 384 for question-answering."""
    max_target_length: int = Field(128, gt=0)
    """seq2seq: tokens per target."""
    seed: int = 42
    group_by_length: Literal[True, False, "shuffled"] = True
    """Length-grouped training batches (less padding): true (megabatch order), shuffled (the same
    batches in random order) or false (random batches)."""
    eval_strategy: Literal["epoch", "steps", "no"] = "epoch"
    eval_steps: Optional[int] = Field(None, gt=0)
    logging_steps: int = Field(50, gt=0)
    metric_for_best: Optional[str] = None
    """Metric that picks the kept model; default: the task's main metric."""
    greater_is_better: Optional[bool] = None
    save_best: bool = True
    early_stopping_patience: Optional[int] = Field(None, gt=0)
    """Stop after this many evaluations without improvement."""
    dataloader_num_workers: int = Field(0, ge=0)
    save_steps: Optional[int] = Field(None, gt=0)
    """Write a resumable checkpoint every N optimizer steps (output_dir/checkpoints)."""
    save_total_limit: Optional[int] = Field(2, gt=0)
    """Keep only the newest N checkpoints."""
    report_to: list[Literal["tensorboard", "mlflow", "wandb"]] = []
    """Experiment trackers that also get train_log.jsonl's values and the config (optional extras)."""
    threshold: Union[float, Literal["tune"]] = 0.5
    """multi-label-classification: the score at which a label is predicted, for every label, or `tune`:
    each label's own, chosen on the first validation set at each evaluation (stored with the model)."""
    min_labels: int = Field(0, ge=0)
    """multi-label-classification: rows with fewer labels past their thresholds get their highest-scoring
    labels up to this many (predict/evaluate/serve --min-labels)."""

    @field_validator("threshold", mode="before")
    @classmethod
    def _threshold(cls, value):
        # One message for every bad value (a Union's own errors would speak of the literal only).
        if value == "tune":
            return value
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = None
        if isinstance(value, bool) or number is None or not 0 < number < 1:
            raise ValueError(f"a score strictly between 0 and 1 (e.g. 0.5), or 'tune' to choose one per label on "
                             f"the validation set; got {value!r}")
        return number

    @property
    def eval_batch(self) -> int:
        return self.eval_batch_size or 2 * self.batch_size

    @field_validator("report_to", mode="before")
    @classmethod
    def _one_tracker(cls, value):
        # `report_to: tensorboard` and `--set training.report_to=mlflow` name one tracker; none/null: no tracker.
        if value is None or value == "none":
            return []
        return [value] if isinstance(value, str) else value

    @field_validator("eval_strategy", "mixed_precision", mode="before")
    @classmethod
    def _yaml_no(cls, value):
        # YAML 1.1 reads a bare `no` as false: `eval_strategy: no` and `--set training.mixed_precision=no` mean "no".
        return "no" if value is False else value

    @model_validator(mode="after")
    def _eval_steps_needed(self) -> "TrainingConfig":
        if self.eval_strategy == "steps" and not self.eval_steps:
            raise ValueError("training.eval_strategy is 'steps': set training.eval_steps too")
        return self


class DistillConfig(_Section):
    """Knowledge distillation (text and multi-label classification): the model learns a teacher's outputs as well as
    the labels."""

    teacher: str
    """A finetuned run directory or model with the same labels (a hub id works too)."""
    temperature: float = Field(2.0, gt=0)
    """Softens both output distributions in the soft-target loss (classes; unused for regression)."""
    alpha: float = Field(0.5, ge=0, le=1)
    """Weight of the soft-target loss; the label loss gets 1 - alpha (rows without labels: soft only)."""
    unlabelled_file: Optional[str] = None
    """More rows, with the text columns but no labels, that only the teacher's outputs supervise."""

    @model_validator(mode="after")
    def _unlabelled_needs_soft_targets(self):
        if self.unlabelled_file and self.alpha == 0:
            raise ValueError("distill.unlabelled_file: with alpha 0 the teacher's outputs teach nothing, so rows "
                             "without labels would be read for no loss; set distill.alpha above 0")
        return self


class Config(_Section):
    task: str
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    training: TrainingConfig = TrainingConfig()
    pretraining: PretrainingConfig = PretrainingConfig()
    generation: GenerationConfig = GenerationConfig()
    qa: QAConfig = QAConfig()
    tagging: TaggingConfig = TaggingConfig()
    ranking: RankingConfig = RankingConfig()
    distill: Optional[DistillConfig] = None
    output_dir: str = "runs/latest"

    @model_validator(mode="after")
    def _checks(self) -> "Config":
        # The task first: every later rule may ask its class.
        names = task_names()
        if self.task not in names:
            hint = _did_you_mean(self.task, names)
            raise ValueError(f"unknown task '{self.task}'{hint}; known: {', '.join(names)}")
        task = task_class(self.task)
        for dotted, value in task.config_defaults.items():
            section, key = dotted.split(".")
            if key not in getattr(self, section).model_fields_set:
                setattr(getattr(self, section), key, value)
        if self.model.pooling and not task.chooses_pooling:
            raise ValueError(f"model.pooling: only {_listed('chooses_pooling')} chooses a pooling, not {self.task}; "
                             "drop model.pooling")
        scratch = self.model.from_scratch
        if self.model.pooling and scratch and self.model.pooling not in FAMILIES[scratch.family].poolings:
            choosers = ", ".join(f.name for f in FAMILIES.values() if f.poolings)
            raise ValueError(f"model.pooling: a pooling choice is for decoder classifiers ({choosers}); "
                             f"{scratch.family} pools its own way: drop model.pooling")
        if scratch and self.task not in FAMILIES[scratch.family].heads:
            has = ", ".join(FAMILIES[scratch.family].heads)
            raise ValueError(f"model.from_scratch.family: family '{scratch.family}' has no model for this task "
                             f"({self.task}); its tasks are {has}")
        # LoRA's update starts at zero and is scaled by alpha / r per module: per-layer rates on top of
        # it are untested here, and a rate per layer is what layer_lr_decay exists for on full weights.
        if self.model.peft and self.training.layer_lr_decay != 1:
            raise ValueError("training.layer_lr_decay: not used with model.peft (LoRA trains adapters, not the "
                             "layers); set it to 1 or drop model.peft")
        if self.model.from_teacher and not self.distill:
            raise ValueError("model.from_teacher: builds the student from distill.teacher; add a distill section "
                             "with teacher: RUN_DIR")
        if self.distill and not task.distills:
            raise ValueError(f"distill: distillation is for {_listed('distills')} (classes, labels or scores), not "
                             f"{self.task}; drop the distill section")
        task.check_config(self)
        if self.data.streaming and not self.training.max_steps:
            raise ValueError("data.streaming: a stream has no length; set training.max_steps")
        if self.data.streaming and not task.pretraining:
            raise ValueError("data.streaming: only the pretraining objectives read streams; set it to false")
        return self


def _listed(attribute: str) -> str:
    """The tasks whose class declares `attribute` true, for a message (imports every task module:
    on an error's path only)."""
    return ", ".join(task_names_where(attribute)) or "no task"


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


did_you_mean = _did_you_mean  # " (did you mean 'x'?)" or "", for the messages of the floors above


def _fields_at(path: tuple) -> list[str]:
    """Names of the keys allowed at a dotted location in the schema."""
    model: Any = Config
    for part in path:
        field = model.model_fields.get(part)
        # An optional section (distill, model.peft, ...) is Optional[Section]: look inside.
        kinds = [field.annotation, *get_args(field.annotation)] if field is not None else []
        model = next((k for k in kinds if isinstance(k, type) and issubclass(k, BaseModel)), None)
        if model is None:
            return []
    return list(model.model_fields)


def _format_error(err: dict, source: str) -> str:
    loc = tuple(str(p) for p in err["loc"])
    key = ".".join(loc) or "(top level)"
    if err["type"] == "extra_forbidden":
        hint = _did_you_mean(loc[-1], _fields_at(loc[:-1]))
        return f"{source}: unknown key '{key}'{hint}"
    if err["type"] == "missing":
        return f"{source}: missing required key '{key}'"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "value_error":
        # A section's own check names its keys in full ("training.eval_strategy is 'steps': ..."):
        # no second prefix ("training: training.eval_strategy ...").
        return f"{source}: {msg}" if not loc or msg.startswith(key) else f"{source}: {key}: {msg}"
    return f"{source}: key '{key}': {msg} (got {err.get('input')!r})"


def parse_override(text: str, source: str = "override") -> tuple[list[str], Any]:
    """`training.learning_rate=3e-5` → (['training', 'learning_rate'], 3e-05); `source` names the
    flag or setting the text came from in the error."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip() or any(not p for p in key.strip().split(".")):
        example = f"{source} training.learning_rate=3e-5" if source.startswith("-") else "training.learning_rate=3e-5"
        raise UserError(f"{source} '{text}': expected KEY=VALUE with a dotted key, e.g. {example}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(raw: dict, overrides: list[str], source: str = "override") -> dict:
    """`overrides` (KEY=VALUE, dotted keys) written into `raw`; `source` names where they came from (the
    command layer passes its flag, --set)."""
    for text in overrides:
        path, value = parse_override(text, source)
        set_dotted(raw, path, value, f"{source} '{text}'")
    return raw


def set_dotted(raw: dict, path: list[str], value, source: str) -> dict:
    """`value` written into `raw` at a dotted key's parts (sections made as needed); `source` starts
    the error when a part is a value, not a section."""
    node = raw
    for part in path[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise UserError(f"{source}: '{part}' is a value, not a section")
        node = child
    node[path[-1]] = value
    return raw


def read_yaml(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: config file not found; give the path to a YAML file (see configs/)")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{p}: not UTF-8 text; save the config as UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise UserError(f"{p}: malformed YAML{where}: {problem}; fix the syntax") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"{p}: the top level must be a mapping of keys (task:, model:, data:, ...)")
    return raw


def validate(raw: dict, source: str = "config") -> Config:
    """The checked config: the schema, then the rules of the task it names."""
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise UserError(_format_error(exc.errors()[0], source)) from None


def load_config(path: str | Path | None, overrides: list[str] | None = None, base: dict | None = None,
                overrides_key: str = "override") -> Config:
    """Read a YAML file (or start from `base`), apply overrides, validate."""
    raw = read_yaml(path) if path else dict(base or {})
    raw = apply_overrides(raw, overrides or [], overrides_key)
    cfg = validate(raw, str(path) if path else "config")
    if path:
        resolve_paths(cfg, Path(path).parent)
    return cfg


def resolve_paths(cfg: Config, config_dir: Path) -> None:
    """Data paths are relative to the working directory, as on the command line; a path that
    only exists next to the config file is taken from there, so shipped configs run anywhere."""
    def near(value: str) -> str:
        return str(config_dir / value) if not Path(value).exists() and (config_dir / value).exists() else value

    if cfg.distill and cfg.distill.unlabelled_file:
        cfg.distill.unlabelled_file = near(cfg.distill.unlabelled_file)
    for name in ("train_file", "validation_file", "test_file"):
        value = getattr(cfg.data, name)
        if isinstance(value, dict):
            setattr(cfg.data, name, {k: near(v) for k, v in value.items()})
        elif value:
            setattr(cfg.data, name, near(value))


def metric_key(eval_set: str | None, metric: str) -> str:
    """A metric's name in logs and metrics.json (after eval_): the set's name first when there are several."""
    return f"{eval_set}_{metric}" if eval_set else metric


def dump(cfg: Config) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


# What a resumed run may change: the step budget and how often it checkpoints.
RESUMABLE_KEYS = ("training.max_steps", "training.num_epochs", "training.save_steps", "training.save_total_limit")


def check_same_config(cfg: Config, saved: Path) -> None:
    """A resumed run must be the same run: keys that differ from the run's saved config (other
    than RESUMABLE_KEYS) are refused."""
    if not saved.is_file():
        raise UserError(f"{saved} not found; output_dir does not hold an lmctl run")
    before = read_yaml(saved)
    try:
        # A run saved by an older lmctl lacks the keys added since; read through today's schema they take
        # their defaults, which is what that run did, so only what the user changed counts as a difference.
        before = validate(before, str(saved)).model_dump(mode="json")
    except UserError:
        pass  # a key since renamed or removed: compared as written, so the refusal names it
    now = cfg.model_dump(mode="json")
    diffs = [f"{section}.{key}" for section, values in now.items() if isinstance(values, dict)
             for key, value in values.items()
             if before.get(section, {}).get(key) != value and f"{section}.{key}" not in RESUMABLE_KEYS]
    diffs += [k for k, v in now.items() if not isinstance(v, dict) and before.get(k) != v]
    if diffs:
        raise UserError(f"the config differs from the run's {saved} at {', '.join(diffs)}; "
                        "resume with the same config (only the step budget may change)")


def config_for_model(model_dir: str, config_path: str | None, overrides: list[str], task: str | None,
                     overrides_key: str = "override") -> Config:
    """The config an evaluate/predict run uses: an explicit one, else the run directory's own
    (a plain model directory gets the defaults, text-classification unless `task` says otherwise)."""
    run_config = Path(model_dir) / "config.yaml"
    if config_path:
        raw = read_yaml(config_path)
    elif run_config.is_file():
        raw = read_yaml(run_config)
    else:
        raw = {}
    if task:
        raw["task"] = task
    raw.setdefault("task", "text-classification")
    model = raw.setdefault("model", {})
    model["name_or_path"] = model_dir
    model.pop("from_scratch", None)  # a trained run is a checkpoint now
    model.pop("from_teacher", None)
    apply_overrides(raw, overrides, overrides_key)
    return validate(raw, config_path or str(run_config))


def flatten(config: dict, prefix: str = "") -> dict:
    """A nested config dict as dotted keys (`training.learning_rate`); an empty section stays a value."""
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out
