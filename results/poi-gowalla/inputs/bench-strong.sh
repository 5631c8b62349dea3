#!/bin/bash
# session 15: the POI backbone's strong variant (dreamrec-poi-ce) from START (pretrain-strong-res.sh, then
# pick_start.py), 3 seeds, in two queues that run side by side (each cell beside exactly one other job).
# Queue A: the pretrained row and ReFiT (refit-crn-k10.yml: DreamRec-POI's ReFiT recipe) for seeds 0, 1, 2.
# Queue B: Pathwise with the encoder held fixed (pathwise-k10-ce.yml) for seeds 0, 1, 2 in folders of their own
# (pw-s<seed>), then the continued-pretraining control of each seed once its ReFiT cell is done (in the seed's
# folder: the control trains for the ReFiT cell's seconds).
# Argument: A, B, or report (merge every folder into results/poi-gowalla beside the DreamRec-POI rows, whose
# checkpoint --report-only does not read).
cd "${TREE:-/work/main}"
. /work/venv/bin/activate
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
START=${START:?set START to the strong start}
I=results/poi-gowalla/inputs
H="--hyperparams pathwise=$I/pathwise-k10-ce.yml --hyperparams refit=$I/refit-crn-k10.yml --continued-budget refit"
B="python scripts/benchmark.py --data ../shared/datasets/poi-gowalla --backbones dreamrec-poi-ce
 --checkpoint-dreamrec-poi-ce $START --threads 1 --device cpu --skip-scaling --eval-points 5 $H"
O=${O:-/work/runs/s15/poi-bench}
mkdir -p $O
cell() { $B --out $O/$1 --methods $2 --seeds $3 > $O/$1-$4.log 2>&1; }
case $1 in
  A) for s in 0 1 2; do cell s$s "pretrained refit" $s refit; done ;;
  B) for s in 0 1 2; do cell pw-s$s pathwise $s pathwise; done
     for s in 0 1 2; do
       until [ -f $O/s$s/runs/dreamrec-poi-ce-refit/seed$s.json ]; do sleep 30; done
       cell s$s continued $s continued
     done ;;
  report) exec python scripts/benchmark.py --data ../shared/datasets/poi-gowalla --backbones dreamrec-poi dreamrec-poi-ce \
    --checkpoint-dreamrec-poi /work/runs/dreamrec-poi-k10/best.pt --checkpoint-dreamrec-poi-ce $START --threads 1 \
    --device cpu --skip-scaling --eval-points 5 $H --out results/poi-gowalla \
    --methods pop sasrec pretrained refit pathwise continued --report-only \
    --merge $O/s0 $O/s1 $O/s2 $O/pw-s0 $O/pw-s1 $O/pw-s2 ;;
  *) echo "bench-strong.sh: A, B or report, not '$1'" >&2; exit 2 ;;
esac
