"""Which words drove a prediction: Integrated Gradients on the input embeddings (captum).

Each token's embedding is moved along a straight line from a baseline (the same sequence with
every non-special token replaced by the pad token) to its real value; the gradients of the
explained output along that path, times the distance, give each token a share of the output's
change, and the shares sum to f(input) - f(baseline) up to the convergence delta reported
with them. Token shares are summed into the words the tokenizer split the text into.

Where the family table lists several token-embedding modules (T5's classifier feeds the input
to its encoder and, shifted by one, to its decoder), the path runs through all of them at once
and a token's share is the sum over the modules.
"""

from __future__ import annotations

import html
import warnings
from pathlib import Path

from lmctl import families


def embedding_modules(model) -> list[tuple[object, int]]:
    """(module, offset) for each module that embeds the input tokens (lmctl.families)."""
    family = families.for_model_type(getattr(model.config, "model_type", None))
    if not family.token_embeddings:
        return [(model.get_input_embeddings(), 0)]
    named = list(model.named_modules())
    found = []
    for suffix, offset in family.token_embeddings:
        matches = [m for name, m in named if name == suffix or name.endswith("." + suffix)]
        if len(matches) != 1:  # a checkpoint of the family laid out otherwise: the generic choice
            return [(model.get_input_embeddings(), 0)]
        found.append((matches[0], offset))
    return found


def explain(model, tokenizer, texts: list[str], pairs: list[str] | None, targets: list[int], max_length: int,
            steps: int = 50, progress=None) -> list[dict]:
    """Per row: words (and pair words) with their attribution to output `targets[i]`, and the
    convergence delta. Rows go one at a time (their lengths differ); the path's `steps` points
    run as batches."""
    import torch
    from captum.attr import LayerIntegratedGradients

    model.eval()
    modules = embedding_modules(model)
    layers = [m for m, _ in modules]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # captum's note that several layers must not feed each other: they don't
        ig = LayerIntegratedGradients(
            lambda input_ids, attention_mask: model(input_ids=input_ids, attention_mask=attention_mask).logits,
            layers if len(layers) > 1 else layers[0])
    device = next(model.parameters()).device
    reference = next(i for i in (tokenizer.pad_token_id, tokenizer.unk_token_id, 0) if i is not None)
    results = []
    for i, text in enumerate(texts):
        pair = pairs[i] if pairs is not None else None
        enc = tokenizer(text, pair, truncation=True, max_length=max_length)
        ids = torch.tensor([enc["input_ids"]], device=device)
        mask = torch.ones_like(ids)
        special = tokenizer.get_special_tokens_mask(enc["input_ids"], already_has_special_tokens=True)
        baseline = torch.tensor([[t if s else reference for t, s in zip(enc["input_ids"], special)]], device=device)
        with torch.enable_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            attributions, delta = ig.attribute(
                ids, baseline, additional_forward_args=(mask,), target=int(targets[i]), n_steps=steps,
                internal_batch_size=max(1, min(steps, 8192 // ids.shape[1])), return_convergence_delta=True)
        if len(layers) == 1:
            attributions = [attributions]
        scores = [0.0] * ids.shape[1]
        for (_, offset), a in zip(modules, attributions):
            per_position = a.sum(-1)[0].tolist()
            for position in range(offset, len(per_position)):
                scores[position - offset] += per_position[position]
        row = _words(enc, tokenizer, text, pair, scores)
        row["convergence_delta"] = round(float(delta.sum()), 6) + 0.0  # no "-0.0"
        results.append(row)
        if progress is not None:
            progress.update(i + 1)
    return results


def _words(enc, tokenizer, text: str, pair: str | None, scores: list[float]) -> dict:
    """Token scores summed into words: {"attributions": [[word, score], ...], "pair_attributions": ...}."""
    sides: dict[int, dict] = {0: {}, 1: {}}
    if enc.encodings is not None:  # a fast tokenizer knows each token's word and its characters
        for position, (word, side) in enumerate(zip(enc.word_ids(), enc.sequence_ids())):
            if word is None or side is None:
                continue
            if word not in sides[side]:
                span = enc.word_to_chars(word, sequence_index=side)
                source = text if side == 0 else pair
                sides[side][word] = [source[span.start:span.end].strip(), 0.0]
            sides[side][word][1] += scores[position]
    else:  # a slow tokenizer: the tokens themselves
        tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"])
        special = tokenizer.get_special_tokens_mask(enc["input_ids"], already_has_special_tokens=True)
        for position, (token, s) in enumerate(zip(tokens, special)):
            if not s:
                sides[0][position] = [token, scores[position]]
    row = {"attributions": [[w, round(v, 6)] for w, v in sides[0].values()]}
    if pair is not None:
        row["pair_attributions"] = [[w, round(v, 6)] for w, v in sides[1].values()]
    return row


def write_html(path: Path, records: list[dict], title: str) -> None:
    """A self-contained page: each row's words shaded by attribution (green for the predicted label,
    red against it, opacity relative to the row's largest), with the label, score and delta."""
    from lmctl.rundir import atomic_write_text

    rows = []
    for i, r in enumerate(records, 1):
        words = r["attributions"] + r.get("pair_attributions", [])
        top = max((abs(v) for _, v in words), default=0.0) or 1.0
        shaded = [_shade(r["attributions"], top)]
        if "pair_attributions" in r:
            shaded.append(_shade(r["pair_attributions"], top))
        label = r.get("label", "value")  # regression: the predicted value, explained upwards
        value = r["score"] if "score" in r else r.get("value")
        rows.append(
            f'<tr><td class="n">{i}</td><td class="label">{html.escape(str(label))}</td>'
            f'<td class="num">{value:.3f}</td><td class="text">{"<hr>".join(shaded)}</td>'
            f'<td class="num">{r["convergence_delta"]:.1e}</td></tr>')
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font: 15px/1.5 system-ui, sans-serif; margin: 24px; color: #111; background: #fff; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 6px 8px; vertical-align: top; text-align: left; }}
td.num, td.n {{ text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }}
td.label {{ font-weight: 600; white-space: nowrap; }}
span.w {{ padding: 1px 2px; border-radius: 3px; }}
hr {{ border: 0; border-top: 1px dashed #bbb; margin: 4px 0; }}
.key span {{ padding: 1px 6px; border-radius: 3px; margin-right: 8px; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="key">Integrated Gradients on the input embeddings, for the predicted label (regression: towards a
higher value):
<span style="background: rgba(22, 163, 74, 0.8)">for it</span>
<span style="background: rgba(220, 38, 38, 0.8)">against it</span>
(shade: share of the row's largest; hover a word for its value).</p>
<table><thead><tr><th>#</th><th>label</th><th>score</th><th>text</th><th>delta</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table>
</body></html>
"""
    atomic_write_text(path, page)


def _shade(words: list, top: float) -> str:
    spans = []
    for word, value in words:
        color = "22, 163, 74" if value >= 0 else "220, 38, 38"
        spans.append(f'<span class="w" style="background: rgba({color}, {abs(value) / top:.3f})" '
                     f'title="{value:+.4f}">{html.escape(word)}</span>')
    return " ".join(spans)
