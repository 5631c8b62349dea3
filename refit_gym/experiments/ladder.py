"""The headroom ladder: where is a fine-tuning gain lost? Rungs measured on the same start and reward.

For one dataset, one pretrained backbone and one reward, every rung starts from the same checkpoint
and selects its model on validation only; test is read once per selected model:

* ``start`` (L0): the pretrained backbone.
* ``continued`` (L1): the backbone's own pretraining loss, continued for the training wall-clock of
  the ``refit`` rung of the same seed (the control every fine-tuning gain must beat): the whole
  epochs nearest to those seconds, validated about :data:`CONTINUED_VALIDATIONS` times (the start
  competes).
* ``oracle`` (L2, a diagnostic, never a result): :class:`~agents.pathwise.Pathwise` on a reward built
  from the *validation* interactions (the log-likelihood of the user's validation items under
  ``softmax(scores / tau)``), evaluated on test: how far the backbone moves when the reward is fully
  informative.
* ``pathwise`` (L3): the exact reward gradient (:class:`~agents.pathwise.Pathwise`) on the training-only
  reward.
* ``refit`` (L4): REINFORCE (:class:`~agents.refit.ReFiT`) on the same reward.
* ``ppo`` (L5): SB3's PPO on the same reward (optional: slow).

L2 against L3 says whether the reward lacks information; L3 against L4 whether the estimator loses
it; L1 whether fine-tuning beats training longer.

The settings of the fine-tuning rungs are one rl-zoo-style hyperparameter dict per algorithm (as in
``agents/hyperparams``), e.g. read from a YAML recipe ``{rung: {key: value}}``. Everything a rung
writes goes to ``out/<rung>/seed<k>/`` (``metrics.json`` as written by :func:`refit_gym.experiments.finetune.finetune`);
:func:`run_ladder` returns (and writes to ``out/ladder.json``) the per-seed records.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence

import numpy as np
import torch

#: the rungs in ladder order; ``oracle`` is a diagnostic
RUNGS = ("start", "continued", "oracle", "pathwise", "refit", "ppo")
#: the rung whose training wall-clock the ``continued`` control gets (the recipe's ``continued.budget_rung``
#: chooses another)
BUDGET_RUNG = "refit"
#: about how many validations a continued run makes (every ``epochs // 10`` epochs and the last: at least the
#: evaluations a fine-tuning run selects from, and with 1-second epochs validating each one would cost more than the
#: training it selects from; the recipe's ``continued.validations`` sets another count)
CONTINUED_VALIDATIONS = 10
#: the optimisation settings a continued run takes from its start's own pretraining (the checkpoint's
#: ``meta["pretrain"]``, as ``scripts/pretrain.py`` writes it) unless its ``params`` set them: continuing at another
#: learning rate or batch size than the start was trained with is not "training longer"
CONTINUED_FROM_START = ("lr", "weight_decay", "batch_size", "timestep_sampling", "reweight")


def oracle_reward(data, tau: float = 1.0, device="cpu"):
    """The L2 diagnostic reward: ``mean_{j in valid(u)} log softmax(scores / tau)_j`` with every training item
    visible (holdout 0). It reads the *validation* split on purpose; never use it for a result.

    Returns a differentiable :class:`~refit_gym.rewards.FunctionReward` named ``oracle``."""
    import scipy.sparse as sp

    from refit_gym.data.dataset import as_interactions
    from refit_gym.rewards import FunctionReward

    inter = as_interactions(data)
    valid = sp.csr_matrix(inter.valid, dtype=np.float32)
    counts = np.maximum(np.diff(valid.indptr), 1).astype(np.float32)
    valid = sp.diags(1.0 / counts) @ valid  # each user's validation items weigh 1 / |valid(u)|

    def f(scores: torch.Tensor, ctx: Dict[str, Any]) -> torch.Tensor:
        users = ctx["users"].cpu().numpy()
        w = valid[users].tocoo()
        rows = torch.as_tensor(w.row, dtype=torch.long, device=scores.device)
        cols = torch.as_tensor(w.col, dtype=torch.long, device=scores.device)
        logp = torch.log_softmax(scores / tau, dim=1)
        out = torch.zeros(scores.shape[0], device=scores.device)
        return out.index_add(0, rows, torch.as_tensor(w.data, device=scores.device) * logp[rows, cols])

    return FunctionReward(data, f=f, holdout=0.0, device=device, name="oracle", differentiable=True)


def _finetune_rung(rung: str, algo: str, env_id: str, data, checkpoint: Path, params: Dict[str, Any], seed: int,
                   out: Path, device, select_metric: str, pretrained: Dict, log: Callable[[str], None]) -> Dict:
    from refit_gym.experiments.finetune import finetune

    params = dict(params)
    reward = params.pop("reward", None)
    if rung == "oracle":
        reward = oracle_reward(data, tau=float(params.pop("oracle_tau", 1.0)), device=device)
    eval_freq = int(params.pop("eval_freq", 0))
    m = finetune(algo, env_id, data, checkpoint, reward=reward, hyperparams=params, seed=seed, device=device,
                 out=out, eval_freq=eval_freq, select_metric=select_metric, pretrained_metrics=pretrained,
                 log=lambda s: log(f"{rung} seed {seed}: {s}"), hyperparams_source=f"ladder recipe, rung {rung!r}")
    return dict(rung=rung, seed=seed, best=m["best"], final=m["final"], history=m["history"],
                train_seconds=m["train_seconds"], reward=str(m["reward"]))


def continued_pretraining(env_id: str, data, checkpoint: Path, seconds: float, seed: int, out: Path, device,
                          select_metric: str, pretrained: Dict, params: Dict[str, Any],
                          log: Callable[[str], None]) -> Dict:
    """The continued-pretraining control: the backbone's own pretraining loss continued from ``checkpoint`` for
    ``seconds`` of training wall-clock (the budget, seconds), with validation-only model selection in which the
    start competes (the ladder's ``continued`` rung, the benchmark's ``<backbone>-continued`` row). It continues
    with the start's own optimisation settings (:data:`CONTINUED_FROM_START`, from the checkpoint's
    ``meta["pretrain"]``; the scenario's defaults for a checkpoint that does not record them), ``params`` overriding
    them; the optimiser state starts afresh (checkpoints hold weights only).

    The run is the whole epochs nearest to ``seconds`` (at least one) at the measured epoch time
    (``params["seconds_per_epoch"]``, or one epoch of a copy of the start timed by
    :func:`refit_gym.experiments.cost.time_pretrain_epoch`), validated
    ``params["validations"]`` times at even intervals and after the last epoch (default
    :data:`CONTINUED_VALIDATIONS`: at least as many looks as a fine-tuning run's evaluations, so the control's
    selection is not the weaker one). Every validation scores every validation user (``eval_users=None``), as the
    start's metrics do.

    Args:
        env_id: registered environment id (its scenario pretrains and evaluates).
        pretrained: ``{"valid": {...}, "test": {...}}`` metrics of ``checkpoint`` (the start).
        params: PretrainConfig overrides of the start's settings (and optionally ``seconds_per_epoch`` and
            ``validations``).
        out: the working folder of the run. select_metric: the validation metric of the selection.
    Returns: ``{"rung": "continued", "seed", "best": {"valid", "test"}`` (the selected model's metrics; the
    start's when no epoch beats it on validation), ``"history"`` (per epoch: ``epoch``, cumulative
    ``train_seconds`` and the validation metrics when validated), ``"train_seconds"`` (the epochs' own
    seconds, as the fine-tuning runs count theirs), ``"wall_seconds"`` (seconds, with validation),
    ``"epochs"``, ``"epoch_seconds_estimate"`` (the seconds per epoch that sized the run:
    ``epochs == max(1, round(seconds / estimate))``)}.
    """
    from refit_gym.diffusion.checkpoint import load_backbone
    from refit_gym.experiments.cost import time_pretrain_epoch
    from refit_gym.scenarios import scenario_for

    scenario = scenario_for(env_id)
    adapter, meta = load_backbone(checkpoint, data, device=device)
    torch.manual_seed(seed)
    own = ("seconds_per_epoch", "validations")
    start_settings = {k: v for k, v in (meta.get("pretrain") or {}).items() if k in CONTINUED_FROM_START}
    overrides = {**start_settings, **{k: v for k, v in params.items() if k not in own}}
    validations = int(params.get("validations", CONTINUED_VALIDATIONS))
    if validations < 1:
        raise ValueError(f"continued validations={params.get('validations')!r}: expected an integer >= 1")
    cfg = scenario.pretrain_config(**{**overrides, "metric": select_metric, "seed": seed, "patience": 0,
                                      "eval_users": None})
    t0 = time.perf_counter()
    per_epoch = float(params.get("seconds_per_epoch", 0)) or time_pretrain_epoch(
        adapter, data, scenario, device, None, overrides=overrides)[0]
    cfg.epochs = max(1, int(round(seconds / per_epoch)))  # the whole epochs nearest to the budget
    cfg.eval_every = max(1, cfg.epochs // validations)  # validation must not rule the budget
    result = scenario.pretrain(adapter, data, cfg, out_dir=out, device=device,
                               log=lambda s: log(f"continued seed {seed}: {s}"))
    # the kept epoch's validation metrics: history rows key them 'valid/<metric>', the start's are bare
    valid = {k.split("/", 1)[1]: v for k, v in result.best_valid.items() if k.startswith("valid/")}
    start_valid = pretrained["valid"][select_metric]
    if valid.get(select_metric, float("-inf")) > start_valid:  # the start competes, as in finetune
        best = {"valid": valid, "test": scenario.evaluate_backbone(adapter, data, "test")}
    else:
        best = dict(pretrained)
    seconds = np.cumsum([h.get("epoch_seconds", float("nan")) for h in result.history])
    history = [dict(epoch=h["epoch"], train_seconds=float(t), **{k.split("/", 1)[1]: v for k, v in h.items()
                                                                 if k.startswith("valid/")})
               for h, t in zip(result.history, seconds)]
    # training seconds (the epochs' own time, as the fine-tuning rungs count theirs); the wall-clock adds validation
    return dict(rung="continued", seed=seed, best=best, history=history,
                train_seconds=float(seconds[-1]) if len(seconds) else 0.0, wall_seconds=time.perf_counter() - t0,
                epochs=len(result.history), epoch_seconds_estimate=per_epoch)


def run_ladder(env_id: str, data, checkpoint, recipe: Dict[str, Dict[str, Any]], out, seeds: Sequence[int] = (0, 1, 2),
               rungs: Sequence[str] = ("start", "continued", "oracle", "pathwise", "refit"), device="cpu",
               select_metric: str = "ndcg@20", log: Callable[[str], None] = print) -> Dict[str, Any]:
    """Run the ladder (module docstring) and write ``out/ladder.json``; finished (rung, seed) cells found in
    an earlier ``ladder.json`` are kept, so an interrupted ladder resumes cell by cell.

    Args:
        env_id: registered environment id (its scenario gives the evaluation protocol).
        data: the dataset (as for :func:`refit_gym.experiments.finetune.finetune`).
        checkpoint: the pretrained backbone every rung starts from.
        recipe: ``{rung: hyperparameters}`` for the fine-tuning rungs (``pathwise``, ``refit``, ``ppo``,
            ``oracle``: an rl-zoo dict with ``reward``, ``reward_kwargs``, ``n_envs``, ``n_timesteps``,
            ``eval_freq`` and the algorithm's arguments) and ``continued`` (PretrainConfig overrides, and
            ``budget_rung``: the rung whose training seconds it gets, default :data:`BUDGET_RUNG`).
        seeds: one record per rung and seed. rungs: which rungs (``start`` is always measured).
        select_metric: the validation metric of every model selection.
    Returns: ``{"env": ..., "checkpoint": ..., "select_metric": ..., "records": [...]}``.
    """
    from refit_gym.envs.factory import resolve_data
    from refit_gym.diffusion.checkpoint import load_backbone
    from refit_gym.scenarios import scenario_for

    unknown = [r for r in rungs if r not in RUNGS]
    if unknown:
        raise ValueError(f"unknown rungs {unknown}; known: {RUNGS}")
    out, checkpoint, data = Path(out), Path(checkpoint), resolve_data(data)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "ladder.json"
    blob = json.loads(path.read_text()) if path.is_file() else {}
    records: List[Dict] = blob.get("records", [])
    done = {(r["rung"], r["seed"]) for r in records}
    scenario = scenario_for(env_id)
    start = blob.get("start")
    if start is None:
        adapter, _ = load_backbone(checkpoint, data, device=device)
        start = {s: scenario.evaluate_backbone(adapter, data, s) for s in ("valid", "test")}
    algos = {"oracle": "pathwise", "pathwise": "pathwise", "refit": "refit", "ppo": "ppo"}
    continued = dict(recipe.get("continued", {}))
    budget_rung = continued.pop("budget_rung", BUDGET_RUNG)
    if budget_rung not in algos:
        raise ValueError(f"recipe continued.budget_rung: {budget_rung!r} is not a training rung {sorted(algos)}")
    order = [r for r in ("refit", "pathwise", "oracle", "ppo", "continued") if r in rungs]  # the budget first

    def save() -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(dict(env=env_id, data=data.name, checkpoint=str(checkpoint), start=start,
                                       select_metric=select_metric, recipe=recipe, records=records), indent=1,
                                  default=str))
        tmp.replace(path)

    save()
    for seed in seeds:
        for rung in order:
            if (rung, seed) in done:
                continue
            cell = out / rung / f"seed{seed}"
            if rung == "continued":
                budget = [r["train_seconds"] for r in records if r["rung"] == budget_rung and r["seed"] == seed]
                if not budget:
                    raise ValueError(f"the continued rung needs the {budget_rung!r} rung of seed {seed} (its wall-clock)")
                rec = continued_pretraining(env_id, data, checkpoint, budget[0], seed, cell, device, select_metric,
                                            start, continued, log)
                rec["budget_rung"] = budget_rung
            else:
                rec = _finetune_rung(rung, algos[rung], env_id, data, checkpoint, recipe.get(rung, {}), seed, cell,
                                     device, select_metric, start, log)
            records.append(rec)
            save()
            log(f"{rung} seed {seed}: test {select_metric} {rec['best']['test'][select_metric]:.4f} "
                f"(start {start['test'][select_metric]:.4f}), {rec['train_seconds']:.0f} s")
    return json.loads(path.read_text())


def merge_ladders(parts: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """One ladder from several run on the same start (e.g. rungs split over processes): the records of all,
    the rest from the first. Raises ValueError when they do not share the checkpoint, data and selection
    metric, or when two hold the same (rung, seed) cell."""
    if not parts:
        raise ValueError("nothing to merge")
    first = parts[0]
    keys = ("env", "data", "checkpoint", "select_metric")
    seen = set()
    records = []
    for p in parts:
        if any(p[k] != first[k] for k in keys):
            raise ValueError(f"ladders differ in {[k for k in keys if p[k] != first[k]]}: cannot merge")
        for r in p["records"]:
            if (r["rung"], r["seed"]) in seen:
                raise ValueError(f"cell ({r['rung']}, seed {r['seed']}) appears twice")
            seen.add((r["rung"], r["seed"]))
            records.append(r)
    recipe = {}
    for p in parts:
        recipe.update(p.get("recipe", {}))
    return dict(first, recipe=recipe, records=records)


def summarise(ladder: Dict[str, Any], metrics: Sequence[str] = ("recall@20", "ndcg@20")) -> List[Dict[str, Any]]:
    """One row per rung: mean and sample std over seeds of the selected models' test metrics, the relative
    change of the test ``select_metric`` over the start (mean and std over seeds), the mean wall-clock."""
    key = ladder["select_metric"]
    start = ladder["start"]["test"]
    rows = [dict(rung="start", n=1, **{m: (start[m], 0.0) for m in metrics}, delta=(0.0, 0.0), seconds=0.0)]
    for rung in RUNGS[1:]:
        recs = [r for r in ladder["records"] if r["rung"] == rung]
        if not recs:
            continue
        tests = [r["best"]["test"] for r in recs]
        row = dict(rung=rung, n=len(recs), seconds=float(np.mean([r["train_seconds"] for r in recs])))
        for m in metrics:
            v = np.array([t[m] for t in tests])
            row[m] = (float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0)
        d = np.array([t[key] / start[key] - 1.0 for t in tests])
        row["delta"] = (float(d.mean()), float(d.std(ddof=1)) if len(d) > 1 else 0.0)
        rows.append(row)
    return rows


def markdown_table(ladder: Dict[str, Any], metrics: Sequence[str] = ("recall@20", "ndcg@20")) -> str:
    """The :func:`summarise` rows as a Markdown table (test, mean ± std over seeds)."""
    key = ladder["select_metric"]
    head = "| rung | seeds | " + " | ".join(f"test {m}" for m in metrics) + f" | Δ test {key} vs start | train s |"
    lines = [head, "|" + "---|" * (len(metrics) + 4)]
    for r in summarise(ladder, metrics):
        cells = " | ".join(f"{r[m][0]:.4f} ± {r[m][1]:.4f}" for m in metrics)
        name = r["rung"] + (" (diagnostic)" if r["rung"] == "oracle" else "")
        lines.append(f"| {name} | {r['n']} | {cells} | {100 * r['delta'][0]:+.1f}% ± {100 * r['delta'][1]:.1f}% "
                     f"| {r['seconds']:.0f} |")
    return "\n".join(lines)
