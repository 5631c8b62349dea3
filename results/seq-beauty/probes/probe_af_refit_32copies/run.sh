#!/bin/bash
# Probe af (session 11): 32 copies x 128 users an update with a decaying learning rate, seeds given as arguments,
# side by side; compare with the benchmark cells and probe ad of the same seeds
cd /work/main
. /work/venv/bin/activate
export PYTHONPATH=/work/main OMP_NUM_THREADS=1
S=/work/runs/s10/dreamrec-lr3e-4-k10.pt
for s in "$@"; do
  python scripts/train.py --algo refit --env refit_gym/DreamRec-v0 --data ../shared/datasets/seq-beauty --checkpoint $S \
    --reward refit-seq --hyperparams results/seq-beauty/probes/probe_af_refit_32copies/copies32-lin.yml --seed $s \
    --eval-freq 19660800 --select-metric ndcg@20 --out /work/runs/s11/af/seed$s --no-progress > /work/runs/s11/af-seed$s.log 2>&1 &
done
wait
