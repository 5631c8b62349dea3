#!/bin/bash
# session 15: ml-1m's T-DiffRec rows (START: pretrain-t-diffrec.sh) with DiffRec's recipes (bench-diffrec.sh: reward
# graph-score over EASE's graph, refit.yml, pathwise-ease4000.yml, the control for the Pathwise cell's seconds), 3 seeds,
# two queues side by side. Queue A: the pretrained row and ReFiT per seed (folders s<seed>); queue B: Pathwise and its
# continued-pretraining control per seed (folders p<seed>); tease: the T-EASE baseline row (lambda chosen on
# validation, folder t). Argument: A, B, tease, or report (merge into results/ml-1m).
cd "${TREE:-$(dirname "$0")/../../..}"
. /work/venv/bin/activate
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
START=${START:-/work/runs/s15/ml1m/t-diffrec/best.pt}
I=results/ml-1m/inputs
H="--hyperparams refit=$I/refit.yml --hyperparams pathwise=$I/pathwise-ease4000.yml --hyperparams naive=$I/naive.yml
 --hyperparams ddpo=$I/ddpo.yml --hyperparams ppo=$I/ppo.yml --hyperparams a2c=$I/a2c.yml"
B="python scripts/benchmark.py --data ../shared/datasets/ml-1m --backbones t-diffrec --checkpoint-t-diffrec $START
 --threads 1 --device cpu --skip-scaling --eval-points 4 --reward graph-score $H --continued-budget pathwise"
O=${O:-/work/runs/s15/ml1m/bench}
mkdir -p $O
case $1 in
  A) for s in 0 1 2; do $B --out $O/s$s --methods pretrained refit --seeds $s > $O/s$s-A.log 2>&1; done ;;
  B) for s in 0 1 2; do $B --out $O/p$s --methods pathwise continued --seeds $s > $O/p$s-B.log 2>&1; done ;;
  tease) $B --out $O/t --methods t-ease --seeds 0 > $O/t.log 2>&1 ;;
  report) exec python scripts/benchmark.py --data ../shared/datasets/ml-1m --out results/ml-1m --skip-scaling \
    --backbones diffrec cfdiff t-diffrec --eval-points 4 --reward graph-score --checkpoint-t-diffrec $START $H \
    --continued-budget pathwise --report-only --merge $O/s0 $O/s1 $O/s2 $O/p0 $O/p1 $O/p2 $O/t ;;
  *) echo "bench-t-diffrec.sh: A, B, tease or report, not '$1'" >&2; exit 2 ;;
esac
