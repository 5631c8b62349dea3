#!/bin/bash
# session 13: the strong DreamRec variant (backbone dreamrec-ce: DreamRec's loss, MSE on x0 + 0.1 x the x0 estimate's
# full-softmax cross-entropy, plus 1.0 x the encoder state's own cross-entropy, c E^T) pretrained on seq-beauty with the
# scenario's defaults (lr 1e-3, batch 256), its chain respaced to 10 steps from the start (--inference-steps 10, so
# validation selects on the chain the rows run), every validation user scored after every epoch, patience 6, at most
# 2,100 s on one core.
set -e
OUT=${1:-/work/runs/s13/pre-ce}
python scripts/pretrain.py --backbone dreamrec-ce --data ../shared/datasets/seq-beauty --out $OUT --inference-steps 10 \
  --eval-every 1 --full-validation --metric ndcg@20 --patience 6 --epochs 1000 --max-seconds 2100 --seed 0 --device cpu \
  --no-progress
