#!/bin/bash
# session 14: the strong DreamRec variant with a residual denoiser (x0 estimate = the guidance vector c + the network's
# output, --backbone-arg residual=true) and SASRec's encoder dropout, 0.2 instead of the
# scenario's 0.1; everything else as pretrain-strong.sh (lr 1e-3, batch 256, chain respaced to 10 steps, every
# validation user after every epoch, patience 6, at most 2,100 s on one core).
set -e
OUT=${1:-/work/runs/s14/pre-ce-res-d02}
python scripts/pretrain.py --backbone dreamrec-ce --data ../shared/datasets/seq-beauty --out $OUT --inference-steps 10 \
  --eval-every 1 --full-validation --metric ndcg@20 --patience 6 --epochs 1000 --max-seconds 2100 --seed 0 --device cpu \
  --dropout 0.2 --backbone-arg residual=true --no-progress
