"""Tools around lmctl, run from the repository root with `python -m`:

    scripts.bench.finetune     lmctl finetune against a plain Trainer script (make bench)
    scripts.bench.pretrain     lmctl pretrain against a plain Trainer script, per objective
    scripts.pretrain_gain      the pretraining study: pretrain -> finetune against random init (make pretrain-demo)
    scripts.bench.lora         LoRA against full finetuning, each at its best learning rate
    scripts.baseline           a constant or TF-IDF + logistic-regression baseline written as a run directory (for lmctl compare)
    scripts.data.*             generators of the bundled sample data and of the SQuAD reranking set

scripts/demo.sh is `make demo`. Methods and results: docs/benchmarks.md, docs/pretraining-study.md.
"""
