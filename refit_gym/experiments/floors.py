"""FLOP floors of the main operations of a backbone (see :mod:`refit_gym.experiments.cost`, which times them).

FLOPs are counted from the model's shapes with :class:`torch.utils.flop_counter.FlopCounterMode` on a
probe batch of a few users (matmul FLOPs are linear in the rows; the context's on a sample of users, as its
cost may follow each user's history length), as per-row units (:class:`UnitFlops`):
``ctx`` (the condition encoder, e.g. DreamRec's Transformer; DiffRec: none), ``step`` (one denoiser
pass), ``score`` (item scores of a final state; DiffRec: identity), each forward and backward (the
backward counts only the gradients a trained pass needs: parameters and, for ``score``, its input; a fine-tuning
recipe's units are counted on its own agent's backbone, so the parameters it freezes, e.g. DreamRec-CE's encoder and
item table under Pathwise, count no backward).
Sparse products (CF-Diff's hop signals), top-k and element-wise work are not counted. The floors:

* evaluation: ``users x (ctx + T steps + score)`` forward;
* pretraining: one forward + backward of the training objective per user (probe of the objective itself);
  sequence backbones: the all-prefix objective, the encoder counted on every training row plus a per-pair part;
* fine-tuning, per rollout of N chains for G = N / n_traj_per_user users (K trained steps): G x ctx
  (+ backward when trained); the T - K frozen steps forward, once per user when a user's copies start from one
  x_T (the environment starts the copies of one episode key from one draw) else per chain; the K trained steps forward + backward once per chain
  (each pass counted once: ReFiT recomputes the trained steps' log-probabilities with gradients after a no-grad
  rollout, which its one update per rollout does not need, as the rollout could keep its graph); DDPO's sampling
  pass, the K steps forward once per chain, which it cannot skip: it steps the optimizer after every minibatch,
  so each minibatch's log-probabilities need the parameters that its predecessor's step made, while its states
  come from the sampling pass. DDPO's further epochs are counted, and so is the context of each DDPO minibatch's
  users after the first, as the parameters change between minibatches;
  the frozen reference's K steps when ``kl_coef > 0``; the terminal scores (+ backward: Pathwise; its half to the parameters: score_grad).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from refit_gym.diffusion.context import context_tensors, detach_context
from refit_gym.diffusion.objective import make_draws


# ---------------------------------------------------------------------------------------------- FLOP counting
def count_flops(fn: Callable[[], Any]) -> int:
    """Matmul FLOPs (2 per multiply-add, as counted by ``FlopCounterMode``, plus the in-place ``addmm_`` it misses, with
    which :func:`refit_gym.scores.low_rank_logsumexp` accumulates its item-factor gradient) of running ``fn()``."""
    inplace = {torch.ops.aten.addmm_: lambda self_shape, a, b, out_shape=None, **kw: 2 * a[0] * a[1] * b[1]}
    with FlopCounterMode(display=False, custom_mapping=inplace) as mode:
        fn()
    return int(mode.get_total_flops())


def _grad_tensors(obj: Any) -> List[torch.Tensor]:
    """The floating tensors of a context (tensor, dict, tuple, list) that carry a gradient."""
    return [t for t in context_tensors(obj) if t.requires_grad]


def _backward_flops(outputs: List[torch.Tensor]) -> int:
    """FLOPs of back-propagating ``sum(o.sum() for o in outputs)`` (0 when nothing carries a gradient)."""
    outputs = [o for o in outputs if o.requires_grad]
    return count_flops(lambda: sum(o.float().sum() for o in outputs).backward()) if outputs else 0


@dataclass
class UnitFlops:
    """Matmul FLOPs per row (one user or chain) of the backbone's parts; see the module docstring.

    ctx_fwd / ctx_bwd: the context (condition encoder) forward / its parameters' backward.
    step_fwd / step_bwd: one denoiser pass ``denoise(x_i, i, ctx)`` / its parameters' backward.
    score_fwd / score_bwd: item scores of a final state / backward to the state and the parameters.
    """

    ctx_fwd: float
    ctx_bwd: float
    step_fwd: float
    step_bwd: float
    score_fwd: float
    score_bwd: float


def probe_conditions(adapter, data, users: np.ndarray, split: Optional[str] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(condition (B, C), users (B,))`` tensors of ``users`` conditioned on their train items."""
    from refit_gym.data.dataset import as_interactions

    visible = as_interactions(data).train[users]
    cond = torch.as_tensor(adapter.encode_condition(users, visible, split=split), device=adapter.device)
    return cond, torch.as_tensor(users, device=adapter.device)


def unit_flops(adapter, data, probe: int = 8, context_sample: int = 256) -> UnitFlops:
    """Count :class:`UnitFlops` (the adapter is left in eval mode, its gradients cleared): the denoiser and the
    scores on the first ``probe`` users of ``data``; the context per user averaged over ``context_sample``
    evenly spaced users, because its cost may follow the user (DreamRec's encoder runs each history's real
    length, not the padded width). The context counted is the full train history's (evaluation's condition);
    fine-tuning on prefix targets encodes shorter prefixes, so there the floor counts more than it runs."""
    adapter.eval()
    n = min(int(context_sample), int(data.n_users))
    sample = np.unique(np.linspace(0, data.n_users - 1, n).round().astype(np.int64))
    cond_s, users_s = probe_conditions(adapter, data, sample)
    box: Dict[str, Any] = {}
    f = {"ctx_fwd": count_flops(lambda: box.__setitem__("ctx", adapter.context(cond_s, users_s))) / len(sample)}
    f["ctx_bwd"] = _backward_flops(_grad_tensors(box["ctx"])) / len(sample)
    b = min(int(probe), int(data.n_users))
    cond, users = probe_conditions(adapter, data, np.arange(b))
    with torch.no_grad():
        ctx = detach_context(adapter.context(cond, users))
    x = adapter.start(cond, ctx, torch.Generator(adapter.device).manual_seed(0)).detach()
    i = torch.full((b,), adapter.schedule.steps // 2, dtype=torch.long, device=x.device)
    f["step_fwd"] = count_flops(lambda: box.__setitem__("out", adapter.denoise(x, i, ctx)))
    f["step_bwd"] = _backward_flops([box["out"]])
    x0 = x.clone().requires_grad_(True)
    f["score_fwd"] = count_flops(lambda: box.__setitem__("s", adapter.scores(x0, ctx)))
    f["score_bwd"] = _backward_flops([box["s"]])
    adapter.zero_grad(set_to_none=True)
    return UnitFlops(**{k: v if k.startswith("ctx") else v / b for k, v in f.items()})  # ctx: already per user


def evaluation_flops(u: UnitFlops, steps: int, n_users: int) -> float:
    """Floor of evaluating ``n_users`` users: context, ``steps`` reverse steps and item scores, forward only."""
    return n_users * (u.ctx_fwd + steps * u.step_fwd + u.score_fwd)


def pretrain_epoch_flops(adapter, data, probe: int = 8, batch_size: int = 256) -> float:
    """Floor of one pretraining epoch: forward + backward of the training objective once per user.

    History backbones: ``adapter.diffusion_loss`` on a probe of ``probe`` users, times ``n_users / probe``.
    Sequence backbones (``sequence_loss``, all prefixes): the rows of one epoch as ``adapter.pretrain_batches``
    yields them, their ``sequence_states`` (the encoder, whose cost follows each row's length) forward + backward
    counted on every row, plus the denoiser and item scores of every (prefix, next item) pair at the per-pair
    FLOPs of the ``probe`` shortest and longest rows.
    """
    was_training = adapter.training
    adapter.train()
    try:
        if hasattr(adapter, "sequence_loss"):
            # the epoch's rows exactly as pretraining reads them (one PretrainBatch input = (seq, buckets))
            batches = [b.inputs for b in adapter.pretrain_batches(data, batch_size, make_draws(0, adapter.device, None))]
            seq = torch.cat([s for s, _ in batches])
            buckets = None if batches[0][1] is None else torch.cat([bk for _, bk in batches])
            pairs = (seq[:, 1:] != adapter.pad_id).sum(dim=1).cpu().numpy()  # (prefix, next item) pairs per row

            def count_rows(rows, states_only: bool) -> int:
                s, bk = seq[rows], None if buckets is None else buckets[rows]
                if states_only:
                    return count_flops(lambda: adapter.sequence_states(s, bk).sum().backward())
                gen = torch.Generator(adapter.device).manual_seed(0)
                return count_flops(lambda: adapter.sequence_loss(s, bk, gen).backward())

            # the encoder states of every row (their cost follows each row's length), batch by batch; the denoiser
            # and scores per (prefix, next item) pair, from the shortest and longest probes less their states part
            states = sum(count_flops(lambda: adapter.sequence_states(s, bk).sum().backward()) for s, bk in batches)
            order = np.argsort(pairs, kind="stable")
            b = min(int(probe), len(order))
            rows = torch.as_tensor(np.unique(np.concatenate([order[:b], order[-b:]])))
            n_pairs = float(pairs[rows.numpy()].sum())
            per_pair = (count_rows(rows, False) - count_rows(rows, True)) / n_pairs if n_pairs else 0.0
            return float(states + per_pair * pairs.sum())
        b = min(int(probe), int(data.n_users))
        cond, users = probe_conditions(adapter, data, np.arange(b))
        i = torch.full((b,), adapter.schedule.steps // 2, dtype=torch.long, device=adapter.device)
        gen = torch.Generator(adapter.device).manual_seed(0)
        flops = count_flops(lambda: adapter.diffusion_loss(cond, users, i, generator=gen).mean().backward())
        return flops / b * data.n_users
    finally:
        adapter.zero_grad(set_to_none=True)
        adapter.train(was_training)


@dataclass(frozen=True)
class RecipeShape:
    """The batch shapes of one rollout + update of a fine-tuning recipe, read from its hyperparameters once for the
    floor and the bare passes: ``N`` chains, ``n`` copies of each of ``G = N / n`` users, the last ``K`` of ``T``
    reverse steps trained, ``epochs`` passes over the ``K * N`` stored transitions in minibatches of ``batch`` rows
    (DDPO; the other recipes: one pass, one batch of all of them), a KL reference or not."""

    N: int
    n: int
    T: int
    K: int
    batch: int
    epochs: int
    kl: bool

    @property
    def G(self) -> int:
        return self.N // self.n

    @classmethod
    def of(cls, steps: int, algo: str, params: Dict[str, Any]) -> "RecipeShape":
        N = int(params.get("n_envs", 16))
        k = params.get("train_last_k", None)
        K = steps if k is None else min(int(k), steps)
        ddpo = algo == "ddpo"
        return cls(N=N, n=int(params.get("n_traj_per_user", 4 if algo in ("refit", "ddpo") else 1)), T=int(steps), K=K,
                   batch=int(params["batch_size"]) if ddpo and params.get("batch_size") else K * N,
                   epochs=int(params.get("n_epochs", 1)) if ddpo else 1, kl=float(params.get("kl_coef", 0.0)) > 0)


def recipe_rollout_flops(u: UnitFlops, steps: int, algo: str, params: Dict[str, Any], shared_start: bool
                         ) -> Dict[str, float]:
    """Floor of one rollout + update of a fine-tuning recipe (``params``: its hyperparameters), by part.

    Returns ``{"context", "frozen_steps", "sampling", "trained_steps", "reference", "scores", "extra_epochs",
    "minibatch_context"}`` FLOPs (see the module docstring); their sum is the rollout's floor.
    """
    r = RecipeShape.of(steps, algo, params)
    N, G, K = r.N, r.G, r.K
    pathwise = algo == "pathwise"
    trained = N * K * (u.step_fwd + u.step_bwd)
    # DDPO steps the optimizer after every minibatch, so each minibatch recomputes the context of its users
    # with the current parameters: the expected number of distinct users among ``batch`` random rows of K * N
    rows = K * N
    n_mb = r.epochs * math.ceil(rows / r.batch)
    users_per_mb = G * (1 - (1 - 1 / G) ** min(r.batch, rows))
    return {
        "context": G * (u.ctx_fwd + u.ctx_bwd),
        "frozen_steps": (G if shared_start else N) * (steps - K) * u.step_fwd,
        "sampling": N * K * u.step_fwd if algo == "ddpo" else 0.0,
        "trained_steps": trained,
        "reference": (N * K * u.step_fwd + G * u.ctx_fwd) if r.kl else 0.0,
        "scores": N * (u.score_fwd + (u.score_bwd if pathwise else u.score_bwd / 2 if params.get("score_grad") else 0.0)),
        "extra_epochs": (r.epochs - 1) * trained,
        "minibatch_context": max(n_mb - 1, 0) * users_per_mb * (u.ctx_fwd + u.ctx_bwd),
    }


# ---------------------------------------------------------------------------------------------- machine rate
