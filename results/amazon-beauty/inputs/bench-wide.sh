#!/bin/bash
# amazon-beauty's DiffRec rows from the wide start of probe wide (../probes/probe_wide/: DiffRec with one 1,000-unit
# hidden layer instead of [600, 200], pretrained as pretrain-diffrec.sh otherwise; kept on validation, 0.0556 against
# 0.0532): the pretrained row, Pathwise and its continued-pretraining control, 3 seeds, two cells at a time
# (../../bench-rounds.sh).
#   bench-wide.sh ROUND [RECIPE]    ROUND: 1, 2, 3, or report (merges the cells of RECIPE into the report)
# RECIPE:
#   lr1e-4  (session 17, the default) pathwise-ease100.yml: lr 1e-4, 100 updates; its report retired the [600, 200]
#           start's DiffRec rows into ../bench-narrow-start.
#   lr3e-4  (session 19) pathwise-ease100-lr3e-4.yml: lr 3e-4, 200 updates (probes long and lr); its report retires
#           lr1e-4's rows into ../bench-pathwise-lr1e-4. The start was rebuilt with its own command (the same
#           numbers, another SHA-1: the file is not byte-identical), so its pretrained row is evaluated again.
#   pretraining of the start: bash ../probes/probe_wide/run.sh /work/runs/s16/ab-wide   (its first command)
cd "$(dirname "$0")/../../.."
. /work/venv/bin/activate
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
START=/work/runs/s16/ab-wide/pretrain/best.pt
case ${2:-lr1e-4} in
  lr1e-4) YML=results/amazon-beauty/inputs/pathwise-ease100.yml O=/work/runs/s17/ab-wide-bench
          R=(--retire diffrec diffrec-pathwise diffrec-continued --retire-to results/amazon-beauty/bench-narrow-start) ;;
  lr3e-4) YML=results/amazon-beauty/inputs/pathwise-ease100-lr3e-4.yml O=/work/runs/s19/ab-wide-lr3e-4
          R=(--retire diffrec diffrec-pathwise diffrec-continued --retire-to results/amazon-beauty/bench-pathwise-lr1e-4) ;;
  *) echo "bench-wide.sh: the recipe is lr1e-4 or lr3e-4, not '$2'" >&2; exit 2 ;;
esac
B="python scripts/benchmark.py --data ../shared/datasets/amazon-beauty --backbones diffrec --checkpoint-diffrec $START
 --threads 1 --device cpu --skip-scaling --eval-points 4 --reward graph-score
 --hyperparams pathwise=$YML --continued-budget pathwise"
if [ "$1" = report ]; then  # the other rows' inputs as in their own invocations
  H="--hyperparams refit=results/ml-1m/inputs/refit.yml --hyperparams naive=results/ml-1m/inputs/naive.yml
 --hyperparams ddpo=results/ml-1m/inputs/ddpo.yml --hyperparams ppo=results/ml-1m/inputs/ppo.yml
 --hyperparams a2c=results/ml-1m/inputs/a2c.yml"
  [ -d "${R[-1]}/runs/${R[1]}" ] && R=()  # retired once; a later report only merges the new cells
  exec python scripts/benchmark.py --data ../shared/datasets/amazon-beauty --out results/amazon-beauty --skip-scaling \
    --eval-points 4 --reward graph-score --checkpoint-diffrec $START $H \
    --hyperparams pathwise=$YML --continued-budget pathwise --report-only \
    "${R[@]}" --merge $O/s0 $O/s1 $O/s2
fi
if [ "$1" = 2 ] && [ -f $O/s0/runs/diffrec/seed0.json ]; then  # seed 2's cells reuse round 1's evaluation of the
  mkdir -p $O/s2/runs/diffrec && cp -n $O/s0/runs/diffrec/seed0.json $O/s2/runs/diffrec/  # same file (by SHA-1)
fi
export B O METHOD=pathwise
exec bash results/bench-rounds.sh "$1"
