"""Summarise the synthetic probes (run.sh) into summary.json and a markdown table on stdout: per probe and seed the
start's and the validation-selected model's test NDCG@20, the validation curve and the training seconds.

usage: python results/synthetic/probes/collect.py RUNS_DIR"""
import json
import sys
from pathlib import Path

runs, here = Path(sys.argv[1]), Path(__file__).resolve().parent
rows = []
for ladder in sorted(runs.glob("[vr][0-9]-s[0-9]/ladder.json")):
    blob = json.loads(ladder.read_text())
    for rec in blob["records"]:
        rows.append(dict(probe=ladder.parent.name.split("-")[0], seed=rec["seed"], rung=rec["rung"],
                         start_valid=blob["start"]["valid"]["ndcg@20"], start_test=blob["start"]["test"]["ndcg@20"],
                         valid_curve=[h["ndcg@20"] for h in rec["history"]],
                         best_valid=rec["best"]["valid"]["ndcg@20"], best_test=rec["best"]["test"]["ndcg@20"],
                         train_seconds=rec["train_seconds"]))
(here / "summary.json").write_text(json.dumps(rows, indent=1))
print("| probe | seed | rung | valid NDCG@20 start -> curve | test NDCG@20 start -> selected | Δ test | train s |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    curve = " ".join(f"{v:.3f}" for v in r["valid_curve"])
    print(f"| {r['probe']} | {r['seed']} | {r['rung']} | {r['start_valid']:.3f} -> {curve} | {r['start_test']:.4f} -> "
          f"{r['best_test']:.4f} | {100 * (r['best_test'] / r['start_test'] - 1):+.1f}% | {r['train_seconds']:.0f} |")
