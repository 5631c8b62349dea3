#!/bin/bash
# Probe ag (session 12): antithetic (mirrored) noise for the copies of a user, usage: run.sh YML_NAME SEED...
# (e.g. run.sh anti8 0 1); compare with probe ad (8 copies, the same seeds) and probe af (32 copies)
cd "$(dirname "$0")/../../../.."
. /work/venv/bin/activate
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
S=/work/runs/s10/dreamrec-lr3e-4-k10.pt
Y=$1; shift
mkdir -p /work/runs/s12/ag
for s in "$@"; do
  python scripts/train.py --algo refit --env refit_gym/DreamRec-v0 --data ../shared/datasets/seq-beauty --checkpoint $S \
    --reward refit-seq --hyperparams results/seq-beauty/probes/probe_ag_refit_antithetic/$Y.yml --seed $s \
    --eval-freq 4915200 --select-metric ndcg@20 --out /work/runs/s12/ag/$Y-seed$s --no-progress \
    > /work/runs/s12/ag/$Y-seed$s.log 2>&1 &
done
wait
