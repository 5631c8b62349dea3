#!/bin/bash
# Probe ab (session 11, seed 0): probe aa's 16 copies x 64 users lost to the shipped 8 x 128 (+8.7% against +16.7%),
# so the other way: 4 copies x 256 users and 2 copies x 512 users (same 1,024 trajectories and 2,400 updates), side by
# side (each beside one other job, as the benchmark cells); compare with the benchmark's seed-0 ReFiT cell
cd /work/main
. /work/venv/bin/activate
export PYTHONPATH=/work/main OMP_NUM_THREADS=1
S=/work/runs/s10/dreamrec-lr3e-4-k10.pt
for v in copies4 copies2; do
  python scripts/train.py --algo refit --env refit_gym/DreamRec-v0 --data ../shared/datasets/seq-beauty --checkpoint $S \
    --reward refit-seq --hyperparams results/seq-beauty/probes/probe_ab_refit_more_users/$v.yml --seed 0 \
    --eval-freq 4915200 --select-metric ndcg@20 --out /work/runs/s11/ab/$v --no-progress > /work/runs/s11/ab-$v.log 2>&1 &
done
wait
