"""Load models and tokenizers; what differs by family comes from `lmctl.families`.

Any hub id or local directory works: loading is `Auto*` with the family's fixes applied.
"""

from __future__ import annotations

from pathlib import Path

from lmctl import adapters, families
from lmctl.errors import UserError, first_line
from lmctl.hub import hub_offline


def resolve(name_or_path: str | None, key: str = "model.name_or_path") -> str:
    """A local directory as is; a hub id checked for reachability up front."""
    if not name_or_path:
        raise UserError(f"{key}: not set; give a hub id (e.g. bert-base-uncased) or a local model directory")
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise UserError(f"{key}: {p} has no config.json; point at a saved Hugging Face model directory")
        return str(p)
    looks_local = name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1 or p.suffix != ""
    if looks_local or p.exists():
        raise UserError(f"{key}: model directory not found: {name_or_path}; check the path")
    if hub_offline():
        raise UserError(f"{key}: '{name_or_path}' is a hub id but the hub is unreachable (HF_HUB_OFFLINE is set); give a local path")
    return name_or_path


def _load_error(name: str, key: str, exc: Exception) -> UserError:
    damaged = _damaged_json(name)
    if damaged is not None:
        path, detail = damaged
        return UserError(f"{key}: {path} is damaged or cut short ({detail}); copy or save the model again")
    text = str(exc)
    if "connect" in text or "offline" in text.lower() or "resolve" in text.lower():
        return UserError(f"{key}: cannot reach the hub to fetch '{name}'; give a local path or check your network")
    return UserError(f"{key}: cannot load '{name}': {first_line(exc)}")


# The JSON files transformers and peft read from a model directory.
MODEL_JSON = {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
              "special_tokens_map.json", "added_tokens.json", "vocab.json", "adapter_config.json",
              "model.safetensors.index.json"}


def _damaged_json(name: str) -> tuple[Path, str] | None:
    """The first JSON file of a local model directory that does not parse, and why, if any:
    library errors about such a file rarely say which file it was."""
    import json

    if not Path(name).is_dir():
        return None
    for path in sorted(Path(name).glob("*.json")):
        if path.name not in MODEL_JSON:  # a run's metrics.json and the like play no part in loading
            continue
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            return path, first_line(exc)
    return None


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False, key: str = "model.name_or_path"):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise _load_error(name_or_path, key, exc) from None
    return tokenizer


def load_config(name_or_path: str, trust_remote_code: bool = False, key: str = "model.name_or_path", **kwargs):
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code, **kwargs)
    except (OSError, ValueError) as exc:
        raise _load_error(name_or_path, key, exc) from None
    # transformers v5 drops keys its config class does not define (ours: POOLING_KEY); keep them.
    for name, value in kwargs.items():
        if not hasattr(config, name):
            setattr(config, name, value)
    return config


def apply_quirks(model_config, tokenizer) -> None:
    for fix in families.for_model_type(model_config.model_type).quirks:
        fix(model_config, tokenizer)
    if getattr(model_config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
        model_config.pad_token_id = tokenizer.pad_token_id


def _auto(name: str):
    import transformers

    return getattr(transformers, name)


def load_model(auto_class: str, name_or_path: str, tokenizer, trust_remote_code: bool = False,
               key: str = "model.name_or_path", allow_pickle: bool = False, **config_kwargs):
    """`from_pretrained` of the `Auto*` class named `auto_class`, with the family's fixes applied
    and errors made readable. A LoRA run directory loads as its base model plus the adapter, an
    ONNX export (lmctl export --format onnx) as an ONNX Runtime session with the model's interface."""
    from lmctl import onnx_model

    if onnx_model.is_onnx_dir(name_or_path):
        return onnx_model.load(name_or_path, key)
    if adapters.is_adapter_dir(name_or_path):
        return _load_adapted(auto_class, name_or_path, tokenizer, trust_remote_code, key, allow_pickle)
    model, _ = _from_pretrained(auto_class, name_or_path, tokenizer, trust_remote_code, key, allow_pickle,
                                **config_kwargs)
    return apply_pooling(model, key)


def _load_adapted(auto_class: str, path: str, tokenizer, trust_remote_code: bool, key: str, allow_pickle: bool):
    """The base model's weights under the run's own config (labels, pooling), then the adapter."""
    base = adapters.base_of(path)
    try:
        resolve(base, key="base_model_name_or_path")
    except UserError as exc:
        raise UserError(f"{key}: {path} holds a LoRA adapter whose base model cannot be loaded ({exc}); put the "
                        f"base model back, or set base_model_name_or_path in {Path(path) / adapters.ADAPTER_CONFIG}"
                        ) from None
    config = load_config(path, trust_remote_code, key)
    model, _ = _from_pretrained(auto_class, base, tokenizer, trust_remote_code, key, allow_pickle, config=config)
    from safetensors import SafetensorError

    try:
        return adapters.load(apply_pooling(model, key), path)
    except SafetensorError as exc:
        raise _damaged_weights(path, key, exc) from None


def _from_pretrained(auto_class: str, name_or_path: str, tokenizer, trust_remote_code: bool, key: str,
                     allow_pickle: bool, config=None, **config_kwargs):
    """(model, the parameter names the checkpoint lacked and were initialised anew)."""
    from transformers.utils import logging as hf_logging

    if trust_remote_code:
        from lmctl.console import Console

        Console().warn(f"{key}: trust_remote_code is on: code from '{name_or_path}' will run on this machine")
    model_config = config or load_config(name_or_path, trust_remote_code, key, **config_kwargs)
    apply_quirks(model_config, tokenizer)
    # The LOAD REPORT table is noise for the expected case (a new head is MISSING);
    # real mismatches still raise and are reported below.
    hf_logging.set_verbosity_error()
    from safetensors import SafetensorError

    try:
        model, info = _auto(auto_class).from_pretrained(
            name_or_path, config=model_config, trust_remote_code=trust_remote_code, output_loading_info=True,
            use_safetensors=_safetensors_only(name_or_path, allow_pickle, key),
        )
    except RuntimeError as exc:
        if "mismatch" in str(exc).lower():
            raise UserError(
                f"{key}: the head of '{name_or_path}' does not fit this data "
                f"(checkpoint has {_ckpt_labels(name_or_path)} outputs, the data {model_config.num_labels}); "
                "start from the base model or give data with the checkpoint's labels"
            ) from None
        raise
    except (OSError, ValueError) as exc:
        raise _load_error(name_or_path, key, exc) from None
    except SafetensorError as exc:
        raise _damaged_weights(name_or_path, key, exc) from None
    return model, list(info.get("missing_keys") or [])


def _damaged_weights(name_or_path: str, key: str, exc: Exception) -> UserError:
    """A weights file that safetensors cannot read (cut short by a full disk or an interrupted copy)."""
    files = sorted(p.name for p in Path(name_or_path).glob("*.safetensors")) if Path(name_or_path).is_dir() else []
    where = str(Path(name_or_path) / files[0]) if len(files) == 1 else f"the weights in {name_or_path}"
    return UserError(f"{key}: {where} is damaged or cut short ({first_line(exc)}); copy or save the model again")


def _safetensors_only(name_or_path: str, allow_pickle: bool, key: str) -> bool | None:
    """Local checkpoints must be safetensors: pickle files can run code when loaded."""
    p = Path(name_or_path)
    if not p.is_dir():
        return None if allow_pickle else True  # hub: only the safetensors files
    if any(p.glob("*.safetensors")):
        return True
    if any(p.glob("*.bin")) or any(p.glob("*.pt")):
        if allow_pickle:
            from lmctl.console import Console

            Console().warn(f"{key}: loading pickle weights from {p} (model.allow_pickle_weights is on)")
            return False
        raise UserError(
            f"{key}: {p} holds only pickle weights (*.bin), which can run code when loaded; convert it to "
            "safetensors (save_pretrained(dir, safe_serialization=True)) or, for a source you trust, "
            "set model.allow_pickle_weights: true"
        )
    return None


def _ckpt_labels(name_or_path: str) -> str:
    import json

    try:
        cfg = json.loads((Path(name_or_path) / "config.json").read_text())
        return str(len(cfg.get("id2label") or {}) or "?")
    except (OSError, ValueError):
        return "?"


def scratch_config(family: str, size: str, overrides: dict, tokenizer, max_length: int, **task_kwargs):
    """A model config of `family`/`size` sized to `tokenizer`, with user overrides on top."""
    import transformers

    spec = families.FAMILIES[family]
    cls = getattr(transformers, spec.config_class)
    values = dict(spec.presets[size])
    values.update(spec.scratch_ids(tokenizer, max_length))
    values["vocab_size"] = len(tokenizer)
    values.update(task_kwargs)
    known = set(cls().to_dict()) | set(cls.attribute_map)
    for key in overrides:
        if key not in known:
            import difflib

            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise UserError(f"model.from_scratch.overrides: '{key}' is not a {cls.__name__} field{hint}")
    values.update(overrides)
    return cls(**values)


def build_model(auto_class: str, model_cfg, name_or_path: str | None, tokenizer, max_length: int,
                init_new=None, **task_kwargs):
    """A task's model: from a checkpoint (with LoRA adapters when model.peft is set), or randomly
    initialised from a size preset. `init_new(model, new)`, where given, sets what the task knows
    about its new weights before any adapter wraps them; `new(name)` says whether the parameter
    `name` was freshly initialised (not in the checkpoint)."""
    scratch = model_cfg.from_scratch
    if scratch is None:
        if adapters.is_adapter_dir(name_or_path):
            raise UserError(f"model.name_or_path: {name_or_path} holds a LoRA adapter; merge it into a plain model "
                            "first (lmctl export --model RUN --output DIR --merge) and start from DIR")
        model, missing = _from_pretrained(auto_class, name_or_path, tokenizer, model_cfg.trust_remote_code,
                                          "model.name_or_path", model_cfg.allow_pickle_weights, **task_kwargs)
        model = apply_pooling(model)
        if init_new is not None:
            init_new(model, set(missing).__contains__)
        return adapters.wrap(model, model_cfg.peft, name_or_path, missing) if model_cfg.peft else model
    # Config validation already refused a family without a head for this task (lmctl.families).
    config = scratch_config(scratch.family, scratch.size, scratch.overrides, tokenizer, max_length, **task_kwargs)
    model = apply_pooling(_auto(auto_class).from_config(config))
    if init_new is not None:
        init_new(model, lambda name: True)
    return model


def student_from_teacher(teacher_model, layers: list[int]):
    """A student of the teacher's class and config with only `layers` (teacher indices, renumbered
    from 0), whose every weight is copied from the teacher: embeddings, those layers, final norms
    and the task head. For T5, the same layers of both stacks; the relative-position bias that
    only T5's first layer owns comes from the teacher's first layer when layer 0 is not kept."""
    import copy

    if adapters.is_adapted(teacher_model):
        teacher_model = adapters.merge(teacher_model)
    family = families.for_model_type(teacher_model.config.model_type)
    config = copy.deepcopy(teacher_model.config)
    for field in family.depth_fields:
        setattr(config, field, len(layers))
    student = type(teacher_model)(config)
    position = {old: new for new, old in enumerate(layers)}
    teacher_state = teacher_model.state_dict()
    state = {}
    for name, value in teacher_state.items():
        renamed = family.renumber_layer(name, position)
        if renamed is not None:
            state[renamed] = value
    # What only a dropped layer owned, under the same name in the student (T5's first-layer bias).
    missing = [n for n in student.state_dict() if n not in state]
    state.update({n: teacher_state[n] for n in missing if n in teacher_state})
    result = student.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise RuntimeError(f"student from teacher: weights left unset {result.missing_keys} or unused "
                           f"{result.unexpected_keys}")
    return apply_pooling(student)


def save_pretrained(model, output_dir: Path, state_dict: dict) -> None:
    """Hugging Face format in `output_dir`: the whole model, or a LoRA run's adapter and config."""
    if adapters.is_adapted(model):
        adapters.save(model, output_dir, state_dict)
    else:
        model.save_pretrained(output_dir, state_dict=state_dict, safe_serialization=True)


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


# `model.pooling: mean` is stored in the model's config under this key, so evaluate and predict
# rebuild the same head. (Not `classifier_pooling`: ModernBERT already uses that name itself.)
POOLING_KEY = "lmctl_pooling"


def apply_pooling(model, key: str = "model.pooling"):
    """Classify from the mask-weighted mean of every token's final state when the config says so.

    Decoder classifiers (GPT2ForSequenceClassification and the like) score every position with a
    `score` layer and keep the last non-pad token's scores; mean pooling reads every position
    instead (on SST-2 a tiny pretrained GPT-2 finetuned as well either way; see the README).
    Encoder classifiers have their own pooler ([CLS], T5's eos) and are refused.
    """
    pooling = getattr(model.config, POOLING_KEY, None)
    if pooling is None:
        return model
    if model.config.is_encoder_decoder or not hasattr(model, "score"):
        raise UserError(f"{key}: a pooling choice is for decoder classifiers (GPT-2 family); "
                        f"{type(model).__name__} pools its own way: drop {key}")
    if pooling != "mean":
        return model
    import types

    import torch
    from transformers.loss.loss_utils import ForSequenceClassificationLoss
    from transformers.modeling_outputs import SequenceClassifierOutput

    def mean_pooled_forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs):
        hidden = self.base_model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)[0]
        if attention_mask is None:
            attention_mask = torch.ones(hidden.shape[:2], device=hidden.device)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        logits = self.score((hidden * mask).sum(1) / mask.sum(1).clamp(min=1))
        loss = None if labels is None else ForSequenceClassificationLoss(labels, logits, self.config)
        return SequenceClassifierOutput(loss=loss, logits=logits)

    # The imports above run once per model, not on every forward pass.
    model.forward = types.MethodType(mean_pooled_forward, model)
    return model


def rebound_pooling(model) -> str | None:
    """The pooling `apply_pooling` bound into `model` in place of its class's forward ("mean"), or
    None. Such a model's saved weights are not the whole model: a plain `from_pretrained` runs the
    class's own forward (last-token pooling) and scores them differently, without a word."""
    return getattr(model.config, POOLING_KEY, None) if "forward" in vars(model) else None
