"""The pretrain -> finetune experiment: its held-out split (whole sentences, none of their phrases
left) and its bag-of-words reference."""

import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location(
    "pretrain_gain", Path(__file__).parent.parent / "scripts" / "pretrain_gain.py")
pretrain_gain = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pretrain_gain)

# SST-2 style: each sentence followed by phrases cut from its parse tree.
LINES = [
    "a gorgeous , witty , seductive movie .", "a gorgeous", "witty , seductive movie", "seductive",
    "the plot is nothing but boilerplate clichés", "the plot", "nothing but boilerplate clichés",
    "an utterly charming and hilarious film", "charming", "hilarious film",
    "it 's a bore", "bore", "a gorgeousness of colour",
]


def test_held_out_sentences_are_whole_and_their_phrases_leave_the_corpus():
    held, corpus = pretrain_gain.hold_out_sentences(LINES, 2, seed=3)
    assert len(held) == 2
    for sentence in held:
        # A whole sentence: no other line contains it.
        assert not any(sentence in line for line in LINES if line != sentence)
        for line in corpus:
            assert f" {line} " not in f" {sentence} ", (line, sentence)
    # Every line outside the held-out sentences stays, including word-prefix look-alikes.
    removed = set(LINES) - set(corpus)
    assert all(any(f" {r} " in f" {h} " for h in held) for r in removed)
    assert len(corpus) == len(LINES) - len(removed) and removed >= set(held)


def test_a_phrase_is_never_chosen_as_a_held_out_sentence():
    for seed in range(20):
        held, _ = pretrain_gain.hold_out_sentences(LINES, 3, seed=seed)
        assert not set(held) & {"a gorgeous", "the plot", "charming", "bore", "seductive", "hilarious film",
                                "witty , seductive movie", "nothing but boilerplate clichés"}


def test_bag_of_words_baseline_learns_polarity_words():
    good, bad = ["great", "charming", "witty", "lovely"], ["dull", "awful", "boring", "clumsy"]
    subjects = ["the film", "this movie", "the plot", "its cast", "the ending"]
    train = [(f"{s} is {w}", "1" if w in good else "0") for s in subjects[:3] for w in good + bad]
    dev = [(f"{s} is {w}", "1" if w in good else "0") for s in subjects[3:] for w in good + bad]
    accuracy, c = pretrain_gain.bag_of_words_baseline(train, dev)
    assert accuracy == 1.0 and c in (0.3, 1.0, 3.0, 10.0, 30.0)
    # Labels that no word predicts: the reference falls to chance, it is not a constant.
    shuffled = [(text, "1" if i % 2 else "0") for i, (text, _) in enumerate(sorted(dev))]
    assert pretrain_gain.bag_of_words_baseline(train, shuffled)[0] <= 0.75
