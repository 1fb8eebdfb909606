"""Data generators: the bundled samples under configs/finetune/data, and the SQuAD reranking set."""
