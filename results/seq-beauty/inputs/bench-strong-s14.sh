#!/bin/bash
# session 14: the strong variant's rows from a new start (START), 3 seeds, in two queues that run side by side (each
# cell beside exactly one other job). Queue A: the pretrained row and ReFiT (seq-refit-k10.yml) for seeds 0, 1, 2, then
# the continued-pretraining controls of seeds 0 and 2 (each in its seed's folder: it takes the ReFiT cell's seconds).
# Queue B (after ml-1m's CF-Diff queue, ../../ml-1m/inputs/bench-cfdiff.sh queue): Pathwise with the encoder held fixed
# (seq-pathwise-frozen-k10.yml) for seeds 0, 1, 2 in folders of their own (pw-s<seed>), then the control of seed 1.
# Then queue C: Pathwise with 200 updates instead of 2,000 (seq-pathwise-frozen-k10-200.yml: validation peaked at the
# first evaluation, probe ar), seeds 0, 1, 2 in folders pw2-s<seed>; queue B's 2,000-update cells are kept in
# ../probes/probe_ar_pathwise_schedule/ and not merged.
# Argument: A, B, C, or report (retire the session-13 start's dreamrec-ce rows to results/seq-beauty/bench-ce-s13/,
# merge every folder, rebuild the report with both DreamRec starts).
cd "${TREE:-/work/main}"
. /work/venv/bin/activate
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
START=${START:?set START to the new start}
I=results/seq-beauty/inputs
PW=$I/seq-pathwise-frozen-k10.yml; [ "$1" = C ] || [ "$1" = report ] && PW=$I/seq-pathwise-frozen-k10-200.yml
H="--hyperparams pathwise=$PW --hyperparams refit=$I/seq-refit-k10.yml --continued-budget refit"
B="python scripts/benchmark.py --data ../shared/datasets/seq-beauty --backbones dreamrec-ce --checkpoint-dreamrec-ce $START
 --threads 1 --device cpu --skip-scaling --eval-points 5 $H"
O=${O:-/work/runs/s14/bench}
mkdir -p $O
cell() { $B --out $O/$1 --methods $2 --seeds $3 > $O/$1-$4.log 2>&1; }
case $1 in
  A) for s in 0 1 2; do cell s$s "pretrained refit" $s refit; done
     for s in 0 2; do cell s$s continued $s continued; done ;;
  B) for s in 0 1 2; do cell pw-s$s pathwise $s pathwise; done
     until [ -f $O/s1/runs/dreamrec-ce-refit/seed1.json ]; do sleep 30; done
     cell s1 continued 1 continued ;;
  C) for s in 0 1 2; do cell pw2-s$s pathwise $s pathwise; done ;;
  report) R=(--retire dreamrec-ce dreamrec-ce-refit dreamrec-ce-pathwise dreamrec-ce-continued
       --retire-to results/seq-beauty/bench-ce-s13)
    [ -d results/seq-beauty/bench-ce-s13 ] && R=()
    exec python scripts/benchmark.py --data ../shared/datasets/seq-beauty --backbones dreamrec dreamrec-ce \
    --checkpoint-dreamrec /work/runs/s10/dreamrec-lr3e-4-k10.pt --checkpoint-dreamrec-ce $START --threads 1 \
    --device cpu --skip-scaling --eval-points 5 $H --out results/seq-beauty \
    --methods pop sasrec pretrained refit pathwise continued --report-only "${R[@]}" \
    --merge $O/s0 $O/s1 $O/s2 $O/pw2-s0 $O/pw2-s1 $O/pw2-s2 ;;
  *) echo "bench-strong-s14.sh: A, B, C or report, not '$1'" >&2; exit 2 ;;
esac
