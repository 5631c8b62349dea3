#!/bin/bash
# Probe holdout (amazon-beauty, session 17): Pathwise from probe wide's 1,000-unit start with the reward's holdout at 0
# (pathwise-ease100-h0.yml), seed 0, validated once at the end, the start competing (validation only); test read once
# for the selected model. Compare: the same start with the report's recipe (holdout 0.2), ../probe_wide/run/.
#   run.sh OUT [SEED]    e.g. run.sh /work/runs/s17/ab-h0
S=${2:-0}
exec bash "$(dirname "$0")/../pathwise-from-start.sh" \
  results/amazon-beauty/probes/probe_holdout/pathwise-ease100-h0.yml "$1/pathwise-s$S" $S 100 100
