#!/bin/bash
# session 14: ml-1m's CF-Diff rows from a new start (pretrain-cfdiff.sh; the benchmark's start is lost): the pretrained
# row, Pathwise (pathwise-ease4000.yml, DiffRec's Pathwise row's recipe) and its continued-pretraining control (rounds
# 1-3 of results/bench-rounds.sh), then ReFiT (refit.yml, the existing row's recipe: round r1 seeds 0 and 1, r2 seed 2),
# 3 seeds, two cells at a time; or round "queue": the same cells one at a time (seed by seed: pretrained, Pathwise, its
# control, ReFiT), beside another queue. The old start's other CF-Diff rows (naive, DDPO, PPO, A2C) are retired; session
# 15 reran them from this start with their inputs: round "others-a" (naive, DDPO) and "others-b" (PPO, A2C), seeds
# 0-2 each, side by side in folders of their own (o<seed>-a, o<seed>-b; session 15 ran seed 2's PPO and A2C as two
# processes instead, in o2-b and o2-c, once the cores were free). Argument: the round (1, 2, 3, r1, r2, queue,
# others-a, others-b, or report: retire the old start's CF-Diff rows, merge, rebuild the report).
cd "${TREE:-$(dirname "$0")/../../..}"
. /work/venv/bin/activate
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
START=${START:-/work/runs/s14/ml1m/cfdiff/best.pt}
DSTART=${DSTART:-/work/runs/s13/ml1m/diffrec/best.pt}
I=results/ml-1m/inputs
H="--hyperparams refit=$I/refit.yml --hyperparams pathwise=$I/pathwise-ease4000.yml --hyperparams naive=$I/naive.yml
 --hyperparams ddpo=$I/ddpo.yml --hyperparams ppo=$I/ppo.yml --hyperparams a2c=$I/a2c.yml"
B="python scripts/benchmark.py --data ../shared/datasets/ml-1m --backbones cfdiff --checkpoint-cfdiff $START
 --threads 1 --device cpu --skip-scaling --eval-points 4 --reward graph-score $H --continued-budget pathwise"
O=${O:-/work/runs/s14/ml1m/bench}
mkdir -p $O
case $1 in
  r1) for s in 0 1; do $B --out $O/s$s --methods refit --seeds $s > $O/s$s-refit.log 2>&1 & done; wait ;;
  r2) $B --out $O/s2 --methods refit --seeds 2 > $O/s2-refit.log 2>&1 ;;
  queue) for s in 0 1 2; do $B --out $O/s$s --methods pretrained pathwise continued refit --seeds $s > $O/s$s-queue.log 2>&1
    done ;;
  others-a|others-b) m=(naive ddpo); [ "$1" = others-b ] && m=(ppo a2c)
    for s in 0 1 2; do $B --out $O/o$s-${1#others-} --methods "${m[@]}" --seeds $s > $O/o$s-${1#others-}.log 2>&1; done ;;
  report) R=(--retire cfdiff cfdiff-refit cfdiff-naive cfdiff-ddpo cfdiff-ppo cfdiff-a2c
       --retire-to results/ml-1m/bench-old-start-cfdiff)
    [ -d results/ml-1m/bench-old-start-cfdiff ] && R=()  # retired once; a later report only merges the new cells
    exec python scripts/benchmark.py --data ../shared/datasets/ml-1m --out results/ml-1m --skip-scaling \
    --eval-points 4 --reward graph-score --checkpoint-diffrec $DSTART --checkpoint-cfdiff $START $H \
    --continued-budget pathwise --report-only "${R[@]}" --merge $O/s0 $O/s1 $O/s2 \
    $(for d in $O/o[012]-[a-z]; do [ -d $d ] && echo $d; done) ;;
  *) export B O METHOD=pathwise; exec bash results/bench-rounds.sh "$1" ;;
esac
