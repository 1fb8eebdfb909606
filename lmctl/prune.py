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
  way), taken at the output projection's input; each layer keeps its most important neurons,
  the same number in every layer. The family table names the block's projections: a gated
  block (T5 v1.1, mT5: act(wi_0 x) * wi_1 x) keeps the same neurons in both input projections.

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


def ffn_layout(model) -> families.FeedForward | None:
    """The family's feed-forward layout that `model` has (T5: ReLU wi or gated wi_0/wi_1), if any."""
    names = [name for name, _ in model.named_modules()]
    layouts = families.for_model_type(model.config.model_type).ffn
    return next((ff for ff in layouts if all(any(n.endswith(i) for n in names) for i in ff.inputs)), None)


def _blocks(model, layout: families.FeedForward) -> dict[str, str]:
    """Each feed-forward block's module-name prefix (the layer's), keyed by its first input projection."""
    first = layout.inputs[0]
    return {name: name[: -len(first)] for name, _ in model.named_modules() if name.endswith(first)}


def neuron_importance(model, batches: list[dict]) -> dict[str, "object"]:
    """First-order Taylor importance of every feed-forward neuron: first input projection's name → scores."""
    import torch

    layout = ffn_layout(model)
    modules = dict(model.named_modules())
    # The output projection's input is the hidden units themselves, gated or not.
    pairs = {name: prefix + layout.output for name, prefix in _blocks(model, layout).items()}
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

    layout = ffn_layout(model)
    blocks = _blocks(model, layout)
    modules = dict(model.named_modules())
    state = dict(model.state_dict())
    for name, score in scores.items():
        keep = torch.sort(torch.topk(score, width).indices).values
        prefix = blocks[name]
        for projection in (prefix + i for i in layout.inputs):  # each writes the hidden units: keep its rows
            conv = _stored_in_out(modules[projection])
            state[f"{projection}.weight"] = state[f"{projection}.weight"].index_select(1 if conv else 0, keep)
            if f"{projection}.bias" in state:
                state[f"{projection}.bias"] = state[f"{projection}.bias"][keep]
        out = prefix + layout.output
        state[f"{out}.weight"] = state[f"{out}.weight"].index_select(0 if _stored_in_out(modules[out]) else 1, keep)
    config = copy.deepcopy(model.config)
    setattr(config, layout.width, width)
    pruned = type(model)(config)
    pruned.load_state_dict(state, strict=True)
    return models.apply_pooling(pruned)


def _stored_in_out(module) -> bool:
    """nn.Linear stores its weight [out, in]; GPT-2's Conv1D stores it [in, out]."""
    from transformers.pytorch_utils import Conv1D

    return isinstance(module, Conv1D)


def ffn_width(model) -> int:
    first = ffn_layout(model).inputs[0]
    module = next(m for name, m in model.named_modules() if name.endswith(first))
    return module.weight.shape[1 if _stored_in_out(module) else 0]


def check(model, key: str) -> None:
    """A model this module can prune; `key` names where it came from."""
    family = families.for_model_type(model.config.model_type)
    if not family.depth_fields or not family.ffn:
        raise UserError(f"{key}: a '{model.config.model_type}' model cannot be pruned here; pruning knows "
                        f"{', '.join(f.name for f in families.FAMILIES.values() if f.depth_fields and f.ffn)}")


def check_layout(model) -> None:
    """A model whose feed-forward blocks match one of its family's layouts (the command names the flag)."""
    family = families.for_model_type(model.config.model_type)
    if ffn_layout(model) is None:
        known = "; ".join(" + ".join(ff.inputs) + " → " + ff.output for ff in family.ffn)
        raise UserError(f"{type(model).__name__} has none of the {family.name} feed-forward layouts lmctl "
                        f"knows ({known}); prune its layers only (--layers)")


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
