#!/bin/bash
# session 12: amazon-beauty's DiffRec rows from a new CPU start (the benchmark's GPU start and the session-6 CPU start
# are lost): the pretrained row, Pathwise (pathwise-ease100.yml) and its continued-pretraining control, 3 seeds, two
# cells at a time so every cell runs beside exactly one other job. Argument: the round (1: pretrained + Pathwise seeds
# 0 and 1; 2: Pathwise seed 2 and the control of seed 0; 3: the controls of seeds 1 and 2; report: into results/).
# The start (pretrain-diffrec.sh): DiffRec pretrained on this machine, validated every 3 epochs on the default
# sample of 1,024 validation users, patience 4.
cd "$(dirname "$0")/../../.."
. /work/venv/bin/activate
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
START=/work/runs/s12/ab/diffrec/best.pt
B="python scripts/benchmark.py --data ../shared/datasets/amazon-beauty --backbones diffrec --checkpoint-diffrec $START
 --threads 1 --device cpu --skip-scaling --eval-points 4 --reward graph-score
 --hyperparams pathwise=results/amazon-beauty/inputs/pathwise-ease100.yml --continued-budget pathwise"
O=/work/runs/s12/ab/bench
if [ "$1" = report ]; then  # retire the old start's DiffRec rows, merge the three folders, rebuild the report (the
                            # other rows' inputs as in their own invocations)
  H="--hyperparams refit=results/ml-1m/inputs/refit.yml --hyperparams naive=results/ml-1m/inputs/naive.yml
 --hyperparams ddpo=results/ml-1m/inputs/ddpo.yml --hyperparams ppo=results/ml-1m/inputs/ppo.yml
 --hyperparams a2c=results/ml-1m/inputs/a2c.yml"
  exec python scripts/benchmark.py --data ../shared/datasets/amazon-beauty --out results/amazon-beauty --skip-scaling \
    --eval-points 4 --reward graph-score --checkpoint-diffrec $START $H \
    --hyperparams pathwise=results/amazon-beauty/inputs/pathwise-ease100.yml --continued-budget pathwise --report-only \
    --retire diffrec diffrec-refit diffrec-naive diffrec-ddpo diffrec-ppo diffrec-a2c \
    --retire-to results/amazon-beauty/bench-gpu-start --merge $O/s0 $O/s1 $O/s2
fi
export B O METHOD=pathwise
exec bash results/bench-rounds.sh "$1"
