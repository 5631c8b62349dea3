#!/bin/bash
# Probe z (session 10, seed 0): the benchmark's seed-0 ReFiT cell from the lr-3e-4 start (2,400 updates), resumed to
# 4,800 updates with the same recipe and a validation every 480 updates: is the gain still growing?
cd /work/main
. /work/venv/bin/activate
export PYTHONPATH=/work/main OMP_NUM_THREADS=1
SRC=/work/runs/s10/b/s0/finetune/dreamrec-refit/seed0
OUT=/work/runs/s10/z-refit-4800-s0
rm -rf $OUT && cp -r $SRC $OUT
python scripts/train.py --algo refit --env refit_gym/DreamRec-v0 --data ../shared/datasets/seq-beauty \
  --checkpoint /work/runs/s10/dreamrec-lr3e-4-k10.pt --reward refit-seq \
  --hyperparams /work/runs/s10/b/s0/hyperparams/refit-dreamrec.yml -n 49152000 --eval-freq 4915200 \
  --select-metric ndcg@20 --seed 0 --device cpu --out $OUT --resume --no-progress > $OUT.log 2>&1
