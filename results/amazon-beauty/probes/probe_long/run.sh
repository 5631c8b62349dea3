#!/bin/bash
# Probe long (amazon-beauty, session 18): the report's Pathwise recipe (../../inputs/pathwise-ease100.yml) from the
# report's DiffRec start (probe wide's 1,000-unit layer) for UPDATES updates instead of 100, validated every 100, the
# start competing (validation only); test read once for the selected model. The report's seed-0 curve rose 0.0623,
# 0.0655, 0.0666, 0.0670 at updates 25, 50, 75, 100: does it keep rising?
#   run.sh OUT [UPDATES] [SEED]    e.g. run.sh /work/runs/s18/ab-long 300
cd "$(dirname "$0")/../../../.."
. /work/venv/bin/activate
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
R=$1
U=${2:-300}
S=${3:-0}
mkdir -p $R
python scripts/train.py --algo pathwise --env refit_gym/DiffRec-v0 --data ../shared/datasets/amazon-beauty \
  --checkpoint /work/runs/s16/ab-wide/pretrain/best.pt --reward graph-score \
  --hyperparams results/amazon-beauty/inputs/pathwise-ease100.yml --n-timesteps $(( U * 10240 )) --eval-freq 1024000 \
  --seed $S --select-metric ndcg@20 --out $R/u$U-s$S --no-progress > $R/u$U-s$S.log 2>&1
