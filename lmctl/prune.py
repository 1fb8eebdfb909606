"""Structured pruning that a plain `from_pretrained` reloads: fewer layers, narrower feed-forward blocks.

transformers v5 has no `prune_heads`, and BERT's and GPT-2's configs cannot record a head
count per layer (their attention output is fixed at hidden_size), so what a saved config can
express is: the number of layers, and one feed-forward width for every layer. Both are
chosen on data:

- layers: each layer is left out in turn and the loss on the importance rows measured; the
  layers whose absence raises the loss least are dropped (the rest are copied, as a
  distillation student is built: lmctl.models.student_from_teacher);
- feed-forward neurons: first-order Taylor importance, |Σ activation × ∂loss/∂activation| per
  neuron summed over the rows (Molchanov et al. 2019; Michel et al. 2019 score heads the same
  way); each layer keeps its most important neurons, the same number in every layer.

The result is an ordinary checkpoint: evaluate, predict, export, finetune and distill take it.
"""

from __future__ import annotations

from lmctl import families
from lmctl.errors import UserError


def _loss(model, batches: list[dict]) -> float:
    import torch

    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for batch in batches:
            size = len(batch["input_ids"])
            total += float(model(**batch).loss) * size
            n += size
    return total / n


def layer_losses(model, batches: list[dict]) -> list[float]:
    """The loss on `batches` with each layer left out in turn (the layer's index → loss)."""
    from lmctl.models import student_from_teacher

    depth = _depth(model)
    return [_loss(student_from_teacher(model, [j for j in range(depth) if j != i]), batches) for i in range(depth)]


def _depth(model) -> int:
    family = families.for_model_type(model.config.model_type)
    return getattr(model.config, family.depth_fields[0])


def neuron_importance(model, batches: list[dict]) -> dict[str, "object"]:
    """First-order Taylor importance of every feed-forward neuron: input-projection name → scores."""
    import torch

    family = families.for_model_type(model.config.model_type)
    first, second, _ = family.ffn
    modules = dict(model.named_modules())
    pairs = {name: name[: -len(first)] + second for name in modules if name.endswith(first)}
    scores = {name: 0.0 for name in pairs}
    captured = {}

    def keep(name):
        def hook(module, args):
            args[0].retain_grad()
            captured[name] = args[0]
        return hook

    handles = [modules[out].register_forward_pre_hook(keep(name)) for name, out in pairs.items()]
    model.eval()  # no dropout: the scores are a function of the data alone
    try:
        for batch in batches:
            model.zero_grad(set_to_none=True)
            model(**batch).loss.backward()
            for name, act in captured.items():
                # Per example: |sum over positions of a * dL/da|, then summed over examples.
                per_example = (act * act.grad).sum(dim=1).abs()
                scores[name] = scores[name] + per_example.sum(0).detach()
    finally:
        for h in handles:
            h.remove()
        model.zero_grad(set_to_none=True)
    return {name: torch.as_tensor(v) for name, v in scores.items()}


def narrow_ffn(model, scores: dict, width: int):
    """A model of the same class whose every feed-forward block keeps its `width` most important
    neurons (in their original order), built from a config that records the new width."""
    import copy

    import torch

    from lmctl import models

    family = families.for_model_type(model.config.model_type)
    first, second, field = family.ffn
    modules = dict(model.named_modules())
    state = dict(model.state_dict())
    for name, score in scores.items():
        keep = torch.sort(torch.topk(score, width).indices).values
        out = name[: -len(first)] + second
        conv = _stored_in_out(modules[name])
        state[f"{name}.weight"] = state[f"{name}.weight"].index_select(1 if conv else 0, keep)
        if f"{name}.bias" in state:
            state[f"{name}.bias"] = state[f"{name}.bias"][keep]
        state[f"{out}.weight"] = state[f"{out}.weight"].index_select(0 if conv else 1, keep)
    config = copy.deepcopy(model.config)
    setattr(config, field, width)
    pruned = type(model)(config)
    pruned.load_state_dict(state, strict=True)
    return models.apply_pooling(pruned)


def _stored_in_out(module) -> bool:
    """nn.Linear stores its weight [out, in]; GPT-2's Conv1D stores it [in, out]."""
    from transformers.pytorch_utils import Conv1D

    return isinstance(module, Conv1D)


def ffn_width(model) -> int:
    first = families.for_model_type(model.config.model_type).ffn[0]
    module = next(m for name, m in model.named_modules() if name.endswith(first))
    return module.weight.shape[1 if _stored_in_out(module) else 0]


def check(model, key: str) -> None:
    """A model this module can prune; `key` names where it came from."""
    family = families.for_model_type(model.config.model_type)
    if not family.depth_fields or not family.ffn:
        raise UserError(f"{key}: a '{model.config.model_type}' model cannot be pruned here; pruning knows "
                        f"{', '.join(families.FAMILY_NAMES)}")
    if family.name == "t5" and not any(n.endswith(family.ffn[0]) for n, _ in model.named_modules()):
        raise UserError(f"{key}: a gated-activation T5 (wi_0/wi_1) cannot have its feed-forward width pruned here")


def check_layers(model, keep_layers: int) -> None:
    """`keep_layers` against the model's depth (the command names the flag it came from)."""
    depth = _depth(model)
    if not 1 <= keep_layers <= depth:
        raise UserError(f"the model has {depth} layers; keep between 1 and {depth}, not {keep_layers}")


def check_share(ffn: float) -> None:
    """A share of the feed-forward width to keep (checked before any model loads)."""
    if not 0 < ffn <= 1:
        raise UserError(f"a share of the feed-forward width to keep, above 0 and at most 1, not {ffn}")


def prune(model, batches: list[dict], keep_layers: int | None, ffn: float | None, console) -> tuple[object, dict]:
    """(pruned model, report): the least important layers dropped, then the feed-forward blocks narrowed."""
    from lmctl.models import student_from_teacher

    report = {"loss_before": _loss(model, batches)}
    depth = _depth(model)
    if keep_layers is not None and keep_layers < depth:
        losses = layer_losses(model, batches)
        kept = sorted(sorted(range(depth), key=lambda i: -losses[i])[:keep_layers])
        report.update(layer_losses=[round(v, 4) for v in losses], kept_layers=kept)
        console.log("prune: loss without each layer: " + ", ".join(f"{i}: {v:.4f}" for i, v in enumerate(losses))
                    + f"; keeping {kept}")
        model = student_from_teacher(model, kept)
    if ffn is not None and ffn < 1:
        width = ffn_width(model)
        new_width = max(1, round(width * ffn))
        model = narrow_ffn(model, neuron_importance(model, batches), new_width)
        report.update(ffn_width=[width, new_width])
        console.log(f"prune: feed-forward width {width} → {new_width} in every layer")
    report["loss_after"] = _loss(model, batches)
    return model, report
