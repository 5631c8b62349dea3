"""Backbone checkpoints: one file with the weights and everything needed to rebuild the model.

Format (a ``torch.save`` dict of tensors and builtins only, read back with
``torch.load(weights_only=True)``, PyTorch's restricted unpickler):

    {"format": "refit-gym-backbone", "version": 1, "backbone": "diffrec",
     "config": {...constructor kwargs incl. n_items and the schedule...},
     "state_dict": {...}, "meta": {...free-form, e.g. data name, n_users, epoch, metrics...},
     "digest": "<sha256 of the state dict, see state_digest>"}

PyTorch's reader does not check the zip container's CRCs, so a flipped bit in a weight would load silently;
the digest catches it (files written before it existed carry none and are not checked).

Data-derived buffers (e.g. CF-Diff's item graph) are part of ``state_dict``.
"""
from __future__ import annotations

import hashlib
import inspect
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch

from refit_gym.diffusion.adapters import BACKBONES, DenoiserAdapter
from refit_gym.io_safety import CheckpointError
from refit_gym.utils import atomic_torch_save

FORMAT = "refit-gym-backbone"
VERSION = 1


#: largest parameter + buffer element count a checkpoint config may ask for (2**31 float32 = 8 GiB);
#: override with the environment variable ``REFIT_GYM_MAX_PARAMETERS``
MAX_PARAMETERS = int(os.environ.get("REFIT_GYM_MAX_PARAMETERS", 2**31))
#: largest integer any config field may hold (ids, widths, ...) and largest number of diffusion steps
MAX_CONFIG_INT = 2**31
MAX_STEPS = 100_000


def constructor_parameters(cls) -> List[str]:
    """Keyword arguments the constructor of ``cls`` accepts, following ``**kwargs`` up the MRO."""
    names: List[str] = []
    for c in cls.__mro__:
        if "__init__" not in vars(c):
            continue
        params = inspect.signature(c.__init__).parameters
        names += [n for n, p in params.items() if n != "self" and n not in names
                  and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            break
    return names


def _check_config_values(value: Any, field: str, where: str) -> None:
    """Every number in ``value`` (recursively) must be finite and at most :data:`MAX_CONFIG_INT` in size."""
    if isinstance(value, dict):
        for k, v in value.items():
            _check_config_values(v, f"{field}.{k}", where)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_config_values(v, f"{field}[{i}]", where)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if not (abs(value) <= MAX_CONFIG_INT):  # also NaN
            raise CheckpointError(f"{where}: field '{field}' is {value!r}, beyond the bound {MAX_CONFIG_INT} "
                                  "(a damaged or malicious config)")


def build_from_config(name: str, config: Any, where: str = "backbone config") -> DenoiserAdapter:
    """Build backbone ``name`` from a stored ``config`` after validating it (``where``: the file, for errors).

    Checks, before allocating anything: ``name`` is registered; ``config`` is a dict whose keys the
    constructor accepts (:func:`constructor_parameters`); numbers are finite and within
    :data:`MAX_CONFIG_INT`, ``schedule.steps`` within :data:`MAX_STEPS`; the model built on PyTorch's
    ``meta`` device (no memory) holds at most :data:`MAX_PARAMETERS` elements.

    Raises:
        CheckpointError: naming ``where``, the field and the value.
    """
    if name not in BACKBONES:
        raise CheckpointError(f"{where}: field 'backbone' is {name!r}; known backbones: {sorted(BACKBONES)}")
    if not isinstance(config, dict):
        raise CheckpointError(f"{where}: field 'config' is a {type(config).__name__}, expected a dict")
    cls = BACKBONES[name]
    accepted = constructor_parameters(cls)
    unknown = sorted(set(config) - set(accepted))
    if unknown:
        raise CheckpointError(f"{where}: field 'config.{unknown[0]}' is not an argument of backbone {name!r} "
                              f"(accepted: {accepted})")
    _check_config_values(config, "config", where)
    steps = config.get("schedule", {}).get("steps") if isinstance(config.get("schedule"), dict) else None
    if steps is not None and not (isinstance(steps, int) and 2 <= steps <= MAX_STEPS):
        raise CheckpointError(f"{where}: field 'config.schedule.steps' is {steps!r}, expected an integer in [2, {MAX_STEPS}]")
    try:
        with torch.device("meta"):
            probe = cls(**config)
    except (TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{where}: field 'config' does not build backbone {name!r} ({type(e).__name__}: {e})") from None
    size = sum(t.numel() for t in probe.parameters()) + sum(t.numel() for t in probe.buffers())
    if size > MAX_PARAMETERS:
        raise CheckpointError(f"{where}: field 'config' asks for {size:,} parameters, beyond the limit {MAX_PARAMETERS:,} "
                              "(set REFIT_GYM_MAX_PARAMETERS to raise it)")
    return cls(**config)


def check_finite_state(state: Dict[str, Any], where: str, keys=None) -> None:
    """Raise CheckpointError naming ``where`` and the tensor when an entry of ``state`` among ``keys`` (the
    model's parameter names; buffers may hold infinities by design, e.g. padding times) is NaN/inf."""
    for key, value in state.items():
        if keys is not None and key not in keys:
            continue
        if torch.is_tensor(value) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{where}: field 'state_dict.{key}' holds non-finite values (NaN/inf weights)")


def state_digest(state: Dict[str, Any]) -> str:
    """SHA-256 (hex) over a state dict's names, dtypes, shapes and bytes (dense tensors; keys sorted)."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key]
        if not torch.is_tensor(t):
            raise CheckpointError(f"state_dict entry {key!r} is a {type(t).__name__}, not a tensor")
        t = t.detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():  # an empty tensor has no bytes (and may have stride 0, which view() refuses)
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_backbone(adapter: DenoiserAdapter, path, meta: Optional[Dict] = None) -> Path:
    """Write ``adapter`` to ``path`` atomically (temp file + rename); returns the path.

    Raises:
        CheckpointError: the weights hold NaN/inf (a diverged model is never written, e.g. as ``best.pt``).
    """
    check_finite_state(adapter.state_dict(), f"{path}: refusing to write", {k for k, _ in adapter.named_parameters()})
    blob = {
        "format": FORMAT, "version": VERSION, "backbone": adapter.backbone_name, "config": adapter.config(),
        "state_dict": {k: v.detach().cpu() for k, v in adapter.state_dict().items()}, "meta": dict(meta or {}),
    }
    blob["digest"] = state_digest(blob["state_dict"])
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
    for key, kind in (("config", dict), ("state_dict", dict), ("meta", dict)):
        if not isinstance(blob.get(key), kind):
            raise CheckpointError(f"{path}: field {key!r} is a {type(blob.get(key)).__name__}, expected a {kind.__name__}")
    if "digest" in blob:
        try:
            actual = state_digest(blob["state_dict"])
        except CheckpointError as e:
            raise CheckpointError(f"{path}: field {e}") from None
        if actual != blob["digest"]:
            raise CheckpointError(f"{path}: field 'state_dict' does not match the file's field 'digest' (the file is "
                                  "damaged: a weight changed after it was written)")
    return blob


def check_protocol_meta(meta: Dict, data, where: str) -> None:
    """CheckpointError when a backbone pretrained under one sequence protocol (``meta["protocol"]``, with its
    ``split_seed`` / ``ratios``) meets sequence data under another: its stored histories and its training users
    would not be the data's. Checkpoints written before the field existed were all leave-one-out (``"loo"``)."""
    if not hasattr(data, "split_users"):
        return
    saved = {"protocol": meta.get("protocol", "loo"), "split_seed": meta.get("split_seed"), "ratios": meta.get("ratios")}
    now = {"protocol": data.protocol, "split_seed": data.split_seed,
           "ratios": None if data.ratios is None else list(data.ratios)}
    if saved != now:
        raise CheckpointError(f"{where}: this backbone was pretrained under protocol {saved}, but data '{data.name}' "
                              f"is loaded under {now}; load the data with the checkpoint's protocol (--protocol)")


def checkpoint_protocol(path) -> Dict[str, Any]:
    """The ``load_dataset`` keyword arguments of the sequence protocol a checkpoint was pretrained under
    (``{"protocol", "split_seed", "ratios"}`` from its meta; ``{}`` for a checkpoint that recorded none:
    interaction backbones, and sequence ones written before the field, which were leave-one-out)."""
    meta = read_checkpoint(path)["meta"]
    if "protocol" not in meta:
        return {}
    if meta["protocol"] == "loo":
        return {"protocol": "loo"}
    return {"protocol": meta["protocol"], "split_seed": meta["split_seed"], "ratios": tuple(meta["ratios"])}


def load_backbone(path, data=None, device="cpu") -> Tuple[DenoiserAdapter, Dict]:
    """Rebuild the adapter stored at ``path`` and load its weights; returns ``(adapter, meta)``.

    If ``data`` (an InteractionData) is given, its item count must match the checkpoint's, and
    its user count too when the checkpoint recorded one. The config is validated by
    :func:`build_from_config` before anything is built, and NaN/inf weights are refused.
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
        check_protocol_meta(blob["meta"], data, str(path))
    state = blob["state_dict"]
    adapter = build_from_config(blob["backbone"], cfg, str(path))
    check_finite_state(state, str(path), {k for k, _ in adapter.named_parameters()})
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
