"""Denoiser networks (written from the papers' descriptions).

* :class:`DiffRecMLP` (Wang et al., SIGIR 2023): ``x_i`` (B, n_items) concatenated with a
  sinusoidal embedding of the diffusion index goes through an MLP "encoder" down to a bottleneck
  and a mirrored "decoder" back to ``n_items``, tanh between layers, dropout on the input.
* :class:`CFDiffDenoiser` (Hou et al., SIGIR 2024, "CF-Diff"): the noisy vector is one token, each
  multi-hop collaborative signal (1-hop history, 2-hop, ...) another; the noisy token attends to the
  hop tokens (cross-attention) and the result is decoded back to item space.

Both output the raw model prediction (an x0 or epsilon estimate, per the schedule's mean_type),
shape (B, n_items). Cost is linear in n_items (dense layers n_items x hidden).
"""
from __future__ import annotations

import math
from typing import List, Sequence

import torch
from torch import nn
import torch.nn.functional as F


def timestep_embedding(i: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer indices ``i`` (B,) -> (B, dim) float32."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=i.device) / half)
    args = i.float().unsqueeze(-1) * freqs.unsqueeze(0)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


def _mlp(dims: Sequence[int], act=nn.Tanh) -> nn.Sequential:
    layers: List[nn.Module] = []
    for k, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if k < len(dims) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


def _xavier(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight)
            nn.init.normal_(m.bias, std=1e-3)


class DiffRecMLP(nn.Module):
    """DiffRec's denoiser.

    Args:
        n_items: item-space dimension D.
        hidden: encoder widths, e.g. ``[1000]``; the decoder mirrors them.
        emb_size: width of the diffusion-index embedding.
        dropout: dropout probability on the (optionally L2-normalised) input.
        norm: L2-normalise the input vector first.
    Forward: ``(x (B, D), i (B,)) -> (B, D)``.
    """

    def __init__(self, n_items: int, hidden: Sequence[int] = (1000,), emb_size: int = 10,
                 dropout: float = 0.5, norm: bool = False):
        super().__init__()
        self.n_items, self.hidden, self.emb_size = int(n_items), [int(h) for h in hidden], int(emb_size)
        self.norm = bool(norm)
        self.emb = nn.Linear(self.emb_size, self.emb_size)
        self.encoder = _mlp([self.n_items + self.emb_size] + self.hidden)
        self.decoder = _mlp(list(reversed(self.hidden)) + [self.n_items])
        self.drop = nn.Dropout(dropout)
        _xavier(self)

    def forward(self, x: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        temb = self.emb(timestep_embedding(i, self.emb_size))
        if self.norm:
            x = F.normalize(x, dim=-1)
        h = torch.tanh(self.encoder(torch.cat([self.drop(x), temb], dim=-1)))
        return self.decoder(h)


class CFDiffDenoiser(nn.Module):
    """CF-Diff-style cross-attention denoiser over multi-hop collaborative signals.

    Args:
        n_items: item-space dimension D.
        n_hops: number of hop signals given at forward time (1-hop = the history itself).
        d_model: token width; heads: attention heads; emb_size: index-embedding width.
        dropout: dropout on the input vectors.
    Forward: ``(x (B, D), i (B,), hops (B, n_hops, D)) -> (B, D)``.
    """

    def __init__(self, n_items: int, n_hops: int = 3, d_model: int = 256, heads: int = 4,
                 emb_size: int = 16, dropout: float = 0.5):
        super().__init__()
        self.n_items, self.n_hops, self.d_model = int(n_items), int(n_hops), int(d_model)
        self.emb_size = int(emb_size)
        self.in_x = nn.Linear(self.n_items, self.d_model)
        self.in_hop = nn.Linear(self.n_items, self.d_model)
        self.hop_emb = nn.Parameter(torch.zeros(self.n_hops, self.d_model))
        self.t_proj = nn.Linear(self.emb_size, self.d_model)
        self.attn = nn.MultiheadAttention(self.d_model, heads, batch_first=True)
        self.ln1 = nn.LayerNorm(self.d_model)
        self.ln2 = nn.LayerNorm(self.d_model)
        self.ff = nn.Sequential(nn.Linear(self.d_model, 2 * self.d_model), nn.Tanh(), nn.Linear(2 * self.d_model, self.d_model))
        self.out = nn.Linear(self.d_model, self.n_items)
        self.drop = nn.Dropout(dropout)
        _xavier(self)
        nn.init.normal_(self.hop_emb, std=0.02)

    def forward(self, x: torch.Tensor, i: torch.Tensor, hops: torch.Tensor) -> torch.Tensor:
        if hops.dim() != 3 or hops.shape[1] != self.n_hops:
            raise ValueError(f"hops must be (B, {self.n_hops}, {self.n_items}), got {tuple(hops.shape)}")
        q = self.in_x(self.drop(x)) + self.t_proj(timestep_embedding(i, self.emb_size))  # (B, d)
        kv = self.in_hop(self.drop(hops)) + self.hop_emb  # (B, H, d)
        a, _ = self.attn(self.ln1(q).unsqueeze(1), kv, kv, need_weights=False)
        h = q + a.squeeze(1)
        h = h + self.ff(self.ln2(h))
        return self.out(torch.tanh(h))
