#!/bin/bash
# session 13: the strong DreamRec variant's rows (dreamrec-ce: DreamRec + the encoder's own next-item cross-entropy,
# pretrained by pretrain-strong.sh), 3 seeds: the pretrained row, ReFiT (seq-refit-k10.yml, DreamRec's ReFiT row's
# recipe) and its continued-pretraining control (results/bench-rounds.sh rounds 1-3), then Pathwise with the encoder
# held fixed (seq-pathwise-frozen-k10.yml, probe aj): round p1 runs seeds 0 and 1 side by side, p2 seed 2 (in its own
# folder s2pf: s2 had run the first Pathwise recipe, seq-pathwise-k10.yml, which probe aj replaced; that cell was moved
# to ../probes/probe_aj_pathwise_frozen_encoder/plain-seed2/ and its settings out of s2/plan.json). Two cells at a time.
# Argument: the round (1, 2, 3, p1, p2, or report: merge the three seed folders into results/seq-beauty and rebuild the
# report with both DreamRec starts, each row's inputs as in its own invocation).
cd "${TREE:-/work/main}"
. /work/venv/bin/activate
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
START=${START:-/work/runs/s13/pre-ce/best.pt}
I=results/seq-beauty/inputs
B="python scripts/benchmark.py --data ../shared/datasets/seq-beauty --backbones dreamrec-ce --checkpoint-dreamrec-ce $START
 --threads 1 --device cpu --skip-scaling --eval-points 5 --hyperparams pathwise=$I/seq-pathwise-frozen-k10.yml
 --hyperparams refit=$I/seq-refit-k10.yml --continued-budget refit"
O=${O:-/work/runs/s13/bench}
export B O METHOD=refit
case $1 in
  p1) for s in 0 1; do $B --out $O/s$s --methods pathwise --seeds $s > $O/s$s-pathwise.log 2>&1 & done; wait ;;
  p2) $B --out $O/s2pf --methods pathwise --seeds 2 > $O/s2pf-pathwise.log 2>&1 ;;
  report) exec python scripts/benchmark.py --data ../shared/datasets/seq-beauty --backbones dreamrec dreamrec-ce \
    --checkpoint-dreamrec /work/runs/s10/dreamrec-lr3e-4-k10.pt --checkpoint-dreamrec-ce $START --threads 1 \
    --device cpu --skip-scaling --eval-points 5 --hyperparams pathwise=$I/seq-pathwise-frozen-k10.yml \
    --hyperparams refit=$I/seq-refit-k10.yml --continued-budget refit --out results/seq-beauty \
    --methods pop sasrec pretrained refit pathwise continued --report-only --merge $O/s0 $O/s1 $O/s2 $O/s2pf ;;
  *) exec bash results/bench-rounds.sh "$1" ;;
esac
