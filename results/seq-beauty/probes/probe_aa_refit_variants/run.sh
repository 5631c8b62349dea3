#!/bin/bash
# Probe aa (session 10, seed 0): two variants of the benchmark ReFiT recipe from the lr-3e-4 start, side by side
# (each beside one other job, as the benchmark cells); compare with the benchmark's seed-0 ReFiT cell
cd /work/main
. /work/venv/bin/activate
export PYTHONPATH=/work/main OMP_NUM_THREADS=1
S=/work/runs/s10/dreamrec-lr3e-4-k10.pt
for v in copies16 last2; do
  python scripts/train.py --algo refit --env refit_gym/DreamRec-v0 --data ../shared/datasets/seq-beauty --checkpoint $S \
    --reward refit-seq --hyperparams results/seq-beauty/probes/probe_aa_refit_variants/$v.yml --seed 0 \
    --eval-freq 4915200 --select-metric ndcg@20 --out /work/runs/s10/aa/$v --no-progress > /work/runs/s10/aa-$v.log 2>&1 &
done
wait
