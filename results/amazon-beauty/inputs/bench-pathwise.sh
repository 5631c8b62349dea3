#!/bin/bash
# session 12: amazon-beauty's DiffRec rows from a new CPU start (the benchmark's GPU start and the session-6 CPU start
# are lost): the pretrained row, Pathwise (pathwise-ease100.yml) and its continued-pretraining control, 3 seeds, two
# cells at a time so every cell runs beside exactly one other job. Argument: the round (1: pretrained + Pathwise seeds
# 0 and 1; 2: Pathwise seed 2 and the control of seed 0; 3: the controls of seeds 1 and 2).
# The start: python scripts/pretrain.py --backbone diffrec --data ../shared/datasets/amazon-beauty \
#   --out /work/runs/s12/ab/diffrec --metric ndcg@20 --seed 0 --device cpu --max-seconds 2100
cd "$(dirname "$0")/../../.."
. /work/venv/bin/activate
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
START=/work/runs/s12/ab/diffrec/best.pt
B="python scripts/benchmark.py --data ../shared/datasets/amazon-beauty --backbones diffrec --checkpoint-diffrec $START
 --threads 1 --device cpu --skip-scaling --eval-points 4 --reward graph-score
 --hyperparams pathwise=results/amazon-beauty/inputs/pathwise-ease100.yml --continued-budget pathwise"
O=/work/runs/s12/ab/bench
mkdir -p $O
cell() { $B --out $O/s$1 --methods $2 --seeds $1 > $O/s$1-$3.log 2>&1; }
case $1 in
  1) cell 0 "pretrained pathwise" pathwise & cell 1 "pretrained pathwise" pathwise & wait ;;
  2) cell 2 "pretrained pathwise" pathwise & cell 0 continued continued & wait ;;
  3) cell 1 continued continued & cell 2 continued continued & wait ;;
esac
echo done > $O/DONE$1
