#!/bin/bash
# session 14: pretrain-strong-res.sh early-stopped at epoch 18 (best chain 0.0337 at epoch 12; its encoder's head was
# still rising: 0.0463 at epoch 12): a copy of that run resumed with patience 15 instead of 6 (everything else the same;
# --max-seconds 2100 counts the first session's seconds too).
set -e
SRC=${1:-/work/runs/s14/pre-ce-res-d02}; OUT=${2:-/work/runs/s14/pre-ce-res-d02-p15}
[ -d $OUT ] || cp -r $SRC $OUT
rm -f $OUT/.lock
python scripts/pretrain.py --backbone dreamrec-ce --data ../shared/datasets/seq-beauty --out $OUT --inference-steps 10 \
  --eval-every 1 --full-validation --metric ndcg@20 --patience 15 --epochs 1000 --max-seconds 2100 --seed 0 --device cpu \
  --dropout 0.2 --backbone-arg residual=true --no-progress --resume
