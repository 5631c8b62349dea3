#!/bin/bash
# session 12: the DiffRec start of amazon-beauty's rows (the benchmark's GPU start and session 6's CPU start are lost).
# Validation every 3 epochs on the default 1,024-user sample, patience 4 validations; the kept checkpoint gets the
# full pass. (A first run with the default adaptive schedule validated after epoch 0 and planned the next one after
# epoch 39 (stopped by hand at epoch 29: pretrain-diffrec-adaptive-stopped.*): on this data a sample validation costs
# 11 s, an epoch 14 s, and the final full pass 166 s, which the
# quarter-of-the-wall-clock rule charges up front; session 6 found this model's validation peak near epoch 14.)
cd "$(dirname "$0")/../../.."
. /work/venv/bin/activate
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
python scripts/pretrain.py --backbone diffrec --data ../shared/datasets/amazon-beauty --out /work/runs/s12/ab/diffrec \
  --metric ndcg@20 --seed 0 --device cpu --eval-every 3 --patience 4 --max-seconds 1500 --no-progress \
  > /work/runs/s12/ab/pretrain-diffrec.log 2>&1
