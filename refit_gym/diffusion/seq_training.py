"""Pretraining and scoring helpers for sequence backbones (DreamRec) on leave-one-out data.

Objective (:func:`pretrain_sequential`): the standard next-item objective on *all prefixes* of
the train sequences. Each batch encodes whole right-aligned sequences once with the causal
encoder; the state after every prefix predicts the following item
(:meth:`DreamRecAdapter.sequence_loss`: diffusion MSE on the next item's embedding plus the
auxiliary cross-entropy, see :mod:`refit_gym.diffusion.dreamrec`). The validation item is
appended to the sequences when ``include_valid=True`` (the final model for the test split).
"""
from __future__ import annotations

from typing import Callable, Iterator, List, Optional, Tuple

import numpy as np
import torch

from refit_gym.diffusion.dreamrec import DreamRecAdapter, time_gap_buckets
from refit_gym.diffusion.training import seeded_generators


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


def pretrain_sequential(adapter: DreamRecAdapter, seq_data, epochs: int = 1, batch_size: int = 256,
                        lr: float = 1e-3, weight_decay: float = 0.0, seed: int = 0, include_valid: bool = False,
                        max_batches: Optional[int] = None, grad_clip: Optional[float] = 5.0,
                        log_fn: Optional[Callable[[int, float], None]] = None) -> List[float]:
    """Pretrain ``adapter`` with the all-prefix next-item objective; returns the mean loss of each epoch.

    Args:
        adapter: a :class:`DreamRecAdapter` (its ``max_len`` and ``time_aware`` decide the inputs).
        seq_data: a :class:`~refit_gym.data.sequential.SequentialData` with the same item count.
        epochs, batch_size, lr, weight_decay: Adam(W) training; max_batches caps batches per epoch.
        seed: seeds the user shuffling, index sampling, noise and guidance dropout.
        include_valid: train on train sequences + validation item (for the test-split model).
        log_fn: called as ``log_fn(epoch, mean_loss)`` after each epoch.
    """
    if seq_data.n_items != adapter.n_items:
        raise ValueError(f"data '{seq_data.name}' has {seq_data.n_items} items; the backbone has {adapter.n_items}")
    device = adapter.device
    gen, dev_gen, _ = seeded_generators(seed, device)
    opt = torch.optim.AdamW(adapter.parameters(), lr=lr, weight_decay=weight_decay)
    n_buckets = adapter.n_time_buckets if adapter.time_aware else 0
    history = []
    adapter.train()
    for epoch in range(int(epochs)):
        total, n = 0.0, 0
        for b, (seq, buckets) in enumerate(sequence_batches(seq_data, batch_size, adapter.max_len, gen,
                                                            include_valid, n_buckets, device)):
            if max_batches is not None and b >= max_batches:
                break
            loss = adapter.sequence_loss(seq, buckets, dev_gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(adapter.parameters(), grad_clip)
            opt.step()
            total, n = total + loss.item(), n + 1
        history.append(total / max(n, 1))
        if log_fn is not None:
            log_fn(epoch, history[-1])
    adapter.eval()
    return history


def adapter_score_fn(adapter, seq_data, deterministic: bool = True, seed: int = 0
                     ) -> Callable[[np.ndarray, str], torch.Tensor]:
    """A ``score_fn(users, split) -> (B, n_items)`` for :func:`refit_gym.metrics.evaluate_sequential`.

    The visible items are the items of the split's history (``seq_data.history_items``: under leave-one-out
    train for 'valid', train + valid for 'test'; under user-split the evaluated user's history); every adapter
    also gets ``split`` (sequence adapters use it to handle repeat consumption
    exactly, history adapters ignore it).
    """
    known = {s: seq_data.history_items(s) for s in ("valid", "test")}
    gen = torch.Generator(adapter.device).manual_seed(seed)

    def score_fn(users: np.ndarray, split: str) -> torch.Tensor:
        visible = known[split][users]
        cond = adapter.encode_condition(users, visible, split=split)
        cond_t = torch.as_tensor(cond, device=adapter.device)
        users_t = torch.as_tensor(users, device=adapter.device)
        return adapter.infer(cond_t, users_t, deterministic=deterministic, generator=gen)

    return score_fn
