"""scripts/benchmark.py: the report's structure, resuming from the per-seed files, --report-only (not the numbers)."""
from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
COLUMNS = ["method", "Recall@10", "Recall@20", "NDCG@10", "NDCG@20", "ΔNDCG@20 vs pretrained",
           "ΔRecall@20 vs pretrained", "time / seed"]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("benchmark_under_test", REPO / "scripts" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module through sys.modules
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def table_rows(report: str):
    """(header cells, body rows as lists of cells) of the first markdown table of ``report``."""
    section = report.split("## Results", 1)[1].splitlines()
    start = next(i for i, ln in enumerate(section) if ln.startswith("|"))
    lines = []
    for ln in section[start:]:
        if not ln.startswith("|"):
            break
        lines.append(ln)
    split = lambda ln: [c.strip() for c in ln.strip("|").split("|")]  # noqa: E731
    return split(lines[0]), [split(ln) for ln in lines[2:]]


def snapshot(out: Path):
    return {p: p.stat().st_mtime_ns for sub in ("runs", "scaling", "checkpoints") for p in (out / sub).rglob("*.json")}


def test_row_specs_are_validated(bench):
    with pytest.raises(ValueError, match="needs"):
        bench.RowSpec(name="x", kind="finetuned", label="X", backbone="diffrec", env_id="refit_gym/DiffRec-v0")
    with pytest.raises(ValueError, match="kind"):
        bench.RowSpec(name="x", kind="other", label="X")
    with pytest.raises(ValueError, match="path-safe"):
        bench.RowSpec(name="a/b", kind="baseline", label="X", baseline="ease")
    rows = bench.build_rows(["diffrec"], ["ease", "pretrained", "refit"])
    assert [r.name for r in rows] == ["ease", "diffrec", "diffrec-refit"]
    assert rows[2].algo == "refit" and rows[2].reward == "refit" and rows[2].env_id == "refit_gym/DiffRec-v0"
    # --reward applies to every method without a reward of its own; the naive row keeps top-k
    rows = bench.build_rows(["diffrec"], ["refit", "naive", "ppo", "a2c"], reward="graph-score")
    assert [(r.method, r.algo, r.reward) for r in rows] == [
        ("refit", "refit", "graph-score"), ("naive", "refit", "topk"), ("ppo", "ppo", "graph-score"),
        ("a2c", "a2c", "graph-score")]
    with pytest.raises(SystemExit, match="METHOD=FILE"):
        bench.parse_hyperparam_overrides(["nope=x.yml"])
    with pytest.raises(ValueError, match="no registered environment"):
        bench.build_rows(["nope"])


def test_loglog_slope(bench):
    assert bench.loglog_slope([1, 2, 4], [3, 6, 12]) == pytest.approx(1.0)
    assert bench.loglog_slope([10, 100], [5, 500]) == pytest.approx(2.0)
    assert bench.loglog_slope([10], [5]) is None and bench.loglog_slope([1, 2], [None, 3]) is None


def test_quick_benchmark_report_and_resume(bench, tmp_path):
    out = tmp_path / "bench"
    argv = ["--data", "synthetic", "--quick", "--out", str(out), "--device", "cpu", "--threads", "1",
            "--scaling-backbones", "diffrec", "--scaling-fractions", "0.5"]
    threads = torch.get_num_threads()
    try:
        first = bench.main(argv)
        before = snapshot(out)
        second = bench.main(argv)
    finally:
        torch.set_num_threads(threads)
    rows = bench.build_rows(["diffrec", "cfdiff"])
    cells = [f"{r.name}/seed{'0' if r.seeded else bench.SEEDLESS}" for r in rows]
    assert first["failed"] == [] and sorted(c for c in first["computed"] if not c.startswith("scaling/")) == sorted(cells)

    # files
    for name in ("report.md", "results.json", "plan.json", "invocations.json"):
        assert (out / name).is_file(), name
    for png in ("validation_vs_time.png", "cost_scaling.png"):
        blob = (out / png).read_bytes()
        assert blob[:8] == b"\x89PNG\r\n\x1a\n" and len(blob) > 1000, png
    for r in rows:
        assert (out / "runs" / r.name / f"seed{'0' if r.seeded else bench.SEEDLESS}.json").is_file()
        assert (out / "logs" / f"{r.name}-seed{'0' if r.seeded else bench.SEEDLESS}.log").stat().st_size > 0
    assert sorted(p.name for p in (out / "checkpoints").glob("*.pt")) == ["cfdiff-seed0.pt", "diffrec-seed0.pt"]

    # the table: one line per row spec, the expected columns, numbers everywhere, Δ only for fine-tuned rows
    report = (out / "report.md").read_text()
    header, body = table_rows(report)
    assert header == COLUMNS
    assert [b[0] for b in body] == [r.label for r in rows]
    for r, cells_ in zip(rows, body):
        assert all(not math.isnan(float(c)) for c in cells_[1:5]), cells_
        assert (cells_[5] == "—") == (r.kind != "finetuned") and (cells_[5].endswith("%") == (r.kind == "finetuned"))
    assert "EASE on test NDCG@20" in report and "Recall@20" in report
    assert "log-log slope of epoch time" in report and "one pretraining epoch" in report
    assert "scripts/benchmark.py --data synthetic --quick" in report

    # results.json
    res = json.loads((out / "results.json").read_text())
    assert {"dataset", "settings", "seeds", "rows", "ease_comparison", "scaling", "wall_clock"} <= set(res)
    by_name = {e["name"]: e for e in res["rows"]}
    assert list(by_name) == [r.name for r in rows]
    for r in rows:
        e = by_name[r.name]
        assert e["complete"] and {"recall@10", "recall@20", "ndcg@10", "ndcg@20"} <= set(e["test"]) <= set(e["valid"])
        if r.kind == "finetuned":
            assert set(e["relative_to_pretrained_pct"]) == {"ndcg@20", "recall@20"}
            (hist,) = e["history"].values()
            assert hist[0]["num_timesteps"] == 0 and len(hist) >= 2
            assert all(a["train_seconds"] <= b["train_seconds"] for a, b in zip(hist, hist[1:]))
    assert set(res["ease_comparison"]) >= {"sentence", "best", "ndcg@20", "recall@20"}
    scal = res["scaling"]["diffrec"]
    assert set(scal["points"]) == {"users0.5", "items0.5", "all"}
    for axis in ("users", "items"):
        assert isinstance(scal["summary"][axis]["time_slope"], float)
    full = scal["points"]["all"]
    assert full["peak_rss_mb"] > 0 and full["epoch_seconds"] > 0 and full["finetune_over_pretrain"] > 0
    assert not full["extrapolated"] and full["rollouts_timed"] == full["rollouts_per_epoch"]

    # resume: nothing recomputed, no result file rewritten
    assert second["computed"] == [] and second["failed"] == [] and sorted(second["reused"]) == sorted(cells)
    assert snapshot(out) == before

    # --report-only with one more seed: the seeded rows are incomplete, the deterministic ones are not
    third = bench.main(argv + ["--seeds", "0", "1", "--report-only"])
    assert third["computed"] == [] and snapshot(out) == before
    _, body = table_rows((out / "report.md").read_text())
    for r, cells_ in zip(rows, body):
        assert (cells_[1] == "missing (1/2 seeds)") == r.seeded, cells_
    assert len(json.loads((out / "invocations.json").read_text())) == 2  # --report-only is not an invocation


def test_changed_settings_are_refused(bench, tmp_path):
    out = tmp_path / "bench"
    bench.main(["--data", "synthetic", "--quick", "--out", str(out), "--methods", "pop", "--skip-scaling"])
    with pytest.raises(SystemExit, match="other settings"):
        bench.main(["--data", "synthetic", "--quick", "--out", str(out), "--methods", "pop", "--skip-scaling",
                    "--eval-points", "3"])
