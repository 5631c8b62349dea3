#!/bin/bash
# Probe listwise (amazon-beauty, session 18): Pathwise from probe wide's 1,000-unit start (the report's DiffRec start)
# with the graph-score reward's top-weighted softmax target at temperature TAU (pathwise-ease100-softmax-tTAU.yml),
# validated once at the end, the start competing (validation only); test read once for the selected model. Compare:
# the same start and seed with the report's recipe (the z-score target), ../probe_wide/run/.
#   run.sh OUT TAU [SEED] [UPDATES]    e.g. run.sh /work/runs/s18/ab-lw 2
T=$2 S=${3:-0} U=${4:-100}
exec bash "$(dirname "$0")/../pathwise-from-start.sh" \
  results/amazon-beauty/probes/probe_listwise/pathwise-ease100-softmax-t$T.yml "$1/t$T-s$S-u$U" $S $U $U
