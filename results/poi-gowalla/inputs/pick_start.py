"""Pick the strong variant's start among a pretraining run's snapshots by validation only: the snapshot whose
encoder head ``c E^T`` (the fine-tuned chain's ceiling with a residual denoiser) has the highest validation NDCG@20,
as scored by results/seq-beauty/probes/probe_o_heads/heads.py into heads-e<epoch>.json. Prints every snapshot's
chain and head and copies the chosen checkpoint to DST.

    python results/poi-gowalla/inputs/pick_start.py RUN_DIR DST
"""
import json
import re
import shutil
import sys
from pathlib import Path

run, dst = Path(sys.argv[1]), Path(sys.argv[2])
rows = []
for f in run.glob("heads-e*.json"):
    (ckpt, heads), = json.loads(f.read_text()).items()
    rows.append((int(re.fullmatch(r"heads-e(\d+)\.json", f.name).group(1)), ckpt, heads))
if not rows:
    raise SystemExit(f"pick_start.py: no heads-e<epoch>.json in {run}")
rows.sort()
for epoch, _, h in rows:
    print(f"epoch {epoch:3d}: chain {h['chain-deterministic']['ndcg@20']:.4f}  head {h['encoder-dot']['ndcg@20']:.4f}")
epoch, ckpt, h = max(rows, key=lambda r: r[2]["encoder-dot"]["ndcg@20"])
shutil.copyfile(ckpt, dst)
print(f"start: epoch {epoch} ({ckpt}; head valid NDCG@20 {h['encoder-dot']['ndcg@20']:.4f}) -> {dst}")
