#!/bin/bash
# session 15: the strong variant's rows from the longer-trained residual start (START: probe as, the snapshot whose
# encoder head validates best, picked by ../../poi-gowalla/inputs/pick_start.py), 3 seeds, in two queues that run
# side by side (each cell beside exactly one other job). The recipes are session 14's (bench-strong-s14.sh, queues A
# and C). Queue A: the pretrained row and ReFiT (seq-refit-k10.yml) for seeds 0, 1, 2. Queue B: Pathwise with the
# encoder held fixed, 200 updates (seq-pathwise-frozen-k10-200.yml), seeds 0, 1, 2 in folders pw-s<seed>, then the
# continued-pretraining control of each seed once its ReFiT cell is done (in the seed's folder: it takes the ReFiT
# cell's seconds).
# Argument: A, B, or report (retire the session-14 start's dreamrec-ce rows to results/seq-beauty/bench-ce-s14/,
# merge every folder, rebuild the report with both DreamRec starts).
cd "${TREE:-/work/main}"
. /work/venv/bin/activate
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
START=${START:?set START to the new start}
I=results/seq-beauty/inputs
H="--hyperparams pathwise=$I/seq-pathwise-frozen-k10-200.yml --hyperparams refit=$I/seq-refit-k10.yml --continued-budget refit"
B="python scripts/benchmark.py --data ../shared/datasets/seq-beauty --backbones dreamrec-ce --checkpoint-dreamrec-ce $START
 --threads 1 --device cpu --skip-scaling --eval-points 5 $H"
O=${O:-/work/runs/s15/seq-bench}
mkdir -p $O
cell() { $B --out $O/$1 --methods $2 --seeds $3 > $O/$1-$4.log 2>&1; }
case $1 in
  A) for s in 0 1 2; do cell s$s "pretrained refit" $s refit; done ;;
  B) for s in 0 1 2; do cell pw-s$s pathwise $s pathwise; done
     for s in 0 1 2; do
       until [ -f $O/s$s/runs/dreamrec-ce-refit/seed$s.json ]; do sleep 30; done
       cell s$s continued $s continued
     done ;;
  report) R=(--retire dreamrec-ce dreamrec-ce-refit dreamrec-ce-pathwise dreamrec-ce-continued
       --retire-to results/seq-beauty/bench-ce-s14)
    [ -d results/seq-beauty/bench-ce-s14 ] && R=()
    exec python scripts/benchmark.py --data ../shared/datasets/seq-beauty --backbones dreamrec dreamrec-ce \
    --checkpoint-dreamrec /work/runs/s10/dreamrec-lr3e-4-k10.pt --checkpoint-dreamrec-ce $START --threads 1 \
    --device cpu --skip-scaling --eval-points 5 $H --out results/seq-beauty \
    --methods pop sasrec pretrained refit pathwise continued --report-only "${R[@]}" \
    --merge $O/s0 $O/s1 $O/s2 $O/pw-s0 $O/pw-s1 $O/pw-s2 ;;
  *) echo "bench-strong-s15.sh: A, B or report, not '$1'" >&2; exit 2 ;;
esac
