#!/bin/bash
# session 15: DreamRec-CE over *pretraining* seeds (results/seq-beauty/bench-seeds/): each seed's own start, the strong
# variant pretrained with that seed by pretrain-residual-snapshots.sh and picked by its encoder head's validation
# (../probes/probe_au_start_seeds/: seed 0 is probe as's pick, seeds 1 and 2 probe au's), placed where the benchmark
# finds a per-seed start (OUT/checkpoints/dreamrec-ce-seed<s>.pt, with a record of where it came from), then the
# pretrained row, Pathwise with the encoder fixed (the main report's recipe, seq-pathwise-frozen-k10-200.yml) and its
# continued-pretraining control for the Pathwise cell's seconds. SASRec's three cells are the main report's records
# (the same settings and seeds), copied in and reused. Argument: A (seeds 0, 1), B (seed 2), or report.
# Session 16, ReFiT over the same starts (results/seq-beauty/bench-seeds-refit/): the main report's ReFiT recipe
# (seq-refit-k10.yml) and its continued-pretraining control for the ReFiT cell's seconds, one folder per seed, in two
# queues that run side by side (RA: ReFiT of seeds 0 and 1, then the control of seed 2; RB: ReFiT of seed 2, then the
# controls of seeds 0 and 1, each after its seed's ReFiT cell); refit-report merges them.
cd "${TREE:-/work/main}"
. /work/venv/bin/activate
export PYTHONPATH=$PWD OMP_NUM_THREADS=1
I=results/seq-beauty/inputs
O=${O:-/work/runs/s15/seq-seeds}
START=( /work/runs/s15/as/start.pt /work/runs/s15/au-s1/start.pt /work/runs/s15/au-s2/start.pt )
B="python scripts/benchmark.py --data ../shared/datasets/seq-beauty --backbones dreamrec-ce --threads 1 --device cpu
 --skip-scaling --eval-points 5 --hyperparams pathwise=$I/seq-pathwise-frozen-k10-200.yml
 --hyperparams refit=$I/seq-refit-k10.yml --continued-budget pathwise"
place() {  # place() OUT SEED: the seed's start and its record where the benchmark looks for it
  mkdir -p $1/checkpoints
  cp ${START[$2]} $1/checkpoints/dreamrec-ce-seed$2.pt
  printf '{"source": "given per seed", "checkpoint": "%s", "copied_from": "%s", "how": "%s"}\n' \
    "$1/checkpoints/dreamrec-ce-seed$2.pt" "${START[$2]}" \
    "pretrain-residual-snapshots.sh dreamrec-ce seq-beauty, seed $2, start picked by the head's validation (probe au)" \
    > $1/checkpoints/dreamrec-ce-seed$2.json
}
case $1 in
  A) for s in 0 1; do place $O/a $s; done
     $B --out $O/a --methods pretrained pathwise continued --seeds 0 1 > $O/a.log 2>&1 ;;
  B) place $O/b 2
     $B --out $O/b --methods pretrained pathwise continued --seeds 2 > $O/b.log 2>&1 ;;
  RA|RB) R="$B --continued-budget refit"  # the later flag wins: the control takes the ReFiT cell's seconds
    cell() { place $O/r-s$2 $2; $R --out $O/r-s$2 --methods $1 --seeds $2 > $O/r-s$2-$3.log 2>&1; }
    wait_refit() { until [ -f $O/r-s$1/runs/dreamrec-ce-refit/seed$1.json ]; do sleep 30; done; }
    if [ $1 = RA ]; then cell "pretrained refit" 0 refit; cell "pretrained refit" 1 refit; wait_refit 2; cell continued 2 continued
    else cell "pretrained refit" 2 refit; for s in 0 1; do wait_refit $s; cell continued $s continued; done; fi ;;
  refit-report) R=results/seq-beauty/bench-seeds-refit
    mkdir -p $R/runs/sasrec && cp results/seq-beauty/runs/sasrec/seed*.json $R/runs/sasrec/
    exec $B --continued-budget refit --out $R --methods sasrec pretrained refit continued --seeds 0 1 2 --report-only \
      --merge $O/r-s0 $O/r-s1 $O/r-s2 ;;
  report) R=results/seq-beauty/bench-seeds
    mkdir -p $R/runs/sasrec && cp results/seq-beauty/runs/sasrec/seed*.json $R/runs/sasrec/
    exec $B --out $R --methods sasrec pretrained pathwise continued --seeds 0 1 2 --report-only --merge $O/a $O/b ;;
  *) echo "bench-seeds.sh: A, B, report, RA, RB or refit-report, not '$1'" >&2; exit 2 ;;
esac
