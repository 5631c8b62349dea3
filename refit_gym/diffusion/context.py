"""A denoiser context (:meth:`refit_gym.diffusion.adapters.DenoiserAdapter.context`): a batch-first tensor, or a
dict / tuple / list of them (None entries allowed). Helpers that treat every such form alike."""
from __future__ import annotations

from typing import Any, List

import torch

__all__ = ["context_tensors", "detach_context", "index_context"]


def index_context(ctx: Any, index: torch.Tensor) -> Any:
    """Rows ``index`` (int64 ``(M,)``) of a context (see :meth:`DenoiserAdapter.context`): tensors are indexed
    along their first dimension, dicts / tuples / lists entry by entry, None stays None. Lets an agent run
    the (costly) ``context`` once per distinct condition and reuse it for every step of that chain."""
    if ctx is None or isinstance(ctx, torch.Tensor):
        return None if ctx is None else ctx[index]
    if isinstance(ctx, dict):
        return {k: index_context(v, index) for k, v in ctx.items()}
    if isinstance(ctx, (tuple, list)):
        return type(ctx)(index_context(v, index) for v in ctx)
    raise TypeError(f"cannot index a context of type {type(ctx).__name__}: contexts are tensors or dicts/tuples/lists "
                    "of tensors")


def context_tensors(ctx: Any) -> List[torch.Tensor]:
    """The tensors of a context (see :meth:`DenoiserAdapter.context`), in order; None entries left out."""
    if isinstance(ctx, (dict, tuple, list)):
        return [t for v in (ctx.values() if isinstance(ctx, dict) else ctx) for t in context_tensors(v)]
    return [ctx] if isinstance(ctx, torch.Tensor) else []


def detach_context(obj: Any) -> Any:
    """A context (tensor, dict, tuple, list) with every tensor detached."""
    if isinstance(obj, torch.Tensor):
        return obj.detach()
    if isinstance(obj, dict):
        return {k: detach_context(v) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(detach_context(v) for v in obj)
    return obj
