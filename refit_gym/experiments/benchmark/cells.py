"""The benchmark's cells: computing one (row, seed) result and writing its record (:class:`Runner`)."""
from __future__ import annotations

import os
import shlex
import shutil
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from refit_gym.options import protocol_argv
from refit_gym.experiments.benchmark.files import file_sha1, read_json, run_log, run_path, seed_tag, write_json
from refit_gym.experiments.benchmark.plan import (BASELINE_LABELS, RowSpec, Settings, continued_params,
                                                  pretrain_args, pretrain_argv)


class BudgetMissingError(RuntimeError):
    """A continued-pretraining cell whose budget cell (the same backbone and seed) has no record yet."""


class Runner:
    """Computes (or reuses) the cells of the plan; every result lands in ``OUT/runs`` atomically."""

    def __init__(self, out: Path, data, settings: Settings, device: str, checkpoints: Dict[str, Path],
                 bar=None):
        from refit_gym.utils import describe_machine

        self.out, self.data, self.settings, self.device = out, data, settings, device
        self.given_checkpoints = checkpoints
        self.bar = bar
        self.machine = describe_machine(device)  # recorded in every cell this runner computes

    # ---------------------------------------------------------------- pretraining
    def checkpoint(self, backbone: str, seed: int) -> Tuple[Path, Dict[str, Any]]:
        """Returns the pretrained checkpoint of ``backbone`` for ``seed`` and its record (pretraining it when
        absent)."""
        if backbone in self.given_checkpoints:
            path = self.given_checkpoints[backbone]
            return path, {"source": "given", "checkpoint": str(path)}
        path = self.out / "checkpoints" / f"{backbone}-seed{seed}.pt"
        record_path = path.with_suffix(".json")
        record = read_json(record_path)
        if path.is_file():
            return path, record or {"source": "found", "checkpoint": str(path)}
        from refit_gym.experiments.pretrain import run_pretraining

        work = self.out / "pretrain" / f"{backbone}-seed{seed}"
        argv = pretrain_argv(backbone, self.settings) + ["--data", self.settings.data, "--out", str(work),
                                                          "--seed", str(seed), "--device", self.device,
                                                          "--no-progress", "--resume"] + protocol_argv(self.settings.protocol)
        if self.bar is not None:
            self.bar.set_postfix_str(f"pretraining {backbone} seed {seed}")
        t0 = time.perf_counter()
        with run_log(self.out / "logs" / f"pretrain-{backbone}-seed{seed}.log") as log:
            log("python scripts/pretrain.py " + shlex.join(argv))
            metrics = run_pretraining(pretrain_args(argv))
        seconds = time.perf_counter() - t0
        tmp = path.with_name(f".{path.name}.tmp")
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(metrics["checkpoint"], tmp)
        os.replace(tmp, path)
        record = {"source": "pretrained", "checkpoint": str(path), "seconds": seconds,
                  "seconds_per_epoch": metrics.get("seconds_per_epoch"), "epochs_run": metrics.get("epochs_run"),
                  "best_epoch": metrics.get("best_epoch"), "validation_share": metrics.get("validation_share"),
                  "training_seconds": metrics.get("training_seconds"),
                  "validation_seconds": metrics.get("validation_seconds"), "argv": ["scripts/pretrain.py"] + argv}
        write_json(record_path, record)
        return path, record

    # ---------------------------------------------------------------- cells
    def run(self, row: RowSpec, seed: int) -> Dict[str, Any]:
        """Compute the cell (row, seed) and write it to :func:`run_path`; returns its record (``seconds``: the
        cell's wall-clock in seconds, a resumed fine-tuning's earlier segments included up to their last save)."""
        t0 = time.perf_counter()
        tag = seed_tag(row, seed)
        with run_log(self.out / "logs" / f"{row.name}-seed{tag}.log") as log:
            log(f"{row.label} ({row.kind}), seed {tag}, data {self.data.name}")
            if row.kind == "baseline":
                record = self._baseline(row, seed, log)
            elif row.kind == "pretrained":
                record = self._pretrained(row, seed, log)
            elif row.kind == "continued":
                record = self._continued(row, seed, log)
            else:
                record = self._finetuned(row, seed, log)
        record.update(method=row.name, label=row.label, kind=row.kind, seed=seed if row.seeded else None,
                      dataset=self.data.name, seconds=time.perf_counter() - t0 + record.pop("resumed_seconds", 0.0),
                      spec=row.as_dict(),
                      machine=self.machine, finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
        write_json(run_path(self.out, row, seed), record)
        return record

    def _baseline(self, row: RowSpec, seed: int, log) -> Dict[str, Any]:
        """Returns the record of a baseline cell: fit ``row.baseline`` on train and evaluate it on valid and test
        with the scenario's protocol. ``cf`` / ``social``: ItemKNN's ``k`` and EASE's ``lam`` chosen on validation
        (:func:`refit_gym.baselines.select_on_validation` over ``DEFAULT_GRIDS``); any other baseline is
        :meth:`refit_gym.scenarios.Scenario.baseline_score_fn` with ``settings.baseline_kwargs`` (a seeded one, e.g.
        SASRec: ``torch.manual_seed(seed)`` first and ``seed`` passed to its fit)."""
        import torch

        from refit_gym.baselines import DEFAULT_GRIDS
        from refit_gym.scenarios import SCENARIOS

        scenario = SCENARIOS[row.scenario]
        metric = self.settings.select_metric
        selection: List[Dict[str, Any]] = []
        t0 = time.perf_counter()
        if scenario.has_baseline_grid(row.baseline):
            pname, grid = DEFAULT_GRIDS[row.baseline]
            log(f"choosing {pname} over {list(grid)} by valid {metric}")
            params, score_fn, selection = scenario.baseline_on_validation(row.baseline, self.data, metric)
            selected_on = f"valid {metric}"
        else:
            params = dict(self.settings.baseline_kwargs.get(row.baseline, {}))
            if row.seeded:
                torch.manual_seed(seed)  # the initial weights
                params["seed"] = seed  # the fit's batch order and dropout
            log(f"fitting {row.baseline} with {params}")
            score_fn = scenario.baseline_score_fn(row.baseline, self.data, **params)
            selected_on = "fixed settings (the scenario's baseline_defaults)"
        fit_seconds = time.perf_counter() - t0
        splits = {s: scenario.evaluate(score_fn, self.data, s) for s in ("valid", "test")}
        log(f"{BASELINE_LABELS[row.baseline]} {params}: valid {metric} {splits['valid'][metric]:.4f}, "
            f"test {metric} {splits['test'][metric]:.4f}")
        return dict(params=params, selection=selection, selected_on=selected_on, fit_seconds=fit_seconds, **splits)

    def _pretrained(self, row: RowSpec, seed: int, log) -> Dict[str, Any]:
        """Returns the record of a pretrained cell: the backbone of ``seed`` on valid and test (metrics of an
        identical checkpoint reused)."""
        path, record = self.checkpoint(row.backbone, seed)
        digest = file_sha1(path)
        known = self.known_metrics(row.backbone, path, digest)
        if known is not None:  # the same file scored for another seed: inference is deterministic, reuse it
            splits, reused_from = known
            log(f"{path}: metrics of the identical checkpoint reused from {reused_from}")
        else:
            splits, reused_from = self.evaluate_checkpoint(path, row.env_id), None
        log(f"{path}: valid ndcg@20 {splits['valid']['ndcg@20']:.4f}, test ndcg@20 {splits['test']['ndcg@20']:.4f}")
        return dict(checkpoint=str(path), checkpoint_sha1=digest, metrics_reused_from=reused_from, pretrain=record,
                    **splits)

    def known_metrics(self, backbone: str, checkpoint: Path, digest: str
                      ) -> Optional[Tuple[Dict[str, Dict[str, float]], str]]:
        """Returns (``{"valid", "test"}`` metrics, the record's file) of ``checkpoint`` from any pretrained-row
        record of ``backbone`` made from a file with the same SHA-1, or None."""
        for f in sorted((self.out / "runs" / backbone).glob("seed*.json")):
            record = read_json(f)
            if record and record.get("checkpoint_sha1") == digest and record.get("checkpoint") == str(checkpoint):
                return {"valid": record["valid"], "test": record["test"]}, str(f)
        return None

    def evaluate_checkpoint(self, checkpoint: Path, env_id: str) -> Dict[str, Dict[str, float]]:
        """Returns ``{"valid", "test"}`` metrics of ``checkpoint`` with the protocol of ``env_id``'s scenario."""
        from refit_gym.experiments.finetune import evaluate_splits
        from refit_gym.diffusion import load_backbone

        adapter, _ = load_backbone(checkpoint, self.data, device=self.device)
        return evaluate_splits(adapter, self.data, env_id)

    def pretrained_metrics(self, row: RowSpec, seed: int, checkpoint: Path) -> Optional[Dict[str, Dict[str, float]]]:
        """Returns validation and test metrics of ``checkpoint`` from the pretrained rows of ``row.backbone`` (a record
        of the same checkpoint file, by path and SHA-1), or None when none exists: fine-tuning then evaluates it."""
        known = self.known_metrics(row.backbone, checkpoint, file_sha1(checkpoint))
        return None if known is None else known[0]

    def _finetuned(self, row: RowSpec, seed: int, log) -> Dict[str, Any]:
        """Returns the record of a fine-tuned cell: fine-tune the pretrained backbone of ``seed`` with ``row.algo``
        (:func:`refit_gym.experiments.finetune.finetune`); the record holds the validation-selected model's metrics, the history
        and ``train_seconds``."""
        from refit_gym.experiments.finetune import finetune

        path, _ = self.checkpoint(row.backbone, seed)
        params = self.settings.hyperparams[f"{row.method}|{row.env_id}"]
        eval_freq = self.settings.eval_freq(row)
        if self.bar is not None:
            self.bar.set_postfix_str(f"{row.name} seed {seed}")
        m = finetune(row.algo, row.env_id, self.data, path, reward=row.reward, hyperparams=params, seed=seed,
                     device=self.device, out=self.out / "finetune" / row.name / f"seed{seed}", eval_freq=eval_freq,
                     save_freq=eval_freq, resume=True, select_metric=self.settings.select_metric,
                     pretrained_metrics=self.pretrained_metrics(row, seed, path), log=log)
        return dict(checkpoint=str(path), valid=m["best"]["valid"], test=m["best"]["test"], pretrained=m["pretrained"],
                    final=m["final"], best_timesteps=m["best"]["num_timesteps"], num_timesteps=m["num_timesteps"],
                    history=m["history"], train_seconds=m["train_seconds"], hyperparams=m["hyperparams"],
                    eval_freq=eval_freq, selected_on=m["selected_on"], resumed_seconds=m["resumed_seconds"])

    def budget_seconds(self, row: RowSpec, seed: int) -> Tuple[float, Path]:
        """Returns (training seconds, its record) of the budget cell of the continued row ``row`` for ``seed``:
        ``train_seconds`` of the ``row.budget_row`` record of the same seed. :class:`BudgetMissingError` when that
        record does not exist (its cell must run first), ValueError when it has no ``train_seconds``."""
        path = self.out / "runs" / row.budget_row / f"seed{seed}.json"
        record = read_json(path)
        if record is None:
            raise BudgetMissingError(
                f"{row.name} seed {seed}: continued pretraining runs for the training seconds of the "
                f"{row.budget_row!r} cell of the same seed, and its record {path} does not exist; run method "
                f"{row.budget!r} for seed {seed} first (e.g. --methods {row.budget} continued)")
        if not isinstance(record.get("train_seconds"), (int, float)) or record["train_seconds"] <= 0:
            raise ValueError(f"{path}: field 'train_seconds' is {record.get('train_seconds')!r}, not a positive "
                             f"number of seconds; the {row.name} cell cannot take its budget from it")
        return float(record["train_seconds"]), path

    def _continued(self, row: RowSpec, seed: int, log) -> Dict[str, Any]:
        """Returns the record of a continued cell: the backbone's own pretraining continued from the pretrained
        checkpoint of ``seed`` for the training seconds of the budget cell
        (:func:`refit_gym.experiments.ladder.continued_pretraining`); the record holds the validation-selected
        model's metrics (the start competes), the history and ``train_seconds``. The control validates as often as a
        fine-tuning cell (``--eval-points``), so neither selection gets more looks at validation."""
        from refit_gym.experiments.ladder import continued_pretraining

        seconds, budget_path = self.budget_seconds(row, seed)
        path, _ = self.checkpoint(row.backbone, seed)
        start = self.pretrained_metrics(row, seed, path) or self.evaluate_checkpoint(path, row.env_id)
        params = continued_params(row.backbone, self.settings)
        if self.bar is not None:
            self.bar.set_postfix_str(f"{row.name} seed {seed}")
        log(f"continued pretraining of {path} for {seconds:.1f} s (the training seconds of {budget_path}), "
            f"PretrainConfig overrides {params}")
        m = continued_pretraining(row.env_id, self.data, path, seconds, seed,
                                  self.out / "finetune" / row.name / f"seed{seed}", self.device,
                                  self.settings.select_metric, start,
                                  dict(params, validations=self.settings.eval_points), log)
        selected = "start" if m["best"] == start else "continued"
        return dict(checkpoint=str(path), valid=m["best"]["valid"], test=m["best"]["test"], pretrained=start,
                    history=m["history"], train_seconds=m["train_seconds"], wall_seconds=m["wall_seconds"],
                    epochs=m["epochs"], epoch_seconds_estimate=m["epoch_seconds_estimate"],
                    budget=dict(row=row.budget_row, record=str(budget_path), train_seconds=seconds),
                    pretrain_overrides=params, validations=self.settings.eval_points, selected=selected,
                    selected_on=f"valid {self.settings.select_metric} among the epochs and the start")
