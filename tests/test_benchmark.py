"""refit_gym.experiments.benchmark (scripts/benchmark.py): the report's structure, resuming from the per-seed files,
--report-only, the Pathwise and continued-pretraining rows (not the numbers)."""
from __future__ import annotations

import json
import math
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from refit_gym.registry import ENV_OF_BACKBONE

REPO = Path(__file__).resolve().parents[1]
COLUMNS = ["method", "Recall@10", "Recall@20", "NDCG@10", "NDCG@20", "ΔNDCG@20 vs pretrained",
           "ΔRecall@20 vs pretrained", "time / seed"]
SEQ_COLUMNS = ["method", "HR@10 (= Recall@10)", "HR@20 (= Recall@20)"] + COLUMNS[3:]


@pytest.fixture(scope="module")
def bench():
    from refit_gym.experiments import benchmark

    return benchmark


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


def write_sequence_folder(folder: Path, timed: bool = False, n_users: int = 32, n_items: int = 20, seed: int = 0
                          ) -> Path:
    """A tiny ``dataset.pkl`` folder (the shared datasets' format: 1-based items, umap / smap) that
    ``load_dataset`` reads as SequentialData: users walk the item cycle k -> k+1 from random starts, the
    validation and test items continue the walk; ``timed``: (item, 'YYYY-MM-DD HH:MM:SS') entries (POI)."""
    rng = np.random.default_rng(seed)
    starts, lengths = rng.integers(0, n_items, n_users), rng.integers(3, 9, n_users)
    walks = [[int(i) for i in (s + np.arange(n + 2)) % n_items] for s, n in zip(starts, lengths)]
    entry = (lambda i, k: (i + 1, f"2010-06-{k + 1:02d} 10:00:00")) if timed else (lambda i, k: i + 1)  # noqa: E731
    raw = {"train": {u: [entry(i, k) for k, i in enumerate(w[:-2])] for u, w in enumerate(walks)},
           "val": {u: [entry(w[-2], 20)] for u, w in enumerate(walks)},
           "test": {u: [entry(w[-1], 21)] for u, w in enumerate(walks)},
           "umap": {u: u for u in range(n_users)}, "smap": {i: i + 1 for i in range(n_items)}}
    folder.mkdir(parents=True)
    (folder / "dataset.pkl").write_bytes(pickle.dumps(raw, protocol=4))
    return folder


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
        relative = r.kind in ("finetuned", "continued")
        assert (cells_[5] == "—") != relative and cells_[5].endswith("%") == relative
    assert "EASE on test NDCG@20" in report and "Recall@20" in report
    assert "log-log slope of epoch time" in report and "one pretraining epoch" in report
    assert "scripts/benchmark.py --data synthetic --quick" in report
    # where the times were taken: every record names its machine, and the report lists each machine's rows
    machine = json.loads((out / "runs" / "diffrec" / "seed0.json").read_text())["machine"]
    assert machine.startswith("cpu: ") and f"- {machine}: " + ", ".join(r.label for r in rows) in report

    # results.json
    res = json.loads((out / "results.json").read_text())
    assert {"dataset", "settings", "seeds", "rows", "ease_comparison", "scaling", "wall_clock"} <= set(res)
    by_name = {e["name"]: e for e in res["rows"]}
    assert list(by_name) == [r.name for r in rows]
    for r in rows:
        e = by_name[r.name]
        assert e["complete"] and {"recall@10", "recall@20", "ndcg@10", "ndcg@20"} <= set(e["test"]) <= set(e["valid"])
        if r.kind in ("finetuned", "continued"):
            assert set(e["relative_to_pretrained_pct"]) == {"ndcg@20", "recall@20"}
            (hist,) = e["history"].values()
            assert all(a["train_seconds"] <= b["train_seconds"] for a, b in zip(hist, hist[1:]))
        if r.kind == "finetuned":
            assert hist[0]["num_timesteps"] == 0 and len(hist) >= 2
    assert set(res["ease_comparison"]) >= {"sentence", "best", "ndcg@20", "recall@20"}
    scal = res["scaling"]["diffrec"]
    assert set(scal["points"]) == {"users0.5", "items0.5", "all"}
    for axis in ("users", "items"):
        assert isinstance(scal["summary"][axis]["time_slope"], float)
    full = scal["points"]["all"]
    assert full["peak_rss_mb"] > 0 and full["epoch_seconds"] > 0 and full["finetune_over_pretrain"] > 0
    assert not full["extrapolated"] and full["rollouts_timed"] == full["rollouts_per_epoch"]

    # the Pathwise and continued-pretraining rows: records like the others'; the continued cell trained for the
    # seconds of the ReFiT cell of its seed (whole epochs for interaction data: those that fit, at least one)
    for backbone in ("diffrec", "cfdiff"):
        path = lambda m: out / "runs" / f"{backbone}-{m}" / "seed0.json"  # noqa: E731
        pathwise, refit, cont = (json.loads(path(m).read_text()) for m in ("pathwise", "refit", "continued"))
        assert pathwise["spec"]["algo"] == "pathwise" and pathwise["spec"]["reward"] == refit["spec"]["reward"]
        assert pathwise["hyperparams"]["n_timesteps"] == bench.quick_hyperparams("pathwise")["n_timesteps"]
        assert cont["kind"] == "continued" and cont["spec"]["budget"] == "refit"
        assert cont["budget"]["train_seconds"] == refit["train_seconds"] > 0
        assert cont["budget"]["record"] == str(path("refit"))
        assert {"valid", "test", "pretrained", "history", "train_seconds"} <= set(cont)
        # as many looks at validation as a fine-tuning cell (--eval-points; 2 with --quick), at even intervals
        eval_points = json.loads((out / "plan.json").read_text())["settings"]["eval_points"]
        every = max(1, cont["epochs"] // eval_points)
        assert cont["validations"] == eval_points
        assert [h["epoch"] for h in cont["history"] if "ndcg@20" in h] == \
            sorted({e for e in range(cont["epochs"]) if (e + 1) % every == 0} | {cont["epochs"] - 1})
        assert cont["epochs"] == len(cont["history"]) >= 1
        epochs = np.diff([0.0] + [h["train_seconds"] for h in cont["history"]])
        assert cont["train_seconds"] == pytest.approx(sum(epochs))
        # the whole epochs nearest to the budget at the estimated epoch time, at least one
        assert cont["epochs"] == max(1, round(refit["train_seconds"] / cont["epoch_seconds_estimate"]))
        # the start competes: the selected model is never below the start on validation
        assert cont["valid"]["ndcg@20"] >= cont["pretrained"]["valid"]["ndcg@20"]
    assert re.search(r"Controls \(the best fine-tuned model against its pretrained start and against continued "
                     r"pretraining of its backbone for the same training seconds\): .+ changes test NDCG@20 by [+-]\d+\.\d% "
                     r"and test Recall@20 by [+-]\d+\.\d% over its pretrained start; (DiffRec|CF-Diff) \+ continued "
                     r"pretraining changes test NDCG@20 by [+-]\d+\.\d% over the same start, and .+ (beats|does not beat) it "
                     r"on test NDCG@20 \(0\.\d{4} vs 0\.\d{4}", report), report
    ctrl = res["control_comparison"]
    assert ctrl["best"] == res["ease_comparison"]["best"] and ctrl["continued"] == ctrl["best"].split("-")[0] + "-continued"
    assert set(ctrl["ndcg@20"]) >= {"finetuned", "continued", "beats"}

    # resume: nothing recomputed, no result file rewritten
    assert second["computed"] == [] and second["failed"] == [] and sorted(second["reused"]) == sorted(cells)
    assert snapshot(out) == before

    # --report-only with one more seed: the seeded rows are incomplete, the deterministic ones are not
    third = bench.main(argv + ["--seeds", "0", "1", "--report-only"])
    assert third["computed"] == [] and snapshot(out) == before
    _, body = table_rows((out / "report.md").read_text())
    for r, cells_ in zip(rows, body):  # seeded rows: seed 0's numbers, marked partial
        assert cells_[0].endswith("(partial: 1/2 seeds)") == r.seeded, cells_
        assert not math.isnan(float(cells_[1]))
    assert len(json.loads((out / "invocations.json").read_text())) == 2  # --report-only is not an invocation


def test_changed_settings_are_refused(bench, tmp_path):
    out = tmp_path / "bench"
    bench.main(["--data", "synthetic", "--quick", "--out", str(out), "--methods", "pop", "--skip-scaling"])
    with pytest.raises(SystemExit, match="other settings"):
        bench.main(["--data", "synthetic", "--quick", "--out", str(out), "--methods", "pop", "--skip-scaling",
                    "--eval-points", "3"])
    # a refused invocation writes nothing: not even the hyperparameter files of its fine-tuning rows
    with pytest.raises(SystemExit, match="other settings"):
        bench.main(["--data", "synthetic", "--quick", "--out", str(out), "--methods", "pop", "refit", "--skip-scaling",
                    "--eval-points", "3", "--report-only"])
    assert not (out / "hyperparams").exists()


def test_report_only_needs_no_checkpoint_file(bench, tmp_path):
    """A missing --checkpoint-<backbone> is an error when cells may run, not when only the report is rebuilt
    (result files copied from the machine that had the checkpoint)."""
    out, gone = tmp_path / "bench", tmp_path / "gone.pt"
    argv = ["--data", "synthetic", "--quick", "--out", str(out), "--methods", "pop", "--skip-scaling",
            "--checkpoint-diffrec", str(gone)]
    with pytest.raises(SystemExit, match="no such file"):
        bench.main(argv)
    bench.main(["--data", "synthetic", "--quick", "--out", str(out), "--methods", "pop", "--skip-scaling"])
    bench.main(argv + ["--report-only"])
    assert (out / "report.md").is_file()


def test_merge_gathers_folders_run_apart(bench, tmp_path):
    """--merge copies the records, logs and invocations of folders run in other processes into one table; another
    dataset or other settings, and a record that differs from one already there, are refused by name."""
    base = ["--data", "synthetic", "--quick", "--skip-scaling"]
    bench.main(base + ["--out", str(tmp_path / "a"), "--methods", "pop"])
    bench.main(base + ["--out", str(tmp_path / "b"), "--methods", "itemknn"])
    out = tmp_path / "all"
    res = bench.main(base + ["--out", str(out), "--methods", "pop", "itemknn", "--report-only",
                             "--merge", str(tmp_path / "a"), str(tmp_path / "b")])
    assert res["computed"] == [] and {r["name"] for r in res["rows"]} == {"pop", "itemknn"}
    assert all(not math.isnan(r["test"]["ndcg@20"]["mean"]) for r in res["rows"])
    invocations = json.loads((out / "invocations.json").read_text())
    assert [Path(i["merged_from"]).name for i in invocations] == ["a", "b"]
    assert (out / "logs" / "itemknn-seedNA.log").is_file()
    bench.main(base + ["--out", str(out), "--methods", "pop", "itemknn", "--report-only", "--merge", str(tmp_path / "a")])
    assert len(json.loads((out / "invocations.json").read_text())) == 2  # merging again adds nothing

    bench.main(base + ["--out", str(tmp_path / "c"), "--methods", "pop", "--eval-points", "3"])
    with pytest.raises(SystemExit, match="other settings"):
        bench.main(base + ["--out", str(out), "--methods", "pop", "--report-only", "--merge", str(tmp_path / "c")])
    rec = tmp_path / "a" / "runs" / "pop" / "seedNA.json"
    blob = json.loads(rec.read_text())
    blob["test"]["ndcg@20"] = 1.0
    rec.write_text(json.dumps(blob))
    with pytest.raises(SystemExit, match="differs from"):
        bench.main(base + ["--out", str(out), "--methods", "pop", "--report-only", "--merge", str(tmp_path / "a")])


def test_retire_moves_a_row_out_so_it_can_run_again_with_other_settings(bench, tmp_path):
    """--retire moves a row's records, logs and hyperparameter file into --retire-to, with the plan they were made
    with, and takes its settings out of plan.json: the row then runs with other hyperparameters, and the retiring
    invocation is recorded. Unknown rows, rows without records and a lone --retire are refused by name, and an
    invocation refused for its settings moves nothing."""
    out, archive = tmp_path / "bench", tmp_path / "bench" / "retired-v1"
    argv = ["--data", "synthetic", "--quick", "--out", str(out), "--device", "cpu", "--threads", "1", "--backbones",
            "diffrec", "--skip-scaling"]
    threads = torch.get_num_threads()
    try:
        bench.main(argv + ["--methods", "pop", "pretrained", "refit"])
        old = json.loads((out / "runs" / "diffrec-refit" / "seed0.json").read_text())
        hp = tmp_path / "refit.yml"
        hp.write_text("refit_gym/DiffRec-v0:\n  learning_rate: 0.0002\n")
        with pytest.raises(SystemExit, match="other settings"):
            bench.main(argv + ["--methods", "refit", "--hyperparams", f"refit={hp}"])
        with pytest.raises(SystemExit, match="go together"):
            bench.main(argv + ["--methods", "refit", "--retire", "diffrec-refit", "--report-only"])
        with pytest.raises(SystemExit, match="not rows of this benchmark"):
            bench.main(argv + ["--retire", "diffrec-nothing", "--retire-to", str(archive), "--report-only"])
        with pytest.raises(SystemExit, match="nothing to retire"):
            bench.main(argv + ["--retire", "diffrec-ppo", "--retire-to", str(archive), "--report-only"])
        with pytest.raises(SystemExit, match="other settings"):  # refused: nothing moves
            bench.main(argv + ["--methods", "pop", "pretrained", "--eval-points", "3", "--retire", "diffrec-refit",
                               "--retire-to", str(archive), "--report-only"])
        assert (out / "runs" / "diffrec-refit" / "seed0.json").is_file() and not archive.exists()
        assert "refit|refit_gym/DiffRec-v0" in json.loads((out / "plan.json").read_text())["settings"]["hyperparams"]
        bench.main(argv + ["--methods", "pop", "pretrained", "--retire", "diffrec-refit", "--retire-to", str(archive),
                           "--report-only"])
        assert not (out / "runs" / "diffrec-refit").exists() and (out / "runs" / "pop").is_dir()
        assert json.loads((archive / "runs" / "diffrec-refit" / "seed0.json").read_text()) == old
        assert (archive / "logs" / "diffrec-refit-seed0.log").is_file()
        assert (archive / "hyperparams" / "refit-diffrec.yml").is_file()
        key = "refit|refit_gym/DiffRec-v0"
        assert key in json.loads((archive / "plan.json").read_text())["settings"]["hyperparams"]
        assert key not in json.loads((out / "plan.json").read_text())["settings"]["hyperparams"]
        assert "--retire" in json.loads((out / "invocations.json").read_text())[-1]["argv"]
        res = bench.main(argv + ["--methods", "refit", "--hyperparams", f"refit={hp}"])
        assert res["computed"] == ["diffrec-refit/seed0"]
        new = json.loads((out / "runs" / "diffrec-refit" / "seed0.json").read_text())
        assert new["hyperparams"]["learning_rate"] == 0.0002 != old["hyperparams"]["learning_rate"]
        with pytest.raises(SystemExit, match="exists already"):
            bench.main(argv + ["--retire", "diffrec-refit", "--retire-to", str(archive), "--report-only"])
    finally:
        torch.set_num_threads(threads)


def test_a_recipe_no_cell_was_made_with_does_not_block_another(bench, tmp_path):
    """plan.json keeps the hyperparameters of every fine-tuned row an invocation named, cells or not (a file's
    CF-Diff section when only DiffRec ran). A new recipe for such a row is accepted; for a row with records it is
    refused by name."""
    out = tmp_path / "bench"
    argv = ["--data", "synthetic", "--quick", "--out", str(out), "--skip-scaling", "--backbones", "diffrec"]
    bench.main(argv + ["--methods", "pop", "refit", "--report-only"])  # the row is planned, never run
    key = "refit|refit_gym/DiffRec-v0"
    assert key in json.loads((out / "plan.json").read_text())["settings"]["hyperparams"]
    hp = tmp_path / "refit.yml"
    hp.write_text("refit_gym/DiffRec-v0:\n  learning_rate: 0.0002\n")
    bench.main(argv + ["--methods", "pop", "refit", "--report-only", "--hyperparams", f"refit={hp}"])
    assert json.loads((out / "plan.json").read_text())["settings"]["hyperparams"][key]["learning_rate"] == 0.0002
    (out / "runs" / "diffrec-refit").mkdir(parents=True)  # a record of the row: now the recipe is the row's
    (out / "runs" / "diffrec-refit" / "seed0.json").write_text("{}")
    with pytest.raises(SystemExit, match=r"other settings \(refit\|refit_gym/DiffRec-v0\)"):
        bench.main(argv + ["--methods", "pop", "refit", "--report-only"])


def test_interrupted_benchmark_keeps_finished_cells_and_records_itself(bench, tmp_path, monkeypatch):
    """Ctrl-C (or SIGTERM, which __main__ turns into the same) during a cell: the cells finished before it stay
    on disk, the invocation is recorded as interrupted and the report is rebuilt from what is done."""
    out = tmp_path / "bench"
    argv = ["--data", "synthetic", "--quick", "--out", str(out), "--methods", "pop", "itemknn", "--skip-scaling"]
    real_run = bench.Runner.run

    def run(self, row, seed):
        if row.baseline == "itemknn":
            raise KeyboardInterrupt
        return real_run(self, row, seed)

    monkeypatch.setattr(bench.Runner, "run", run)
    result = bench.main(argv)
    assert result["interrupted"] and result["computed"] == [f"pop/seed{bench.SEEDLESS}"]
    assert (out / "runs" / "pop" / f"seed{bench.SEEDLESS}.json").is_file()
    assert not (out / "runs" / "itemknn").exists()
    (inv,) = json.loads((out / "invocations.json").read_text())
    assert inv["interrupted"] is True and inv["seconds"] > 0
    report = (out / "report.md").read_text()
    assert "missing (0/1 seeds)" in report and "  # interrupted" in report

    monkeypatch.setattr(bench.Runner, "run", real_run)  # continuing computes only what is missing
    again = bench.main(argv)
    assert not again["interrupted"] and again["computed"] == [f"itemknn/seed{bench.SEEDLESS}"]


def test_sigterm_stops_like_ctrl_c(bench):
    with pytest.raises(KeyboardInterrupt, match="signal 15"):
        bench._interrupt(15, None)


def test_scenario_is_inferred_from_the_data(bench, tmp_path):
    from refit_gym.data import load_dataset
    from refit_gym.data.synthetic import make_synthetic

    assert bench.infer_scenario(make_synthetic(n_users=20, n_items=15)) == "cf"
    assert bench.infer_scenario(make_synthetic(n_users=20, n_items=15, social=True)) == "social"
    seq = load_dataset(write_sequence_folder(tmp_path / "seq"))
    poi = load_dataset(write_sequence_folder(tmp_path / "poi", timed=True))
    assert bench.infer_scenario(seq) == "sequential" and bench.infer_scenario(poi) == "poi"
    assert bench.default_backbones("cf") == ["diffrec", "cfdiff"]
    assert [bench.default_backbones(s) for s in ("social", "sequential", "poi")] == [
        ["social-diffrec"], ["dreamrec"], ["dreamrec-poi"]]
    # the benchmark refuses a scenario, a backbone or a method that does not fit the data, before computing
    with pytest.raises(SystemExit, match="scenario 'cf' does not fit the data"):
        bench.main(["--data", str(tmp_path / "seq"), "--scenario", "cf", "--out", str(tmp_path / "o1")])
    with pytest.raises(SystemExit, match="needs timestamped"):
        bench.main(["--data", str(tmp_path / "seq"), "--backbones", "dreamrec-poi", "--out", str(tmp_path / "o2")])
    with pytest.raises(SystemExit, match="scenario 'sequential' has sequences"):
        bench.main(["--data", str(tmp_path / "seq"), "--backbones", "diffrec", "--out", str(tmp_path / "o3")])
    with pytest.raises(SystemExit, match="not a row of scenario 'sequential'"):
        bench.main(["--data", str(tmp_path / "seq"), "--methods", "ease", "--out", str(tmp_path / "o4")])
    with pytest.raises(SystemExit, match="need user and item subsets"):
        bench.main(["--data", str(tmp_path / "seq"), "--scaling-only", "--out", str(tmp_path / "o5")])
    # --quick fine-tuning rollouts are whole trajectories of the backbone's actual T (DreamRec's own default: 50)
    settings = bench.Settings(data="x", quick=False, select_metric="ndcg@20", eval_points=1, pretrain_args=[])
    assert bench.backbone_steps("dreamrec", settings) == 50 and bench.backbone_steps("diffrec", settings) == 40
    bench.main(["--data", str(tmp_path / "seq"), "--quick", "--methods", "refit", "ppo", "--pretrain-args", "--steps 3",
                "--out", str(tmp_path / "o6"), "--report-only"])
    hp = json.loads((tmp_path / "o6" / "plan.json").read_text())["settings"]["hyperparams"]
    assert hp["refit|refit_gym/DreamRec-v0"]["n_timesteps"] == bench.QUICK_N_ENVS * 3 * bench.QUICK_ROLLOUTS
    assert hp["ppo|refit_gym/DreamRec-v0"]["n_steps"] == 3
    # the scenario is part of the settings: another scenario's results are never mixed in one --out
    out = tmp_path / "poi-out"
    bench.main(["--data", str(tmp_path / "poi"), "--quick", "--methods", "pop", "--out", str(out)])
    assert json.loads((out / "plan.json").read_text())["settings"]["scenario"] == "poi"
    with pytest.raises(SystemExit, match=r"other settings \(scenario\)"):
        bench.main(["--data", str(tmp_path / "poi"), "--quick", "--methods", "pop", "--out", str(out),
                    "--scenario", "sequential"])


@pytest.mark.parametrize("scenario,backbone,env_id,baselines,reward", [
    ("cf", "diffrec", "refit_gym/DiffRec-v0", [("pop", False), ("itemknn", False), ("ease", False), ("t-ease", False)],
     "refit"),
    ("social", "social-diffrec", "refit_gym/SocialDiffRec-v0",
     [("pop", False), ("itemknn", False), ("ease", False)], "refit"),
    ("sequential", "dreamrec", "refit_gym/DreamRec-v0", [("pop", False), ("sasrec", True)], "refit-seq"),
    ("poi", "dreamrec-poi", "refit_gym/DreamRecPOI-v0", [("pop", False), ("sasrec", True)], "refit-seq"),
])
def test_rows_of_each_scenario(bench, scenario, backbone, env_id, baselines, reward):
    assert ENV_OF_BACKBONE[backbone] == env_id
    rows = bench.build_rows(bench.default_backbones(scenario)[:1], bench.METHODS, scenario=scenario)
    assert all(r.scenario == scenario for r in rows)
    base = [r for r in rows if r.kind == "baseline"]
    assert [(r.name, r.seeded) for r in base] == baselines
    assert [r.label for r in base] == [bench.BASELINE_LABELS[n] for n, _ in baselines]
    label = bench.BACKBONE_LABELS[backbone]
    rest = [(r.name, r.kind, r.label, r.env_id, r.seeded) for r in rows if r.kind != "baseline"]
    assert rest == [(backbone, "pretrained", f"{label} (pretrained)", env_id, True)] + [
        (f"{backbone}-{m}", "finetuned", f"{label} + {ml}", env_id, True)
        for m, (_, _, ml) in bench.FINETUNE_METHODS.items()] + [
        (f"{backbone}-continued", "continued", f"{label} + continued pretraining", env_id, True)]
    tuned = {r.method: r.reward for r in rows if r.kind == "finetuned"}
    assert tuned["refit"] == reward and tuned["naive"] == "topk"
    assert tuned["pathwise"] == reward  # the same reward as the ReFiT row
    assert set(bench.scenario_methods(scenario)) == {r.name for r in base} | {"pretrained", *bench.FINETUNE_METHODS,
                                                                              "continued"}
    # methods that do not exist for the scenario are left out; backbones of another data kind are refused
    other = "sasrec" if scenario in ("cf", "social") else "ease"
    assert other not in {r.name for r in bench.build_rows([], [other, "pop"], scenario=scenario)}
    with pytest.raises(ValueError, match="has baselines"):
        bench.RowSpec(name=other, kind="baseline", label="X", baseline=other, scenario=scenario)
    with pytest.raises(ValueError, match="reads"):
        bench.build_rows(["dreamrec" if scenario in ("cf", "social") else "diffrec"], scenario=scenario)


def test_quick_sequence_benchmark(bench, tmp_path):
    """End to end on a tiny dataset.pkl folder: scenario 'sequential' inferred, MostPopular / SASRec /
    DreamRec rows with numbers, Δ for the fine-tuned row, the SASRec and goal sentences; scaling skipped."""
    data = write_sequence_folder(tmp_path / "tiny-seq")
    out = tmp_path / "bench"
    argv = ["--data", str(data), "--quick", "--out", str(out), "--device", "cpu", "--threads", "1", "--seeds", "0", "1",
            "--methods", "pop", "sasrec", "pretrained", "refit"]
    threads = torch.get_num_threads()
    try:
        first = bench.main(argv)
        second = bench.main(argv)  # resumed: every cell reused
    finally:
        torch.set_num_threads(threads)
    rows = bench.build_rows(["dreamrec"], ["pop", "sasrec", "pretrained", "refit"], scenario="sequential")
    assert [r.name for r in rows] == ["pop", "sasrec", "dreamrec", "dreamrec-refit"]
    cells = [f"{r.name}/seed{s if r.seeded else bench.SEEDLESS}" for r in rows for s in ((0, 1) if r.seeded else (0,))]
    assert first["failed"] == [] and sorted(first["computed"]) == sorted(cells)
    assert second["computed"] == [] and sorted(second["reused"]) == sorted(cells)
    assert sorted(p.name for p in (out / "checkpoints").glob("*.pt")) == ["dreamrec-seed0.pt", "dreamrec-seed1.pt"]

    report = (out / "report.md").read_text()
    header, body = table_rows(report)
    assert header == SEQ_COLUMNS
    assert [b[0] for b in body] == ["MostPopular (deterministic)", "SASRec", "DreamRec (pretrained)", "DreamRec + ReFiT"]
    for r, cells_ in zip(rows, body):
        assert all(not math.isnan(float(c.split(" ± ")[0])) for c in cells_[1:5]), cells_
        assert (" ± " in cells_[4]) == r.seeded, cells_  # two seeds: a sample std for the seeded rows
        assert (cells_[5] == "—") == (r.kind != "finetuned") and (cells_[5].endswith("%") == (r.kind == "finetuned"))
    assert "Scenario: sequential" in report and "Recall@K = HR@K" in report
    assert re.search(r"DreamRec \+ ReFiT, (beats|does not beat) SASRec on test NDCG@20 \(0\.\d{4} vs 0\.\d{4}", report)
    assert re.search(r"Goal \(\+20% test NDCG@20 over the pretrained backbone and over its continued-pretraining "
                     r"control, and the best fine-tuned diffusion row above SASRec\): DreamRec \+ ReFiT changes test "
                     r"NDCG@20 by [+-]\d+\.\d% ± \d+\.\d% over its pretrained start \(mean over 2 seeds; "
                     r"(at least|below) \+20%\) and continued pretraining of its backbone is not run; the best "
                     r"fine-tuned row by mean validation ndcg@20, DreamRec \+ ReFiT, is (not )?above SASRec: "
                     r"0\.\d{4} vs 0\.\d{4}: goal (not met|not decided)\.", report)
    assert "Not measured: the cost-and-scaling points need user and item subsets" in report
    assert "baseline_score_fn(\"sasrec\", d, epochs=1, d=16, n_layers=1, seed=0)" in report

    res = json.loads((out / "results.json").read_text())
    assert res["scenario"] == "sequential" and res["settings"]["scenario"] == "sequential" and res["scaling"] == {}
    assert "ease_comparison" not in res
    ref = res["reference_comparison"]
    assert ref["reference"] == "sasrec" and ref["best"] == "dreamrec-refit" and set(ref["ndcg@20"]) >= {"beats", "reference"}
    by_name = {e["name"]: e for e in res["rows"]}
    assert {"hitrate@20", "ndcg@20"} <= set(by_name["sasrec"]["test"])
    assert by_name["sasrec"]["seeds_done"] == [0, 1] and by_name["pop"]["seeds_done"] == [0]
    goal = res["goal"]
    (g,) = goal["rows"]
    assert goal["target_pct"] == 20.0 and g["name"] == "dreamrec-refit" and len(g["relative_pct_values"]) == 2
    # no continued-pretraining row: the control condition is unknown, so the goal cannot be met
    assert goal["met"] is False and g["continued"] is None and g["met_continued"] is None
    assert goal["best"] == "dreamrec-refit" and goal["best_beats_reference"] == (g["ndcg20"] > goal["reference_ndcg20"])
    assert g["ndcg20"] == pytest.approx(by_name["dreamrec-refit"]["test"]["ndcg@20"]["mean"])
    assert goal["reference_ndcg20"] == pytest.approx(by_name["sasrec"]["test"]["ndcg@20"]["mean"])
    sas = [json.loads((out / "runs" / "sasrec" / f"seed{s}.json").read_text()) for s in (0, 1)]
    assert [r["params"]["seed"] for r in sas] == [0, 1] and sas[0]["params"]["epochs"] == 1
    assert sas[0]["test"] != sas[1]["test"] or sas[0]["valid"] != sas[1]["valid"]  # seeded: different runs
    # --quick rollouts are whole trajectories of DreamRec's T (--steps 5 here)
    hp = res["settings"]["hyperparams"]["refit|refit_gym/DreamRec-v0"]
    assert hp["n_timesteps"] == bench.QUICK_N_ENVS * 5 * bench.QUICK_ROLLOUTS


def test_given_checkpoint_is_scored_once(bench, tmp_path):
    """A checkpoint given for every seed is evaluated once; the other seeds reuse its (deterministic) metrics."""
    from refit_gym.data import load_dataset
    from refit_gym.diffusion import build_backbone
    from refit_gym.diffusion.checkpoint import save_backbone

    data = load_dataset("synthetic")
    torch.manual_seed(0)
    ckpt = save_backbone(build_backbone("diffrec", data, hidden=[16], schedule=dict(steps=3)).eval(),
                         tmp_path / "b.pt", meta=dict(n_users=data.n_users))
    out = tmp_path / "bench"
    res = bench.main(["--data", "synthetic", "--quick", "--out", str(out), "--methods", "pretrained", "--backbones",
                      "diffrec", "--seeds", "0", "1", "--checkpoint-diffrec", str(ckpt), "--skip-scaling"])
    assert res["failed"] == []
    r0, r1 = (json.loads((out / "runs" / "diffrec" / f"seed{s}.json").read_text()) for s in (0, 1))
    assert r0["metrics_reused_from"] is None and r1["metrics_reused_from"].endswith("seed0.json")
    assert r0["valid"] == r1["valid"] and r0["test"] == r1["test"] and r0["checkpoint_sha1"] == r1["checkpoint_sha1"]


def test_plan_has_the_pathwise_and_continued_rows(bench):
    """Issues 15 and 16: per backbone a Pathwise row on the ReFiT row's reward, and the continued-pretraining control
    (after the fine-tuned rows, its budget the ReFiT cell unless --continued-budget says otherwise)."""
    assert "pathwise" in bench.FINETUNE_METHODS and "continued" in bench.METHODS
    rows = {r.name: r for r in bench.build_rows(["diffrec", "cfdiff"])}
    for b, label in (("diffrec", "DiffRec"), ("cfdiff", "CF-Diff")):
        pw, refit, cont = rows[f"{b}-pathwise"], rows[f"{b}-refit"], rows[f"{b}-continued"]
        assert (pw.kind, pw.algo, pw.method, pw.label) == ("finetuned", "pathwise", "pathwise", f"{label} + Pathwise")
        assert pw.reward == refit.reward == "refit"
        assert (cont.kind, cont.budget, cont.budget_row, cont.label) == (
            "continued", "refit", f"{b}-refit", f"{label} + continued pretraining")
        names = list(rows)
        assert names.index(f"{b}-continued") > max(names.index(f"{b}-{m}") for m in bench.FINETUNE_METHODS)
    assert bench.quick_hyperparams("pathwise", 5) == dict(n_envs=bench.QUICK_N_ENVS,
                                                          n_timesteps=bench.QUICK_N_ENVS * 5 * bench.QUICK_ROLLOUTS)
    # the budget is a setting of the row; only a continued row's spec carries it (older records read as before)
    (ppo_budget,) = [r for r in bench.build_rows(["diffrec"], ["continued"], continued_budget="ppo")]
    assert ppo_budget.budget_row == "diffrec-ppo" and ppo_budget.as_dict()["budget"] == "ppo"
    assert "budget" not in rows["diffrec-refit"].as_dict()
    with pytest.raises(ValueError, match="continued budget 'nope'"):
        bench.build_rows(["diffrec"], continued_budget="nope")
    with pytest.raises(ValueError, match="budget 'refit' is for kind 'continued'"):
        bench.RowSpec(name="x", kind="pretrained", label="X", backbone="diffrec", env_id="refit_gym/DiffRec-v0",
                      budget="refit")
    with pytest.raises(ValueError, match=r"needs \['budget'\]"):
        bench.RowSpec(name="x", kind="continued", label="X", backbone="diffrec", env_id="refit_gym/DiffRec-v0")


def test_continued_row_needs_its_budget_cell(bench, tmp_path):
    """Without the ReFiT cell of its seed the continued cell fails with a message naming the missing record; once
    the budget cell exists it runs; a record made with another budget is refused on reuse."""
    out = tmp_path / "bench"
    argv = ["--data", "synthetic", "--quick", "--out", str(out), "--device", "cpu", "--threads", "1", "--backbones",
            "diffrec", "--skip-scaling"]
    threads = torch.get_num_threads()
    try:
        res = bench.main(argv + ["--methods", "pretrained", "continued"])
        (fail,) = res["failed"]
        missing = out / "runs" / "diffrec-refit" / "seed0.json"
        assert fail["cell"] == "diffrec-continued/seed0" and fail["error"].startswith("BudgetMissingError: ")
        assert str(missing) in fail["error"] and "run method 'refit' for seed 0 first" in fail["error"]
        with pytest.raises(bench.BudgetMissingError, match="diffrec-refit"):
            bench.main(argv + ["--methods", "pretrained", "continued", "--fail-fast"])
        report = (out / "report.md").read_text()
        assert "| DiffRec + continued pretraining | missing (0/1 seeds) |" in report
        res = bench.main(argv + ["--methods", "pretrained", "refit", "continued"])
        assert res["failed"] == [] and sorted(res["computed"]) == ["diffrec-continued/seed0", "diffrec-refit/seed0"]
        with pytest.raises(SystemExit, match="computed with --continued-budget refit, not ppo"):
            bench.main(argv + ["--methods", "continued", "--continued-budget", "ppo"])
    finally:
        torch.set_num_threads(threads)


def test_quick_sequence_continued_row(bench, tmp_path):
    """Sequence data: the continued cell runs the whole epochs nearest to the ReFiT cell's training seconds and is
    validated on the same schedule as interaction data (every ``epochs // eval_points`` epochs and after the last)."""
    data = write_sequence_folder(tmp_path / "tiny-seq")
    out = tmp_path / "bench"
    threads = torch.get_num_threads()
    try:
        res = bench.main(["--data", str(data), "--quick", "--out", str(out), "--device", "cpu", "--threads", "1",
                          "--methods", "pretrained", "refit", "continued"])
    finally:
        torch.set_num_threads(threads)
    assert res["failed"] == []
    refit, cont = (json.loads((out / "runs" / f"dreamrec-{m}" / "seed0.json").read_text()) for m in ("refit", "continued"))
    assert cont["budget"]["train_seconds"] == refit["train_seconds"] and cont["epoch_seconds_estimate"] > 0
    assert cont["epochs"] == max(1, round(refit["train_seconds"] / cont["epoch_seconds_estimate"]))
    eval_points = json.loads((out / "plan.json").read_text())["settings"]["eval_points"]
    assert cont["validations"] == eval_points
    every = max(1, cont["epochs"] // eval_points)
    validated = [h["epoch"] for h in cont["history"] if "ndcg@20" in h]
    assert validated == sorted({e for e in range(cont["epochs"]) if (e + 1) % every == 0} | {cont["epochs"] - 1})
    _, body = table_rows((out / "report.md").read_text())
    assert body[-1][0] == "DreamRec + continued pretraining" and body[-1][5].endswith("%")


def test_quick_sequence_benchmark_under_user_split(bench, tmp_path):
    """--protocol user-split reaches the data, the pretraining subprocess arguments, the checkpoints and plan.json;
    the same --out without it is refused (the protocol is a setting)."""
    from refit_gym.diffusion.checkpoint import checkpoint_protocol

    data = write_sequence_folder(tmp_path / "tiny-seq", n_users=40)
    out = tmp_path / "bench"
    argv = ["--data", str(data), "--quick", "--out", str(out), "--device", "cpu", "--threads", "1", "--seeds", "0",
            "--methods", "pop", "pretrained", "--protocol", "user-split", "--split-seed", "1"]
    threads = torch.get_num_threads()
    try:
        res = bench.main(argv)
    finally:
        torch.set_num_threads(threads)
    assert res["failed"] == []
    settings = json.loads((out / "plan.json").read_text())["settings"]
    assert settings["protocol"] == {"protocol": "user-split", "split_seed": 1}
    assert checkpoint_protocol(out / "checkpoints" / "dreamrec-seed0.pt")["split_seed"] == 1
    record = json.loads((out / "checkpoints" / "dreamrec-seed0.json").read_text())
    assert record["argv"][-4:] == ["--protocol", "user-split", "--split-seed", "1"]
    with pytest.raises(SystemExit, match=r"other settings \(protocol\)"):
        bench.main(argv[:-4])


def _goal_row(name, kind, method, test, valid=0.0, rel=(0.0,), backbone="dreamrec"):
    return dict(name=name, label=name, kind=kind, complete=True, seeds_done=[0, 1, 2], seeds_expected=3,
                spec=dict(backbone=backbone, method=method), valid={"ndcg@20": dict(mean=valid)},
                test={"ndcg@20": dict(mean=test)},
                relative_to_pretrained_pct={"ndcg@20": dict(mean=float(np.mean(rel)), values=list(rel))})


@pytest.mark.parametrize("control, sasrec, verdict", [
    (0.0170, 0.0100, "met"),          # +25% over the start, +27% over the control, the best row above SASRec
    (0.0185, 0.0100, "not met"),      # +17% over the control
    (0.0170, 0.0490, "not met"),      # the best row below SASRec
    (None, 0.0100, "not decided"),    # no control: unknown
])
def test_goal_needs_the_start_the_control_and_the_reference(control, sasrec, verdict):
    """The sequence goal: ReFiT +20% over its start and over its backbone's continued pretraining (mean test
    NDCG@20), and the best fine-tuned row (by validation) above SASRec."""
    from refit_gym.experiments.benchmark.report import goal_sentence

    table = [_goal_row("sasrec", "baseline", "sasrec", sasrec),
             _goal_row("dreamrec-refit", "finetuned", "refit", 0.0216, valid=0.028, rel=(23.0, 25.0, 27.0)),
             _goal_row("dreamrec-pathwise", "finetuned", "pathwise", 0.0246, valid=0.033, rel=(38.0,))]
    if control is not None:
        table.append(_goal_row("dreamrec-continued", "continued", "continued", control, rel=(5.0,)))
    sentence, info = goal_sentence(table, "ndcg@20")
    assert sentence.endswith(f"goal {verdict}.") and info["met"] == (verdict == "met")
    (row,) = info["rows"]
    assert row["name"] == "dreamrec-refit" and row["relative_pct"] == pytest.approx(25.0)
    assert info["best"] == "dreamrec-pathwise"  # the reference condition is the best row's, by validation
    if control is not None:
        assert row["over_continued_pct"] == pytest.approx(100 * (0.0216 - control) / control)
