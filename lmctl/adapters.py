"""LoRA adapters through `peft`: wrap a loaded model, save and reload the adapter, merge it.

A LoRA run directory holds the adapter (adapter_config.json naming the base model, and
adapter_model.safetensors) beside the full model config (config.json: labels, pooling, task
state) and the tokenizer. Loading it is: the base model's weights with the run's config,
then the adapter on top; nothing else in lmctl needs to know the difference.

Which modules get adapters by default comes from the family table (attention projections);
the weights a checkpoint did not have (a new task head, an untrained pooler) are trained in
full and saved with the adapter (peft's `modules_to_save`), or a reload would draw them anew.
"""

from __future__ import annotations

import json
import warnings
from contextlib import contextmanager
from pathlib import Path

from lmctl import families
from lmctl.errors import UserError

ADAPTER_CONFIG = "adapter_config.json"


def is_adapter_dir(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def base_of(path: str | Path) -> str:
    """The base model an adapter directory was trained on."""
    config = json.loads((Path(path) / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    return config.get("base_model_name_or_path") or ""


def is_adapted(model) -> bool:
    import sys

    # A model can only be a PeftModel once peft was imported: full finetuning never pays for the import.
    return "peft" in sys.modules and isinstance(model, sys.modules["peft"].PeftModel)


@contextmanager
def _quiet():
    # peft asks transformers' deprecated `is_gradient_checkpointing`: a FutureWarning on every load
    # that is neither the user's concern nor lmctl's.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        yield


def _leaf_names(model) -> list[str]:
    """Last name parts of the modules that hold a weight matrix (what target_modules can name)."""
    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
             if not list(module.children()) and getattr(getattr(module, "weight", None), "ndim", 0) == 2}
    return sorted(names)


def _named(model, target: str):
    """The modules `target` names, as peft matches it: the whole name or its last parts."""
    return [module for name, module in model.named_modules() if name == target or name.endswith("." + target)]


def new_modules(model, missing_keys: list[str]) -> list[str]:
    """The modules holding weights the checkpoint lacked (initialised anew): a task head, a pooler."""
    params = dict(model.named_parameters())
    return sorted({key.rsplit(".", 1)[0] for key in missing_keys if key in params and "." in key})


def wrap(model, spec, base_name: str, missing_keys: list[str]):
    """The model with LoRA adapters (`spec`: the config's model.peft section); only the adapters and
    the new or listed modules train."""
    from peft import LoraConfig, get_peft_model

    family = families.for_model_type(model.config.model_type)
    targets = spec.target_modules or list(family.attention_projections)
    if not targets:
        raise UserError(f"model.peft.target_modules: no default for model type '{model.config.model_type}'; "
                        f"list the modules to adapt (this model has: {', '.join(_leaf_names(model))})")
    for key, names in (("target_modules", targets), ("modules_to_save", spec.modules_to_save or [])):
        for target in names:
            if not _named(model, target):
                raise UserError(f"model.peft.{key}: {type(model).__name__} has no module '{target}'; "
                                f"it has: {', '.join(_leaf_names(model))}")
    to_save = sorted(set(new_modules(model, missing_keys)) | set(spec.modules_to_save or []))
    local = Path(base_name).expanduser()
    config = LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout, target_modules=targets,
                        modules_to_save=to_save or None, fan_in_fan_out=_transposed(model, targets),
                        # A local base is recorded whole, so evaluate/predict find it from any directory.
                        base_model_name_or_path=str(local.resolve()) if local.is_dir() else base_name)
    with _quiet():
        return get_peft_model(model, config)


def _transposed(model, targets: list[str]) -> bool:
    """GPT-2's projections are Conv1D layers, which store the weight as (in, out)."""
    from transformers.pytorch_utils import Conv1D

    return any(isinstance(module, Conv1D) for target in targets for module in _named(model, target))


def load(model, path: str):
    """`model` (the base weights with the run's config) with the adapter in `path`, for inference."""
    from peft import PeftModel

    with _quiet():
        return PeftModel.from_pretrained(model, path, is_trainable=False)


def save(model, output_dir: Path, state_dict: dict) -> None:
    """The adapter and the full model config (labels, pooling, task state) for a reload."""
    model.save_pretrained(output_dir, state_dict=state_dict, safe_serialization=True)
    model.get_base_model().config.save_pretrained(output_dir)
    (output_dir / "README.md").unlink(missing_ok=True)  # peft's model-card stub, nothing measured in it


def merge(model):
    """A plain transformers model with the adapter folded into its weights."""
    with _quiet():
        return model.merge_and_unload()


def describe(model) -> str:
    """Trainable parameters (count and share) and the adapter's size on disk."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_train = sum(p.numel() for p in trainable)
    n_all = sum(p.numel() for p in model.parameters())
    size = sum(p.numel() * p.element_size() for p in trainable)
    return (f"LoRA: {n_train:,} of {n_all:,} parameters train ({100 * n_train / n_all:.2f}%), "
            f"adapter {size / 1e6:.2f} MB")
