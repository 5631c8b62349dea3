"""What a backbone's pretraining objective draws from: the random state of one run and the batches it yields.

The one pretraining loop (:func:`refit_gym.diffusion.training.pretrain`) owns a :class:`PretrainDraws` (made
by :func:`make_draws`, saved in ``last_state.pt`` and restored on resume) and asks the adapter for everything
backbone-specific (:class:`~refit_gym.diffusion.adapters.DenoiserAdapter`):

* ``adapter.pretrain_batches(data, batch_size, draws)`` yields the epoch's :class:`PretrainBatch` es (history
  backbones: shuffled users and their training rows; sequence backbones: shuffled training sequences);
* ``adapter.pretrain_loss(batch, draws, cfg)`` returns the scalar loss to back-propagate;
* ``adapter.pretrain_index_sampler(cfg)`` returns the :class:`ImportanceSampler` the loss draws diffusion
  indices from, or None;
* ``adapter.pretrain_grad_clip`` (the gradient-norm clip, or None) and ``adapter.pretrain_data_parallel``
  (whether it may run under torchrun).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

import numpy as np
import torch


class ImportanceSampler:
    """DiffRec-style importance sampling of diffusion indices.

    Keeps the last ``history`` squared losses per index; until every index has a full history it
    samples uniformly, then with probability proportional to ``sqrt(mean(L_i^2))`` mixed with
    ``uniform_prob`` of the uniform distribution. ``sample`` returns indices ``(B,)`` and their
    probabilities ``(B,)``; the loss is divided by ``T * p`` so its expectation is unchanged.
    """

    def __init__(self, steps: int, history: int = 10, uniform_prob: float = 1e-3):
        self.steps, self.history, self.uniform_prob = steps, history, uniform_prob
        self.loss_sq = np.zeros((steps, history), dtype=np.float64)
        self.count = np.zeros(steps, dtype=np.int64)

    def probs(self) -> np.ndarray:
        if (self.count < self.history).any():
            return np.full(self.steps, 1.0 / self.steps)
        w = np.sqrt(self.loss_sq.mean(axis=1))
        w = w / w.sum()
        return w * (1 - self.uniform_prob) + self.uniform_prob / self.steps

    def sample(self, batch: int, gen: torch.Generator, device) -> tuple:
        p = torch.as_tensor(self.probs(), dtype=torch.float64)
        i = torch.multinomial(p, batch, replacement=True, generator=gen)
        return i.to(device), p[i].to(device=device, dtype=torch.float32)

    def update(self, i: torch.Tensor, loss: torch.Tensor) -> None:
        """Record per-user losses ``loss`` (B,) at indices ``i`` (B,) (last ``history`` kept per index)."""
        i_np, l_np = i.cpu().numpy(), loss.detach().double().cpu().numpy() ** 2
        for k in np.unique(i_np):  # at most T distinct indices per batch
            vals = l_np[i_np == k][-self.history:]
            self.loss_sq[k] = np.concatenate([self.loss_sq[k], vals])[-self.history:]
            self.count[k] = min(self.count[k] + len(vals), self.history)

    def state_dict(self) -> Dict:
        return {"loss_sq": torch.as_tensor(self.loss_sq), "count": torch.as_tensor(self.count)}

    def load_state_dict(self, s: Dict) -> None:
        self.loss_sq = s["loss_sq"].numpy().copy()
        self.count = s["count"].numpy().copy()


@dataclass
class PretrainDraws:
    """The random state of one pretraining run, every part seeded with the run's seed.

    Attributes:
        gen: CPU ``torch.Generator`` for index draws (diffusion indices, the order of sequences).
        dev_gen: generator on the training device for the Gaussian noise (``gen`` itself on CPU).
        np_rng: NumPy generator for the order of users (history backbones).
        sampler: the importance sampler of diffusion indices, or None (uniform indices).
        generators: ``name -> torch.Generator`` as stored in ``last_state.pt`` (``torch_gen``, and
            ``torch_dev_gen`` on a CUDA device).
    """

    gen: torch.Generator
    dev_gen: torch.Generator
    np_rng: np.random.Generator
    sampler: Optional[ImportanceSampler]
    generators: Dict[str, torch.Generator]


def seeded_generators(seed: int, device):
    """``(gen, dev_gen, named)``: a CPU generator for index draws (users, timesteps), a generator on ``device`` for
    the noise drawn there (``gen`` itself on CPU; torch refuses a CPU generator for a CUDA draw), both seeded
    with ``seed``, and the ``name -> generator`` keywords that ``rng_state`` / ``restore_rng_state``
    (:mod:`refit_gym.diffusion.train_state`) save."""
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    if device.type == "cpu":
        return gen, gen, {"torch_gen": gen}
    dev_gen = torch.Generator(device).manual_seed(seed)
    return gen, dev_gen, {"torch_gen": gen, "torch_dev_gen": dev_gen}


def make_draws(seed: int, device, sampler: Optional[ImportanceSampler]) -> PretrainDraws:
    """The :class:`PretrainDraws` of a run seeded with ``seed`` on ``device`` (torch generators from
    :func:`seeded_generators`, ``np.random.default_rng(seed)``) holding ``sampler``."""
    gen, dev_gen, named = seeded_generators(seed, device)
    return PretrainDraws(gen, dev_gen, np.random.default_rng(seed), sampler, named)


@dataclass
class PretrainBatch:
    """One step's inputs, as ``adapter.pretrain_batches`` yields them.

    Attributes:
        inputs: whatever the adapter's ``pretrain_loss`` reads (history backbones: ``{"users": (B,) int64 global
            batch, "condition": (b, condition_dim) tensor of this rank's rows}``; sequence backbones:
            ``(seq (B, L) int64, buckets (B, L) int64 | None)``).
        weight: the weight of this batch's loss in the epoch's mean ``train_loss`` (the users of the global batch
            for history backbones, 1 per batch for sequence backbones).
    """

    inputs: Any
    weight: float
