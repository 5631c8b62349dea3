"""The resume state and model selection of the pretraining loop (:func:`refit_gym.diffusion.training.pretrain`).

The resume state (:func:`save_training_state`, :func:`load_training_state`, :func:`rng_state`,
:func:`restore_rng_state`, :meth:`ModelSelection.state_dict`) is a ``torch.save`` dict of tensors and builtins
only, read back with ``torch.load(weights_only=True)``, holding the weights (``model``), the optimizer, the epoch
counter, the history (a JSON string), the selection state (``best``, ``best_epoch``, ``bad``, ``best_model``),
the generator states, ``run`` (a JSON fingerprint of the backbone and the data that a resume must match) and the
loop's own entries (``sampler``, ``elapsed_seconds``, ``next_validation``).
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from refit_gym.diffusion.adapters import DenoiserAdapter
from refit_gym.diffusion.checkpoint import CheckpointError, save_backbone
from refit_gym.utils import atomic_torch_save


@dataclass
class ModelSelection:
    """Validation model selection of the pretraining loop: the best weights so far, their epoch, and the number
    of evaluations since the last gain (for early stopping)."""

    metric: str
    best: float = -math.inf
    best_epoch: int = -1
    bad: int = 0
    best_state: Optional[Dict] = None

    def observe(self, adapter: DenoiserAdapter, data, epoch: int, metrics: Dict[str, float], cfg, out=None,
                full: bool = True) -> None:
        """Record one validation result; on a gain keep the weights and, with ``out``, write ``out/best.pt``
        (its meta says whether ``metrics`` come from a full pass over the validation users, ``full``, or from
        the validation sample)."""
        if self.metric not in metrics:
            raise KeyError(f"the validation metrics have no {self.metric!r} (the selection metric); they have "
                           f"{sorted(metrics)}")
        if metrics[self.metric] > self.best:
            self.best, self.best_epoch, self.bad = metrics[self.metric], epoch, 0
            self.best_state = {k: v.detach().cpu().clone() for k, v in adapter.state_dict().items()}
            if out is not None:
                save_backbone(adapter, Path(out) / "best.pt", meta=checkpoint_meta(data, epoch, metrics, cfg, full))
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
    """What a pretraining run returns.

    Attributes:
        best_epoch: the kept (validation-selected) epoch, -1 when nothing was validated.
        best_valid: that epoch's history row, its ``valid/<metric>`` entries from a full pass over the validation
            users (with a validation sample, the sample's values are under ``valid_sample/<metric>``).
        history: one row per epoch (see :func:`~refit_gym.diffusion.training.pretrain`), resumed sessions included.
        best_path: ``out_dir/best.pt``, or None.
        seconds_per_epoch: mean training seconds per epoch over ``history``.
        train_seconds, valid_seconds: training and validation seconds over ``history`` (the final full pass
            included); ``valid_share`` = valid / (train + valid).
    """

    best_epoch: int
    best_valid: Dict[str, float]
    history: List[Dict] = field(default_factory=list)
    best_path: Optional[str] = None
    seconds_per_epoch: float = float("nan")
    train_seconds: float = 0.0
    valid_seconds: float = 0.0

    @property
    def valid_share(self) -> float:
        """Validation seconds over training + validation seconds (NaN before any second was counted)."""
        total = self.train_seconds + self.valid_seconds
        return self.valid_seconds / total if total > 0 else float("nan")


def history_seconds(history: List[Dict]) -> tuple:
    """``(train seconds, validation seconds)`` summed over history rows (``epoch_seconds``; ``valid_seconds`` and
    ``valid_full_seconds``, absent in rows written before validation was timed, count 0)."""
    train = sum(float(r.get("epoch_seconds", 0.0)) for r in history)
    valid = sum(float(r.get("valid_seconds", 0.0)) + float(r.get("valid_full_seconds", 0.0)) for r in history)
    return train, valid


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


def finish_pretraining(adapter: DenoiserAdapter, history: List[Dict], sel: ModelSelection, out: Optional[Path],
                       epoch_times: List[float]) -> PretrainResult:
    """Leave ``adapter`` holding the best (validation-selected) weights in eval mode; summarise the run
    (``epoch_times``: training seconds of every epoch of ``history``)."""
    best_epoch = sel.best_epoch
    if sel.best_state is not None:
        adapter.load_state_dict(sel.best_state)
    adapter.eval()
    best = dict(next((r for r in history if r["epoch"] == best_epoch), {}))
    full = {k.split("/", 1)[1] for k in best if k.startswith("valid_full/")}
    if full:  # the kept checkpoint's full pass is its reported validation result; the sample's stays beside it
        best.update({f"valid_sample/{k}": best[f"valid/{k}"] for k in full if f"valid/{k}" in best})
        best.update({f"valid/{k}": best.pop(f"valid_full/{k}") for k in full})
    train, valid = history_seconds(history)
    return PretrainResult(
        best_epoch=best_epoch, best_valid=best,
        history=history, best_path=str(out / "best.pt") if out is not None and best_epoch >= 0 else None,
        seconds_per_epoch=float(np.mean(epoch_times)) if epoch_times else float("nan"),
        train_seconds=train, valid_seconds=valid,
    )


def checkpoint_meta(data, epoch, metrics, cfg, full: bool = True) -> Dict:
    """The ``meta`` block of a pretrained backbone checkpoint (data sizes, epoch, validation metrics, config);
    ``valid_full`` says whether ``valid`` comes from a full pass over the validation users (False: the
    validation sample of a run still in progress)."""
    return {"data": data.name, "n_users": data.n_users, "n_items": data.n_items, "epoch": epoch,
            "valid": {k: float(v) for k, v in metrics.items()}, "valid_full": bool(full), "pretrain": asdict(cfg),
            **protocol_meta(data)}


def protocol_meta(data) -> Dict:
    """``{"protocol", "split_seed", "ratios"}`` of sequence data (what :func:`~refit_gym.diffusion.checkpoint.load_backbone`
    checks); ``{}`` for interaction data."""
    if not hasattr(data, "split_users"):
        return {}
    return {"protocol": data.protocol, "split_seed": data.split_seed,
            "ratios": None if data.ratios is None else list(data.ratios)}
