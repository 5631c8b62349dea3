#!/bin/bash
# Probe tease-target: run.sh NAME SEED OUT   e.g. run.sh h0 0 /work/runs/s20/ml1m/h0-s0
# (NAME: a section of recipes.yml). From ../../inputs/pretrain-t-diffrec.sh's start; validation every 25 updates
# selects, the start competing; test read once for the selected model.
cd "$(dirname "$0")/../../../.."
. /work/venv/bin/activate
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
N=$1; S=$2; R=$3
mkdir -p "$(dirname "$R")"
python -c "import yaml; yaml.safe_dump(yaml.safe_load(open('results/ml-1m/probes/probe_tease_target/recipes.yml'))['$N'], open('$R.yml', 'w'))"
python scripts/train.py --algo pathwise --env refit_gym/TDiffRec-v0 --data ../shared/datasets/ml-1m \
  --checkpoint /work/runs/s15/ml1m/t-diffrec/best.pt --reward graph-score --hyperparams $R.yml --eval-freq 256000 \
  --seed $S --select-metric ndcg@20 --out $R --no-progress > $R.log 2>&1
