#!/bin/bash
# Probe latest-holdout: run.sh NAME REWARD SEED OUT   e.g. run.sh refit-latest refit 0 /work/runs/s15/ml1m/lh-refit-s0, run.sh graph-recency graph-score 0 /work/runs/s15/ml1m/lh-graph-recency-s0
# (NAME: a section of recipes.yml; REWARD: refit or graph-score). Validation every 25 updates selects; test read once.
cd "$(dirname "$0")/../../../.."
. /work/venv/bin/activate
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
N=$1; RW=$2; S=$3; R=$4
mkdir -p $R
python -c "import yaml, sys; yaml.safe_dump(yaml.safe_load(open('results/ml-1m/probes/probe_latest_holdout/recipes.yml'))['$N'], open('$R.yml', 'w'))"
python scripts/train.py --algo pathwise --env refit_gym/TDiffRec-v0 --data ../shared/datasets/ml-1m \
  --checkpoint /work/runs/s15/ml1m/t-diffrec/best.pt --reward $RW --hyperparams $R.yml --eval-freq 256000 \
  --seed $S --select-metric ndcg@20 --out $R --no-progress > $R.log 2>&1
