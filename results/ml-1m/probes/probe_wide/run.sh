#!/bin/bash
# Probe wide (ml-1m, session 17): does the width that lifted amazon-beauty's DiffRec start and its Pathwise row
# (../../../amazon-beauty/probes/probe_wide/) carry to ml-1m? The start's pretraining is the report's
# (../../inputs/pretrain-diffrec.sh, pretrain-t-diffrec.sh: the README's default schedule, NDCG@20 selection, seed 0)
# with one hidden layer of HIDDEN units instead of [600, 200]; then the report's Pathwise recipe
# (../../inputs/pathwise-ease4000.yml, 100 updates) from it, validated once at the end, the start competing in the
# selection (validation only); test read once for the selected model.
#   run.sh BACKBONE OUT [HIDDEN ...]    BACKBONE diffrec or t-diffrec; e.g. run.sh diffrec /work/runs/s17/ml1m-wide 1000
cd "$(dirname "$0")/../../../.."
. /work/venv/bin/activate
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
B=$1
R=$2
shift 2
HIDDEN=${*:-1000}
case $B in diffrec) ENV=refit_gym/DiffRec-v0 ;; t-diffrec) ENV=refit_gym/TDiffRec-v0 ;; *) echo "BACKBONE: diffrec or t-diffrec, got $B" >&2; exit 2 ;; esac
mkdir -p $R
python scripts/pretrain.py --backbone $B --data ../shared/datasets/ml-1m --out $R/pretrain --metric ndcg@20 --seed 0 \
  --hidden $HIDDEN --emb-size 10 --dropout 0.5 --device cpu --no-progress > $R/pretrain.log 2>&1
python scripts/train.py --algo pathwise --env $ENV --data ../shared/datasets/ml-1m --checkpoint $R/pretrain/best.pt \
  --reward graph-score --hyperparams results/ml-1m/inputs/pathwise-ease4000.yml --eval-freq 1024000 --seed 0 \
  --select-metric ndcg@20 --out $R/pathwise --no-progress > $R/pathwise.log 2>&1
