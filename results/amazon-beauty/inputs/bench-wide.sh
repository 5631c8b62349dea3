#!/bin/bash
# session 17: amazon-beauty's DiffRec rows from the wide start of probe wide (../probes/probe_wide/: DiffRec with one
# 1,000-unit hidden layer instead of [600, 200], pretrained as pretrain-diffrec.sh otherwise; kept on validation,
# 0.0556 against 0.0532): the pretrained row, Pathwise (pathwise-ease100.yml, unchanged) and its continued-pretraining
# control, 3 seeds, two cells at a time (../../bench-rounds.sh). Argument: the round (1, 2, 3) or report (retires the
# [600, 200] start's DiffRec rows into ../bench-narrow-start and merges these).
#   pretraining of the start: bash ../probes/probe_wide/run.sh /work/runs/s16/ab-wide   (its first command)
cd "$(dirname "$0")/../../.."
. /work/venv/bin/activate
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
START=/work/runs/s16/ab-wide/pretrain/best.pt
B="python scripts/benchmark.py --data ../shared/datasets/amazon-beauty --backbones diffrec --checkpoint-diffrec $START
 --threads 1 --device cpu --skip-scaling --eval-points 4 --reward graph-score
 --hyperparams pathwise=results/amazon-beauty/inputs/pathwise-ease100.yml --continued-budget pathwise"
O=/work/runs/s17/ab-wide-bench
if [ "$1" = report ]; then  # the other rows' inputs as in their own invocations
  H="--hyperparams refit=results/ml-1m/inputs/refit.yml --hyperparams naive=results/ml-1m/inputs/naive.yml
 --hyperparams ddpo=results/ml-1m/inputs/ddpo.yml --hyperparams ppo=results/ml-1m/inputs/ppo.yml
 --hyperparams a2c=results/ml-1m/inputs/a2c.yml"
  R=(--retire diffrec diffrec-pathwise diffrec-continued --retire-to results/amazon-beauty/bench-narrow-start)
  [ -d results/amazon-beauty/bench-narrow-start ] && R=()  # retired once; a later report only merges the new cells
  exec python scripts/benchmark.py --data ../shared/datasets/amazon-beauty --out results/amazon-beauty --skip-scaling \
    --eval-points 4 --reward graph-score --checkpoint-diffrec $START $H \
    --hyperparams pathwise=results/amazon-beauty/inputs/pathwise-ease100.yml --continued-budget pathwise --report-only \
    "${R[@]}" --merge $O/s0 $O/s1 $O/s2
fi
export B O METHOD=pathwise
exec bash results/bench-rounds.sh "$1"
