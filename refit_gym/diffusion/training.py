"""The one pretraining loop of every diffusion backbone: :func:`pretrain`.

The backbone declares its objective (:class:`~refit_gym.diffusion.adapters.DenoiserAdapter`): the loop asks
``adapter.pretrain_batches(data, batch_size, draws)`` for an epoch's batches and ``adapter.pretrain_loss(batch,
draws, cfg)`` for each batch's loss. History backbones (DiffRec, CF-Diff, Social DiffRec) visit every user once
per epoch and regress DiffRec's objective (:meth:`~refit_gym.diffusion.adapters.DenoiserAdapter.diffusion_loss`,
indices importance-sampled, SNR-weighted); sequence backbones (DreamRec, DreamRec-POI) visit every training row
once and learn the all-prefix next-item loss (``sequence_loss``, gradient norm clipped to 5).

Model selection: validation ``cfg.metric`` (Recall@20 by default) on the schedule and sample of
:mod:`refit_gym.diffusion.validation` (by default a fixed sample of 1,024 validation users at an interval that keeps
validation within 1/4 of the wall-clock; the kept checkpoint gets a full pass at the end). The best model is saved
as ``best.pt`` (a backbone checkpoint), the full training state as ``last_state.pt`` after every epoch
(:mod:`refit_gym.diffusion.train_state`), so an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import json
import numbers
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from refit_gym.diffusion.adapters import DenoiserAdapter
from refit_gym.diffusion.checkpoint import CheckpointError, save_backbone
# re-exported: the resume state and the objective's draws lived here before the loops were unified
from refit_gym.diffusion.objective import ImportanceSampler, make_draws, seeded_generators  # noqa: F401
from refit_gym.diffusion.train_state import (ModelSelection, PretrainResult, checkpoint_meta,  # noqa: F401
                                             data_digest, finish_pretraining, history_seconds, load_training_state,
                                             protocol_meta, restore_rng_state, rng_state, run_fingerprint,
                                             save_training_state)
from refit_gym.diffusion.validation import ValidationSchedule, check_evaluate_fn, validation_sample, validation_users
from refit_gym.io_safety import locks_output, write_json_atomic
from refit_gym.utils import optimizer_kwargs, progress_bar, resolve_device, set_global_seed


@dataclass
class PretrainConfig:
    """Hyperparameters of :func:`pretrain` (DiffRec's ml-1m defaults; a scenario overrides some).

    epochs: maximum number of passes over the data. lr, weight_decay: AdamW. batch_size: users (history backbones)
    or training rows (sequence backbones) per step. timestep_sampling: 'importance' (DiffRec) or 'uniform';
    reweight: SNR-difference loss weights (both: history backbones only). patience: validations without
    improvement before stopping (0 disables early stopping). metric: validation key used for selection.
    eval_every: epochs between validations, or None (default) for the adaptive interval that keeps validation
    within ``eval_budget`` (a share in (0, 1), default 0.25) of the wall-clock. eval_users: size of the fixed
    validation sample that selection scores (default 1024), or None to score every validation user each time.
    eval_batch_size: users per evaluation batch (the default evaluation). seed: RNG seed.
    See :mod:`refit_gym.diffusion.validation` for the validation policy.
    """

    epochs: int = 100
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 400
    timestep_sampling: str = "importance"
    reweight: bool = True
    eval_every: Optional[int] = None
    patience: int = 10
    metric: str = "recall@20"
    eval_batch_size: int = 1024
    seed: int = 0
    eval_users: Optional[int] = 1024
    eval_budget: float = 0.25

    def __post_init__(self):
        for name in ("epochs", "batch_size", "patience", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < (0 if name in ("epochs", "patience") else 1):
                raise ValueError(f"PretrainConfig.{name}={value!r}: expected an integer >= "
                                 f"{0 if name in ('epochs', 'patience') else 1}")
        for name in ("eval_every", "eval_users"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1):
                raise ValueError(f"PretrainConfig.{name}={value!r}: expected a positive integer, or None")
        if not 0.0 < float(self.eval_budget) < 1.0:
            raise ValueError(f"PretrainConfig.eval_budget={self.eval_budget!r}: expected a share in (0, 1)")
        if self.timestep_sampling not in ("importance", "uniform"):
            raise ValueError(f"PretrainConfig.timestep_sampling={self.timestep_sampling!r}: expected 'importance' or "
                             "'uniform'")


def default_evaluate_fn(data, cfg: PretrainConfig, device) -> Callable:
    """``f(adapter, data, split, users=None) -> metrics`` of interaction data:
    :func:`refit_gym.metrics.evaluate_backbone` (full ranking, train items masked; sharded under torch.distributed).
    Sequence data has its own protocol: TypeError, pass ``evaluate_fn`` (``Scenario.pretrain`` does)."""
    if hasattr(data, "split_users"):
        raise TypeError(f"data '{getattr(data, 'name', '?')}' is sequence data: pretrain() needs its evaluate_fn (e.g. "
                        "refit_gym.scenarios.SCENARIOS['sequential'].evaluate_backbone; Scenario.pretrain passes it)")
    from refit_gym.metrics import evaluate_backbone  # metrics sit beside, not below, diffusion

    return lambda a, d, s, users=None: evaluate_backbone(a, d, s, batch_size=cfg.eval_batch_size, device=device,
                                                         users=users)


def _validate(adapter, data, evaluate_fn, users, device, clock) -> tuple:
    """``(metrics, seconds)`` of ``evaluate_fn`` on 'valid' (``users``: the sample, or None for all) in eval mode,
    under a fork of the global generators, so that validation never shifts a training draw (dropout masks)."""
    adapter.eval()
    devices = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    t0 = clock()
    with torch.random.fork_rng(devices=devices):
        metrics = evaluate_fn(adapter, data, "valid") if users is None else evaluate_fn(adapter, data, "valid",
                                                                                         users=users)
    return metrics, clock() - t0


@locks_output("out_dir")
def pretrain(adapter: DenoiserAdapter, data, cfg: PretrainConfig = PretrainConfig(), out_dir=None,
             device="cpu", tensorboard: bool = True, progress: bool = True, resume: bool = False,
             evaluate_fn: Optional[Callable] = None, log: Callable[[str], None] = print,
             max_seconds: Optional[float] = None, clock: Callable[[], float] = time.perf_counter) -> PretrainResult:
    """Pretrain ``adapter`` on the training data of ``data`` with validation model selection and early stopping.

    Each epoch runs the adapter's objective over ``adapter.pretrain_batches`` (AdamW, ``adapter.pretrain_grad_clip``)
    and appends a row to the history: ``epoch``, ``train_loss`` (the epoch's mean loss), ``epoch_seconds``
    (training seconds), ``batches``, ``valid_seconds`` (validation seconds after this epoch, 0.0 when it was not
    validated) and, when validated, ``valid/<metric>`` (of the sample, or of every validation user),
    ``valid_full`` (whether it was a full pass) and ``valid_users`` (the sample's size, with a sample). The kept
    epoch's row gets the full pass at the end: ``valid_full/<metric>`` and ``valid_full_seconds``.

    Args:
        adapter: a freshly built backbone for ``data`` (its weights are replaced on resume).
        data: the InteractionData (history backbones) or SequentialData (sequence backbones) it was built for.
        cfg: hyperparameters, the validation policy included (:mod:`refit_gym.diffusion.validation`).
        out_dir: where ``best.pt``, ``last_state.pt``, ``history.json`` and TensorBoard logs (``tb/``) go (None:
            nothing written, no resume).
        device: 'cpu', 'cuda' or 'auto'.
        resume: continue from ``out_dir/last_state.pt`` if it exists (else start afresh): at the epoch after the last
            finished one, with the same weights as an uninterrupted run; a run that had stopped early or used up
            ``max_seconds`` trains no further. A state written for another backbone architecture or other data
            raises CheckpointError naming the file and the differing fields.
        evaluate_fn: ``f(adapter, data, split, users=None) -> metrics dict`` (``users``: the validation sample, int64
            ``(n,)``; None: every validation user); default :func:`default_evaluate_fn` (interaction data only).
        log: called with progress lines (one per epoch when ``progress`` is off) and on resume / stop.
        max_seconds: bound on the run's cumulative wall time in seconds (training and validation, summed over
            resumed sessions; checked between batches on rank 0's clock): the epoch in progress is then validated
            and training stops. None: no bound.
        clock: the clock of every time measurement, in seconds (tests pass a fake one).
    Returns: a :class:`PretrainResult`; the adapter is left holding the best weights, in eval mode.

    Data parallel (under ``torchrun``, see :mod:`refit_gym.distributed`), for backbones with
    ``pretrain_data_parallel`` (history backbones): every rank draws the same global batch of ``cfg.batch_size``
    users, indices and noise and computes its block of rows; the gradients are summed over the ranks, so the
    updates equal one process's on the same global batches (up to float summation order) when the backbone has no
    dropout; dropout masks are drawn per rank (:func:`~refit_gym.distributed.rank_seed`). The validation sample
    and schedule are the same on every rank (the schedule is decided on rank 0 and broadcast); the default
    evaluation shards the users. Rank 0 alone writes ``out_dir``; a resume reads ``out_dir/last_state.pt`` on every
    rank (the folder must be visible to all). Other backbones refuse to run under torch.distributed.
    """
    from refit_gym import distributed

    device = distributed.local_device(resolve_device(device))
    main, parallel = distributed.is_main(), distributed.active()
    if parallel and not adapter.pretrain_data_parallel:
        raise RuntimeError(f"{adapter.backbone_name} pretraining is not data-parallel: run it as one process (without "
                           "torchrun); the interaction backbones (diffrec, cfdiff, social-diffrec) pretrain under torchrun")
    say = log if main else (lambda msg: None)
    evaluate_fn = evaluate_fn or default_evaluate_fn(data, cfg, device)
    sample = validation_sample(data, cfg.eval_users, cfg.seed)  # the same on every rank
    check_evaluate_fn(evaluate_fn, sample)
    full_ratio = len(validation_users(data)) / len(sample) if sample is not None else 0.0
    set_global_seed(cfg.seed)
    adapter.to(device)
    params = list(adapter.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay,
                            **optimizer_kwargs(torch.optim.AdamW, params))
    draws = make_draws(cfg.seed, device, adapter.pretrain_index_sampler(cfg))
    distributed.broadcast_parameters(adapter)
    out = Path(out_dir) if out_dir is not None else None
    writer = None
    if out is not None and main:
        out.mkdir(parents=True, exist_ok=True)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            writer = SummaryWriter(str(out / "tb"))
    sel, history = ModelSelection(cfg.metric), []
    start_epoch, elapsed_before, next_at, finished = 0, 0.0, 1, False
    state_path = out / "last_state.pt" if out is not None else None
    fingerprint = run_fingerprint(adapter, data) if state_path is not None else None
    found = resume and state_path is not None and state_path.exists()
    distributed.check_same(float(found), f"whether {state_path} exists (resume needs a folder all ranks see)")
    if found:
        st = load_training_state(state_path, adapter, opt, fingerprint)
        if draws.sampler is not None:
            if "sampler" not in st:
                raise CheckpointError(f"{state_path}: field 'sampler' missing: the state was written without the "
                                      "importance sampler (timestep_sampling='uniform'); resume with the run's own "
                                      "timestep_sampling, or use another output folder")
            draws.sampler.load_state_dict(st["sampler"])
        # states of sequence backbones written before the loops were unified hold no np_rng (they never draw from it)
        restore_rng_state(st, device, np_rng=draws.np_rng if "np_rng" in st else None, **draws.generators)
        sel.load_state_dict(st)
        history = json.loads(st["history"])
        start_epoch = int(st["epoch"]) + 1
        # states of history backbones written before elapsed time was stored: their rows' seconds
        elapsed_before = float(st["elapsed_seconds"]) if "elapsed_seconds" in st else sum(history_seconds(history))
        next_at = int(st["next_validation"]) if "next_validation" in st else start_epoch + 1
        say(f"resumed from {state_path} at epoch {start_epoch} ({elapsed_before:.1f} s used so far)")
        if sel.should_stop(cfg.patience):
            say(f"nothing to resume: the run stopped early at epoch {start_epoch - 1} (no {cfg.metric} gain for "
                f"{sel.bad} validations)")
            finished = True
        elif max_seconds is not None and elapsed_before >= max_seconds:
            say(f"nothing to resume: max_seconds={max_seconds} already used ({elapsed_before:.1f} s)")
            finished = True
    schedule = ValidationSchedule(cfg.eval_every, cfg.eval_budget, cfg.epochs, next_at)
    if parallel:  # dropout masks come from the global generator: each rank draws its own
        torch.manual_seed(distributed.rank_seed(cfg.seed, start_epoch))
    from refit_gym.diffusion.divergence import DivergenceMonitor

    monitor = DivergenceMonitor(adapter, str(state_path) if state_path is not None and state_path.exists() else None)

    def save_state(epoch: int) -> None:
        extra = {"sampler": draws.sampler.state_dict()} if draws.sampler is not None else {}
        save_training_state(state_path, adapter, opt, epoch, history, sel, fingerprint,
                            rng_state(device, np_rng=draws.np_rng, **draws.generators),
                            elapsed_seconds=clock() - t_start, next_validation=schedule.next_at, **extra)
        write_json_atomic(out / "history.json", history, indent=1)

    t_start = clock() - elapsed_before
    bar = progress_bar(total=cfg.epochs, initial=start_epoch, desc="pretrain", disable=not progress or not main)
    for epoch in range(start_epoch, start_epoch if finished else cfg.epochs):
        # ---- one pass over the adapter's batches
        adapter.train()
        t0, total, weight, n_batches, out_of_time = clock(), 0.0, 0.0, 0, False
        for batch in adapter.pretrain_batches(data, cfg.batch_size, draws):
            loss = adapter.pretrain_loss(batch, draws, cfg)  # this rank's share of the global batch's loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            loss_global = distributed.all_reduce_sum(float(loss.detach()))
            monitor.check_loss(loss_global, f"epoch {epoch}, batch {n_batches}")  # same verdict on every rank
            distributed.all_reduce_gradients(adapter)
            if adapter.pretrain_grad_clip:
                torch.nn.utils.clip_grad_norm_(adapter.parameters(), adapter.pretrain_grad_clip)
            opt.step()
            total, weight, n_batches = total + loss_global * batch.weight, weight + batch.weight, n_batches + 1
            if max_seconds is not None and distributed.broadcast_scalar(float(clock() - t_start > max_seconds)):
                out_of_time = True
                break
        row = {"epoch": epoch, "train_loss": total / max(weight, 1.0), "epoch_seconds": clock() - t0,
               "batches": n_batches, "valid_seconds": 0.0}
        monitor.check_weights(adapter, f"the end of epoch {epoch}")  # before anything of this epoch is saved
        if state_path is not None:
            monitor.kept = f"; last good state kept in {state_path}"
        # ---- validation and model selection
        validated = out_of_time or schedule.due(epoch)
        if validated:
            metrics, row["valid_seconds"] = _validate(adapter, data, evaluate_fn, sample, device, clock)
            row.update({f"valid/{k}": v for k, v in metrics.items()}, valid_full=sample is None)
            if sample is not None:
                row["valid_users"] = len(sample)
            sel.observe(adapter, data, epoch, metrics, cfg, out if main else None, full=sample is None)
        history.append(row)
        if validated:
            schedule.plan_next(epoch, history, full_ratio, distributed.broadcast_scalar)
        if writer is not None:
            for k, v in row.items():
                if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool):
                    writer.add_scalar(k if "/" in k else f"train/{k}", v, epoch)
            writer.flush()
        bar.update(1)
        shown = row.get(f"valid/{cfg.metric}", float("nan"))
        bar.set_postfix(loss=f"{row['train_loss']:.4f}", **{cfg.metric: f"{shown:.4f}"}, best=f"{sel.best:.4f}@{sel.best_epoch}")
        if not progress:
            say(f"epoch {epoch}: loss {row['train_loss']:.4f} ({n_batches} batches, {row['epoch_seconds']:.1f} s)"
                + (f", valid {cfg.metric} {shown:.4f} ({row['valid_seconds']:.1f} s)" if validated else ""))
        if state_path is not None and main:
            save_state(epoch)
        if out_of_time:
            say(f"stopping: max_seconds={max_seconds} reached during epoch {epoch}")
            break
        if sel.should_stop(cfg.patience):
            say(f"early stop at epoch {epoch}: no {cfg.metric} gain for {sel.bad} validations "
                f"(best {sel.best:.4f} at epoch {sel.best_epoch})")
            break
    bar.close()
    if writer is not None:
        writer.close()
    if sample is not None and sel.best_state is not None:
        _final_pass(adapter, data, cfg, sel, history, evaluate_fn, device, clock, out if main else None,
                    save_state if state_path is not None and main else None, say)
    distributed.barrier()  # rank 0's files are complete before any rank reads them
    return finish_pretraining(adapter, history, sel, out, [float(r["epoch_seconds"]) for r in history])


def _final_pass(adapter, data, cfg, sel, history, evaluate_fn, device, clock, out, save_state, say) -> None:
    """The kept checkpoint's full validation pass (all ranks): recorded in its history row (``valid_full/<metric>``,
    ``valid_full_seconds``), in ``out/best.pt``'s meta and, through ``save_state``, in ``last_state.pt`` (which
    keeps the last weights); nothing when that row already holds one."""
    row = next(r for r in history if r["epoch"] == sel.best_epoch)
    if f"valid_full/{cfg.metric}" in row:
        return
    last = {k: v.detach().clone() for k, v in adapter.state_dict().items()}
    adapter.load_state_dict(sel.best_state)
    full, seconds = _validate(adapter, data, evaluate_fn, None, device, clock)
    if cfg.metric not in full:
        raise KeyError(f"the full validation pass has no {cfg.metric!r} (the selection metric); it has {sorted(full)}")
    row.update({f"valid_full/{k}": v for k, v in full.items()}, valid_full_seconds=seconds)
    if out is not None:
        save_backbone(adapter, out / "best.pt", meta=checkpoint_meta(data, sel.best_epoch, full, cfg, full=True))
    adapter.load_state_dict(last)
    if save_state is not None:
        save_state(history[-1]["epoch"])
    say(f"kept epoch {sel.best_epoch}: full validation {cfg.metric} {full[cfg.metric]:.4f} "
        f"(the sample of {row.get('valid_users')} users gave {row[f'valid/{cfg.metric}']:.4f}; {seconds:.1f} s)")


__all__ = ["ImportanceSampler", "ModelSelection", "PretrainConfig", "PretrainResult", "checkpoint_meta", "data_digest",
           "default_evaluate_fn", "finish_pretraining", "load_training_state", "pretrain", "protocol_meta",
           "restore_rng_state", "rng_state", "run_fingerprint", "save_training_state", "seeded_generators"]
