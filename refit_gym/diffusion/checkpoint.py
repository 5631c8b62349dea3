"""Backbone checkpoints: one file with the weights and everything needed to rebuild the model.

Format (a ``torch.save`` dict of tensors and builtins only, read back with
``torch.load(weights_only=True)``, PyTorch's restricted unpickler):

    {"format": "refit-gym-backbone", "version": 1, "backbone": "diffrec",
     "config": {...constructor kwargs incl. n_items and the schedule...},
     "state_dict": {...}, "meta": {...free-form, e.g. data name, n_users, epoch, metrics...}}

Data-derived buffers (e.g. CF-Diff's item graph) are part of ``state_dict``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Tuple

import torch

from refit_gym.diffusion.adapters import BACKBONES, DenoiserAdapter
from refit_gym.utils import atomic_torch_save

FORMAT = "refit-gym-backbone"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the data it is used with."""


def save_backbone(adapter: DenoiserAdapter, path, meta: Optional[Dict] = None) -> Path:
    """Write ``adapter`` to ``path`` atomically (temp file + rename); returns the path."""
    blob = {
        "format": FORMAT, "version": VERSION, "backbone": adapter.backbone_name, "config": adapter.config(),
        "state_dict": {k: v.detach().cpu() for k, v in adapter.state_dict().items()}, "meta": dict(meta or {}),
    }
    return atomic_torch_save(blob, path)


def read_checkpoint(path) -> Dict:
    """The raw checkpoint dict, validated. Raises CheckpointError naming the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt file or a pickle with non-allowed globals
        raise CheckpointError(f"{path}: not a readable refit-gym checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CheckpointError(f"{path}: field 'format' is {blob.get('format') if isinstance(blob, dict) else type(blob)!r}, expected {FORMAT!r}")
    if blob.get("version") != VERSION:
        raise CheckpointError(f"{path}: field 'version' is {blob.get('version')!r}, this refit-gym reads {VERSION}")
    if blob.get("backbone") not in BACKBONES:
        raise CheckpointError(f"{path}: field 'backbone' is {blob.get('backbone')!r}; known backbones: {sorted(BACKBONES)}")
    return blob


def load_backbone(path, data=None, device="cpu") -> Tuple[DenoiserAdapter, Dict]:
    """Rebuild the adapter stored at ``path`` and load its weights; returns ``(adapter, meta)``.

    If ``data`` (an InteractionData) is given, its item count must match the checkpoint's, and
    its user count too when the checkpoint recorded one.
    """
    blob = read_checkpoint(path)
    cfg = dict(blob["config"])
    if data is not None:
        if int(cfg.get("n_items", -1)) != data.n_items:
            raise CheckpointError(
                f"{path}: field 'config.n_items' is {cfg.get('n_items')}, but data '{data.name}' has {data.n_items} items"
            )
        n_users = blob["meta"].get("n_users")
        if n_users is not None and int(n_users) != data.n_users:
            raise CheckpointError(f"{path}: field 'meta.n_users' is {n_users}, but data '{data.name}' has {data.n_users} users")
    cls = BACKBONES[blob["backbone"]]
    adapter = cls(**cfg)
    state = blob["state_dict"]
    extra = adapter.data_tensors()
    for name in extra:  # data-derived buffers may differ in size from the empty defaults
        if name in state:
            setattr(adapter, name, state[name].clone())
    missing, unexpected = adapter.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{path}: field 'state_dict' does not fit backbone {blob['backbone']!r}: "
                              f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    adapter.eval()
    return adapter.to(device), dict(blob["meta"])
