#!/bin/bash
# session 15: ml-1m's T-DiffRec start (backbone t-diffrec: DiffRec on the recency-weighted history, time_weights
# [0.1, 1.0], T-DiffRec's linear weights over each user's training list in file order; ../probes/probe_recency):
# pretrain-diffrec.sh's command (the README's default pretraining, NDCG@20 selection, seed 0, one core) with the
# backbone changed and DiffRec's scenario architecture given explicitly (the scenario's backbone_kwargs apply to its
# default backbone only: hidden [600, 200], emb_size 10, dropout 0.5, 3,622,320 parameters as DiffRec's start).
cd "$(dirname "$0")/../../.."
. /work/venv/bin/activate
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
OUT=${1:-/work/runs/s15/ml1m/t-diffrec}
mkdir -p "$(dirname "$OUT")"
python scripts/pretrain.py --backbone t-diffrec --data ../shared/datasets/ml-1m --out $OUT --metric ndcg@20 --seed 0 \
  --hidden 600 200 --emb-size 10 --dropout 0.5 --device cpu --no-progress > $OUT.log 2>&1
