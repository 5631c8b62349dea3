#!/bin/bash
# Probe holdout (amazon-beauty, session 17): Pathwise from probe wide's 1,000-unit start with the reward's holdout at 0
# (pathwise-ease100-h0.yml), seed 0, validated once at the end, the start competing (validation only); test read once
# for the selected model. Compare: the same start with the report's recipe (holdout 0.2), ../probe_wide/run/.
#   run.sh OUT [SEED]    e.g. run.sh /work/runs/s17/ab-h0
cd "$(dirname "$0")/../../../.."
. /work/venv/bin/activate
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
R=$1
S=${2:-0}
mkdir -p $R
python scripts/train.py --algo pathwise --env refit_gym/DiffRec-v0 --data ../shared/datasets/amazon-beauty \
  --checkpoint /work/runs/s16/ab-wide/pretrain/best.pt --reward graph-score \
  --hyperparams results/amazon-beauty/probes/probe_holdout/pathwise-ease100-h0.yml --eval-freq 1024000 --seed $S \
  --select-metric ndcg@20 --out $R/pathwise-s$S --no-progress > $R/pathwise-s$S.log 2>&1
