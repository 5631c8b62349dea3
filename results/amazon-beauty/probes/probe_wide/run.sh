#!/bin/bash
# Probe wide (amazon-beauty, session 16): is the DiffRec start's capacity what keeps the chain below EASE? The report's
# start (../../inputs/pretrain-diffrec.sh) is DiffRec's default MLP, hidden [600, 200] (a 200-unit bottleneck between
# 8,643 items); EASE is a full-rank item-item model. Here the same command with one 1,000-unit layer, then the report's
# Pathwise recipe (../../inputs/pathwise-ease100.yml, 100 updates) from it, validated once at the end; the start
# competes in the selection (validation only); test read once for the selected model.
#   run.sh OUT [HIDDEN ...]    e.g. run.sh /work/runs/s16/ab-wide; run.sh /work/runs/s17/ab-wider 2000 (session 17)
cd "$(dirname "$0")/../../../.."
. /work/venv/bin/activate
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
R=$1
shift
HIDDEN=${*:-1000}
mkdir -p $R
python scripts/pretrain.py --backbone diffrec --data ../shared/datasets/amazon-beauty --out $R/pretrain --hidden $HIDDEN \
  --metric ndcg@20 --seed 0 --device cpu --eval-every 3 --patience 4 --max-seconds 1500 --no-progress --no-test \
  > $R/pretrain.log 2>&1
python scripts/train.py --algo pathwise --env refit_gym/DiffRec-v0 --data ../shared/datasets/amazon-beauty \
  --checkpoint $R/pretrain/best.pt --reward graph-score --hyperparams results/amazon-beauty/inputs/pathwise-ease100.yml \
  --eval-freq 1024000 --seed 0 --select-metric ndcg@20 --out $R/pathwise --no-progress > $R/pathwise.log 2>&1
