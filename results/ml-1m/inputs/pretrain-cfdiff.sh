#!/bin/bash
# session 14: ml-1m's CF-Diff start (the benchmark's start, runs/cfdiff-ml1m/best.pt, is lost): the README's default
# pretraining, as pretrain-diffrec.sh for DiffRec, selected on NDCG@20, seed 0, one core.
cd "$(dirname "$0")/../../.."
. /work/venv/bin/activate
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
OUT=${1:-/work/runs/s14/ml1m/cfdiff}
mkdir -p "$(dirname "$OUT")"
python scripts/pretrain.py --backbone cfdiff --data ../shared/datasets/ml-1m --out $OUT --metric ndcg@20 --seed 0 \
  --device cpu --no-progress > $OUT.log 2>&1
