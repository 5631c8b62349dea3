#!/bin/bash
# Probe ah (session 12): the oracle rung of the ladder on the benchmark's seq-beauty start; usage: run.sh SEED...
cd "$(dirname "$0")/../../../.."
. /work/venv/bin/activate
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
for s in "$@"; do
  python scripts/ladder.py --env refit_gym/DreamRec-v0 --data ../shared/datasets/seq-beauty \
    --checkpoint /work/runs/s10/dreamrec-lr3e-4-k10.pt --recipe results/seq-beauty/probes/probe_ah_oracle/recipe.yml \
    --out /work/runs/s12/ah/seed$s --rungs start oracle --seeds $s --threads 1 --device cpu > /work/runs/s12/ah-seed$s.log 2>&1
done
