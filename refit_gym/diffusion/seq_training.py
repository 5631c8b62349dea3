"""Batching and scoring helpers for sequence backbones (DreamRec) and SASRec.

:func:`sequence_batches` yields the shuffled training rows that the sequence backbones' pretraining objective
(:meth:`~refit_gym.diffusion.dreamrec.DreamRecAdapter.pretrain_batches`: the next-item objective on *all
prefixes*, :meth:`~refit_gym.diffusion.dreamrec.DreamRecAdapter.sequence_loss`) and SASRec read;
:func:`time_gap_buckets` buckets the time gaps of timestamped sequences; :func:`adapter_score_fn` scores a
backbone for :func:`refit_gym.metrics.evaluate_sequential`. Pretraining itself is the one loop of
:func:`refit_gym.diffusion.training.pretrain`.
"""
from __future__ import annotations

from typing import Callable, Iterator, Optional, Tuple

import numpy as np
import torch

from refit_gym.scores import LowRankScores


def time_gap_buckets(times: np.ndarray, n_buckets: int = 32) -> np.ndarray:
    """Bucket ids of the log time gap between consecutive entries of right-aligned sequences.

    Args:
        times: ``(B, L)`` float64 seconds, NaN on padding; real entries contiguous at the right.
        n_buckets: number of buckets, >= 2.
    Returns:
        ``(B, L)`` int64: 0 for padding and for a sequence's first entry, else
        ``1 + min(floor(log2(1 + gap_minutes)), n_buckets - 2)`` (negative gaps count as 0).
    """
    times = np.asarray(times, dtype=np.float64)
    out = np.zeros(times.shape, dtype=np.int64)
    if times.shape[-1] < 2:
        return out
    gap = times[:, 1:] - times[:, :-1]
    ok = np.isfinite(gap)
    minutes = np.maximum(np.where(ok, gap, 0.0), 0.0) / 60.0
    b = 1 + np.minimum(np.floor(np.log2(1.0 + minutes)), n_buckets - 2).astype(np.int64)
    out[:, 1:] = np.where(ok, b, 0)
    return out


def sequence_batches(seq_data, batch_size: int, max_len: int, generator: torch.Generator,
                     include_valid: bool = False, n_time_buckets: int = 0, device="cpu"
                     ) -> Iterator[Tuple[torch.Tensor, Optional[torch.Tensor]]]:
    """Shuffled batches of ``seq_data.training_rows(max_len)``: every user's last ``max_len`` items under
    leave-one-out; windows holding every transition of the train users under user-split.

    Yields ``(seq (b, max_len) int64, buckets (b, max_len) int64 | None)`` on ``device``; buckets
    only when ``n_time_buckets > 0`` (the data must then have timestamps).
    """
    if include_valid:
        items, times, _ = seq_data.padded(max_len, include_valid=True)  # leave-one-out only (DataError otherwise)
    else:
        items, times = seq_data.training_rows(max_len)
    buckets = None
    if n_time_buckets:
        if times is None:
            raise ValueError(f"data '{seq_data.name}' has no timestamps, but time buckets were requested")
        buckets = time_gap_buckets(times, n_time_buckets)
    perm = torch.randperm(len(items), generator=generator).numpy()
    for s in range(0, len(perm), batch_size):
        idx = perm[s:s + batch_size]
        yield (torch.as_tensor(items[idx], device=device),
               None if buckets is None else torch.as_tensor(buckets[idx], device=device))


def adapter_score_fn(adapter, seq_data, deterministic: bool = True, seed: int = 0, factored: bool = True
                     ) -> Callable[[np.ndarray, str], "torch.Tensor | LowRankScores"]:
    """A ``score_fn(users, split) -> (B, n_items)`` for :func:`refit_gym.metrics.evaluate_sequential`.

    The visible items are the items of the split's history (``seq_data.history_items``: under leave-one-out
    train for 'valid', train + valid for 'test'; under user-split the evaluated user's history); every adapter
    also gets ``split`` (sequence adapters use it to handle repeat consumption
    exactly, history adapters ignore it). With ``factored`` (the default) the scores come factored where the backbone
    scores by inner products (a :class:`~refit_gym.scores.LowRankScores`, ``infer(factored=True)``), so the ranking
    never forms the ``(B, n_items)`` matrix; ``factored=False`` gives the dense tensor.
    """
    known = {s: seq_data.history_items(s) for s in ("valid", "test")}
    gen = torch.Generator(adapter.device).manual_seed(seed)

    def score_fn(users: np.ndarray, split: str) -> torch.Tensor:
        visible = known[split][users]
        cond = adapter.encode_condition(users, visible, split=split)
        cond_t = torch.as_tensor(cond, device=adapter.device)
        users_t = torch.as_tensor(users, device=adapter.device)
        return adapter.infer(cond_t, users_t, deterministic=deterministic, generator=gen, factored=factored)

    return score_fn
