#!/bin/bash
# Probe ae (session 11): 16 copies x 128 users an update with a decaying learning rate, seeds given as arguments,
# side by side; compare with the benchmark cells and probe ad of the same seeds
cd /work/main
. /work/venv/bin/activate
export PYTHONPATH=/work/main OMP_NUM_THREADS=1
S=/work/runs/s10/dreamrec-lr3e-4-k10.pt
for s in "$@"; do
  python scripts/train.py --algo refit --env refit_gym/DreamRec-v0 --data ../shared/datasets/seq-beauty --checkpoint $S \
    --reward refit-seq --hyperparams results/seq-beauty/probes/probe_ae_refit_16copies/copies16-lin.yml --seed $s \
    --eval-freq 9830400 --select-metric ndcg@20 --out /work/runs/s11/ae/seed$s --no-progress > /work/runs/s11/ae-seed$s.log 2>&1 &
done
wait
