"""DreamRec-style sequential diffusion recommender (Yang et al., NeurIPS 2023), written from the paper.

DreamRec "generates the oracle next item": a causal Transformer encodes the user's item sequence
into a guidance vector ``c`` (d dims); a Gaussian diffusion runs over the *embedding space of the
next item* (``action_dim = d``), starting from pure noise; the denoiser is an MLP of
``(x_i, c, index embedding)`` that predicts ``x0`` (the next item's embedding); the final ``x0`` is
ranked against every item embedding (``scores = x0 E^T``). Classifier-free guidance: ``c`` is
replaced by a learned null vector with probability ``cfg_dropout`` during training, and the
reverse chain uses ``(1 + w) f(x, c) - w f(x, null)`` when ``guidance = w > 0``.

Condition layout (what environments put in observations), float32 ``(B, condition_dim)``:

* columns ``[0, max_len)``: the visible item ids in time order, right-aligned (most recent last),
  padded on the left with ``pad_id = n_items`` (ids are exact in float32 below 2**24);
* only if ``time_aware``: columns ``[max_len, 2 max_len)``: the time-gap bucket of each position
  (:func:`time_gap_buckets`; 0 = padding or first item), aligned with the ids.

So ``condition_dim = max_len`` (``2 max_len`` when time-aware). Because a binary "visible" matrix
has no order, the adapter keeps every user's train sequence (and validation item) as buffers,
built by :meth:`DreamRecAdapter.from_data`, and :meth:`~DreamRecAdapter.encode_condition` keeps the
visible items of that stored sequence, in order.

Training pairs (the deviation from the paper, documented): DreamRec's loss is the plain MSE
between the predicted ``x0`` and the target item embedding. With learned item embeddings that
objective alone admits shrinking all embeddings together, so we add an auxiliary full-softmax
cross-entropy of ``scores(x0_hat)`` against the target item, weighted by ``ce_weight`` (default
0.1; 0 gives DreamRec's pure objective). ``state_ce_weight`` (default 0) adds the same cross-entropy on the
guidance vector itself (``c E^T``, SASRec's next-item loss on the shared encoder): a strong variant whose
encoder learns the ranking directly instead of only through the denoiser. Diffusion indices are sampled uniformly and the MSE is
*not* reweighted by SNR (DreamRec's choice; DiffRec's weighting suits history-space diffusion).
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from refit_gym.diffusion.adapters import DenoiserAdapter, register_backbone
from refit_gym.diffusion.denoisers import timestep_embedding
from refit_gym.diffusion.objective import PretrainBatch, PretrainDraws
from refit_gym.diffusion.schedule import ScheduleConfig
from refit_gym.diffusion.seq_encoder import CausalSeqEncoder  # noqa: F401 (re-exported)
from refit_gym.diffusion.seq_training import sequence_batches, time_gap_buckets  # noqa: F401 (time_gap_buckets: re-exported)
from refit_gym.scores import LowRankScores, low_rank_cross_entropy

#: DreamRec starts from pure Gaussian noise, so its schedule must reach (almost) pure noise at T.
DREAMREC_SCHEDULE = ScheduleConfig(noise_schedule="cosine", steps=50, mean_type="x0", sampling_steps=0)


# ---------------------------------------------------------------------------------------------- denoiser
class GuidedMLP(nn.Module):
    """DreamRec's denoiser: ``(x_i (N, d), c (N, d), i (N,)) -> x0 estimate (N, d)``."""

    def __init__(self, d: int, hidden: Sequence[int] = (256, 256), emb_size: int = 32):
        super().__init__()
        self.emb_size = int(emb_size)
        self.t_proj = nn.Sequential(nn.Linear(self.emb_size, self.emb_size), nn.SiLU())
        dims = [2 * d + self.emb_size] + [int(h) for h in hidden] + [d]
        layers = []
        for k, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(a, b))
            if k < len(dims) - 2:
                layers.append(nn.SiLU())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, c: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, c, self.t_proj(timestep_embedding(i, self.emb_size))], dim=-1))


# ---------------------------------------------------------------------------------------------- adapter
@register_backbone
class DreamRecAdapter(DenoiserAdapter):
    """DreamRec behind the :class:`DenoiserAdapter` contract (see the module docstring).

    Args:
        n_items: number of items. n_users: number of users whose sequences are held (0 until
            :meth:`set_sequences`). max_len: condition length (most recent visible items).
        d: embedding width = ``action_dim``. n_layers, heads, dropout: the sequence encoder.
        hidden, emb_size: the denoiser MLP and its index-embedding width.
        time_aware: add embedded log time gaps (POI data); n_time_buckets: their number.
        cfg_dropout: probability of dropping ``c`` in training (classifier-free guidance).
        guidance: guidance weight ``w`` used by :meth:`denoise` (0 = plain conditional model).
        ce_weight: weight of the auxiliary cross-entropy of the x0 estimate in the training loss.
        state_ce_weight: weight of the cross-entropy of the guidance vector's own scores ``c E^T``.
        residual: the x0 estimate is ``c + MLP(x_t, c, t)`` (the guidance vector plus the denoiser network's
            output) instead of ``MLP(x_t, c, t)``: the chain starts from the encoder's own prediction, so a denoiser
            whose output shrinks to zero ranks as the encoder's head ``c E^T`` does.
        schedule: a :class:`ScheduleConfig` or its dict (default :data:`DREAMREC_SCHEDULE`).

    Context (:meth:`context`): a dict ``{"seq": (B, L) int64, "buckets": (B, L) int64 | None,
    "c": (B, d) guidance vector}``.
    """

    backbone_name = "dreamrec"
    pretrain_grad_clip = 5.0
    pretrain_data_parallel = False

    def __init__(self, n_items: int, n_users: int = 0, max_len: int = 50, d: int = 64, n_layers: int = 2,
                 heads: int = 2, dropout: float = 0.1, hidden: Sequence[int] = (256, 256), emb_size: int = 32,
                 time_aware: bool = False, n_time_buckets: int = 32, cfg_dropout: float = 0.1, guidance: float = 0.0,
                 ce_weight: float = 0.1, state_ce_weight: float = 0.0, residual: bool = False,
                 schedule: Dict | ScheduleConfig = DREAMREC_SCHEDULE):
        cfg = schedule if isinstance(schedule, ScheduleConfig) else ScheduleConfig(**schedule)
        max_len = int(max_len)
        if max_len < 2:
            raise ValueError(f"max_len={max_len}: need at least 2 (a history and a target)")
        super().__init__(cfg, n_items, int(d), 2 * max_len if time_aware else max_len)
        if not 0.0 <= cfg_dropout < 1.0:
            raise ValueError(f"cfg_dropout={cfg_dropout}: expected a probability in [0, 1)")
        self._cfg = dict(n_items=int(n_items), n_users=int(n_users), max_len=max_len, d=int(d),
                         n_layers=int(n_layers), heads=int(heads), dropout=float(dropout),
                         hidden=[int(h) for h in hidden], emb_size=int(emb_size), time_aware=bool(time_aware),
                         n_time_buckets=int(n_time_buckets), cfg_dropout=float(cfg_dropout),
                         guidance=float(guidance), ce_weight=float(ce_weight),
                         state_ce_weight=float(state_ce_weight), residual=bool(residual), schedule=cfg.to_dict())
        self.max_len, self.time_aware, self.n_time_buckets = max_len, bool(time_aware), int(n_time_buckets)
        # item ids (pad = n_items) and time buckets: the observation Box bounds of the condition
        self.condition_bounds = (0.0, float(max(int(n_items), self.n_time_buckets - 1 if time_aware else 0)))
        self.cfg_dropout, self.guidance, self.ce_weight = float(cfg_dropout), float(guidance), float(ce_weight)
        self.state_ce_weight, self.residual = float(state_ce_weight), bool(residual)
        self.encoder = CausalSeqEncoder(n_items, max_len, d, n_layers, heads, dropout,
                                        n_time_buckets if time_aware else 0)
        self.denoiser = GuidedMLP(int(d), hidden, emb_size)
        self.null_c = nn.Parameter(torch.zeros(int(d)))
        n_users = int(n_users)
        self.register_buffer("seq_items", torch.full((n_users, max_len), int(n_items), dtype=torch.long))
        self.register_buffer("seq_times", torch.full((n_users, max_len if time_aware else 0), float("nan"),
                                                     dtype=torch.float64))
        self.register_buffer("valid_items", torch.full((n_users,), int(n_items), dtype=torch.long))
        self.register_buffer("valid_times", torch.full((n_users if time_aware else 0,), float("nan"), dtype=torch.float64))
        self.register_buffer("valid_is_new", torch.zeros(n_users, dtype=torch.bool))
        self._host: Dict[str, tuple] = {}

    @property
    def pad_id(self) -> int:
        return self.n_items

    # ------------------------------------------------------------------ data
    @classmethod
    def from_data(cls, seq_data, **kwargs) -> "DreamRecAdapter":
        """Build for a :class:`~refit_gym.data.sequential.SequentialData` and hold its sequences."""
        if not hasattr(seq_data, "padded"):
            raise TypeError(f"backbone {cls.backbone_name!r} needs ordered sequences (a SequentialData, e.g. from a "
                            f"dataset.pkl folder), got {type(seq_data).__name__}")
        kwargs.setdefault("max_len", seq_data.max_len)
        adapter = cls(n_items=seq_data.n_items, n_users=seq_data.n_users, **kwargs)
        adapter.set_sequences(seq_data)
        return adapter

    def set_sequences(self, seq_data) -> None:
        """Store every user's row and validation item (the order behind the conditions; pad for a user without
        a validation item, user-split)."""
        if seq_data.n_items != self.n_items:
            raise ValueError(f"data '{seq_data.name}' has {seq_data.n_items} items; this backbone has {self.n_items}")
        if self.time_aware and not seq_data.has_time:
            raise ValueError(f"time_aware=True needs timestamps, but data '{seq_data.name}' has none")
        items, times, _ = seq_data.padded(self.max_len)
        history = seq_data.history_items("valid")  # the row's items (loo: the train matrix)
        has = seq_data.valid_item >= 0
        valid = np.where(has, seq_data.valid_item, self.pad_id)
        is_new = has & (np.asarray(history[np.arange(seq_data.n_users), np.where(has, valid, 0)]).ravel() == 0)
        dev = self.null_c.device
        self.seq_items = torch.as_tensor(items, dtype=torch.long, device=dev)
        self.valid_items = torch.as_tensor(valid, dtype=torch.long, device=dev)
        self.valid_is_new = torch.as_tensor(is_new, dtype=torch.bool, device=dev)
        if self.time_aware:
            self.seq_times = torch.as_tensor(times, dtype=torch.float64, device=dev)
            self.valid_times = torch.as_tensor(seq_data.valid_time, dtype=torch.float64, device=dev)
        self._cfg["n_users"] = int(seq_data.n_users)

    def data_tensors(self) -> Dict[str, torch.Tensor]:
        return {"seq_items": self.seq_items, "seq_times": self.seq_times, "valid_items": self.valid_items,
                "valid_times": self.valid_times, "valid_is_new": self.valid_is_new}

    def _np(self, name: str) -> np.ndarray:
        """Host (numpy) view of a buffer, refreshed when the buffer is replaced or modified in place."""
        t = getattr(self, name)
        cached = self._host.get(name)
        if cached is None or cached[0] is not t or cached[1] != t._version:
            cached = (t, t._version, t.detach().cpu().numpy())
            self._host[name] = cached
        return cached[2]

    # ------------------------------------------------------------------ hooks
    def encode_condition(self, users: np.ndarray, visible: sp.csr_matrix, split: Optional[str] = None,
                         hidden_tail: Optional[np.ndarray] = None) -> np.ndarray:
        """Conditions ``(B, condition_dim)`` float32: the visible part of each user's sequence, in order.

        Args:
            users: ``(B,)`` user ids into the held sequences.
            visible: CSR ``(B, n_items)``; a stored train position is kept iff its item is visible
                (so an environment can hide items). The stored sequence is truncated to ``max_len``.
            split: which held-out item is being predicted. ``'valid'``: the history is the train
                sequence. ``'test'``: train sequence + validation item (always appended). ``None``
                (generic callers): the validation item is appended only when it is visible *and* not
                a train item of the user; with repeat consumption (POI) the binary matrix cannot tell
                "train + valid" from "train", so evaluation code should pass ``split``.
            hidden_tail: None, or ``(B,)`` int64: the condition is a prefix of the train sequence
                without its last ``hidden_tail[b]`` positions (counted on the full train sequence; the
                stored one holds its last ``max_len``); the validation item is then never appended.
                Only with ``split=None``.
        """
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        n_held = self.seq_items.shape[0]
        if users.size and (users.min() < 0 or users.max() >= n_held):
            bad = users[(users < 0) | (users >= n_held)][0]
            raise ValueError(f"user {int(bad)} has no stored sequence (held users: {n_held}); call set_sequences")
        if visible.shape != (len(users), self.n_items):
            raise ValueError(f"visible has shape {visible.shape}; expected ({len(users)}, {self.n_items})")
        if split not in (None, "valid", "test"):
            raise ValueError(f"split={split!r}: expected None, 'valid' or 'test'")
        if hidden_tail is not None:
            hidden_tail = np.asarray(hidden_tail, dtype=np.int64).reshape(-1)
            if split is not None or hidden_tail.shape != users.shape or (hidden_tail < 0).any():
                raise ValueError(f"hidden_tail must be (B,)={users.shape} non-negative counts with split=None; got "
                                 f"shape {hidden_tail.shape}, split={split!r}")
        B, L, pad = len(users), self.max_len, self.pad_id
        full = np.concatenate([self._np("seq_items")[users], self._np("valid_items")[users, None]], axis=1)
        real = full != pad
        rows = np.repeat(np.arange(B), L + 1)
        member = np.asarray(sp.csr_matrix(visible)[rows, np.minimum(full, pad - 1).ravel()]).reshape(B, L + 1) > 0
        keep = real & member
        if hidden_tail is not None:
            # rank of each stored train position from the end (0 = the last train item); padding counts too,
            # but it is never kept, and real items are contiguous at the right
            from_end = np.arange(L - 1, -1, -1)
            keep[:, :L] &= from_end[None, :] >= hidden_tail[:, None]
        if split == "valid" or hidden_tail is not None:
            keep[:, -1] = False
        elif split == "test":
            keep[:, -1] = real[:, -1]
        else:
            keep[:, -1] &= self._np("valid_is_new")[users]
        order = np.argsort(keep, axis=1, kind="stable")[:, -L:]  # kept positions last, in time order
        kept = np.take_along_axis(keep, order, axis=1)
        seq = np.where(kept, np.take_along_axis(full, order, axis=1), pad)
        if not self.time_aware:
            return seq.astype(np.float32)
        tfull = np.concatenate([self._np("seq_times")[users], self._np("valid_times")[users, None]], axis=1)
        ts = np.where(kept, np.take_along_axis(tfull, order, axis=1), np.nan)
        buckets = time_gap_buckets(ts, self.n_time_buckets)
        return np.concatenate([seq, buckets], axis=1).astype(np.float32)

    def split_condition(self, condition: torch.Tensor):
        """``condition (B, condition_dim)`` -> ``(seq (B, L) int64, buckets (B, L) int64 | None)``."""
        if condition.dim() != 2 or condition.shape[1] != self.condition_dim:
            raise ValueError(f"condition has shape {tuple(condition.shape)}; expected (B, {self.condition_dim})")
        seq = condition[:, : self.max_len].round().long()
        if seq.numel() and (int(seq.min()) < 0 or int(seq.max()) > self.pad_id):
            raise ValueError(f"condition holds item ids outside [0, {self.pad_id}] (pad_id = n_items)")
        buckets = condition[:, self.max_len:].round().long().clamp(0, self.n_time_buckets - 1) if self.time_aware else None
        return seq, buckets

    def context(self, condition: torch.Tensor, users: Optional[torch.Tensor] = None) -> Dict[str, Any]:
        seq, buckets = self.split_condition(condition)
        c = self.encoder.last(seq, buckets)
        return {"seq": seq, "buckets": buckets, "c": c}

    def _predict(self, x: torch.Tensor, i: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        out = self.denoiser(x, c, i)
        return c + out if self.residual else out

    def denoise(self, x: torch.Tensor, i: torch.Tensor, context: Dict[str, Any]) -> torch.Tensor:
        """x0 estimate ``(B, d)``; with ``guidance = w > 0``: ``(1 + w) f(x, c) - w f(x, null)``."""
        c = context["c"]
        out = self._predict(x, i, c)
        if self.guidance:
            out = (1.0 + self.guidance) * out - self.guidance * self._predict(x, i, self.null_c.expand_as(c))
        return out

    def start(self, condition, context, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Pure Gaussian noise ``(B, d)`` drawn with ``generator``."""
        return torch.randn((condition.shape[0], self.action_dim), generator=generator, device=condition.device)

    def scores(self, x0: torch.Tensor, context) -> torch.Tensor:
        """Full ranking ``(B, n_items)``: inner products with every item embedding."""
        return x0 @ self.encoder.item_weight.t()

    def reward_scores(self, x0: torch.Tensor, context) -> LowRankScores:
        """:meth:`scores` as its factors ``(x0, item embeddings)`` (see :mod:`refit_gym.scores`)."""
        return LowRankScores(x0, self.encoder.item_weight)

    def training_target(self, condition: torch.Tensor, context) -> torch.Tensor:
        """The embedding ``(B, d)`` of the condition's most recent item (padding embeds to zero)."""
        seq, _ = self.split_condition(condition)
        return self.encoder.item_emb(seq[:, -1])

    def config(self) -> Dict:
        return dict(self._cfg)

    # ------------------------------------------------------------------ training objective
    def pair_loss(self, c: torch.Tensor, target: torch.Tensor, i: torch.Tensor,
                  generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Per-pair loss ``(N,)`` for guidance vectors ``c (N, d)``, target items ``(N,)`` and indices ``i (N,)``.

        MSE (mean over d) between the x0 estimate and the target embedding, plus ``ce_weight``
        times the full-softmax cross-entropy of the estimate's item scores, plus ``state_ce_weight``
        times that of ``c``'s own scores. In training mode ``c`` is replaced by the null vector with
        probability ``cfg_dropout`` (for the denoiser only).
        """
        self.schedule.check_index(i)
        x0 = self.encoder.item_emb(target)
        state_ce = (low_rank_cross_entropy(c, self.encoder.item_weight, target) if self.state_ce_weight
                    else None)
        if self.training and self.cfg_dropout > 0:
            drop = torch.rand(c.shape[0], generator=generator, device=c.device) < self.cfg_dropout
            c = torch.where(drop.unsqueeze(-1), self.null_c.expand_as(c), c)
        noise = torch.randn(x0.shape, generator=generator, device=x0.device)
        x0_hat = self._predict(self.schedule.q_sample(x0, i, noise), i, c)
        loss = ((x0_hat - x0) ** 2).mean(dim=-1)
        if self.ce_weight:
            loss = loss + self.ce_weight * low_rank_cross_entropy(x0_hat, self.encoder.item_weight, target)
        if state_ce is not None:
            loss = loss + self.state_ce_weight * state_ce
        return loss

    def diffusion_loss(self, condition: torch.Tensor, users: Optional[torch.Tensor], i: torch.Tensor,
                       generator: Optional[torch.Generator] = None, reweight: bool = False) -> torch.Tensor:
        """Per-user loss ``(B,)``: predict each condition's most recent item from the items before it.

        Rows with no item give 0. ``reweight`` multiplies by ``schedule.timestep_weight(i)``; it is
        off by default here (DreamRec's objective is unweighted, and SNR weights of a schedule that
        reaches pure noise span orders of magnitude).
        """
        seq, buckets = self.split_condition(condition)
        h = self.encoder(seq, buckets)
        target = seq[:, -1]
        has = target != self.pad_id
        loss = self.pair_loss(h[:, -2], target.clamp_max(self.n_items - 1), i, generator)
        if reweight:
            loss = self.schedule.timestep_weight(i) * loss
        return torch.where(has, loss, torch.zeros_like(loss))

    def sequence_states(self, seq: torch.Tensor, buckets: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Encoder states ``(B, L, d)`` of every prefix of padded sequences ``seq (B, L)`` (time-gap ``buckets``
        ``(B, L)`` or None): the per-sequence part of :meth:`sequence_loss`, whose cost follows each sequence's
        length (the cost floor counts it apart from the per-pair part)."""
        return self.encoder(seq, buckets)

    def sequence_loss(self, seq: torch.Tensor, buckets: Optional[torch.Tensor] = None,
                      generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Mean loss over *all prefixes* of padded sequences ``seq (B, L)`` in one causal pass.

        The state at position p (the prefix ending there) predicts the item at p + 1; the padding
        position just before a sequence's first item is the empty-history state, which learns to
        predict first items (as :meth:`diffusion_loss` does for one-item conditions). Indices are
        drawn uniformly per pair. Returns a scalar (0 if there is no pair).
        """
        h = self.sequence_states(seq, buckets)  # (B, L, d)
        src, tgt = h[:, :-1], seq[:, 1:]
        ok = tgt != self.pad_id
        if not bool(ok.any()):
            return h.sum() * 0.0
        c, target = src[ok], tgt[ok]
        i = torch.randint(0, self.schedule.steps, (len(target),), generator=generator, device=seq.device)
        return self.pair_loss(c, target, i, generator).mean()

    # ------------------------------------------------------------------ the pretraining objective
    def pretrain_index_sampler(self, cfg) -> None:
        """None: :meth:`sequence_loss` draws its indices uniformly per pair (DreamRec's choice; the config's
        ``timestep_sampling`` and ``reweight`` do not apply)."""
        return None

    def pretrain_batches(self, data, batch_size: int, draws: PretrainDraws):
        """One epoch: every training row of ``data`` (:meth:`~refit_gym.data.sequential.SequentialData.training_rows`)
        once, shuffled with ``draws.gen`` (:func:`~refit_gym.diffusion.seq_training.sequence_batches`);
        ``inputs`` = ``(seq (B, max_len) int64, buckets (B, max_len) int64 | None)`` on this adapter's device,
        ``weight`` = 1 (the epoch's loss is the mean over batches)."""
        n_buckets = self.n_time_buckets if self.time_aware else 0
        for seq, buckets in sequence_batches(data, batch_size, self.max_len, draws.gen, False, n_buckets, self.device):
            yield PretrainBatch((seq, buckets), 1.0)

    def pretrain_loss(self, batch: PretrainBatch, draws: PretrainDraws, cfg) -> torch.Tensor:
        """:meth:`sequence_loss` of the batch (a scalar), its indices, noise and guidance dropout drawn with
        ``draws.dev_gen``."""
        seq, buckets = batch.inputs
        return self.sequence_loss(seq, buckets, draws.dev_gen)


@register_backbone
class DreamRecPOIAdapter(DreamRecAdapter):
    """DreamRec for POI check-ins: :class:`DreamRecAdapter` with ``time_aware=True`` by default, so the
    condition carries the log time-gap bucket of every position (the data must be timestamped).

    A separate registered name (``"dreamrec-poi"``) so that checkpoints, environment ids and scripts
    can tell the POI scenario's backbone from the plain sequential one."""

    backbone_name = "dreamrec-poi"

    def __init__(self, n_items: int, n_users: int = 0, time_aware: bool = True, **kwargs):
        super().__init__(n_items, n_users, time_aware=time_aware, **kwargs)


@register_backbone
class DreamRecCEAdapter(DreamRecAdapter):
    """The strong DreamRec variant: :class:`DreamRecAdapter` with ``state_ce_weight=1.0`` by default, so the
    encoder also trains SASRec's next-item cross-entropy on its own state ``c E^T`` (its own registered name,
    ``"dreamrec-ce"``, and environment id, so that its rows and checkpoints stand apart from DreamRec's)."""

    backbone_name = "dreamrec-ce"

    def __init__(self, n_items: int, n_users: int = 0, state_ce_weight: float = 1.0, **kwargs):
        super().__init__(n_items, n_users, state_ce_weight=state_ce_weight, **kwargs)


@register_backbone
class DreamRecPOICEAdapter(DreamRecPOIAdapter):
    """The strong variant of the POI backbone: :class:`DreamRecPOIAdapter` (time-aware) with ``state_ce_weight=1.0``
    by default, as :class:`DreamRecCEAdapter` is to DreamRec (registered name ``"dreamrec-poi-ce"``)."""

    backbone_name = "dreamrec-poi-ce"

    def __init__(self, n_items: int, n_users: int = 0, state_ce_weight: float = 1.0, **kwargs):
        super().__init__(n_items, n_users, state_ce_weight=state_ce_weight, **kwargs)
