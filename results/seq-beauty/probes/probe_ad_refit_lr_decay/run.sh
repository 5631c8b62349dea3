#!/bin/bash
# Probe ad (session 11): the benchmark ReFiT recipe with a linearly decaying learning rate (lin_2e-3), seeds given as
# arguments, side by side; compare with the benchmark's cells of the same seeds
cd /work/main
. /work/venv/bin/activate
export PYTHONPATH=/work/main OMP_NUM_THREADS=1
S=/work/runs/s10/dreamrec-lr3e-4-k10.pt
for s in "$@"; do
  python scripts/train.py --algo refit --env refit_gym/DreamRec-v0 --data ../shared/datasets/seq-beauty --checkpoint $S \
    --reward refit-seq --hyperparams results/seq-beauty/probes/probe_ad_refit_lr_decay/lin2e-3.yml --seed $s \
    --eval-freq 4915200 --select-metric ndcg@20 --out /work/runs/s11/ad/seed$s --no-progress > /work/runs/s11/ad-seed$s.log 2>&1 &
done
wait
