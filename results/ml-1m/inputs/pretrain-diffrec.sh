#!/bin/bash
# session 13: ml-1m's DiffRec start (the benchmark's start, /work/main/runs/diffrec-ml1m/best.pt, and the ladders'
# /work/runs/diffrec-ml1m/best.pt are lost): the README's default pretraining (adaptive validation on the fixed sample
# of 1,024 validation users, the kept checkpoint scored on every user), selected on NDCG@20, seed 0, one core.
cd "$(dirname "$0")/../../.."
. /work/venv/bin/activate
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
OUT=${1:-/work/runs/s13/ml1m/diffrec}
mkdir -p "$(dirname "$OUT")"
python scripts/pretrain.py --backbone diffrec --data ../shared/datasets/ml-1m --out $OUT --metric ndcg@20 --seed 0 \
  --device cpu --no-progress > $OUT.log 2>&1
