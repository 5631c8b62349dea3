"""Small shared helpers: device resolution, seeding, optimizer settings, progress bars, crash-safe saving."""
from __future__ import annotations

import os
import platform
import random
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch


class DeviceError(ValueError):
    """A ``--device`` / ``device=`` value that names no usable device (the message says which and why)."""


def resolve_device(device="auto") -> torch.device:
    """The one device rule: ``'auto'`` (or None) -> CUDA when available, else CPU; any other name is a
    ``torch.device`` (``cpu``, ``cuda``, ``cuda:1``). A CUDA device without CUDA, or an unknown name, raises
    :class:`DeviceError` (no silent fallback)."""
    if isinstance(device, torch.device):
        return device
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise DeviceError(f"device={device!r}: not a device name; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device={device!r} requested but CUDA is not available; use --device cpu or auto")
    return dev


def describe_machine(device="cpu") -> str:
    """One line naming where timings were taken: the GPU's name for a CUDA ``device``, else the CPU's model
    (``/proc/cpuinfo``, when readable), its core count and torch's intra-op threads."""
    dev = resolve_device(device)
    if dev.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(dev)}"
    model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), model)
    except OSError:
        pass
    return f"cpu: {model or 'unknown model'}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def optimizer_kwargs(optimizer_class: type, params, kwargs: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """``kwargs`` for ``optimizer_class(params, **kwargs)`` with torch's fused implementation chosen where it applies:
    Adam and AdamW over floating-point parameters all on CPU or CUDA, unless ``kwargs`` chooses ``fused`` or
    ``foreach`` itself. The fused step reads each parameter once instead of once per elementwise operation: on one
    CPU core it takes 1.4 ms instead of 4.5 ms for DreamRec's 1.0 M parameters, which matters for recipes that step
    the optimizer after every minibatch (DDPO). Same update rule, float rounding aside."""
    kwargs = dict(kwargs or {})
    params = [p for group in params for p in (group["params"] if isinstance(group, dict) else [group])]
    fusable = params and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    if (issubclass(optimizer_class, (torch.optim.Adam, torch.optim.AdamW)) and fusable
            and "fused" not in kwargs and "foreach" not in kwargs):
        kwargs["fused"] = True
    return kwargs


def set_global_seed(seed: int) -> None:
    """Seed Python, NumPy and torch global generators (components keep their own generators too)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def progress_bar(total=None, desc="", disable=False, **kwargs):
    """A tqdm progress bar on stderr (disabled when ``disable`` or when stderr is not a terminal under CI)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=disable, dynamic_ncols=True, **kwargs)


def atomic_torch_save(obj, path) -> Path:
    """``torch.save`` to a per-process temp file then rename, so a crash never leaves a half-written file and
    two writers never share a temp file; on failure (e.g. a full disk) the temp file is removed and the
    ``OSError`` names ``path`` (see :func:`refit_gym.io_safety.atomic_write`)."""
    from refit_gym.io_safety import atomic_write

    path = Path(path)
    with atomic_write(path) as tmp:
        torch.save(obj, tmp)
    return path
