"""Copy the small outputs of the seq-beauty probes (metrics, curves, settings; never checkpoints) from where they
ran into results/seq-beauty/probes/<name>/ and print a summary line per probe.

usage: python results/seq-beauty/probes/collect.py RUNS_DIR   (RUNS_DIR as used in the commands of README.md)"""
import json, shutil, sys
from pathlib import Path

runs, here = Path(sys.argv[1]), Path(__file__).resolve().parent
for name in ("ce01", "ce1", "ce0"):
    src = runs / "seq" / name
    if (src / "probe.json").is_file():
        dst = here / f"pretrain-{name}"
        dst.mkdir(exist_ok=True)
        for f in ("probe.json", "history.json"):
            shutil.copy(src / f, dst / f)
        p = json.loads((src / "probe.json").read_text())
        print(f"pretrain-{name}: {p['settings']} valid ndcg@20 {p['valid']['ndcg@20']:.4f} test ndcg@20 "
              f"{p['test']['ndcg@20']:.4f} ({p['seconds']:.0f} s)")
for d in sorted(runs.glob("probe_*_*")):
    for cell in sorted(d.glob("*/seed*")):
        dst = here / d.name
        dst.mkdir(exist_ok=True)
        for f in ("metrics.json", "progress.csv", "hyperparams.yml"):
            if (cell / f).is_file():
                shutil.copy(cell / f, dst / f)
        m = json.loads((cell / "metrics.json").read_text()) if (cell / "metrics.json").is_file() else {}
        hist = " ".join(f"{h['ndcg@20']:.4f}" for h in m.get("history", []))
        best = m.get("best", {}).get("test", {}).get("ndcg@20")
        print(f"{d.name}: valid ndcg@20 curve {hist or '(interrupted: see progress.csv)'}"
              + (f" | best-by-valid test ndcg@20 {best:.4f}" if best is not None else ""))
