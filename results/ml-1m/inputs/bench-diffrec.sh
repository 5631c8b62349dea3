#!/bin/bash
# session 13: ml-1m's DiffRec rows from a new start (pretrain-diffrec.sh; the benchmark's start is lost): the pretrained
# row, Pathwise (pathwise-ease4000.yml) and its continued-pretraining control (rounds 1-3 of results/bench-rounds.sh),
# then ReFiT (refit.yml, the existing row's recipe: round r1 seeds 0 and 1, r2 seed 2), 3 seeds, two cells at a time;
# then the other rows of the old start with their inputs (naive, DDPO, PPO, A2C): round "others SEED", one seed's four
# cells in turn. Argument: the round (1, 2, 3, r1, r2, others SEED, or report: retire the old start's DiffRec rows,
# merge, rebuild the report).
cd "${TREE:-$(dirname "$0")/../../..}"
. /work/venv/bin/activate
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
START=${START:-/work/runs/s13/ml1m/diffrec/best.pt}
I=results/ml-1m/inputs
H="--hyperparams refit=$I/refit.yml --hyperparams pathwise=$I/pathwise-ease4000.yml --hyperparams naive=$I/naive.yml
 --hyperparams ddpo=$I/ddpo.yml --hyperparams ppo=$I/ppo.yml --hyperparams a2c=$I/a2c.yml"
B="python scripts/benchmark.py --data ../shared/datasets/ml-1m --backbones diffrec --checkpoint-diffrec $START
 --threads 1 --device cpu --skip-scaling --eval-points 4 --reward graph-score $H --continued-budget pathwise"
O=${O:-/work/runs/s13/ml1m/bench}
mkdir -p $O
case $1 in
  r1) for s in 0 1; do $B --out $O/s$s --methods refit --seeds $s > $O/s$s-refit.log 2>&1 & done; wait ;;
  r2) $B --out $O/s2 --methods refit --seeds 2 > $O/s2-refit.log 2>&1 ;;
  others) $B --out $O/s$2 --methods naive ddpo ppo a2c --seeds $2 > $O/s$2-others.log 2>&1 ;;
  report) R=(--retire diffrec diffrec-refit diffrec-naive diffrec-ddpo diffrec-ppo diffrec-a2c
       --retire-to results/ml-1m/bench-old-start)
    [ -d results/ml-1m/bench-old-start ] && R=()  # retired once; a later report only merges the new cells
    exec python scripts/benchmark.py --data ../shared/datasets/ml-1m --out results/ml-1m --skip-scaling \
    --eval-points 4 --reward graph-score --checkpoint-diffrec $START $H --continued-budget pathwise --report-only \
    "${R[@]}" --merge $O/s0 $O/s1 $O/s2 ;;
  *) export B O METHOD=pathwise; exec bash results/bench-rounds.sh "$1" ;;
esac
