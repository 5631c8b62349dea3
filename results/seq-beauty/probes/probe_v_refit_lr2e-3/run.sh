#!/bin/bash
# session 9 probes u (DreamRec pretraining at lr 3e-4, from scratch, 20 min) and v (ReFiT at lr 2e-3, seed 0)
cd /work/main
. /work/venv/bin/activate
export PYTHONPATH=/work/main OMP_NUM_THREADS=1
python scripts/pretrain.py --backbone dreamrec --data ../shared/datasets/seq-beauty --out /work/runs/probe-u/lr3e-4 \
  --lr 3e-4 --epochs 1000 --max-seconds 1200 --patience 0 --full-validation --metric ndcg@20 --seed 0 --device cpu \
  --no-progress > /work/runs/probe-u/lr3e-4.log 2>&1 &
sed 's/learning_rate: !!float 1e-3/learning_rate: !!float 2e-3/' results/seq-beauty/inputs/refit-crn-k10-2400.yml > /work/runs/probe-u/refit-lr2e-3.yml
python scripts/train.py --algo refit --env refit_gym/DreamRec-v0 --data ../shared/datasets/seq-beauty \
  --checkpoint /work/runs/dreamrec-seqbeauty-ce01-k10.pt --reward refit-seq --hyperparams /work/runs/probe-u/refit-lr2e-3.yml \
  --seed 0 --eval-freq 4915200 --select-metric ndcg@20 --out /work/runs/probe-u/refit-lr2e-3 > /work/runs/probe-u/refit-lr2e-3.log 2>&1
wait
