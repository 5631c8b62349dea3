"""The causal self-attention sequence encoder shared by DreamRec (:mod:`refit_gym.diffusion.dreamrec`, its guidance
vector) and the SASRec baseline (:mod:`refit_gym.seq_baselines`, its next-item state)."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


class _Block(nn.Module):
    """Pre-LayerNorm Transformer block with a boolean attention mask (True = may attend)."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        if d % heads:
            raise ValueError(f"d={d} is not divisible by heads={heads}")
        self.heads, self.p = heads, dropout
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ff = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, allowed: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """``h (B, L, d)``, ``allowed (B, 1, L, L)`` -> ``(B, L, d)``; with ``last_only`` the output of the last
        position only, ``(B, 1, d)`` (every position still serves as a key and value)."""
        B, L, d = h.shape
        q, k, v = self.qkv(self.ln1(h)).view(B, L, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if last_only:
            q, allowed, h = q[:, :, -1:], allowed[:, :, -1:], h[:, -1:]
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=self.p if self.training else 0.0)
        h = h + self.drop(self.proj(a.transpose(1, 2).reshape(B, q.shape[2], d)))
        return h + self.drop(self.ff(self.ln2(h)))


class CausalSeqEncoder(nn.Module):
    """SASRec-style causal self-attention encoder over padded item sequences.

    Positions are counted from each sequence's *oldest* real item (0, 1, ...), so the state at a
    position equals the encoding of that prefix on its own: training on all prefixes in one pass
    matches inference on a single (right-aligned) history. A query attends to earlier real items
    and to itself; padding attends only to itself, so no row is fully masked.

    Cost follows the real lengths, not the padded width: every padding state is the same vector
    (the padding embedding at position 0, attending to itself), so each row is encoded on its last
    ``w`` columns only, its real items and one padding column before them, with rows grouped by
    ``w`` rounded up to a power of two (at most ``L``); the dropped columns get that padding state.
    With histories of median length 4 padded to 50 (seq-beauty) this runs about a fifth of the
    tokens. The states equal the full-width pass to float rounding (dropout masks are drawn per
    group, so in training mode they are other draws of the same distribution).

    Args:
        n_items: number of items; id ``n_items`` is padding (zero, frozen embedding).
        max_len: longest sequence accepted. d: width. n_layers, heads, dropout: the Transformer.
        n_time_buckets: if > 0, a learned embedding of time-gap buckets is added to the input.
    Forward: ``(seq (B, L) int64, time_buckets (B, L) int64 | None) -> (B, L, d)``.
    """

    def __init__(self, n_items: int, max_len: int, d: int = 64, n_layers: int = 2, heads: int = 2,
                 dropout: float = 0.1, n_time_buckets: int = 0):
        super().__init__()
        self.n_items, self.max_len, self.d = int(n_items), int(max_len), int(d)
        self.item_emb = nn.Embedding(self.n_items + 1, self.d, padding_idx=self.n_items)
        self.pos_emb = nn.Embedding(self.max_len, self.d)
        self.time_emb = nn.Embedding(int(n_time_buckets), self.d) if n_time_buckets else None
        self.blocks = nn.ModuleList(_Block(self.d, heads, dropout) for _ in range(n_layers))
        self.ln = nn.LayerNorm(self.d)
        self.drop = nn.Dropout(dropout)
        nn.init.normal_(self.item_emb.weight, std=self.d ** -0.5)
        nn.init.normal_(self.pos_emb.weight, std=0.02)
        with torch.no_grad():
            self.item_emb.weight[self.n_items].zero_()
        if self.time_emb is not None:
            nn.init.normal_(self.time_emb.weight, std=0.02)

    @property
    def item_weight(self) -> torch.Tensor:
        """Embeddings of the real items, ``(n_items, d)`` (padding row excluded)."""
        return self.item_emb.weight[: self.n_items]

    def forward(self, seq: torch.Tensor, time_buckets: Optional[torch.Tensor] = None) -> torch.Tensor:
        L = seq.shape[1]
        # the dropped columns are padding: their state is the one of the kept padding column (column 0)
        return self._gather(seq, time_buckets, False,
                            lambda w, h: torch.cat([h[:, :1].expand(-1, L - w, -1), h], dim=1) if w < L else h)

    def last(self, seq: torch.Tensor, time_buckets: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The state of each sequence's last position, ``(B, d)``: ``forward(seq, time_buckets)[:, -1]`` (to float
        rounding) without the other positions' outputs: the last block attends from the last query only (in training
        mode its dropout masks are other draws of the same distribution)."""
        return self._gather(seq, time_buckets, True, lambda w, h: h[:, -1])

    def _gather(self, seq, time_buckets, last_only: bool, finish) -> torch.Tensor:
        """Encode the rows in groups of equal width (:meth:`_groups`), ``finish(w, states)`` each group's states,
        and put the groups' rows back in ``seq``'s order."""
        parts, order = [], []
        for rows, w, h in self._groups(seq, time_buckets, last_only):
            if rows is None:
                return finish(w, h)
            parts.append(finish(w, h))
            order.append(rows)
        inverse = torch.empty(seq.shape[0], dtype=torch.long, device=seq.device)
        inverse[torch.cat(order)] = torch.arange(seq.shape[0], device=seq.device)
        return torch.cat(parts).index_select(0, inverse)

    def _groups(self, seq: torch.Tensor, time_buckets: Optional[torch.Tensor], last_only: bool):
        """Yield ``(rows (b,) int64, w, states)``: the rows whose real items fit the last ``w`` columns, encoded on
        those columns (``(b, w, d)``, or ``(b, 1, d)`` with ``last_only``); one ``(None, L, states of all rows)``
        when every row needs the full width."""
        B, L = seq.shape
        if L > self.max_len:
            raise ValueError(f"sequence length {L} exceeds the encoder's max_len={self.max_len}")
        if self.time_emb is not None and time_buckets is None:
            raise ValueError("this encoder is time-aware: pass time_buckets (B, L)")
        # columns a row needs: its real items (right-aligned) and, when it has padding, one padding column
        need = ((seq != self.n_items).sum(dim=1) + 1).clamp_max(L)
        width = torch.minimum(2 ** torch.ceil(torch.log2(need.double())).long(), torch.full_like(need, L))
        widths = width.unique().tolist()
        if len(widths) == 1 and widths[0] == L:
            yield None, L, self._encode(seq, time_buckets, last_only)
            return
        groups = [(w, (width == w).nonzero().squeeze(1)) for w in widths]
        seqs = [seq[rows, L - w:] for w, rows in groups]
        # one lookup of every group's items: the table's backward then forms one dense (n_items + 1, d) gradient,
        # not one per group
        items = self.item_emb(torch.cat([q.reshape(-1) for q in seqs])).split([q.numel() for q in seqs])
        for (w, rows), q, e in zip(groups, seqs, items):
            yield rows, w, self._encode(q, None if time_buckets is None else time_buckets[rows, L - w:], last_only,
                                        e.view(*q.shape, self.d))

    def _encode(self, seq: torch.Tensor, time_buckets: Optional[torch.Tensor], last_only: bool = False,
                items: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The Transformer on ``seq (B, L)`` as given, every column computed: ``(B, L, d)``; with ``last_only`` the
        last block computes the last column only: ``(B, 1, d)``. ``items``: ``item_emb(seq)`` when already looked up."""
        B, L = seq.shape
        real = seq != self.n_items
        pos = (real.long().cumsum(dim=1) - 1).clamp_min(0)
        h = (self.item_emb(seq) if items is None else items) + self.pos_emb(pos)
        if self.time_emb is not None:
            h = h + self.time_emb(time_buckets)
        h = self.drop(h)
        idx = torch.arange(L, device=seq.device)
        causal = idx.view(1, L, 1) >= idx.view(1, 1, L)  # (1, Lq, Lk): key not after query
        allowed = causal & (real.unsqueeze(1) | torch.eye(L, dtype=torch.bool, device=seq.device))
        allowed = allowed.unsqueeze(1)  # (B, 1, Lq, Lk), broadcast over heads
        for j, blk in enumerate(self.blocks):
            h = blk(h, allowed, last_only=last_only and j == len(self.blocks) - 1)
        return self.ln(h)
