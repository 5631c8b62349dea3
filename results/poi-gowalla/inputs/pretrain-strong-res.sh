#!/bin/bash
# session 15: the POI backbone's strong variant (dreamrec-poi-ce: DreamRec-POI plus the encoder's own next-item
# cross-entropy) with seq-beauty's session-14 settings, snapshots every 3 epochs scored by their heads, the start picked
# by its head's validation (../../seq-beauty/inputs/pretrain-residual-snapshots.sh; seed 0). The kept run: epochs
# 0-44, then resumed to 56 (the head still rose at 44).
#   pretrain-strong-res.sh OUT [LAST_EPOCH]     e.g. pretrain-strong-res.sh /work/runs/s15/poi-ce 56
exec "$(dirname "$0")/../../seq-beauty/inputs/pretrain-residual-snapshots.sh" dreamrec-poi-ce \
  ../shared/datasets/poi-gowalla "$1" "${2:-56}" 3 0
