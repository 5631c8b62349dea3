"""The denoiser adapter: the one contract between a diffusion backbone and the rest of refit-gym.

Environments, rewards, policies and agents reach a backbone only through :class:`DenoiserAdapter`.
A new diffusion recommender plugs in by subclassing it and implementing four methods:

* :meth:`~DenoiserAdapter.encode_condition` -- the user's *condition* (what the denoiser may see:
  the visible training items, in whatever form the backbone wants) as a float32 array
  ``(B, condition_dim)``. Environments put this array in the observation.
* :meth:`~DenoiserAdapter.context` -- tensors derived from the condition (and user ids) that the
  denoiser consumes, e.g. multi-hop signals. Computed inside the policy, never stored.
* :meth:`~DenoiserAdapter.denoise` -- the raw network output at ``(x_i, i, context)``.
* :meth:`~DenoiserAdapter.start` -- the starting point ``x_T`` of the reverse chain.

and, if items are not the action space itself, :meth:`~DenoiserAdapter.scores`. Everything else
(the reverse-step Gaussian, whole-chain inference, the pretraining loss) is generic and built on
the :class:`~refit_gym.diffusion.schedule.GaussianDiffusion` schedule.

Pretraining (:func:`refit_gym.diffusion.training.pretrain`, one loop for every backbone) asks the adapter for its
objective: :meth:`~DenoiserAdapter.pretrain_batches` (the epoch's batches of its data),
:meth:`~DenoiserAdapter.pretrain_loss` (the loss of one batch), :meth:`~DenoiserAdapter.pretrain_index_sampler`,
``pretrain_grad_clip`` and ``pretrain_data_parallel``. The defaults here are DiffRec's objective on the users'
training-history rows (:meth:`~DenoiserAdapter.diffusion_loss`); sequence backbones override them
(:class:`~refit_gym.diffusion.dreamrec.DreamRecAdapter`: the all-prefix ``sequence_loss``).

Shapes: B users, D = ``action_dim`` (``n_items`` for DiffRec-like backbones), ``i`` an int64
``(B,)`` diffusion index in ``[0, T-1]`` (see schedule.py for the conventions).

Respacing: the schedule option ``inference_steps = K`` (stored with the schedule in the config, so in
checkpoints; :meth:`DenoiserAdapter.set_inference_steps` changes it on a built adapter) makes the reverse
chain -- :meth:`~DenoiserAdapter.reverse_step`, :meth:`~DenoiserAdapter.infer`, the environments' episodes --
run K steps on a subsequence of the T training steps. :meth:`~DenoiserAdapter.reverse_step` takes *chain*
indices ``[0, K-1]`` and calls :meth:`~DenoiserAdapter.denoise` with the training index
(``schedule.model_index``), so ``denoise`` always sees indices of the T-step schedule it was trained on.
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Dict, Optional, Sequence

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from refit_gym.data.dataset import as_interactions
from refit_gym.data.graph import item_item_graph
from refit_gym.diffusion.denoisers import CFDiffDenoiser, DiffRecMLP
from refit_gym.diffusion.objective import ImportanceSampler, PretrainBatch, PretrainDraws
from refit_gym.diffusion.schedule import GaussianDiffusion, ScheduleConfig


class DenoiserAdapter(nn.Module):
    """Base class of all backbones. Subclasses set ``backbone_name`` and implement the hooks below.

    Attributes:
        schedule: the Gaussian diffusion schedule (T = ``schedule.steps``).
        n_items: number of items ranked by :meth:`scores`.
        action_dim: dimension D of x (the environment's action space).
        condition_dim: length of the condition vector in observations.
        condition_bounds: (low, high) of every condition entry (the observation Box bounds);
            subclasses with bounded conditions narrow it.
    """

    backbone_name: str = "base"
    condition_bounds: tuple = (-float("inf"), float("inf"))
    #: gradient-norm clip of every pretraining step (None: no clipping)
    pretrain_grad_clip: Optional[float] = None
    #: whether pretraining may run data-parallel under torchrun (every rank computes its rows of a global batch)
    pretrain_data_parallel: bool = True

    def __init__(self, schedule_cfg: ScheduleConfig, n_items: int, action_dim: int, condition_dim: int):
        super().__init__()
        self.schedule_cfg = schedule_cfg
        self.schedule = GaussianDiffusion(schedule_cfg)
        self.n_items, self.action_dim, self.condition_dim = int(n_items), int(action_dim), int(condition_dim)

    # ------------------------------------------------------------ hooks for subclasses
    def encode_condition(self, users: np.ndarray, visible: sp.csr_matrix, split: Optional[str] = None,
                         hidden_tail: Optional[np.ndarray] = None) -> np.ndarray:
        """Condition vectors ``(B, condition_dim)`` float32 for ``users`` given their visible items
        ``visible`` (CSR ``(B, n_items)``, the training items the denoiser may see).

        ``split`` ('valid', 'test' or None) tells evaluation code which held-out item is being
        predicted, for backbones whose condition is not a function of ``visible`` alone (a
        sequence's order, repeats); environments pass None. ``hidden_tail`` ``(B,)`` int64 (only
        passed by environments whose reward conditions on a sequence *prefix*, see
        :class:`~refit_gym.rewards.RewardState`): the number of most recent training positions
        the condition must not use. History backbones ignore both (``visible`` already holds the
        prefix's items)."""
        raise NotImplementedError

    def context(self, condition: torch.Tensor, users: Optional[torch.Tensor] = None) -> Any:
        """Derived denoiser inputs from the condition ``(B, condition_dim)``; default: the condition.

        A context is a batch-first tensor, or a dict / tuple / list of them (None entries allowed), so
        that :func:`~refit_gym.diffusion.context.index_context` can select its rows."""
        return condition

    def denoise(self, x: torch.Tensor, i: torch.Tensor, context: Any) -> torch.Tensor:
        """Raw network output ``(B, D)`` (an x0 or eps estimate, per ``schedule.cfg.mean_type``)."""
        raise NotImplementedError

    def start(self, condition: torch.Tensor, context: Any, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Starting point ``x_T`` ``(B, D)`` of the reverse chain."""
        raise NotImplementedError

    def scores(self, x0: torch.Tensor, context: Any) -> torch.Tensor:
        """Item scores ``(B, n_items)`` of a final ``x0``; identity when the action space is item space."""
        return x0

    def reward_scores(self, x0: torch.Tensor, context: Any):
        """The item scores of ``x0`` in the form the terminal reward reads: :meth:`scores` ``(B, n_items)``, or a
        :class:`~refit_gym.scores.LowRankScores` with the same values when they are inner products with item
        vectors (a softmax over them then never forms the dense matrix). Override together with :meth:`scores`."""
        return self.scores(x0, context)

    def training_target(self, condition: torch.Tensor, context: Any) -> torch.Tensor:
        """The clean ``x0`` ``(B, D)`` the diffusion loss reconstructs during pretraining."""
        raise NotImplementedError

    def config(self) -> Dict:
        """Constructor keyword arguments (JSON-able) that rebuild this adapter; see checkpoint.py."""
        raise NotImplementedError

    def data_tensors(self) -> Dict[str, torch.Tensor]:
        """Data-derived tensors (e.g. a graph) that a checkpoint must carry besides the weights."""
        return {}

    # ------------------------------------------------------------ generic machinery
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def reverse_step(self, x: torch.Tensor, i: torch.Tensor, context: Any):
        """Mean ``(B, D)`` and standard deviation ``(B, 1)`` of ``p(x_{i-1} | x_i, context)`` at chain indices
        ``i`` in ``[0, schedule.chain_steps - 1]`` (the denoiser sees ``schedule.model_index(i)``)."""
        return self.schedule.reverse_mean_std(self.denoise(x, self.schedule.model_index(i), context), x, i)

    @property
    def inference_steps(self) -> int:
        """K, the reverse steps of the chain (``schedule.chain_steps``: T unless respaced)."""
        return self.schedule.chain_steps

    def set_inference_steps(self, inference_steps: Optional[int]) -> "DenoiserAdapter":
        """Run the reverse chain on ``inference_steps`` = K evenly spaced steps of the T-step schedule (None: all
        T); returns ``self``. The weights are untouched; :meth:`config` (hence a saved checkpoint) records K.

        Raises:
            ValueError: K is not an integer in ``[1, T]``.
        """
        cfg = dataclasses.replace(self.schedule_cfg, inference_steps=inference_steps)  # validated
        self.schedule_cfg = cfg
        self.schedule = GaussianDiffusion(cfg, self.schedule.device)
        stored = getattr(self, "_cfg", None)  # the built-in adapters keep their config() here
        if isinstance(stored, dict) and "schedule" in stored:
            stored["schedule"] = cfg.to_dict()
        return self

    def to(self, *args, **kwargs):  # keep the schedule tables next to the weights
        out = super().to(*args, **kwargs)
        self.schedule = GaussianDiffusion(self.schedule_cfg, self.device)
        return out

    @torch.no_grad()
    def infer(self, condition: torch.Tensor, users: Optional[torch.Tensor] = None, deterministic: bool = True,
              generator: Optional[torch.Generator] = None, factored: bool = False):
        """The backbone's own inference: run the K reverse steps of the chain (all T unless respaced) from
        :meth:`start`; item scores ``(B, n_items)``.

        ``deterministic=True`` follows the posterior means (DiffRec's inference). ``factored=True`` returns
        :meth:`reward_scores` instead of :meth:`scores`: the same values, as a
        :class:`~refit_gym.scores.LowRankScores` where the backbone scores by inner products (a ranking then
        forms them chunk by chunk, :func:`refit_gym.metrics.evaluate_sequential`); its item factors are the live
        weights, so read the scores before the next optimizer step.
        """
        ctx = self.context(condition, users)
        x = self.start(condition, ctx, generator)
        B = x.shape[0]
        for i in reversed(range(self.schedule.chain_steps)):
            idx = torch.full((B,), i, dtype=torch.long, device=x.device)
            mean, std = self.reverse_step(x, idx, ctx)
            x = mean if deterministic else mean + std * torch.randn(mean.shape, generator=generator, device=mean.device)
        return self.reward_scores(x, ctx) if factored else self.scores(x, ctx)

    def diffusion_loss(self, condition: torch.Tensor, users: Optional[torch.Tensor], i: torch.Tensor,
                       generator: Optional[torch.Generator] = None, reweight: bool = True,
                       noise: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Per-user pretraining loss ``(B,)`` at indices ``i``: the MSE of DiffRec's objective (x0 or eps
        target), mean over the D dimensions, times ``schedule.timestep_weight(i)`` if ``reweight``.

        ``noise`` ``(B, D)``: the Gaussian draw of ``q(x_i | x0)`` (default: drawn with ``generator``), e.g. the
        rows of a larger batch's draw (data-parallel training, :mod:`refit_gym.distributed`)."""
        ctx = self.context(condition, users)
        x0 = self.training_target(condition, ctx)
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, device=x0.device)
        elif noise.shape != x0.shape:
            raise ValueError(f"noise has shape {tuple(noise.shape)}; the training target has {tuple(x0.shape)}")
        x_i = self.schedule.q_sample(x0, i, noise)
        out = self.denoise(x_i, i, ctx)
        target = x0 if self.schedule.cfg.mean_type == "x0" else noise
        mse = ((out - target) ** 2).mean(dim=-1)
        return self.schedule.timestep_weight(i) * mse if reweight else mse

    # ------------------------------------------------------------ the pretraining objective
    def pretrain_index_sampler(self, cfg) -> Optional[ImportanceSampler]:
        """The sampler of diffusion indices :meth:`pretrain_loss` draws from: DiffRec's importance sampler when
        ``cfg.timestep_sampling == 'importance'``, None (uniform) for 'uniform'. Its state is saved with the run."""
        if cfg.timestep_sampling not in ("importance", "uniform"):
            raise ValueError(f"timestep_sampling={cfg.timestep_sampling!r}: expected 'importance' or 'uniform'")
        return ImportanceSampler(self.schedule.steps) if cfg.timestep_sampling == "importance" else None

    def pretrain_batches(self, data, batch_size: int, draws: PretrainDraws):
        """One epoch's :class:`~refit_gym.diffusion.objective.PretrainBatch` es: every user once, in the order of
        ``draws.np_rng.permutation``, ``batch_size`` users per global batch. ``inputs`` = ``{"users": (B,) int64
        (the global batch), "condition": (b, condition_dim) float32 tensor on this adapter's device}``, the
        condition of this rank's block of rows (:func:`refit_gym.distributed.shard_bounds`; all B on one process)
        encoded from the training matrix ``data.train``; ``weight`` = B."""
        from refit_gym import distributed

        perm = draws.np_rng.permutation(np.arange(data.n_users))
        for s in range(0, len(perm), batch_size):
            users = perm[s:s + batch_size]
            lo, hi = distributed.shard_bounds(len(users))
            cond = torch.as_tensor(self.encode_condition(users[lo:hi], data.train[users[lo:hi]]), device=self.device)
            yield PretrainBatch({"users": users, "condition": cond}, float(len(users)))

    def pretrain_loss(self, batch: PretrainBatch, draws: PretrainDraws, cfg) -> torch.Tensor:
        """This rank's share of the global batch's mean loss (a scalar; the sum over ranks is the batch loss):
        :meth:`diffusion_loss` at indices drawn by ``draws.sampler`` (or uniformly with ``draws.gen``), divided
        by ``T p(i)`` (so the importance-sampled mean is unbiased), with ``cfg.reweight``. Under torch.distributed
        every rank draws the global batch's noise with ``draws.dev_gen`` and keeps its rows; the sampler records
        the global batch's per-user losses (a collective)."""
        from refit_gym import distributed

        users, cond = batch.inputs["users"], batch.inputs["condition"]
        n, T, device = len(users), self.schedule.steps, cond.device
        lo, hi = distributed.shard_bounds(n)
        if draws.sampler is not None:
            i, p = draws.sampler.sample(n, draws.gen, device)
        else:
            i = torch.randint(0, T, (n,), generator=draws.gen).to(device)
            p = torch.full((n,), 1.0 / T, device=device)
        u_t = torch.as_tensor(users[lo:hi], device=device)
        # one process draws the noise inside diffusion_loss; ranks draw the global batch's and keep their rows
        noise = torch.randn((n, self.action_dim), generator=draws.dev_gen, device=device)[lo:hi] \
            if distributed.active() else None
        per_user = self.diffusion_loss(cond, u_t, i[lo:hi], generator=draws.dev_gen, reweight=cfg.reweight, noise=noise)
        if draws.sampler is not None:
            draws.sampler.update(i, distributed.gather_rows(per_user.detach(), n))
        return (per_user / (T * p[lo:hi])).sum() / n


class HistoryAdapter(DenoiserAdapter):
    """Base of backbones that diffuse the user's history vector itself (DiffRec, CF-Diff).

    The condition is the binary visible-history vector (B, n_items); the chain starts from it
    (with noise at level ``sampling_steps`` if > 0) and ends at item scores.
    """

    condition_bounds = (0.0, 1.0)  # the binary visible-history vector

    def encode_condition(self, users: np.ndarray, visible: sp.csr_matrix, split: Optional[str] = None,
                         hidden_tail: Optional[np.ndarray] = None) -> np.ndarray:
        if visible.shape[1] != self.n_items:
            raise ValueError(f"visible items have {visible.shape[1]} columns; this backbone has {self.n_items} items")
        return np.asarray(visible.toarray(), dtype=np.float32)

    def start(self, condition, context, generator=None):
        k = int(self.schedule.cfg.sampling_steps)
        if k == 0:
            return condition.clone()
        i = torch.full((condition.shape[0],), k - 1, dtype=torch.long, device=condition.device)
        return self.schedule.q_sample(condition, i, generator=generator)

    def training_target(self, condition, context):
        return condition


class DiffRecAdapter(HistoryAdapter):
    """DiffRec: an MLP denoiser over the history vector (no extra conditioning).

    ``time_weights=[w_min, w_max]`` gives T-DiffRec (Wang et al., SIGIR 2023): the history vector that the chain
    starts from and pretraining reconstructs weighs each visible training item by its recency,
    :meth:`~refit_gym.data.InteractionData.recency_weights` (``w_min`` for a user's oldest training interaction,
    ``w_max`` for the newest); a visible item outside the training matrix (validation items under
    ``condition_on='train+valid'``) weighs ``w_max``. The weights are data tensors of the checkpoint (built by
    :meth:`from_data`), so a loaded backbone encodes exactly what it trained on. None: the binary history.
    """

    backbone_name = "diffrec"

    def __init__(self, n_items: int, schedule: Dict | ScheduleConfig = ScheduleConfig(),
                 hidden: Sequence[int] = (1000,), emb_size: int = 10, dropout: float = 0.5, norm: bool = False,
                 time_weights: Optional[Sequence[float]] = None, recency: Optional[sp.csr_matrix] = None):
        cfg = schedule if isinstance(schedule, ScheduleConfig) else ScheduleConfig(**schedule)
        super().__init__(cfg, n_items, n_items, n_items)
        if time_weights is not None:
            time_weights = [float(w) for w in time_weights]
            if len(time_weights) != 2 or not 0.0 <= time_weights[0] <= time_weights[1] <= 1.0:
                raise ValueError(f"time_weights={time_weights}: expected [w_min, w_max] with 0 <= w_min <= w_max <= 1")
        self._cfg = dict(n_items=int(n_items), schedule=cfg.to_dict(), hidden=[int(h) for h in hidden],
                         emb_size=int(emb_size), dropout=float(dropout), norm=bool(norm), time_weights=time_weights)
        self.time_weights = time_weights
        self.net = DiffRecMLP(n_items, hidden, emb_size, dropout, norm)
        if time_weights is not None:  # DiffRec without them holds no such buffers (its checkpoints load as before)
            self.set_recency(sp.csr_matrix((0, n_items), dtype=np.float32) if recency is None else recency)
        elif recency is not None:
            raise ValueError("recency weights given without time_weights")

    @classmethod
    def from_data(cls, data, **kwargs) -> "DiffRecAdapter":
        """Build for ``data`` (an InteractionData, or a dataset with an ``interactions()`` view): with
        ``time_weights``, the recency weights of its training matrix."""
        data = as_interactions(data)
        kwargs.setdefault("n_items", data.n_items)
        weights = kwargs.get("time_weights", inspect.signature(cls.__init__).parameters["time_weights"].default)
        if weights is not None:
            kwargs["recency"] = data.recency_weights(*weights)
        return cls(**kwargs)

    def set_recency(self, recency: sp.csr_matrix) -> None:
        """Hold the ``(n_users, n_items)`` recency weights as CSR buffers (``recency_indptr``,
        ``recency_indices``, ``recency_values``)."""
        r = sp.csr_matrix(recency, dtype=np.float32)
        if r.shape[1] != self.n_items:
            raise ValueError(f"recency weights have {r.shape[1]} columns; this backbone has {self.n_items} items")
        for name, values, dtype in (("recency_indptr", r.indptr, torch.long), ("recency_indices", r.indices, torch.long),
                                    ("recency_values", r.data, torch.float32)):
            self.register_buffer(name, torch.tensor(np.ascontiguousarray(values), dtype=dtype))  # a copy, contiguous

    def data_tensors(self):
        if self.time_weights is None:
            return {}
        return {"recency_indptr": self.recency_indptr, "recency_indices": self.recency_indices,
                "recency_values": self.recency_values}

    def encode_condition(self, users: np.ndarray, visible: sp.csr_matrix, split: Optional[str] = None,
                         hidden_tail: Optional[np.ndarray] = None) -> np.ndarray:
        binary = super().encode_condition(users, visible, split, hidden_tail)
        if self.time_weights is None:
            return binary
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        n_held = len(self.recency_indptr) - 1
        if users.size and (users.min() < 0 or users.max() >= n_held):
            raise ValueError(f"user {int(users[(users < 0) | (users >= n_held)][0])} has no recency weights (held "
                             f"users: {n_held}); build the backbone with from_data")
        recency = sp.csr_matrix((self.recency_values.cpu().numpy(), self.recency_indices.cpu().numpy(),
                                 self.recency_indptr.cpu().numpy()), shape=(n_held, self.n_items))[users]
        stored = sp.csr_matrix((np.ones(recency.nnz, np.float32), recency.indices, recency.indptr),
                               shape=recency.shape).toarray() > 0  # the pattern, explicit zeros (w_min = 0) included
        # visible training items take their weight, any other visible item the newest weight w_max
        return np.where(stored, recency.toarray(), self.time_weights[1]).astype(np.float32) * binary

    def denoise(self, x, i, context):
        return self.net(x, i)

    def config(self):
        return dict(self._cfg)


class TDiffRecAdapter(DiffRecAdapter):
    """T-DiffRec (Wang et al., SIGIR 2023): :class:`DiffRecAdapter` with ``time_weights=[0.1, 1.0]`` by default, the
    history weighted by recency (registered name ``"t-diffrec"``, its own environment id and rows)."""

    backbone_name = "t-diffrec"

    def __init__(self, n_items: int, time_weights: Optional[Sequence[float]] = (0.1, 1.0), **kwargs):
        super().__init__(n_items, time_weights=time_weights, **kwargs)


class CFDiffAdapter(HistoryAdapter):
    """CF-Diff-style: the denoiser also attends to the user's multi-hop signals ``[c, c G, c G^2, ...]``.

    ``G`` (the normalised item-item graph of the training data, top-M per row, see
    :func:`refit_gym.data.graph.item_item_graph`) is held as a sparse buffer, so hop signals are
    computed from the condition on the fly at O(B * nnz(G)) cost and held-out items never enter.
    The torch sparse matrix used by :meth:`context` is built from the buffers once and cached (see
    :meth:`_graph_t`).
    """

    backbone_name = "cfdiff"

    def __init__(self, n_items: int, schedule: Dict | ScheduleConfig = ScheduleConfig(), n_hops: int = 3,
                 d_model: int = 256, heads: int = 4, emb_size: int = 16, dropout: float = 0.5, top_m: int = 50,
                 graph: Optional[sp.csr_matrix] = None):
        cfg = schedule if isinstance(schedule, ScheduleConfig) else ScheduleConfig(**schedule)
        super().__init__(cfg, n_items, n_items, n_items)
        self._cfg = dict(n_items=int(n_items), schedule=cfg.to_dict(), n_hops=int(n_hops), d_model=int(d_model),
                         heads=int(heads), emb_size=int(emb_size), dropout=float(dropout), top_m=int(top_m))
        self.net = CFDiffDenoiser(n_items, n_hops, d_model, heads, emb_size, dropout)
        if graph is None:
            graph = sp.csr_matrix((n_items, n_items), dtype=np.float32)
        self.set_graph(graph)

    @classmethod
    def from_data(cls, data, **kwargs) -> "CFDiffAdapter":
        """Build with the item-item graph of the training matrix of ``data`` (an InteractionData, or
        a dataset with an ``interactions()`` view)."""
        data = as_interactions(data)
        top_m = int(kwargs.get("top_m", 50))
        return cls(n_items=data.n_items, graph=item_item_graph(data.train, top_m), **kwargs)

    def set_graph(self, graph: sp.csr_matrix) -> None:
        g = sp.coo_matrix(graph)
        if g.shape != (self.n_items, self.n_items):
            raise ValueError(f"graph shape {g.shape} does not match n_items={self.n_items}")
        self.register_buffer("graph_indices", torch.as_tensor(np.vstack([g.row, g.col]), dtype=torch.long))
        self.register_buffer("graph_values", torch.as_tensor(g.data, dtype=torch.float32))
        self._graph_cache = None

    def data_tensors(self):
        return {"graph_indices": self.graph_indices, "graph_values": self.graph_values}

    def _apply(self, fn, *args, **kwargs):  # .to(), .cuda(), .cpu(), .double(), ...: buffers may move or change
        self._graph_cache = None
        return super()._apply(fn, *args, **kwargs)

    def _graph_t(self) -> torch.Tensor:
        """The coalesced sparse ``(n_items, n_items)`` matrix ``G^T`` (so that a hop is ``(G^T @ c^T)^T = c @ G``)
        on the buffers' device and dtype.

        Built once and cached; rebuilt after the module is moved or cast (``.to()`` and the like clear the
        cache) and whenever either buffer is replaced (:meth:`set_graph`, checkpoint loading) or modified in
        place (``load_state_dict``), detected by identity and version counter as ``DreamRecAdapter._np`` does.
        """
        idx, val = self.graph_indices, self.graph_values
        versions = (idx._version, val._version)
        cached = getattr(self, "_graph_cache", None)
        if cached is not None and cached[0] is idx and cached[1] is val and cached[2] == versions:
            return cached[3]
        # indices come from a validated scipy matrix: opt out of the invariant checks explicitly (silences a warning)
        gt = torch.sparse_coo_tensor(idx.flip(0), val, (self.n_items, self.n_items), check_invariants=False).coalesce()
        self._graph_cache = (idx, val, versions, gt)
        return gt

    def context(self, condition, users=None):
        """Hop signals ``(B, n_hops, n_items)``: the condition, then c G^k max-normalised per row."""
        hops = [condition]
        if self._cfg["n_hops"] > 1:
            Gt = self._graph_t()
            cur = condition
            for _ in range(1, self._cfg["n_hops"]):
                cur = torch.sparse.mm(Gt, cur.t()).t()
                cur = cur / cur.abs().amax(dim=-1, keepdim=True).clamp_min(1e-12)
                hops.append(cur)
        return torch.stack(hops, dim=1)

    def denoise(self, x, i, context):
        return self.net(x, i, context)

    def config(self):
        return dict(self._cfg)


BACKBONES: Dict[str, type] = {"diffrec": DiffRecAdapter, "t-diffrec": TDiffRecAdapter, "cfdiff": CFDiffAdapter}


def register_backbone(cls: type) -> type:
    """Class decorator: make an adapter class buildable by name and loadable from checkpoints."""
    if not (isinstance(cls, type) and issubclass(cls, DenoiserAdapter)):
        raise TypeError(f"{cls!r} is not a DenoiserAdapter subclass")
    BACKBONES[cls.backbone_name] = cls
    return cls


def build_backbone(name: str, data=None, **kwargs) -> DenoiserAdapter:
    """Build a fresh backbone by name. ``data`` supplies sizes, graphs or sequences: it is handed as given to
    the class's ``from_data`` (an InteractionData, or a SequentialData for sequence backbones)."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {sorted(BACKBONES)}")
    cls = BACKBONES[name]
    if hasattr(cls, "from_data") and data is not None:
        return cls.from_data(data, **kwargs)
    if data is not None:
        kwargs.setdefault("n_items", data.n_items)
    return cls(**kwargs)
