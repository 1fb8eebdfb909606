"""Corpus BLEU for machine translation and generation, via `sacrebleu`."""

import evaluate
import sacrebleu

from lmctl.metrics import _base  # by module: evaluate takes the first Metric class it finds here

_DESCRIPTION = """
BLEU scores generated text against one or more references by modified n-gram precision (n = 1..4),
combined as a geometric mean and multiplied by a brevity penalty for outputs shorter than the
references. This module computes corpus-level BLEU with sacrebleu, whose fixed tokenisation makes
scores comparable across papers. Scores are in [0, 100].

Predictions may have different numbers of references; missing references are simply ignored.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): generated texts (detokenised).
    references (list of str, or list of list of str): one reference, or several, per prediction.
    smooth_method (str): "none", "floor", "add-k" or "exp". Defaults to "exp".
    smooth_value (float): value for the "floor" and "add-k" methods. Defaults to sacrebleu's.
    lowercase (bool): lowercase before scoring. Defaults to False.
    tokenize (str): sacrebleu tokeniser, e.g. "13a" (default), "intl", "char", "zh", "none".
    use_effective_order (bool): ignore n-gram orders with no matches (sentence-level use). Defaults to False.
Returns:
    bleu (float): corpus BLEU in [0, 100].
    precisions (list of float): modified n-gram precisions, in [0, 100].
    brevity_penalty (float): in (0, 1].
    sys_len (int), ref_len (int): hypothesis and effective reference lengths in tokens.
Examples:
    >>> bleu = evaluate.load("lmctl/metrics/bleu.py")
    >>> bleu.compute(predictions=["the cat sat on the mat"], references=[["the cat sat on the mat"]])["bleu"]
    100.00000000000004
"""

_CITATION = """
@inproceedings{papineni-etal-2002-bleu,
    title = "{B}leu: a Method for Automatic Evaluation of Machine Translation",
    author = "Papineni, Kishore and Roukos, Salim and Ward, Todd and Zhu, Wei-Jing",
    booktitle = "Proceedings of the 40th Annual Meeting of the Association for Computational Linguistics",
    year = "2002",
    url = "https://aclanthology.org/P02-1040",
    pages = "311--318",
}
@inproceedings{post-2018-call,
    title = "A Call for Clarity in Reporting {BLEU} Scores",
    author = "Post, Matt",
    booktitle = "Proceedings of the Third Conference on Machine Translation: Research Papers",
    year = "2018",
    url = "https://aclanthology.org/W18-6319",
    pages = "186--191",
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Bleu(_base.PairMetric):
    _doc, _args_doc, _citation = _DESCRIPTION, _KWARGS_DESCRIPTION, _CITATION
    _url = "https://github.com/mjpost/sacrebleu"

    def _features(self):
        return _base.text_references()

    def _compute(
        self,
        predictions,
        references,
        smooth_method="exp",
        smooth_value=None,
        lowercase=False,
        tokenize="13a",
        use_effective_order=False,
    ):
        references = [[ref] if isinstance(ref, str) else list(ref) for ref in references]
        num_streams = max((len(refs) for refs in references), default=0)
        # sacrebleu wants one stream per reference position; None pads the examples with fewer
        # references, which sacrebleu skips instead of scoring against an empty string.
        streams = [
            [refs[i] if i < len(refs) else None for refs in references] for i in range(num_streams)
        ]
        result = sacrebleu.corpus_bleu(
            predictions,
            streams,
            smooth_method=smooth_method,
            smooth_value=smooth_value,
            lowercase=lowercase,
            tokenize=tokenize,
            use_effective_order=use_effective_order,
        )
        return {
            "bleu": float(result.score),
            "precisions": [float(p) for p in result.precisions],
            "brevity_penalty": float(result.bp),
            "sys_len": int(result.sys_len),
            "ref_len": int(result.ref_len),
        }
