"""Pretraining a diffusion backbone with DiffRec's objective.

One epoch visits every user once in shuffled mini-batches. For a batch, a diffusion index ``i`` is
drawn per user (uniformly, or by DiffRec's importance sampling over the recent loss history), the
clean target ``x0`` (the training-history vector for DiffRec-like backbones) is noised with
``q(x_i | x0)`` and the denoiser is regressed on ``x0`` (or the noise), weighted by
``SNR(i-1) - SNR(i)`` when ``reweight`` is on. Model selection: validation ``metric`` (Recall@20 by
default) after each evaluation; the best model is saved as ``best.pt`` (a backbone checkpoint) and
the full training state (weights, optimizer, sampler history, RNG states, epoch) as ``last_state.pt``
after every epoch, so an interrupted run resumes where it stopped.

The resume state is shared with the sequence pretraining of :mod:`refit_gym.scenarios`
(:func:`save_training_state`, :func:`load_training_state`, :func:`rng_state`, :func:`restore_rng_state`,
:meth:`ModelSelection.state_dict`): a ``torch.save`` dict of tensors and builtins only, read back with
``torch.load(weights_only=True)``, holding the weights (``model``), the optimizer, the epoch counter,
the history (a JSON string), the selection state (``best``, ``best_epoch``, ``bad``, ``best_model``),
the generator states and ``run``, a JSON fingerprint of the backbone and the data that a resume
must match.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from refit_gym.diffusion.adapters import DenoiserAdapter
from refit_gym.diffusion.checkpoint import CheckpointError, save_backbone
from refit_gym.io_safety import locks_output, write_json_atomic
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

    def state_dict(self) -> Dict:
        """The selection state as stored in ``last_state.pt``: ``best`` (float), ``best_epoch`` (int),
        ``bad`` (int) and ``best_model`` (CPU state dict of the best weights, or None before any evaluation)."""
        return {"best": self.best, "best_epoch": self.best_epoch, "bad": self.bad, "best_model": self.best_state}

    def load_state_dict(self, st: Dict) -> None:
        """Restore from a dict holding the keys of :meth:`state_dict` (other keys are ignored)."""
        self.best, self.best_epoch, self.bad = float(st["best"]), int(st["best_epoch"]), int(st["bad"])
        self.best_state = st["best_model"]


@dataclass
class PretrainResult:
    best_epoch: int
    best_valid: Dict[str, float]
    history: List[Dict] = field(default_factory=list)
    best_path: Optional[str] = None
    seconds_per_epoch: float = float("nan")


# ---------------------------------------------------------------------------------------------- resume state
def rng_state(device, np_rng: Optional[np.random.Generator] = None, **generators: torch.Generator) -> Dict:
    """Generator states for ``last_state.pt``: ``torch_global`` (the global CPU generator, which draws the
    dropout masks on CPU), ``torch_cuda`` (the global generator of ``device`` when it is a CUDA device:
    dropout there), ``np_rng`` (``np_rng.bit_generator.state``, a dict of ints, when given) and one entry
    per keyword generator (``name=torch.Generator``), each a CPU uint8 tensor."""
    device = torch.device(device)
    st = {"torch_global": torch.get_rng_state()}
    if device.type == "cuda":
        st["torch_cuda"] = torch.cuda.get_rng_state(device)
    if np_rng is not None:
        st["np_rng"] = np_rng.bit_generator.state
    st.update({name: g.get_state() for name, g in generators.items()})
    return st


def seeded_generators(seed: int, device) -> Tuple[torch.Generator, torch.Generator, Dict[str, torch.Generator]]:
    """``(gen, dev_gen, named)``: a CPU generator for index draws (users, timesteps), a generator on ``device`` for
    the noise drawn there (``gen`` itself on CPU; torch refuses a CPU generator for a CUDA draw), both seeded
    with ``seed``, and the ``name -> generator`` keywords that :func:`rng_state` / :func:`restore_rng_state` save."""
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    if device.type == "cpu":
        return gen, gen, {"torch_gen": gen}
    dev_gen = torch.Generator(device).manual_seed(seed)
    return gen, dev_gen, {"torch_gen": gen, "torch_dev_gen": dev_gen}


def restore_rng_state(st: Dict, device, np_rng: Optional[np.random.Generator] = None,
                      **generators: torch.Generator) -> None:
    """Inverse of :func:`rng_state` (same arguments). ``torch_cuda`` is restored only when present and
    ``device`` is a CUDA device (states written before it was stored, or on CPU, lack it)."""
    device = torch.device(device)
    torch.set_rng_state(st["torch_global"])
    if device.type == "cuda" and "torch_cuda" in st:
        torch.cuda.set_rng_state(st["torch_cuda"], device)
    if np_rng is not None:
        np_rng.bit_generator.state = st["np_rng"]
    for name, g in generators.items():
        g.set_state(st[name])


def data_digest(data) -> str:
    """SHA-1 (hex) of the training data a pretraining reads: the train sequences and validation items of
    a SequentialData (order matters; under a protocol other than loo also its split users), else the sparsity
    patterns of the train and valid matrices."""
    from refit_gym.data.dataset import as_interactions

    h = hashlib.sha1()
    if hasattr(data, "train_items"):
        arrays = [data.train_items, data.train_ptr, data.valid_item]
        if data.protocol != "loo":  # loo digests stay as they were
            h.update(data.protocol.encode())
            arrays += [data.split_users[k] for k in ("train", "valid", "test")]
    else:
        m = as_interactions(data)
        arrays = []
        for x in (m.train, m.valid):
            x = x.tocsr()
            if not x.has_sorted_indices:
                x = x.sorted_indices()
            arrays += [x.indptr, x.indices]
    for a in arrays:
        a = np.ascontiguousarray(a, dtype=np.int64)
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def run_fingerprint(adapter: DenoiserAdapter, data) -> Dict:
    """What a ``last_state.pt`` must match to be resumed: the backbone name and constructor config
    (``adapter.config()``, JSON-normalised) and the data (name, sizes, :func:`data_digest`; the sequence
    protocol, :func:`protocol_meta`, when it is not leave-one-out, so that a mismatch is named)."""
    proto = protocol_meta(data)
    return {"backbone": adapter.backbone_name, "config": json.loads(json.dumps(adapter.config())),
            "data": {"name": getattr(data, "name", "?"), "n_users": int(data.n_users), "n_items": int(data.n_items),
                     "digest": data_digest(data), **(proto if proto.get("protocol", "loo") != "loo" else {})}}


def _fingerprint_differences(saved: Dict, current: Dict, prefix: str = "") -> List[str]:
    """``"field 'x.y' is A in the file, B in this run"`` for every leaf that differs (the data name is
    ignored: the same data may sit in another folder)."""
    out = []
    for k in sorted(set(saved) | set(current)):
        key = f"{prefix}{k}"
        if key == "data.name":
            continue
        a, b = saved.get(k, "<absent>"), current.get(k, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += _fingerprint_differences(a, b, key + ".")
        elif a != b:
            what = " (the training data differ)" if key == "data.digest" else ""
            out.append(f"field '{key}' is {a!r} in the file, {b!r} in this run{what}")
    return out


def save_training_state(path, adapter: DenoiserAdapter, optimizer: torch.optim.Optimizer, epoch: int,
                        history: List[Dict], sel: ModelSelection, fingerprint: Dict, rng: Dict, **extra) -> Path:
    """Write the resume state atomically (temp file + rename) to ``path``: ``model``, ``optimizer``,
    ``epoch`` (the last finished epoch, 0-based), ``history`` (JSON string), the :class:`ModelSelection`
    keys, ``run`` (``fingerprint`` as a JSON string), the :func:`rng_state` entries ``rng`` and ``extra``
    (tensors, numbers, strings or plain containers of them only: the file is read with ``weights_only``), and
    ``digest``, the :func:`~refit_gym.diffusion.checkpoint.state_digest` of ``model`` (a damaged weight is refused
    on resume)."""
    from refit_gym.diffusion.checkpoint import state_digest

    model = {k: v.detach().cpu() for k, v in adapter.state_dict().items()}
    return atomic_torch_save({
        "model": model, "optimizer": optimizer.state_dict(), "epoch": int(epoch),
        "history": json.dumps(history), "run": json.dumps(fingerprint), **sel.state_dict(), **rng, **extra,
        "digest": state_digest(model),
    }, path)


def load_training_state(path, adapter: DenoiserAdapter, optimizer: torch.optim.Optimizer,
                        fingerprint: Optional[Dict]) -> Dict:
    """Read a :func:`save_training_state` file, check it against ``fingerprint`` and load the weights and
    optimizer state into ``adapter`` and ``optimizer``; returns the whole dict (epoch, history, RNG and
    selection entries are the caller's to restore).

    Raises CheckpointError naming ``path`` when the file cannot be read, was written for another backbone
    architecture or other data (each differing field listed), or does not fit ``adapter``. A file without
    a ``run`` fingerprint (written before it was stored) is not checked; ``fingerprint=None`` skips the check.
    """
    path = Path(path)
    try:
        st = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt file, or a pickle with non-allowed globals
        raise CheckpointError(f"{path}: not a readable resume state ({type(e).__name__}: {e}); delete it, "
                              "or use another output folder, to start afresh") from e
    missing = [k for k in ("model", "optimizer", "epoch", "history", "best", "best_epoch", "bad", "best_model")
               if not isinstance(st, dict) or k not in st]
    if missing:
        raise CheckpointError(f"{path}: not a resume state: field(s) {missing} missing")
    for key in ("history", "run"):
        try:
            if key in st:
                json.loads(st[key])
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: field {key!r} is not valid JSON ({e})") from None
    if not isinstance(st["model"], dict):
        raise CheckpointError(f"{path}: field 'model' is a {type(st['model']).__name__}, expected a state dict")
    from refit_gym.diffusion.checkpoint import check_finite_state, state_digest

    try:
        digest = state_digest(st["model"]) if "digest" in st else None
    except CheckpointError as e:
        raise CheckpointError(f"{path}: field 'model': {e}") from None
    if digest is not None and digest != st["digest"]:
        raise CheckpointError(f"{path}: field 'model' does not match the file's field 'digest' (the file is damaged); "
                              "delete it, or use another output folder, to start afresh")
    check_finite_state(st["model"], str(path), {k for k, _ in adapter.named_parameters()})
    if fingerprint is not None and "run" in st:
        saved = json.loads(st["run"])
        diffs = _fingerprint_differences(saved, json.loads(json.dumps(fingerprint)))
        if diffs:
            sd = saved.get("data", {})
            raise CheckpointError(
                f"{path}: this resume state (backbone {saved.get('backbone')!r}, data {sd.get('name')!r}) was written "
                f"for another architecture or dataset than this run's (backbone {fingerprint['backbone']!r}, data "
                f"{fingerprint['data']['name']!r}): " + "; ".join(diffs)
                + ". Delete it, or use another output folder, to start afresh")
    try:
        adapter.load_state_dict(st["model"])
        optimizer.load_state_dict(st["optimizer"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{path}: field 'model' or 'optimizer' does not fit this backbone "
                              f"({type(e).__name__}: {str(e).strip()[:500]})") from e
    return st


def _condition_rows(adapter: DenoiserAdapter, data, users: np.ndarray, device) -> torch.Tensor:
    return torch.as_tensor(adapter.encode_condition(users, data.train[users]), device=device)


@locks_output("out_dir")
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

    Data parallel (under ``torchrun``, see :mod:`refit_gym.distributed`): every rank draws the same global
    batch of ``cfg.batch_size`` users, indices and noise and computes its block of rows; the gradients are
    summed over the ranks, so the updates equal one process's on the same global batches (up to float
    summation order) when the backbone has no dropout; dropout masks are drawn per rank
    (:func:`~refit_gym.distributed.rank_seed`). The default evaluation shards the users. Rank 0 alone writes
    ``out_dir``; a resume reads ``out_dir/last_state.pt`` on every rank (the folder must be visible to all).
    """
    from refit_gym import distributed
    from refit_gym.metrics import evaluate_backbone  # metrics sit beside, not below, diffusion

    device = distributed.local_device(resolve_device(device))
    main, parallel = distributed.is_main(), distributed.active()
    evaluate_fn = evaluate_fn or (lambda a, d, s: evaluate_backbone(a, d, s, batch_size=cfg.eval_batch_size, device=device))
    set_global_seed(cfg.seed)
    adapter.to(device)
    opt = torch.optim.AdamW(adapter.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sampler = ImportanceSampler(adapter.schedule.steps)
    gen, dev_gen, generators = seeded_generators(cfg.seed, device)
    rng = np.random.default_rng(cfg.seed)
    distributed.broadcast_parameters(adapter)
    out = Path(out_dir) if out_dir is not None else None
    writer = None
    if out is not None and main:
        out.mkdir(parents=True, exist_ok=True)
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            writer = SummaryWriter(str(out / "tb"))
    start_epoch, history = 0, []
    sel = ModelSelection(cfg.metric)
    state_path = out / "last_state.pt" if out is not None else None
    fingerprint = run_fingerprint(adapter, data) if state_path is not None else None
    found = resume and state_path is not None and state_path.exists()
    distributed.check_same(float(found), f"whether {state_path} exists (resume needs a folder all ranks see)")
    if found:
        st = load_training_state(state_path, adapter, opt, fingerprint)
        sampler.load_state_dict(st["sampler"])
        restore_rng_state(st, device, np_rng=rng, **generators)  # dropout draws from the global generator
        start_epoch, history = st["epoch"] + 1, json.loads(st["history"])
        sel.load_state_dict(st)
        log(f"resumed from {state_path} at epoch {start_epoch}")
    if parallel:  # dropout masks come from the global generator: each rank draws its own
        torch.manual_seed(distributed.rank_seed(cfg.seed, start_epoch))

    from refit_gym.diffusion.divergence import DivergenceMonitor

    monitor = DivergenceMonitor(adapter, str(state_path) if state_path is not None and state_path.exists() else None)
    users_all = np.arange(data.n_users)
    epoch_times = []
    T = adapter.schedule.steps
    bar = progress_bar(total=cfg.epochs, initial=start_epoch, desc="pretrain", disable=not progress or not main)
    for epoch in range(start_epoch, cfg.epochs):
        # ---- one pass over the users
        adapter.train()
        t0 = time.perf_counter()
        perm = rng.permutation(users_all)
        total, n = 0.0, 0
        for s in range(0, len(perm), cfg.batch_size):
            users = perm[s:s + cfg.batch_size]  # the global batch; this rank computes rows lo:hi
            lo, hi = distributed.shard_bounds(len(users))
            cond = _condition_rows(adapter, data, users[lo:hi], device)
            if cfg.timestep_sampling == "importance":
                i, p = sampler.sample(len(users), gen, device)
            else:
                i = torch.randint(0, T, (len(users),), generator=gen).to(device)
                p = torch.full((len(users),), 1.0 / T, device=device)
            u_t = torch.as_tensor(users[lo:hi], device=device)
            # one process draws the noise inside diffusion_loss; ranks draw the global batch's and keep their rows
            noise = torch.randn((len(users), adapter.action_dim), generator=dev_gen, device=device)[lo:hi] \
                if parallel else None
            per_user = adapter.diffusion_loss(cond, u_t, i[lo:hi], generator=dev_gen, reweight=cfg.reweight,
                                              noise=noise)
            loss = (per_user / (T * p[lo:hi])).sum() / len(users)  # this rank's share of the global mean
            opt.zero_grad(set_to_none=True)
            loss.backward()
            loss_global = distributed.all_reduce_sum(float(loss.detach()))
            monitor.check_loss(loss_global, f"epoch {epoch}, batch starting at {s}")  # same verdict on every rank
            distributed.all_reduce_gradients(adapter)
            opt.step()
            sampler.update(i, distributed.gather_rows(per_user.detach(), len(users)))
            total += loss_global * len(users)
            n += len(users)
        epoch_times.append(time.perf_counter() - t0)
        row = {"epoch": epoch, "train_loss": total / max(n, 1), "epoch_seconds": epoch_times[-1]}
        monitor.check_weights(adapter, f"the end of epoch {epoch}")  # before anything of this epoch is saved
        if state_path is not None:
            monitor.kept = f"; last good state kept in {state_path}"
        # ---- validation and model selection
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            metrics = evaluate_fn(adapter, data, "valid")
            row.update({f"valid/{k}": v for k, v in metrics.items()})
            sel.observe(adapter, data, epoch, metrics, cfg, out if main else None)
        history.append(row)
        if writer is not None:
            for k, v in row.items():
                if k != "epoch" and isinstance(v, (int, float)):
                    writer.add_scalar(k if "/" in k else f"train/{k}", v, epoch)
            writer.flush()
        bar.update(1)
        bar.set_postfix(loss=f"{row['train_loss']:.4f}", **{cfg.metric: f"{row.get('valid/' + cfg.metric, float('nan')):.4f}"},
                        best=f"{sel.best:.4f}@{sel.best_epoch}")
        if state_path is not None and main:
            save_training_state(state_path, adapter, opt, epoch, history, sel, fingerprint,
                                rng_state(device, np_rng=rng, **generators), sampler=sampler.state_dict())
            write_json_atomic(out / "history.json", history, indent=1)
        if sel.should_stop(cfg.patience):
            if main:
                log(f"early stop at epoch {epoch}: no {cfg.metric} gain for {sel.bad} evaluations "
                    f"(best {sel.best:.4f} at epoch {sel.best_epoch})")
            break
    bar.close()
    if writer is not None:
        writer.close()
    distributed.barrier()  # rank 0's files are complete before any rank reads them
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
            "valid": {k: float(v) for k, v in metrics.items()}, "pretrain": asdict(cfg), **protocol_meta(data)}


def protocol_meta(data) -> Dict:
    """``{"protocol", "split_seed", "ratios"}`` of sequence data (what :func:`~refit_gym.diffusion.checkpoint.load_backbone`
    checks); ``{}`` for interaction data."""
    if not hasattr(data, "split_users"):
        return {}
    return {"protocol": data.protocol, "split_seed": data.split_seed,
            "ratios": None if data.ratios is None else list(data.ratios)}
