"""Sequential baselines (SASRec, popularity) and leave-one-out evaluation.

Protocol (:func:`evaluate_sequential`): one ground-truth item per user (the validation or test
item), ranked against *all* items (full ranking, no sampled negatives). The history used to score
is the train sequence for 'valid' and train + validation item for 'test'.

History masking: the usual leave-one-out full ranking of sequential recommenders does *not*
mask the user's history (repeat consumption is legitimate, e.g. POI revisits), so
``mask_history=False`` is the default. With ``mask_history=True`` the known items of the split
(train, plus the validation item for 'test') are excluded from the ranking, *except* the ground
truth itself, so that a repeated target stays reachable.

Ranks count strictly higher scores (ties favour the target); ``HR@K = 1[rank < K]``,
``NDCG@K = 1[rank < K] / log2(rank + 2)``, averaged over users. With one ground-truth item per user
Recall@K equals HR@K; it is reported under both names (``recall@K`` and ``hitrate@K``) so that code
written for interaction data (model selection on ``recall@20``, the benchmark tables) reads
sequential results unchanged.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from refit_gym.diffusion.dreamrec import CausalSeqEncoder
from refit_gym.diffusion.seq_training import sequence_batches

ScoreFn = Callable[[np.ndarray, str], "torch.Tensor | np.ndarray"]


def evaluate_sequential(score_fn: ScoreFn, seq_data, split: str = "test", ks: Sequence[int] = (10, 20),
                        mask_history: bool = False, batch_size: int = 1024,
                        users: Optional[np.ndarray] = None) -> Dict[str, float]:
    """Leave-one-out full-ranking metrics.

    Args:
        score_fn: ``score_fn(users (B,) int64, split) -> (B, n_items)`` scores (tensor or array).
        seq_data: the :class:`~refit_gym.data.sequential.SequentialData`.
        split: 'valid' or 'test'. ks: cut-offs. mask_history: see the module docstring.
        batch_size: users per ``score_fn`` call. users: evaluate a subset (default: all).
    Returns:
        ``{"hitrate@K": float, "recall@K": float (= hitrate@K, one target per user), "ndcg@K": float
        for K in ks, "n_users": int}``.
    """
    from refit_gym import distributed

    target_all = seq_data.held_out(split)
    users = np.arange(seq_data.n_users) if users is None else np.asarray(users, dtype=np.int64)
    known = seq_data.interactions().known_items(split) if mask_history else None
    lo, hi = distributed.shard_bounds(len(users))  # under torch.distributed each rank ranks its block (a collective)
    ranks = np.empty(hi - lo, dtype=np.int64)
    for s in range(lo, hi, batch_size):
        u = users[s:min(s + batch_size, hi)]
        scores = torch.as_tensor(score_fn(u, split)).detach().float().cpu().clone()
        if scores.shape != (len(u), seq_data.n_items):
            raise ValueError(f"score_fn returned shape {tuple(scores.shape)}; expected ({len(u)}, {seq_data.n_items})")
        target = torch.as_tensor(target_all[u])
        t_score = scores.gather(1, target.unsqueeze(1))  # read before masking: the target is never masked
        if known is not None:
            m = known[u].tocoo()
            scores[torch.as_tensor(m.row, dtype=torch.long), torch.as_tensor(m.col, dtype=torch.long)] = -torch.inf
        ranks[s - lo:s - lo + len(u)] = (scores > t_score).sum(dim=1).numpy()
    ranks = distributed.gather_rows(torch.as_tensor(ranks), len(users)).numpy()
    out: Dict[str, float] = {}
    for k in ks:
        hit = ranks < k
        out[f"hitrate@{k}"] = out[f"recall@{k}"] = float(hit.mean())
        out[f"ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0).mean())
    out["n_users"] = int(len(users))
    return out


class MostPopular:
    """Scores every item by its number of train occurrences (repeats counted), for every user."""

    def fit(self, seq_data, include_valid: bool = False) -> "MostPopular":
        counts = np.bincount(seq_data.train_items, minlength=seq_data.n_items).astype(np.float32)
        if include_valid:
            counts += np.bincount(seq_data.valid_item, minlength=seq_data.n_items)
        self.counts = torch.as_tensor(counts)
        return self

    def scores(self, users: np.ndarray, split: str = "valid") -> torch.Tensor:
        """``(B, n_items)``: the same popularity row for each user."""
        return self.counts.unsqueeze(0).expand(len(users), -1).clone()

    __call__ = scores


class SASRec(nn.Module):
    """SASRec-style next-item model (Kang & McAuley, ICDM 2018) with a full-softmax cross-entropy.

    The causal encoder (:class:`~refit_gym.diffusion.dreamrec.CausalSeqEncoder`) reads right-aligned
    sequences; the state after each prefix is scored against all item embeddings (tied with the
    input embeddings) and trained to put the next item first.

    Args:
        n_items: number of items. max_len: sequence length. d, n_layers, heads, dropout: encoder.
    Usage: ``model = SASRec(n).fit(seq_data, epochs=...)``; ``model.scores(users, 'test')``.
    """

    def __init__(self, n_items: int, max_len: int = 50, d: int = 64, n_layers: int = 2, heads: int = 2,
                 dropout: float = 0.2):
        super().__init__()
        self.n_items, self.max_len = int(n_items), int(max_len)
        self.encoder = CausalSeqEncoder(n_items, max_len, d, n_layers, heads, dropout)
        self._data = None

    @property
    def device(self) -> torch.device:
        return self.encoder.item_emb.weight.device

    def score_sequences(self, seq: torch.Tensor) -> torch.Tensor:
        """Next-item scores ``(B, n_items)`` of padded right-aligned sequences ``seq (B, L)``."""
        return self.encoder(seq)[:, -1] @ self.encoder.item_weight.t()

    def sequence_loss(self, seq: torch.Tensor) -> torch.Tensor:
        """Mean next-item cross-entropy over all prefixes of ``seq (B, L)`` (the first item from the empty state)."""
        h = self.encoder(seq)[:, :-1]
        tgt = seq[:, 1:]
        ok = tgt != self.n_items
        logits = h[ok] @ self.encoder.item_weight.t()  # (N, n_items)
        return F.cross_entropy(logits, tgt[ok])

    def fit(self, seq_data, epochs: int = 1, batch_size: int = 128, lr: float = 1e-3, weight_decay: float = 0.0,
            seed: int = 0, include_valid: bool = False, max_batches: Optional[int] = None) -> "SASRec":
        """Train with Adam; memory per batch is ``batch_size * max_len * n_items`` logits. Returns self."""
        if seq_data.n_items != self.n_items:
            raise ValueError(f"data '{seq_data.name}' has {seq_data.n_items} items; the model has {self.n_items}")
        gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)  # dropout masks
        opt = torch.optim.AdamW(self.parameters(), lr=lr, weight_decay=weight_decay)
        self.train()
        self.history = []
        for _ in range(int(epochs)):
            total, n = 0.0, 0
            for b, (seq, _) in enumerate(sequence_batches(seq_data, batch_size, self.max_len, gen, include_valid,
                                                          device=self.device)):
                if max_batches is not None and b >= max_batches:
                    break
                loss = self.sequence_loss(seq)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total, n = total + loss.item(), n + 1
            self.history.append(total / max(n, 1))
        self.eval()
        self._data = seq_data
        return self

    @torch.no_grad()
    def scores(self, users: np.ndarray, split: str = "valid") -> torch.Tensor:
        """``(B, n_items)`` scores for ``users`` of the fitted data: from the train sequence for
        'valid', from train + validation item for 'test'."""
        if self._data is None:
            raise RuntimeError("SASRec.scores needs fit(seq_data) first")
        if split not in ("valid", "test"):
            raise ValueError(f"split={split!r}: expected 'valid' or 'test'")
        key = f"_padded_{split}"
        if getattr(self, key, None) is None:
            setattr(self, key, self._data.padded(self.max_len, include_valid=split == "test")[0])
        seq = torch.as_tensor(getattr(self, key)[np.asarray(users)], device=self.device)
        return self.score_sequences(seq)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        return self.score_sequences(seq)
