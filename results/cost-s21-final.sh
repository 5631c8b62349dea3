#!/bin/bash
# Session 21's final cost measurement (README, "Cost and several processes"): the four backbones at one commit,
# alone, one after another, one thread; OUT defaults to runs/cost-s21 (the kept files are results/*/cost/*-s21.*).
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
O=${1:-runs/cost-s21}
mkdir -p $O
python scripts/bench_cost.py --data ../shared/datasets/seq-beauty --inference-steps 10 --threads 1 --json > $O/dreamrec.json 2> $O/dreamrec.log
python scripts/bench_cost.py --data ../shared/datasets/seq-beauty --backbone dreamrec-ce --inference-steps 10 --threads 1 --json > $O/dreamrec-ce.json 2> $O/dreamrec-ce.log
python scripts/bench_cost.py --data ../shared/datasets/ml-1m --threads 1 --json > $O/diffrec.json 2> $O/diffrec.log
python scripts/bench_cost.py --data ../shared/datasets/ml-1m --backbone cfdiff --threads 1 --json > $O/cfdiff.json 2> $O/cfdiff.log
