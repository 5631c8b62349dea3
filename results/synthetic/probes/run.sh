#!/usr/bin/env bash
# The synthetic-default probes that chose the main job's recipe (validation selection; see README.md).
# usage: bash results/synthetic/probes/run.sh RUNS_DIR     then: python results/synthetic/probes/collect.py RUNS_DIR
set -euo pipefail
runs=${1:?RUNS_DIR}
here=$(dirname "$0")
for s in 0 1 2; do   # the main job's pretraining (30 epochs, seed s)
  python scripts/pretrain.py --backbone diffrec --data synthetic --out "$runs/pre$s" --epochs 30 --seed $s --device cpu --no-progress
done
probe() {  # probe NAME SEED RUNG
  python scripts/ladder.py --env refit_gym/DiffRec-v0 --data synthetic --checkpoint "$runs/pre$2/best.pt" \
    --recipe "$here/recipes/$1.yml" --out "$runs/$1-s$2" --seeds $2 --threads 1 --device cpu --rungs start $3
}
for v in v1 v2 v3 v4 v5; do probe $v 0 pathwise; done
for v in r1 r2 r3; do probe $v 0 refit; done
for s in 1 2; do probe v1 $s pathwise; probe v2 $s pathwise; probe r2 $s refit; done
