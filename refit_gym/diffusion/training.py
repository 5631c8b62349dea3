"""Pretraining a diffusion backbone with DiffRec's objective.

One epoch visits every user once in shuffled mini-batches. For a batch, a diffusion index ``i`` is
drawn per user (uniformly, or by DiffRec's importance sampling over the recent loss history), the
clean target ``x0`` (the training-history vector for DiffRec-like backbones) is noised with
``q(x_i | x0)`` and the denoiser is regressed on ``x0`` (or the noise), weighted by
``SNR(i-1) - SNR(i)`` when ``reweight`` is on. Model selection: validation ``metric`` (Recall@20 by
default) after each evaluation; the best model is saved as ``best.pt`` (a backbone checkpoint) and
the full training state (weights, optimizer, sampler history, RNG states, epoch) as ``last_state.pt``
after every epoch, so an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

from refit_gym.diffusion.adapters import DenoiserAdapter
from refit_gym.diffusion.checkpoint import save_backbone
from refit_gym.utils import atomic_torch_save, progress_bar, resolve_device, set_global_seed


@dataclass
class PretrainConfig:
    """Hyperparameters of :func:`pretrain` (DiffRec's ml-1m defaults).

    epochs: maximum number of passes over the users. lr, weight_decay: AdamW. batch_size: users per step.
    timestep_sampling: 'importance' (DiffRec) or 'uniform'. reweight: SNR-difference loss weights.
    eval_every: epochs between validation evaluations. patience: evaluations without improvement
    before stopping (0 disables early stopping). metric: validation key used for selection.
    eval_batch_size: users per evaluation batch. seed: RNG seed.
    """

    epochs: int = 100
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 400
    timestep_sampling: str = "importance"
    reweight: bool = True
    eval_every: int = 1
    patience: int = 10
    metric: str = "recall@20"
    eval_batch_size: int = 1024
    seed: int = 0


class ImportanceSampler:
    """DiffRec-style importance sampling of diffusion indices.

    Keeps the last ``history`` squared losses per index; until every index has a full history it
    samples uniformly, then with probability proportional to ``sqrt(mean(L_i^2))`` mixed with
    ``uniform_prob`` of the uniform distribution. ``sample`` returns indices ``(B,)`` and their
    probabilities ``(B,)``; the loss is divided by ``T * p`` so its expectation is unchanged.
    """

    def __init__(self, steps: int, history: int = 10, uniform_prob: float = 1e-3):
        self.steps, self.history, self.uniform_prob = steps, history, uniform_prob
        self.loss_sq = np.zeros((steps, history), dtype=np.float64)
        self.count = np.zeros(steps, dtype=np.int64)

    def probs(self) -> np.ndarray:
        if (self.count < self.history).any():
            return np.full(self.steps, 1.0 / self.steps)
        w = np.sqrt(self.loss_sq.mean(axis=1))
        w = w / w.sum()
        return w * (1 - self.uniform_prob) + self.uniform_prob / self.steps

    def sample(self, batch: int, gen: torch.Generator, device) -> tuple:
        p = torch.as_tensor(self.probs(), dtype=torch.float64)
        i = torch.multinomial(p, batch, replacement=True, generator=gen)
        return i.to(device), p[i].to(device=device, dtype=torch.float32)

    def update(self, i: torch.Tensor, loss: torch.Tensor) -> None:
        """Record per-user losses ``loss`` (B,) at indices ``i`` (B,) (last ``history`` kept per index)."""
        i_np, l_np = i.cpu().numpy(), loss.detach().double().cpu().numpy() ** 2
        for k in np.unique(i_np):  # at most T distinct indices per batch
            vals = l_np[i_np == k][-self.history:]
            self.loss_sq[k] = np.concatenate([self.loss_sq[k], vals])[-self.history:]
            self.count[k] = min(self.count[k] + len(vals), self.history)

    def state_dict(self) -> Dict:
        return {"loss_sq": torch.as_tensor(self.loss_sq), "count": torch.as_tensor(self.count)}

    def load_state_dict(self, s: Dict) -> None:
        self.loss_sq = s["loss_sq"].numpy().copy()
        self.count = s["count"].numpy().copy()


@dataclass
class ModelSelection:
    """Validation model selection shared by the pretraining loops: the best weights so far, their epoch,
    and the number of evaluations since the last gain (for early stopping)."""

    metric: str
    best: float = -math.inf
    best_epoch: int = -1
    bad: int = 0
    best_state: Optional[Dict] = None

    def observe(self, adapter: DenoiserAdapter, data, epoch: int, metrics: Dict[str, float], cfg, out=None) -> None:
        """Record one validation result; on a gain keep the weights and, with ``out``, write ``out/best.pt``."""
        if metrics[self.metric] > self.best:
            self.best, self.best_epoch, self.bad = metrics[self.metric], epoch, 0
            self.best_state = {k: v.detach().cpu().clone() for k, v in adapter.state_dict().items()}
            if out is not None:
                save_backbone(adapter, Path(out) / "best.pt", meta=checkpoint_meta(data, epoch, metrics, cfg))
        else:
            self.bad += 1

    def should_stop(self, patience: int) -> bool:
        return bool(patience) and self.bad >= patience


@dataclass
class PretrainResult:
    best_epoch: int
    best_valid: Dict[str, float]
    history: List[Dict] = field(default_factory=list)
    best_path: Optional[str] = None
    seconds_per_epoch: float = float("nan")


def _condition_rows(adapter: DenoiserAdapter, data, users: np.ndarray, device) -> torch.Tensor:
    return torch.as_tensor(adapter.encode_condition(users, data.train[users]), device=device)


def pretrain(adapter: DenoiserAdapter, data, cfg: PretrainConfig = PretrainConfig(), out_dir=None,
             device="cpu", tensorboard: bool = True, progress: bool = True, resume: bool = False,
             evaluate_fn: Optional[Callable] = None, log: Callable[[str], None] = print) -> PretrainResult:
    """Pretrain ``adapter`` on ``data.train`` with early stopping on ``data.valid``.

    Args:
        adapter: a freshly built (or resumed) backbone.
        data: an InteractionData.
        cfg: hyperparameters.
        out_dir: where ``best.pt``, ``last_state.pt``, ``history.json`` and TensorBoard logs go (None: nothing written).
        device: 'cpu', 'cuda' or 'auto'.
        resume: continue from ``out_dir/last_state.pt`` if it exists.
        evaluate_fn: ``f(adapter, data, split) -> metrics dict``; defaults to
            :func:`refit_gym.metrics.evaluate_backbone`.
    Returns: a :class:`PretrainResult`; the adapter is left holding the best weights.
    """
    from refit_gym.metrics import evaluate_backbone  # metrics sit beside, not below, diffusion

    device = resolve_device(device)
    evaluate_fn = evaluate_fn or (lambda a, d, s: evaluate_backbone(a, d, s, batch_size=cfg.eval_batch_size, device=device))
    set_global_seed(cfg.seed)
    adapter.to(device)
    opt = torch.optim.AdamW(adapter.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sampler = ImportanceSampler(adapter.schedule.steps)
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    out = Path(out_dir) if out_dir is not None else None
    writer = None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            writer = SummaryWriter(str(out / "tb"))
    start_epoch, history = 0, []
    sel = ModelSelection(cfg.metric)
    state_path = out / "last_state.pt" if out is not None else None
    if resume and state_path is not None and state_path.exists():
        st = torch.load(state_path, map_location="cpu", weights_only=True)
        adapter.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        sampler.load_state_dict(st["sampler"])
        gen.set_state(st["torch_gen"])
        rng.bit_generator.state = st["np_rng"]
        torch.set_rng_state(st["torch_global"])  # dropout draws from the global generator
        start_epoch, history = st["epoch"] + 1, json.loads(st["history"])
        sel = ModelSelection(cfg.metric, st["best"], st["best_epoch"], st["bad"], st["best_model"])
        log(f"resumed from {state_path} at epoch {start_epoch}")

    users_all = np.arange(data.n_users)
    epoch_times = []
    T = adapter.schedule.steps
    bar = progress_bar(total=cfg.epochs, initial=start_epoch, desc="pretrain", disable=not progress)
    for epoch in range(start_epoch, cfg.epochs):
        # ---- one pass over the users
        adapter.train()
        t0 = time.perf_counter()
        perm = rng.permutation(users_all)
        total, n = 0.0, 0
        for s in range(0, len(perm), cfg.batch_size):
            users = perm[s:s + cfg.batch_size]
            cond = _condition_rows(adapter, data, users, device)
            if cfg.timestep_sampling == "importance":
                i, p = sampler.sample(len(users), gen, device)
            else:
                i = torch.randint(0, T, (len(users),), generator=gen).to(device)
                p = torch.full((len(users),), 1.0 / T, device=device)
            u_t = torch.as_tensor(users, device=device)
            per_user = adapter.diffusion_loss(cond, u_t, i, generator=gen, reweight=cfg.reweight)
            loss = (per_user / (T * p)).mean()
            if not torch.isfinite(loss):
                raise FloatingPointError(f"pretraining loss is {loss.item()} at epoch {epoch}, batch starting at {s}; "
                                         f"last good state kept in {state_path}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sampler.update(i, per_user)
            total += loss.item() * len(users)
            n += len(users)
        epoch_times.append(time.perf_counter() - t0)
        row = {"epoch": epoch, "train_loss": total / max(n, 1), "epoch_seconds": epoch_times[-1]}
        # ---- validation and model selection
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            metrics = evaluate_fn(adapter, data, "valid")
            row.update({f"valid/{k}": v for k, v in metrics.items()})
            sel.observe(adapter, data, epoch, metrics, cfg, out)
        history.append(row)
        if writer is not None:
            for k, v in row.items():
                if k != "epoch" and isinstance(v, (int, float)):
                    writer.add_scalar(k if "/" in k else f"train/{k}", v, epoch)
            writer.flush()
        bar.update(1)
        bar.set_postfix(loss=f"{row['train_loss']:.4f}", **{cfg.metric: f"{row.get('valid/' + cfg.metric, float('nan')):.4f}"},
                        best=f"{sel.best:.4f}@{sel.best_epoch}")
        if state_path is not None:
            atomic_torch_save({
                "model": adapter.state_dict(), "optimizer": opt.state_dict(), "sampler": sampler.state_dict(),
                "torch_gen": gen.get_state(), "torch_global": torch.get_rng_state(), "np_rng": rng.bit_generator.state, "epoch": epoch, "best": sel.best,
                "best_epoch": sel.best_epoch, "bad": sel.bad, "history": json.dumps(history), "best_model": sel.best_state,
            }, state_path)
            (out / "history.json").write_text(json.dumps(history, indent=1))
        if sel.should_stop(cfg.patience):
            log(f"early stop at epoch {epoch}: no {cfg.metric} gain for {sel.bad} evaluations "
                f"(best {sel.best:.4f} at epoch {sel.best_epoch})")
            break
    bar.close()
    if writer is not None:
        writer.close()
    return finish_pretraining(adapter, history, sel, out, epoch_times)


def finish_pretraining(adapter: DenoiserAdapter, history: List[Dict], sel: ModelSelection, out: Optional[Path],
                       epoch_times: List[float]) -> PretrainResult:
    """Leave ``adapter`` holding the best (validation-selected) weights in eval mode; summarise the run."""
    best_epoch = sel.best_epoch
    if sel.best_state is not None:
        adapter.load_state_dict(sel.best_state)
    adapter.eval()
    return PretrainResult(
        best_epoch=best_epoch, best_valid=next((r for r in history if r["epoch"] == best_epoch), {}),
        history=history, best_path=str(out / "best.pt") if out is not None and best_epoch >= 0 else None,
        seconds_per_epoch=float(np.mean(epoch_times)) if epoch_times else float("nan"),
    )


def checkpoint_meta(data, epoch, metrics, cfg) -> Dict:
    """The ``meta`` block of a pretrained backbone checkpoint (data sizes, epoch, validation metrics, config)."""
    return {"data": data.name, "n_users": data.n_users, "n_items": data.n_items, "epoch": epoch,
            "valid": {k: float(v) for k, v in metrics.items()}, "pretrain": asdict(cfg)}
