"""Social DiffRec: a DiffRec denoiser that also reads the user's social item signal.

The social signal of user u is ``s_u = (D_s^{-1} S R)_u`` (the items of u's social neighbours,
top-M per user, max-normalised; :func:`refit_gym.data.graph.social_item_signal`), computed once
from the *training* matrix and held as a sparse CSR buffer indexed by user id. The denoiser is
DiffRec's MLP whose input concatenates ``[dropout(x_i), dropout(s_u), index embedding]``; the
decoder mirrors the encoder back to item space. Everything else (history-vector condition, start
at the clean history, x0 prediction) is DiffRec's.

Because the signal is looked up by user id, :meth:`SocialDiffRecAdapter.context` needs ``users``.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from refit_gym.data.dataset import as_interactions
from refit_gym.data.graph import social_item_signal
from refit_gym.diffusion.adapters import HistoryAdapter, register_backbone
from refit_gym.diffusion.denoisers import _mlp, _xavier, timestep_embedding
from refit_gym.diffusion.schedule import ScheduleConfig


class SocialDiffRecMLP(nn.Module):
    """``(x (B, n), social (B, n), i (B,)) -> (B, n)``: DiffRec's MLP over ``[x, social, index emb]``.

    Args:
        n_items: item-space dimension. hidden: encoder widths (decoder mirrored).
        emb_size: index-embedding width. dropout: on both input vectors.
    """

    def __init__(self, n_items: int, hidden: Sequence[int] = (1000,), emb_size: int = 10, dropout: float = 0.5):
        super().__init__()
        self.n_items, self.emb_size = int(n_items), int(emb_size)
        hidden = [int(h) for h in hidden]
        self.emb = nn.Linear(self.emb_size, self.emb_size)
        self.encoder = _mlp([2 * self.n_items + self.emb_size] + hidden)
        self.decoder = _mlp(list(reversed(hidden)) + [self.n_items])
        self.drop = nn.Dropout(dropout)
        _xavier(self)

    def forward(self, x: torch.Tensor, social: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        temb = self.emb(timestep_embedding(i, self.emb_size))
        h = torch.tanh(self.encoder(torch.cat([self.drop(x), self.drop(social), temb], dim=-1)))
        return self.decoder(h)


@register_backbone
class SocialDiffRecAdapter(HistoryAdapter):
    """DiffRec conditioned on the social item signal (see the module docstring).

    Args:
        n_items, n_users: sizes (the signal buffer has one row per user).
        schedule, hidden, emb_size, dropout: as :class:`~refit_gym.diffusion.adapters.DiffRecAdapter`.
        top_m: entries kept per user in the social signal.
        signal: the ``(n_users, n_items)`` social item signal (CSR); all-zero when None.

    Context (:meth:`context`): the dense signal rows ``(B, n_items)`` of ``users``.
    """

    backbone_name = "social-diffrec"

    def __init__(self, n_items: int, n_users: int, schedule: Dict | ScheduleConfig = ScheduleConfig(),
                 hidden: Sequence[int] = (1000,), emb_size: int = 10, dropout: float = 0.5, top_m: int = 200,
                 signal: Optional[sp.csr_matrix] = None):
        cfg = schedule if isinstance(schedule, ScheduleConfig) else ScheduleConfig(**schedule)
        super().__init__(cfg, n_items, n_items, n_items)
        self.n_users = int(n_users)
        self._cfg = dict(n_items=int(n_items), n_users=self.n_users, schedule=cfg.to_dict(),
                         hidden=[int(h) for h in hidden], emb_size=int(emb_size), dropout=float(dropout),
                         top_m=int(top_m))
        self.net = SocialDiffRecMLP(n_items, hidden, emb_size, dropout)
        self.set_signal(sp.csr_matrix((self.n_users, self.n_items), dtype=np.float32) if signal is None else signal)

    @classmethod
    def from_data(cls, data, **kwargs) -> "SocialDiffRecAdapter":
        """Build for an InteractionData with a ``social`` matrix; the signal comes from ``data.train``."""
        data = as_interactions(data)
        if data.social is None:
            raise ValueError(f"data '{data.name}' has no social graph (field 'social' is None)")
        top_m = int(kwargs.get("top_m", 200))
        return cls(n_items=data.n_items, n_users=data.n_users,
                   signal=social_item_signal(data.social, data.train, top_m), **kwargs)

    def set_signal(self, signal: sp.csr_matrix) -> None:
        """Hold ``signal`` (``(n_users, n_items)``) as CSR buffers (indptr, indices, values)."""
        s = sp.csr_matrix(signal, dtype=np.float32)
        if s.shape != (self.n_users, self.n_items):
            raise ValueError(f"social signal shape {s.shape} does not match (n_users, n_items) = "
                             f"({self.n_users}, {self.n_items})")
        self.register_buffer("signal_indptr", torch.as_tensor(s.indptr, dtype=torch.long))
        self.register_buffer("signal_indices", torch.as_tensor(s.indices, dtype=torch.long))
        self.register_buffer("signal_values", torch.as_tensor(s.data, dtype=torch.float32))

    def data_tensors(self) -> Dict[str, torch.Tensor]:
        return {"signal_indptr": self.signal_indptr, "signal_indices": self.signal_indices,
                "signal_values": self.signal_values}

    def social_rows(self, users: torch.Tensor) -> torch.Tensor:
        """Dense signal rows ``(B, n_items)`` of ``users (B,)``, gathered from the CSR buffers (vectorised)."""
        users = users.to(self.signal_indptr.device).long().reshape(-1)
        if users.numel() and (int(users.min()) < 0 or int(users.max()) >= self.n_users):
            raise ValueError(f"user ids must lie in [0, {self.n_users}); got min {int(users.min())}, max {int(users.max())}")
        start, end = self.signal_indptr[users], self.signal_indptr[users + 1]
        counts = end - start
        rows = torch.repeat_interleave(torch.arange(len(users), device=users.device), counts)
        offsets = torch.arange(int(counts.sum()), device=users.device) - torch.repeat_interleave(counts.cumsum(0) - counts, counts)
        pos = torch.repeat_interleave(start, counts) + offsets
        out = torch.zeros(len(users), self.n_items, device=users.device)
        out[rows, self.signal_indices[pos]] = self.signal_values[pos]
        return out

    def context(self, condition: torch.Tensor, users: Optional[torch.Tensor] = None) -> torch.Tensor:
        if users is None:
            raise ValueError("SocialDiffRecAdapter.context needs the user ids (users=...) to look up social signals")
        if len(users) != condition.shape[0]:
            raise ValueError(f"{len(users)} user ids for {condition.shape[0]} conditions")
        return self.social_rows(torch.as_tensor(users)).to(condition.device)

    def denoise(self, x: torch.Tensor, i: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        return self.net(x, context, i)

    def config(self) -> Dict:
        return dict(self._cfg)
