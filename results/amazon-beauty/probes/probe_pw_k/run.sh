#!/bin/bash
# Probe pw-k: run.sh K SEED OUT, e.g. run.sh 5 0 /work/runs/s16/ab-pwk5-s0. Validation (every 100 updates) selects
# among the evaluations and the start; test is read once, for the selected model.
cd "$(dirname "$0")/../../../.."
. /work/venv/bin/activate
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
K=$1; S=$2; R=$3
mkdir -p $R
python -c "import yaml; d = yaml.safe_load(open('results/amazon-beauty/probes/probe_pw_k/recipe.yml'));
d['refit_gym/DiffRec-v0']['train_last_k'] = $K; yaml.safe_dump(d, open('$R.yml', 'w'))"
python scripts/train.py --algo pathwise --env refit_gym/DiffRec-v0 --data ../shared/datasets/amazon-beauty \
  --checkpoint /work/runs/s12/ab/diffrec/best.pt --reward graph-score --hyperparams $R.yml --eval-freq 1024000 \
  --seed $S --select-metric ndcg@20 --out $R --no-progress > $R.log 2>&1
