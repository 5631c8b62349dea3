"""The benchmark's entry: the command line (:func:`build_parser`) and :func:`main`, which plans the cells,
computes or reuses them, measures cost and scaling and rebuilds the report. ``scripts/benchmark.py`` calls it."""
from __future__ import annotations

import argparse
import shlex
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from refit_gym.options import HelpFormatter, add_device_argument, add_protocol_argument, protocol_kwargs
from refit_gym.experiments.benchmark.cells import Runner
from refit_gym.experiments.benchmark.files import (check_retirable, merge_folder, read_json, recorded_settings,
                                                   retire_rows, row_seeds, run_path, seed_tag, settings_clash,
                                                   without_retired, write_json)
from refit_gym.experiments.benchmark.plan import (BACKBONE_LABELS, CONTINUED_BUDGET, FINETUNE_METHODS, METHODS,
                                                  QUICK_EVAL_POINTS, QUICK_PRETRAIN_ARGS, QUICK_STEPS, REPO, RowSpec,
                                                  Settings, backbone_steps, build_rows, default_backbones,
                                                  effective_baseline_kwargs, effective_hyperparams, infer_scenario,
                                                  scenario_methods)
from refit_gym.registry import ENV_OF_BACKBONE
from refit_gym.experiments.benchmark.report import write_report

PACKAGE = "refit_gym.experiments.benchmark"  # its docstring is the --help text


def build_parser() -> argparse.ArgumentParser:
    """Returns the parser of ``scripts/benchmark.py`` (its help: the package docstring)."""
    doc = sys.modules[PACKAGE].__doc__
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0], formatter_class=HelpFormatter,
                                epilog=doc.split("\n\n", 1)[1])
    p.add_argument("--data", help="dataset spec or folder for refit_gym.data.load_dataset (e.g. synthetic)")
    add_protocol_argument(p)
    p.add_argument("--quick", action="store_true", help="synthetic-size settings: tiny backbones, a few steps, 1 seed")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0 1 2 (0 with --quick)")
    from refit_gym.scenarios import SCENARIOS

    p.add_argument("--scenario", choices=sorted(SCENARIOS), default=None,
                   help="protocol, baselines and default backbones (default: inferred from the data: timestamped "
                        "sequences poi, sequences sequential, a social graph social, otherwise cf)")
    p.add_argument("--backbones", nargs="+", default=None,
                   help="backbone kinds (default: diffrec cfdiff for cf, the scenario's backbone otherwise: "
                        "social-diffrec, dreamrec, dreamrec-poi)")
    p.add_argument("--methods", nargs="+", default=None, choices=METHODS,
                   help="rows to include (default: all that exist for the scenario; baselines: pop itemknn ease "
                        "for cf / social, pop sasrec for sequential / poi; continued: continued pretraining, which "
                        "needs the --continued-budget cell of the same seed)")
    p.add_argument("--continued-budget", default=CONTINUED_BUDGET, choices=sorted(FINETUNE_METHODS),
                   help="the fine-tuning method whose cell (same backbone, same seed) gives the continued-pretraining "
                        "row its training seconds")
    p.add_argument("--out", type=Path, default=None, help="output folder (default results/<dataset name>)")
    add_device_argument(p)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--select-metric", default="ndcg@20", help="validation metric of every model selection")
    p.add_argument("--eval-points", type=int, default=None, help="validations per fine-tuning run (default 10; 2 quick)")
    p.add_argument("--hyperparams", action="append", default=[], metavar="METHOD=FILE",
                   help="rl-zoo YAML overriding the defaults (agents/hyperparams/<algo>.yml) of one fine-tuning "
                        f"method ({', '.join(FINETUNE_METHODS)}); repeatable")
    p.add_argument("--reward", default=None,
                   help="reward of the ReFiT, DDPO, Pathwise, PPO and A2C rows (default: the environment's registered reward; "
                        "the naive row always uses topk); its constructor arguments: reward_kwargs in --hyperparams")
    p.add_argument("--pretrain-args", default="", help="extra scripts/pretrain.py arguments, one quoted string")
    p.add_argument("--skip-scaling", action="store_true", help="no cost-and-scaling measurements")
    p.add_argument("--scaling-only", action="store_true", help="only the cost-and-scaling measurements")
    p.add_argument("--scaling-backbones", nargs="+", default=None, help="backbones measured (default: --backbones)")
    p.add_argument("--scaling-fractions", type=float, nargs="+", default=[0.25, 0.5, 1.0],
                   help="fractions of the users / of the items measured (1 is always added)")
    p.add_argument("--scaling-max-rollouts", type=int, default=None,
                   help="time at most this many rollouts per point and extrapolate to the epoch (quick checks)")
    p.add_argument("--report-only", action="store_true", help="rebuild the report from the result files; compute nothing")
    p.add_argument("--merge", type=Path, nargs="+", default=[], metavar="FOLDER",
                   help="first copy the records, logs and invocations of these benchmark folders (the same dataset "
                        "and settings, e.g. seeds run in other processes or on other machines) into --out; a record "
                        "that differs from one already there is an error")
    p.add_argument("--retire", nargs="+", default=[], metavar="ROW",
                   help="first move these rows' records, logs and hyperparameter files out of --out into --retire-to "
                        "(and their settings out of plan.json), so they can be run again with other settings; the "
                        "invocation is recorded (with --report-only too)")
    p.add_argument("--retire-to", type=Path, default=None, metavar="FOLDER",
                   help="the archive folder of --retire (e.g. results/seq-beauty/bench-v1)")
    p.add_argument("--fail-fast", action="store_true", help="stop at the first failing cell (default: log it, go on)")
    from refit_gym.diffusion import BACKBONES

    for b in sorted(BACKBONES):
        p.add_argument(f"--checkpoint-{b}", type=Path, default=None, dest=f"checkpoint_{b.replace('-', '_')}",
                       metavar="PATH", help=argparse.SUPPRESS if b not in BACKBONE_LABELS else
                       f"pretrained {b} checkpoint used for every seed (default: pretrain one per seed)")
    return p


def parse_hyperparam_overrides(items: Sequence[str]) -> Dict[str, Path]:
    """Returns ``METHOD=FILE`` items as {method: file}, each checked (SystemExit naming a bad item)."""
    out: Dict[str, Path] = {}
    for item in items:
        method, sep, path = item.partition("=")
        if not sep or method not in FINETUNE_METHODS:
            raise SystemExit(f"error: --hyperparams {item!r}: expected METHOD=FILE with METHOD in "
                             f"{sorted(FINETUNE_METHODS)}")
        if not Path(path).is_file():
            raise SystemExit(f"error: --hyperparams {item!r}: no such file {path}")
        out[method] = Path(path)
    return out


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Run the benchmark described by ``argv`` (see the module docstring); returns ``results.json``'s content
    plus ``computed`` / ``reused`` / ``failed`` lists of this invocation."""
    from refit_gym.experiments.benchmark.scaling import run_scaling, scaling_points, scaling_summary

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if not args.data:
        raise SystemExit("error: --data is required (a dataset folder, or 'synthetic')")
    if args.skip_scaling and args.scaling_only:
        raise SystemExit("error: --skip-scaling and --scaling-only contradict each other")
    if any(not 0 < f <= 1 for f in args.scaling_fractions):
        raise SystemExit(f"error: --scaling-fractions must lie in (0, 1], got {args.scaling_fractions}")
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    from refit_gym.data import load_dataset
    from refit_gym.utils import progress_bar, resolve_device

    from refit_gym.data.dataset import DataError
    from refit_gym.scenarios import SCENARIOS, scenario_for

    data = load_dataset(args.data, **protocol_kwargs(args))
    scenario = SCENARIOS[args.scenario or infer_scenario(data)]
    try:
        scenario.check_data(data)
    except DataError as e:
        raise SystemExit(f"error: scenario {scenario.name!r} does not fit the data "
                         f"({'--scenario' if args.scenario else 'inferred'}): {e}") from None
    backbones = args.backbones or default_backbones(scenario.name)
    methods = args.methods or scenario_methods(scenario.name)
    absent = [m for m in methods if m not in scenario_methods(scenario.name)]
    if absent:
        raise SystemExit(f"error: --methods {absent}: not a row of scenario {scenario.name!r}; its methods: "
                         f"{scenario_methods(scenario.name)}")
    device = str(resolve_device(args.device))
    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1, 2])
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"error: --seeds has duplicates: {seeds}")
    out = args.out or REPO / "results" / data.name
    out.mkdir(parents=True, exist_ok=True)
    try:
        rows = build_rows(backbones, methods, args.reward, scenario.name, args.continued_budget)
        for b in backbones:
            scenario_for(b).check_data(data)  # e.g. social-diffrec needs a social graph, dreamrec-poi timestamps
    except (ValueError, DataError) as e:
        raise SystemExit(f"error: {e}") from None
    if bool(args.retire) != (args.retire_to is not None):
        raise SystemExit("error: --retire ROW ... and --retire-to FOLDER go together")
    retiring: List[RowSpec] = []
    if args.retire:
        known = {r.name: r for r in build_rows(backbones, list(scenario_methods(scenario.name)), args.reward,
                                               scenario.name, args.continued_budget)}
        unknown = [r for r in args.retire if r not in known]
        if unknown:
            raise SystemExit(f"error: --retire {unknown}: not rows of this benchmark; its rows: {sorted(known)}")
        retiring = [known[r] for r in args.retire]
        check_retirable(out, retiring, args.retire_to)  # moved only once the settings below are accepted
    checkpoints = {}
    for b in backbones:
        path = getattr(args, f"checkpoint_{b.replace('-', '_')}", None)
        if path is not None:
            if not path.is_file() and not args.report_only:  # --report-only reads result files, never a checkpoint
                raise SystemExit(f"error: --checkpoint-{b} {path}: no such file")
            checkpoints[b] = path

    overrides = parse_hyperparam_overrides(args.hyperparams)
    settings = Settings(data=args.data, quick=args.quick, select_metric=args.select_metric, reward=args.reward,
                        eval_points=args.eval_points or (QUICK_EVAL_POINTS if args.quick else 10),
                        pretrain_args=(QUICK_PRETRAIN_ARGS if args.quick else []) + shlex.split(args.pretrain_args),
                        scenario=scenario.name, baseline_kwargs=effective_baseline_kwargs(scenario.name, args.quick),
                        protocol=protocol_kwargs(args))
    if settings.eval_points < 1:
        raise SystemExit("error: --eval-points must be >= 1")
    import yaml

    steps: Dict[str, int] = {}  # backbone -> T (--quick rollouts are whole trajectories of the actual T)
    hp_files: Dict[Path, Dict] = {}  # written once the stored plan has accepted these settings
    for row in rows:
        if row.kind == "finetuned":
            key = f"{row.method}|{row.env_id}"
            if args.quick and row.backbone not in steps:
                steps[row.backbone] = backbone_steps(row.backbone, settings, checkpoints.get(row.backbone))
            if key not in settings.hyperparams:
                settings.hyperparams[key] = effective_hyperparams(row.algo, row.env_id, args.quick,
                                                                  overrides.get(row.method),
                                                                  steps.get(row.backbone, QUICK_STEPS))
            hp_files[out / "hyperparams" / f"{row.method}-{row.backbone}.yml"] = {row.env_id: settings.hyperparams[key]}
    plan_path = out / "plan.json"
    plan = read_json(plan_path)
    if plan is not None:
        if plan.get("dataset") != data.name:
            raise SystemExit(f"error: {out} holds results of dataset {plan.get('dataset')!r}, not {data.name!r}; "
                             "use another --out")
        stored = without_retired(plan.get("settings", {}), retiring)  # as the retirement below leaves it
        mine = settings.fingerprint()
        clash = settings_clash(recorded_settings(stored, out, rows), mine)
        if clash:
            raise SystemExit(f"error: {out} holds results made with other settings ({', '.join(clash)}); reusing them "
                             "would mix recipes. Use another --out (or delete the folder).")
        mine["hyperparams"] = {**stored.get("hyperparams", {}), **mine["hyperparams"]}
    else:
        mine = settings.fingerprint()
    if retiring:  # the settings are accepted: now the rows move (with the plan they were made with)
        moved = retire_rows(out, retiring, args.retire_to)
        print(f"[benchmark] retired to {args.retire_to}: {', '.join(moved)}", file=sys.stderr)
    write_json(plan_path, dict(dataset=data.name, settings=mine))
    for hp, blob in hp_files.items():
        hp.parent.mkdir(parents=True, exist_ok=True)
        hp.write_text(yaml.safe_dump(blob, sort_keys=True))
    for src in args.merge:
        n = merge_folder(out, src, data.name, settings.fingerprint())
        print(f"[benchmark] merged {n} records from {src}", file=sys.stderr)

    invocation = dict(argv=["python", "scripts/benchmark.py"] + argv, started=time.strftime("%Y-%m-%dT%H:%M:%S"),
                      device=device, report_only=args.report_only)
    computed: List[str] = []
    reused: List[str] = []
    failed: List[Dict[str, str]] = []
    cells = [] if args.scaling_only else [(row, s) for row in rows for s in row_seeds(row, seeds)]
    # cells in an order that completes whole seeds early: deterministic rows, then seed by seed
    cells.sort(key=lambda c: (c[0].seeded, seeds.index(c[1]) if c[0].seeded else -1))
    env_of = ENV_OF_BACKBONE
    do_scaling = not args.skip_scaling
    scaling_note = None
    if scenario.sequential and not args.skip_scaling:
        # the scaling points subset users and items (InteractionData.subset_users / subset_items)
        scaling_note = (f"the cost-and-scaling points need user and item subsets of the data, which the "
                        f"SequentialData of scenario {scenario.name!r} does not provide")
        if args.scaling_only:
            raise SystemExit(f"error: --scaling-only: {scaling_note}")
        print(f"[benchmark] skipping the cost and scaling measurements: {scaling_note}", file=sys.stderr)
        do_scaling = False
    scaling_backbones = args.scaling_backbones or backbones
    unknown = sorted(set(scaling_backbones) - set(env_of))
    if unknown:
        raise SystemExit(f"error: --scaling-backbones {unknown}: known backbones {sorted(env_of)}")
    n_scaling = len(scaling_points(args.scaling_fractions)) * len(scaling_backbones) if do_scaling else 0
    scaling: Dict[str, Dict[str, Any]] = {}
    interrupted = False
    if not args.report_only:
        bar = progress_bar(total=len(cells) + n_scaling, desc=f"benchmark {data.name}", unit="run", file=sys.stderr)
        runner = Runner(out, data, settings, device, checkpoints, bar)
        try:  # Ctrl-C or SIGTERM (see __main__): keep the finished cells, record the invocation, rebuild the report
            for row, seed in cells:
                tag = f"{row.name}/seed{seed_tag(row, seed)}"
                if run_path(out, row, seed).is_file():
                    check_reused(out, row, seed)
                    reused.append(tag)
                else:
                    try:
                        runner.run(row, seed)
                        computed.append(tag)
                    except Exception as e:  # noqa: BLE001  (one failing cell must not lose the others)
                        log = out / "logs" / f"{row.name}-seed{seed_tag(row, seed)}.log"
                        with open(log, "a") as fh:
                            fh.write(traceback.format_exc())
                        failed.append(dict(cell=tag, error=f"{type(e).__name__}: {e}", log=str(log)))
                        bar.write(f"[benchmark] {tag} failed: {type(e).__name__}: {e} (see {log})")
                        if args.fail_fast:
                            raise
                bar.update(1)
            if do_scaling:
                for b in scaling_backbones:
                    try:
                        scaling[b] = run_scaling(out, settings, b, env_of[b], device, args.threads,
                                                 args.scaling_max_rollouts, args.scaling_fractions, bar, computed)
                    except Exception as e:  # noqa: BLE001
                        failed.append(dict(cell=f"scaling/{b}", error=f"{type(e).__name__}: {e}"))
                        bar.write(f"[benchmark] scaling/{b} failed: {type(e).__name__}: {e}")
                        if args.fail_fast:
                            raise
        except KeyboardInterrupt:
            interrupted = True
            bar.write("[benchmark] interrupted: the cell in progress is lost, the finished ones are on disk; "
                      "rebuilding the report from them")
        bar.set_postfix_str("")
        bar.close()
    if args.report_only or not scaling:  # the report shows whatever scaling points are on disk
        for b in scaling_backbones:
            pts = {name: read_json(out / "scaling" / b / f"{name}.json") for name, _, _ in
                   scaling_points(args.scaling_fractions)}
            pts = {k: v for k, v in pts.items() if v is not None}
            if pts and do_scaling:
                scaling[b] = dict(points=pts, summary=scaling_summary(pts))

    invocation["seconds"] = time.perf_counter() - started
    if interrupted:
        invocation["interrupted"] = True
    invocations = read_json(out / "invocations.json") or []
    if not args.report_only or args.retire:
        write_json(out / "invocations.json", invocations + [invocation])
    results = write_report(out, settings, rows, seeds, scaling, invocation, data.summary(), scaling_note)
    print(f"[benchmark] report: {out / 'report.md'} ({len(computed)} computed, {len(reused)} reused, "
          f"{len(failed)} failed)", file=sys.stderr)
    for f in failed:
        print(f"[benchmark] FAILED {f['cell']}: {f['error']}", file=sys.stderr)
    return dict(results, computed=computed, reused=reused, failed=failed, interrupted=interrupted)


def check_reused(out: Path, row: RowSpec, seed: int) -> None:
    """SystemExit when the record of a continued cell was made with another budget row than ``row``'s (the
    budget is part of the row, not of ``plan.json``); returns nothing otherwise."""
    if row.kind != "continued":
        return
    path = run_path(out, row, seed)
    stored = (read_json(path).get("spec") or {}).get("budget")
    if stored != row.budget:
        raise SystemExit(f"error: {path} was computed with --continued-budget {stored}, not {row.budget}; use that "
                         "budget, another --out, or delete the file to recompute it")


def _interrupt(signum, frame):
    """SIGTERM handler: stop like Ctrl-C (``timeout``, a scheduler's kill), so the invocation is recorded."""
    raise KeyboardInterrupt(f"signal {signum}")
