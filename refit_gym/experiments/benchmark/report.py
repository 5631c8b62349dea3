"""The benchmark's report: the per-row aggregates over seeds, the comparison sentences, ``report.md``,
``results.json`` and the plots, all rebuilt from the records on disk."""
from __future__ import annotations

import json
import shlex
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from refit_gym.experiments.benchmark.files import read_json, repo_relative, row_seeds, run_path, write_json
from refit_gym.experiments.benchmark.plan import (BACKBONE_LABELS, BASELINE_LABELS, CONTINUED_LABEL,
                                                  MACHINE_NOT_RECORDED, REFERENCE_BASELINE, RELATIVE_METRICS,
                                                  SEEDED_BASELINES, SEQUENCE_GOAL_PCT, TABLE_METRICS, RowSpec,
                                                  Settings)
from refit_gym.options import protocol_argv
from refit_gym.plots import plot_scaling, plot_validation

#: row kinds whose records hold their pretrained start's metrics: the table shows their change over it
RELATIVE_KINDS = ("finetuned", "continued")


def fmt_mean_std(values: Sequence[float], digits: int = 4, pct: bool = False) -> str:
    """Returns ``"mean ± sample std"`` of ``values`` (the mean alone for one value; ``pct``: signed, with %)."""
    import numpy as np

    v = np.asarray(values, dtype=float)
    unit = "%" if pct else ""
    mean = f"{v.mean():+.{digits}f}{unit}" if pct else f"{v.mean():.{digits}f}"
    return mean if len(v) < 2 else f"{mean} ± {v.std(ddof=1):.{digits}f}{unit}"


def aggregate(out: Path, rows: Sequence[RowSpec], seeds: Sequence[int]) -> List[Dict[str, Any]]:
    """Returns per row: the per-seed records found on disk, the means and sample stds of valid / test metrics,
    the mean cell seconds, the machines, and for fine-tuned and continued rows the relative test change over the
    pretrained start (percent) and the per-seed histories."""
    import numpy as np

    table = []
    for row in rows:
        expected = row_seeds(row, seeds)
        records = {s: read_json(run_path(out, row, s)) for s in expected}
        records = {s: r for s, r in records.items() if r is not None}
        entry: Dict[str, Any] = dict(name=row.name, label=row.label, kind=row.kind, spec=row.as_dict(),
                                     seeds_expected=len(expected), seeds_done=sorted(records),
                                     complete=len(records) == len(expected))
        if records:
            for split in ("valid", "test"):
                keys = sorted(set.intersection(*(set(r[split]) for r in records.values())))
                vals = {k: [float(r[split][k]) for r in records.values()] for k in keys}
                entry[split] = {k: dict(mean=float(np.mean(v)), std=float(np.std(v, ddof=1)) if len(v) > 1 else None,
                                        values=v) for k, v in vals.items()}
            entry["seconds"] = dict(mean=float(np.mean([r["seconds"] for r in records.values()])),
                                    values=[r["seconds"] for r in records.values()])
            entry["machines"] = sorted({r.get("machine") or MACHINE_NOT_RECORDED for r in records.values()})
            if row.kind in RELATIVE_KINDS:
                rel = {k: [100 * (r["test"][k] - r["pretrained"]["test"][k]) / r["pretrained"]["test"][k]
                           if r["pretrained"]["test"][k] else float("nan") for r in records.values()]
                       for k in RELATIVE_METRICS}
                entry["relative_to_pretrained_pct"] = {k: dict(mean=float(np.mean(v)), values=v) for k, v in rel.items()}
                entry["history"] = {str(s): r["history"] for s, r in records.items()}
        table.append(entry)
    return table


def seed0_checkpoint(out: Path, backbone: str) -> str:
    """Returns the checkpoint seed 0 of ``backbone`` started from (a given one, as recorded by its pretrained row), or
    where the benchmark keeps the one it pretrains."""
    record = read_json(out / "runs" / backbone / "seed0.json")
    return record["checkpoint"] if record and record.get("checkpoint") else str(out / "checkpoints" / f"{backbone}-seed0.pt")


def machines_lines(table: List[Dict[str, Any]]) -> List[str]:
    """Returns where the times of the table were taken, as report lines: one line per machine naming its rows, or
    nothing when no record names its machine (results from before the benchmark recorded it)."""
    by_machine: Dict[str, List[str]] = {}
    for e in table:
        for m in e.get("machines", []):
            by_machine.setdefault(m, []).append(e["label"])
    if set(by_machine) <= {MACHINE_NOT_RECORDED}:
        return []
    return ["", "Machines (times are comparable only within one):"] + [
        f"- {m}: {', '.join(labels)}" for m, labels in sorted(by_machine.items())]


def seeds_note(entry: Dict[str, Any]) -> str:
    """Returns ``" (partial: n/N seeds)"`` for a row with only some of its seeds done, else ``""``."""
    if entry["complete"] or not entry["seeds_done"]:
        return ""
    return f" (partial: {len(entry['seeds_done'])}/{entry['seeds_expected']} seeds)"


def reference_sentence(table: List[Dict[str, Any]], select_metric: str, name: str = "ease",
                       label: str = "EASE") -> Tuple[str, Dict[str, Any]]:
    """Whether the best fine-tuned model (chosen by mean validation ``select_metric``) beats the reference row
    ``name`` (shown as ``label``: EASE for ``cf`` / ``social``, SASRec for sequences) on test NDCG@20 and
    Recall@20, means over seeds (a reference with only some of its seeds done is used and said to be partial).
    Returns (sentence, info); info is empty when a row is missing."""
    ref = next((e for e in table if e["name"] == name and e["seeds_done"]), None)
    tuned = [e for e in table if e["kind"] == "finetuned" and e["complete"]]
    if ref is None or not tuned:
        why = label if ref is None else "any fine-tuned model"
        return f"No comparison with {label} yet: the results of {why} are missing.", {}
    best = max(tuned, key=lambda e: e["valid"][select_metric]["mean"])
    parts = []
    info: Dict[str, Any] = dict(reference=name, reference_label=label, best=best["name"], best_label=best["label"],
                                chosen_on=f"mean valid {select_metric}")
    for k, metric_name in (("ndcg@20", "NDCG@20"), ("recall@20", "Recall@20")):
        a, b = best["test"][k]["mean"], ref["test"][k]["mean"]
        diff, rel = a - b, (100 * (a - b) / b if b else float("nan"))
        info[k] = dict(finetuned=a, reference=b, difference=diff, relative_pct=rel, beats=a > b)
        if name == "ease":
            info[k]["ease"] = b  # the key of earlier results.json files
        parts.append(f"{'beats' if a > b else 'does not beat'} {label} on test {metric_name} "
                     f"({a:.4f} vs {b:.4f}: {diff:+.4f}, {rel:+.1f}%)")
    info["reference_seeds"] = len(ref["seeds_done"])
    return (f"The best fine-tuned diffusion model by mean validation {select_metric}, {best['label']}, "
            f"{parts[0]} and {parts[1]}{seeds_note(ref).replace(' (partial', f' ({label} partial')}."), info


def goal_sentence(table: List[Dict[str, Any]], select_metric: str, ref_name: str = "sasrec", ref_label: str = "SASRec",
                  goal_pct: float = SEQUENCE_GOAL_PCT) -> Tuple[str, Dict[str, Any]]:
    """The issue's goal on sequence data. For each complete ReFiT row (method ``refit``; without one, the best
    fine-tuned row by mean validation ``select_metric``): a mean relative test NDCG@20 change over its own
    pretrained start (the table's ΔNDCG@20, percent) of at least ``goal_pct``, and a mean test NDCG@20 at least
    ``goal_pct`` percent above the continued-pretraining row of its backbone (its control); and the best fine-tuned
    row by mean validation ``select_metric`` above the reference row ``ref_name`` on mean test NDCG@20.
    Returns (sentence, info); info ``met``: some row meets its two conditions and the best row the third."""
    head = (f"Goal (+{goal_pct:g}% test NDCG@20 over the pretrained backbone and over its continued-pretraining "
            f"control, and the best fine-tuned diffusion row above {ref_label})")
    tuned = [e for e in table if e["kind"] == "finetuned" and e["complete"]]
    if not tuned:
        return f"{head}: not measured yet, the fine-tuned results are missing.", {}
    ref = next((e for e in table if e["name"] == ref_name and e["seeds_done"]), None)
    continued = {e["spec"]["backbone"]: e for e in table if e["kind"] == "continued" and e["seeds_done"]}
    best = max(tuned, key=lambda e: e["valid"][select_metric]["mean"])
    targets = [e for e in tuned if e["spec"]["method"] == "refit"] or [best]
    parts, rows = [], []
    for e in targets:
        rel = e["relative_to_pretrained_pct"]["ndcg@20"]
        a = e["test"]["ndcg@20"]["mean"]
        cont = continued.get(e["spec"]["backbone"])
        c = None if cont is None else cont["test"]["ndcg@20"]["mean"]
        over = None if not c else 100 * (a - c) / c
        row = dict(name=e["name"], label=e["label"], relative_pct=rel["mean"], relative_pct_values=rel["values"],
                   ndcg20=a, met_relative=rel["mean"] >= goal_pct, continued=None if cont is None else cont["name"],
                   continued_ndcg20=c, over_continued_pct=over,
                   met_continued=None if over is None else over >= goal_pct)
        rows.append(row)
        n = len(e["seeds_done"])
        text = (f"{e['label']}{'' if e['spec']['method'] == 'refit' else f' (best by mean validation {select_metric})'}"
                f" changes test NDCG@20 by {fmt_mean_std(rel['values'], 1, pct=True)} over its pretrained start "
                f"(mean over {n} seed{'s' if n != 1 else ''}; {'at least' if row['met_relative'] else 'below'} "
                f"+{goal_pct:g}%)")
        if over is None:
            text += " and continued pretraining of its backbone is not run"
        else:
            text += (f" and by {over:+.1f}% over {cont['label']}{seeds_note(cont)} ({a:.4f} vs {c:.4f}; "
                     f"{'at least' if row['met_continued'] else 'below'} +{goal_pct:g}%)")
        parts.append(text)
    b = None if ref is None else ref["test"]["ndcg@20"]["mean"]
    x = best["test"]["ndcg@20"]["mean"]
    beats = None if b is None else x > b
    vs = (f"{ref_label} missing" if b is None else
          f"{'above' if beats else 'not above'} {ref_label}: {x:.4f} vs {b:.4f}"
          + seeds_note(ref).replace(" (partial", f" ({ref_label} partial"))
    met = bool(beats and any(r["met_relative"] and r["met_continued"] for r in rows))
    # not met when a known condition fails; not decided when the rest is unknown (the control or reference not run)
    failed = beats is False or not any(r["met_relative"] and r["met_continued"] is not False for r in rows)
    verdict = "met" if met else ("not met" if failed else "not decided")
    info = dict(target_pct=goal_pct, reference=ref_name, rows=rows, best=best["name"], best_ndcg20=x,
                reference_ndcg20=b, best_beats_reference=beats, met=met)
    return (f"{head}: " + "; ".join(parts) + f"; the best fine-tuned row by mean validation {select_metric}, "
            f"{best['label']}, is {vs}: goal {verdict}."), info


def control_sentence(table: List[Dict[str, Any]], select_metric: str) -> Tuple[Optional[str], Dict[str, Any]]:
    """The best fine-tuned row (chosen by mean validation ``select_metric``) against its two controls: its own
    pretrained start (the table's Δ: mean relative test change per seed, percent) and the continued-pretraining
    row of its backbone (the same pretrained start trained on for the same seconds; test NDCG@20 and Recall@20,
    means over seeds). Returns (sentence, info); (None, {}) when the plan has no continued row, so that reports
    of earlier plans read as before."""
    continued = {e["spec"]["backbone"]: e for e in table if e["kind"] == "continued"}
    if not continued:
        return None, {}
    head = ("Controls (the best fine-tuned model against its pretrained start and against continued pretraining of "
            "its backbone for the same training seconds)")
    tuned = [e for e in table if e["kind"] == "finetuned" and e["complete"]]
    if not tuned:
        return f"{head}: not measured yet, the fine-tuned results are missing.", {}
    best = max(tuned, key=lambda e: e["valid"][select_metric]["mean"])
    rel = best["relative_to_pretrained_pct"]
    info: Dict[str, Any] = dict(best=best["name"], best_label=best["label"], chosen_on=f"mean valid {select_metric}",
                                relative_to_pretrained_pct={k: rel[k]["mean"] for k in RELATIVE_METRICS})
    parts = [f"{best['label']} changes test NDCG@20 by {fmt_mean_std(rel['ndcg@20']['values'], 1, pct=True)} and "
             f"test Recall@20 by {fmt_mean_std(rel['recall@20']['values'], 1, pct=True)} over its pretrained start"]
    cont = continued.get(best["spec"]["backbone"])
    if cont is None or not cont["seeds_done"]:
        backbone = best["spec"]["backbone"]
        label = cont["label"] if cont else f"{BACKBONE_LABELS.get(backbone, backbone)} + {CONTINUED_LABEL}"
        parts.append(f"{label} is not run yet, so whether it beats training longer is not known")
        return f"{head}: " + "; ".join(parts) + ".", dict(info, continued=None)
    info.update(continued=cont["name"], continued_label=cont["label"], continued_seeds=len(cont["seeds_done"]))
    vs = []
    for k, metric_name in (("ndcg@20", "NDCG@20"), ("recall@20", "Recall@20")):
        a, b = best["test"][k]["mean"], cont["test"][k]["mean"]
        diff, pct = a - b, (100 * (a - b) / b if b else float("nan"))
        info[k] = dict(finetuned=a, continued=b, difference=diff, relative_pct=pct, beats=a > b)
        vs.append(f"{'beats' if a > b else 'does not beat'} it on test {metric_name} ({a:.4f} vs {b:.4f}: "
                  f"{diff:+.4f}, {pct:+.1f}%)")
    crel = cont["relative_to_pretrained_pct"]["ndcg@20"]["values"]
    parts.append(f"{cont['label']}{seeds_note(cont)} changes test NDCG@20 by {fmt_mean_std(crel, 1, pct=True)} over "
                 f"the same start, and {best['label']} {vs[0]} and {vs[1]}")
    return f"{head}: " + "; ".join(parts) + ".", info


def fmt_seconds(s: float) -> str:
    """Returns ``s`` seconds as ``"12.3 s"``, ``"4.5 min"`` or ``"1.23 h"``."""
    return f"{s:.1f} s" if s < 120 else (f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.2f} h")


SCENARIO_PROTOCOLS = {
    False: "masked full ranking over all items (the user's known items excluded) of every user with a held-out item",
    True: "leave-one-out full ranking over all items of each user's one held-out item (history not masked); with "
          "one target per user Recall@K = HR@K (hit rate)",
}


def write_report(out: Path, settings: Settings, rows: Sequence[RowSpec], seeds: Sequence[int],
                 scaling: Dict[str, Dict[str, Any]], invocation: Dict[str, Any], data_summary: str,
                 scaling_note: Optional[str] = None) -> Dict[str, Any]:
    """Build ``report.md``, ``results.json`` and the plots from the files in ``out``; returns ``results.json``'s
    content.

    The reference sentence compares the best fine-tuned model with the scenario's
    :data:`REFERENCE_BASELINE` row; a plan with continued rows adds the control sentence
    (:func:`control_sentence`); sequence scenarios add the goal sentence (:func:`goal_sentence`).
    ``scaling_note``: why there are no scaling measurements (written instead of the section)."""
    from refit_gym.scenarios import SCENARIOS

    scenario = SCENARIOS[settings.scenario]
    table = aggregate(out, rows, seeds)
    ref_name = REFERENCE_BASELINE[scenario.name]
    ref_label = BASELINE_LABELS[ref_name]
    sentence, ref_info = reference_sentence(table, settings.select_metric, ref_name, ref_label)
    control, control_info = control_sentence(table, settings.select_metric)
    goal, goal_info = (goal_sentence(table, settings.select_metric, ref_name, ref_label, SEQUENCE_GOAL_PCT)
                       if scenario.sequential else (None, {}))
    invocations = read_json(out / "invocations.json") or []
    pretrain_records = [read_json(p) for p in sorted((out / "checkpoints").glob("*.json"))]
    pretrain_seconds = sum(r.get("seconds") or 0 for r in pretrain_records if r)
    run_seconds = sum(sum(e["seconds"]["values"]) for e in table if "seconds" in e)
    scaling_seconds = sum(p.get("seconds", 0) for res in scaling.values() for p in res["points"].values())
    plots = {k: plot(arg, out / f"{k}.png") for k, plot, arg in
             (("validation_vs_time", plot_validation, table), ("cost_scaling", plot_scaling, scaling))}

    n_seeds = len(seeds)
    from refit_gym.baselines import DEFAULT_GRIDS

    present = {r.baseline for r in rows if r.kind == "baseline"}
    grids = [f"{BASELINE_LABELS[b]}'s {DEFAULT_GRIDS[b][0]}" for b in BASELINE_LABELS
             if b in present and b in DEFAULT_GRIDS and not scenario.sequential]
    baseline_note = f"{' and '.join(grids)} chosen on validation; " if grids else ""
    fixed = "".join(f"{BASELINE_LABELS[b]} fitted with fixed settings {kw}"
                    f"{' and one run per seed' if b in SEEDED_BASELINES else ''}; "
                    for b, kw in settings.baseline_kwargs.items() if kw and b in present)
    headers = ["Recall@10", "Recall@20", "NDCG@10", "NDCG@20"]
    if scenario.sequential:
        headers = ["HR@10 (= Recall@10)", "HR@20 (= Recall@20)", "NDCG@10", "NDCG@20"]
    lines = [f"# Benchmark: {data_summary.split(':')[0]}", "",
             f"Data: {data_summary}.  ",
             f"Scenario: {scenario.name} (environment {scenario.env_id}); protocol: "
             f"{SCENARIO_PROTOCOLS[scenario.sequential]}.  ",
             f"Settings: {'--quick (synthetic-size settings; not the paper recipe)' if settings.quick else 'full'}; "
             f"seeds {list(seeds)}; model selection on validation {settings.select_metric} only "
             f"({baseline_note}the fine-tuned checkpoint among {settings.eval_points} evaluations "
             f"+ the start); {fixed}test metrics of the selected models.", "",
             "## Results (test, mean ± sample std over seeds)", "",
             "| method | " + " | ".join(headers) + " | ΔNDCG@20 vs pretrained | ΔRecall@20 vs pretrained | time / seed |",
             "|---|---|---|---|---|---|---|---|"]
    for e in table:
        if not e["seeds_done"]:
            miss = f"missing (0/{e['seeds_expected']} seeds)"
            lines.append(f"| {e['label']} | " + " | ".join([miss] * 7) + " |")
            continue
        cells = [fmt_mean_std(e["test"][k]["values"]) for k in TABLE_METRICS]
        if e["kind"] in RELATIVE_KINDS:
            cells += [fmt_mean_std(e["relative_to_pretrained_pct"][k]["values"], 1, pct=True) for k in RELATIVE_METRICS]
        else:
            cells += ["—", "—"]
        cells.append(fmt_seconds(e["seconds"]["mean"]))
        note = " (deterministic)" if not e["spec"]["seeded"] and n_seeds > 1 else seeds_note(e)
        lines.append(f"| {e['label']}{note} | " + " | ".join(cells) + " |")
    lines += machines_lines(table)
    lines += ["", "Δ: relative change of the fine-tuned model's test metric over its own pretrained start "
              "(same checkpoint, same seed), mean ± std over seeds. Time: wall-clock of one cell (fine-tuning "
              "and its evaluations; pretraining is counted separately below)."
              + (" With one held-out item per user, Recall@K = HR@K." if scenario.sequential else ""), "",
              sentence, ""]
    if control is not None:
        lines += [control, ""]
    if goal is not None:
        lines += [goal, ""]
    if scaling_note:
        lines += ["## Cost and scaling of one ReFiT fine-tuning epoch", "", f"Not measured: {scaling_note}.", ""]

    if scaling:
        lines += ["## Cost and scaling of one ReFiT fine-tuning epoch", "",
                  "One epoch = every user once through a whole denoising trajectory with the ReFiT update "
                  "(default ReFiT hyperparameters of the environment; users drawn per rollout as in training). "
                  "Each point runs in a fresh process; peak memory = the RSS high-water mark during the epoch "
                  "(`VmHWM`, reset after the setup), shown as the increase over the resident set before the epoch.", "",
                  "| backbone | point | users | items | rollouts | epoch (s) | peak RSS (MB) | epoch Δ RSS (MB) | pretrain epoch (s) | fine-tune / pretrain |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for b, res in scaling.items():
            for name, p in res["points"].items():
                extra = "n/a" if p.get("epoch_extra_rss_mb") is None else f"{p['epoch_extra_rss_mb']:.1f}"
                ext = f" ({p['rollouts_timed']} timed, extrapolated)" if p.get("extrapolated") else ""
                lines.append(f"| {BACKBONE_LABELS.get(b, b)} | {name} | {p['n_users']} | {p['n_items']} | "
                             f"{p['rollouts_per_epoch']}{ext} | {p['epoch_seconds']:.3f} | {p['peak_rss_mb']:.0f} | "
                             f"{extra} | {p['pretrain_epoch_seconds']:.3f} | {p['finetune_over_pretrain']:.1f}× |")
        lines.append("")
        for b, res in scaling.items():
            s = res["summary"]
            for axis in ("users", "items"):
                ts, ms = s[axis]["time_slope"], s[axis]["memory_slope"]
                verdict = "n/a" if ts is None else ("consistent with linear cost (≤ 1.1)" if ts <= 1.1
                                                    else "super-linear (> 1.1)")
                lines.append(f"- {BACKBONE_LABELS.get(b, b)}, {axis}: log-log slope of epoch time "
                             f"{'n/a' if ts is None else f'{ts:.2f}'} — {verdict}; of epoch memory "
                             f"{'n/a' if ms is None else f'{ms:.2f}'}.")
            if "finetune_over_pretrain" in s:
                lines.append(f"- {BACKBONE_LABELS.get(b, b)}: one fine-tuning epoch takes "
                             f"{s['finetune_over_pretrain']:.1f}× one pretraining epoch "
                             f"({s['epoch_seconds']:.2f} s vs {s['pretrain_epoch_seconds']:.2f} s, all users and items).")
        lines.append("")

    this = invocation["seconds"]
    total_inv = sum(i.get("seconds", 0) for i in invocations)
    lines += ["## Wall-clock", "",
              f"- this invocation: {fmt_seconds(this)}; all {len(invocations)} invocations so far: {fmt_seconds(total_inv)}",
              f"- recorded compute in the result files: pretraining {fmt_seconds(pretrain_seconds)}, table cells "
              f"{fmt_seconds(run_seconds)}, scaling {fmt_seconds(scaling_seconds)}", "",
              "## Commands", "", "```bash"] + [shlex.join(i["argv"]) + ("  # interrupted" if i.get("interrupted") else "")
                                               for i in invocations] + ["```", "",
              "Single cells can be reproduced with the scripts the benchmark calls:", "", "```bash"]
    for r in pretrain_records:
        if r and r.get("argv"):
            lines.append("python " + shlex.join(r["argv"]))
    for row in rows:
        if row.kind == "finetuned":
            hp = repo_relative(out / "hyperparams" / f"{row.method}-{row.backbone}.yml")
            eval_freq = settings.eval_freq(row)
            lines.append("python " + shlex.join(["scripts/train.py", "--algo", row.algo, "--env", row.env_id, "--data",
                         settings.data, "--checkpoint", seed0_checkpoint(out, row.backbone), "--reward",
                         row.reward, "--hyperparams", str(hp), "--seed", "0", "--eval-freq", str(eval_freq),
                         "--select-metric", settings.select_metric, "--out", f"runs/{row.name}-seed0"]
                         + protocol_argv(settings.protocol)))
        elif row.kind == "baseline" and not scenario.sequential:
            lines.append("python " + shlex.join(["scripts/evaluate.py", "--baseline", row.baseline, "--data",
                                                 settings.data, "--split", "test", "--select-metric",
                                                 settings.select_metric]))
        elif row.kind == "baseline":  # scripts/evaluate.py has no sequence baselines: the same calls as the cell
            lit = lambda v: json.dumps(v) if isinstance(v, str) else repr(v)  # noqa: E731  (double-quoted strings)
            kw = dict(settings.baseline_kwargs.get(row.baseline, {}), **({"seed": 0} if row.seeded else {}))
            args = "".join(f", {k}={lit(v)}" for k, v in kw.items())
            code = ("import torch; from refit_gym.data import load_dataset; from refit_gym.scenarios import SCENARIOS; "
                    f"s = SCENARIOS[{lit(scenario.name)}]; d = load_dataset({lit(settings.data)}"
                    + "".join(f", {k}={lit(v)}" for k, v in settings.protocol.items()) + "); "
                    + ("torch.manual_seed(0); " if row.seeded else "")
                    + f"print(s.evaluate(s.baseline_score_fn({lit(row.baseline)}, d{args}), d, \"test\"))")
            lines.append("python -c " + shlex.quote(code))
        elif row.kind == "continued":
            lines.append(f"# {row.label}: refit_gym.experiments.ladder.continued_pretraining from the checkpoint above "
                         f"for the train_seconds of runs/{row.budget_row}/seed0.json")
    lines += ["```", "", "Plots: `validation_vs_time.png` (validation NDCG@20 against fine-tuning wall-clock: means over seeds with "
              "±1 std bands, the pretrained start dashed, the best baseline dotted), `cost_scaling.png` (epoch time; "
              "peak RSS during the epoch and RSS before it: rollout tensors scale with items, not users). Every number: `results.json`; per-seed records: `runs/`; logs: `logs/`.", ""]
    (out / "report.md").write_text("\n".join(lines))
    comparison = dict(sentence=sentence, **ref_info)
    extra: Dict[str, Any] = {"ease_comparison": comparison} if ref_name == "ease" else {}
    if goal is not None:
        extra["goal"] = dict(sentence=goal, **goal_info)
    if control is not None:
        extra["control_comparison"] = dict(sentence=control, **control_info)
    results = dict(dataset=data_summary, scenario=scenario.name, settings=asdict(settings), seeds=list(seeds),
                   rows=table, reference_comparison=comparison, **extra, scaling=scaling, scaling_note=scaling_note,
                   wall_clock=dict(this_invocation=this, all_invocations=total_inv, pretraining=pretrain_seconds,
                                   cells=run_seconds, scaling=scaling_seconds),
                   invocation=invocation, invocations=invocations,
                   plots={k: str(v) if v else None for k, v in plots.items()})
    write_json(out / "results.json", results)
    return results
