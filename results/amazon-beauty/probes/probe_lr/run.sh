#!/bin/bash
# Probe lr (amazon-beauty, session 18): the report's Pathwise recipe from the report's DiffRec start (probe wide's
# 1,000-unit layer) at learning rate LR (pathwise-ease100-lrLR.yml) for UPDATES updates (default 100), validated every EVERY updates (default
# 100), the start competing (validation only); test read once for the selected model. Compare: lr 1e-4, ../probe_wide/run/ (seed 0).
#   run.sh OUT LR [SEED] [UPDATES] [EVERY]    e.g. run.sh /work/runs/s18/ab-lr 3e-4 0 300; LR lin3e-4: linear decay
cd "$(dirname "$0")/../../../.."
. /work/venv/bin/activate
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
R=$1
L=$2
S=${3:-0}
U=${4:-100}
E=${5:-100}
mkdir -p $R
python scripts/train.py --algo pathwise --env refit_gym/DiffRec-v0 --data ../shared/datasets/amazon-beauty \
  --checkpoint /work/runs/s16/ab-wide/pretrain/best.pt --reward graph-score \
  --hyperparams results/amazon-beauty/probes/probe_lr/pathwise-ease100-lr$L.yml --n-timesteps $(( U * 10240 )) \
  --eval-freq $(( E * 10240 )) --seed $S --select-metric ndcg@20 --out $R/lr$L-s$S-u$U --no-progress > $R/lr$L-s$S-u$U.log 2>&1
