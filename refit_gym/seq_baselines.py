"""The SASRec baseline of the sequence scenarios (the popularity one is :class:`refit_gym.baselines.MostPopular`;
their leave-one-out protocol is :func:`refit_gym.metrics.evaluate_sequential`)."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from refit_gym.diffusion.seq_encoder import CausalSeqEncoder
from refit_gym.diffusion.seq_training import sequence_batches

class SASRec(nn.Module):
    """SASRec-style next-item model (Kang & McAuley, ICDM 2018) with a full-softmax cross-entropy.

    The causal encoder (:class:`~refit_gym.diffusion.seq_encoder.CausalSeqEncoder`) reads right-aligned
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
        return self.encoder.last(seq) @ self.encoder.item_weight.t()

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
        """``(B, n_items)`` scores for ``users`` of the fitted data from their history for ``split``
        (:meth:`~refit_gym.data.sequential.SequentialData.history`)."""
        if self._data is None:
            raise RuntimeError("SASRec.scores needs fit(seq_data) first")
        if split not in ("valid", "test"):
            raise ValueError(f"split={split!r}: expected 'valid' or 'test'")
        key = f"_padded_{split}"
        if getattr(self, key, None) is None:
            setattr(self, key, self._data.history(split, self.max_len))
        seq = torch.as_tensor(getattr(self, key)[np.asarray(users)], device=self.device)
        return self.score_sequences(seq)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        return self.score_sequences(seq)
