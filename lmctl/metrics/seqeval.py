"""Entity-level precision, recall and F1 of tag sequences (NER), through the `seqeval` package."""

import warnings

import datasets
import evaluate
from seqeval import scheme as schemes
from seqeval.metrics import accuracy_score, classification_report

from lmctl.metrics import _base  # by module: evaluate takes the first Metric class it finds here

_DESCRIPTION = """
Scores tagged sequences by their entities, as the CoNLL shared tasks do: an entity counts as found
only when its type and all its words match. The default mode chunks tags as conlleval does (an
I- tag after O or after another type starts an entity); `mode="strict"` with a `scheme` (IOB2,
IOBES, ...) takes only what the scheme allows. Token accuracy is the share of tags predicted right.
The interface is that of the Hub's `seqeval` module, so this file stands in for
`evaluate.load("seqeval")` offline. One difference: in strict mode a tag outside the scheme (X-PER)
is read as O, where seqeval itself raises an error.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of list of str): predicted tags, one list per sentence.
    references (list of list of str): gold tags, one list per sentence, each as long as its prediction.
    suffix (bool): the tag's prefix comes last (PER-B). Defaults to False.
    scheme (str): "IOB1", "IOB2", "IOE1", "IOE2", "IOBES" or "BILOU"; strict mode's tagging scheme.
    mode (str): None (conlleval's chunking) or "strict".
    sample_weight (list of float): per-sentence weights. Defaults to None.
    zero_division (float or "warn"): a score with no entity to divide by. Defaults to 0.
Returns:
    one dict per entity type ({"precision", "recall", "f1", "number"}: number is its gold entities),
    and overall_precision, overall_recall, overall_f1 (micro averages over entities), overall_accuracy.
Examples:
    >>> seqeval = evaluate.load("lmctl/metrics/seqeval.py")
    >>> seqeval.compute(predictions=[["B-PER", "I-PER", "O"]], references=[["B-PER", "I-PER", "O"]])["overall_f1"]
    1.0
"""

_CITATION = """
@misc{seqeval,
  title={{seqeval}: A Python framework for sequence labeling evaluation},
  url={https://github.com/chakki-works/seqeval},
  note={Software available from https://github.com/chakki-works/seqeval},
  author={Hiroki Nakayama},
  year={2018},
}
"""


def _in_scheme(tags: list[str], allowed: set[str], suffix: bool) -> list[str]:
    """Tags whose prefix the scheme lacks read as O (seqeval's strict mode raises on them)."""
    def prefix(tag: str) -> str:
        return tag.rsplit("-", 1)[-1] if suffix else tag.split("-", 1)[0]

    return [t if t == "O" or ("-" in t and prefix(t) in allowed) else "O" for t in tags]


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Seqeval(_base.PairMetric):
    _doc, _args_doc, _citation = _DESCRIPTION, _KWARGS_DESCRIPTION, _CITATION
    _url = "https://github.com/chakki-works/seqeval"

    def _features(self):
        tags = datasets.Sequence(datasets.Value("string"))
        return datasets.Features({"predictions": tags, "references": tags})

    def _compute(self, predictions, references, suffix=False, scheme=None, mode=None, sample_weight=None,
                 zero_division=0):
        # Token accuracy on the tags as given (strict mode's reading below changes only the chunking).
        accuracy = float(accuracy_score(y_true=references, y_pred=predictions)) if references else 0.0
        if mode == "strict" and scheme is not None:
            chosen = getattr(schemes, scheme)
            allowed = {p.name for p in chosen.allowed_prefix}
            predictions = [_in_scheme(p, allowed, suffix) for p in predictions]
            references = [_in_scheme(r, allowed, suffix) for r in references]
            scheme = chosen
        with warnings.catch_warnings():
            # "X-PER seems not to be NE tag", once per tag: the task counts such tags once, in one warning.
            warnings.simplefilter("ignore")
            report = classification_report(y_true=references, y_pred=predictions, suffix=suffix, output_dict=True,
                                           scheme=scheme, mode=mode, sample_weight=sample_weight,
                                           zero_division=zero_division)
        report.pop("macro avg")
        report.pop("weighted avg")
        overall = report.pop("micro avg")
        scores = {type_: {"precision": float(s["precision"]), "recall": float(s["recall"]),
                          "f1": float(s["f1-score"]), "number": int(s["support"])} for type_, s in report.items()}
        scores.update(overall_precision=float(overall["precision"]), overall_recall=float(overall["recall"]),
                      overall_f1=float(overall["f1-score"]), overall_accuracy=accuracy)
        return scores
