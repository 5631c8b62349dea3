#!/bin/bash
# session 21's final cost measurement, all four backbones at one commit, alone, one after another
cd /work/wt-b
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
O=/work/runs/s21/final
mkdir -p $O
python scripts/bench_cost.py --data ../shared/datasets/seq-beauty --inference-steps 10 --threads 1 --json > $O/dreamrec.json 2> $O/dreamrec.log
python scripts/bench_cost.py --data ../shared/datasets/seq-beauty --backbone dreamrec-ce --inference-steps 10 --threads 1 --json > $O/dreamrec-ce.json 2> $O/dreamrec-ce.log
python scripts/bench_cost.py --data ../shared/datasets/ml-1m --threads 1 --json > $O/diffrec.json 2> $O/diffrec.log
python scripts/bench_cost.py --data ../shared/datasets/ml-1m --backbone cfdiff --threads 1 --json > $O/cfdiff.json 2> $O/cfdiff.log
