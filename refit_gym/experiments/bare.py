"""The floor's own passes, run: how near the engine gets to a FLOP floor at an operation's own shapes.

A FLOP floor (:mod:`refit_gym.experiments.floors`) assumes that every pass an operation needs runs at the machine's
measured matmul rate. How near torch gets to that rate at the shapes an operation runs (16 rows through DiffRec's
3.6 M weights, a d = 64 Transformer) is a property of the engine and the machine, not of this library. The functions
here run exactly the passes a floor counts, each once, through the backbone's own modules (``context``,
``reverse_step``, ``reward_scores``), on the recipe's batch shapes, plus the optimizer steps (gradient clipping and
fused Adam) the recipe takes, and nothing else: no environment, reward, guards, logging, no-grad rollout before a
recomputation, ranking or metrics (DDPO's sampling pass is a floor pass: its minibatches cannot reuse its graph).
Hence::

    measured / floor  =  (measured / bare)  x  (bare / floor)
                         what the library adds   what the engine needs at these shapes (the optimizer included)

The inputs (conditions, the chains' starts) are prepared before the clock starts; the values do not
matter for the time, so the chain's states are the adapter's own ``start`` and ``reverse_step`` outputs.
"""
from __future__ import annotations

import copy
import math
import time
from typing import Any, Dict

import numpy as np
import torch

from refit_gym.diffusion.context import detach_context, index_context
from refit_gym.experiments.floors import RecipeShape, probe_conditions
from refit_gym.scores import LowRankScores


def _full(i: int, rows: int, device) -> torch.Tensor:
    return torch.full((rows,), int(i), dtype=torch.long, device=device)


def bare_evaluation_seconds(adapter, data, users: np.ndarray, batch: int = 1024, max_seconds: float = 60.0) -> float:
    """Seconds of the evaluation floor's passes for ``users``: per batch of ``batch`` users the context, the chain's
    ``T`` reverse steps (their means) and the item scores, forward only (no ranking, no metrics). Batches are
    timed until ``max_seconds`` and the time is scaled to all users."""
    adapter.eval()
    T = adapter.schedule.chain_steps
    gen = torch.Generator(adapter.device).manual_seed(0)
    done, spent = 0, 0.0
    with torch.no_grad():
        for lo in range(0, len(users), batch):
            cond, u = probe_conditions(adapter, data, users[lo:lo + batch])
            t0 = time.perf_counter()
            ctx = adapter.context(cond, u)
            x = adapter.start(cond, ctx, gen)
            for i in range(T - 1, -1, -1):
                x = adapter.reverse_step(x, _full(i, len(u), x.device), ctx)[0]
            adapter.scores(x, ctx)
            spent += time.perf_counter() - t0
            done += len(u)
            if spent >= max_seconds:
                break
    return spent * len(users) / max(done, 1)


def _reduce(scores) -> torch.Tensor:
    """A scalar of the terminal scores as the reward reads them: factored scores through their chunked softmax
    normaliser (:class:`~refit_gym.scores.LowRankScores`: the product, and the gradients it needs, never the dense
    ``(B, n_items)`` matrix), dense ones by their mean."""
    if isinstance(scores, LowRankScores):
        return scores.logsumexp().mean()
    return scores.float().mean()


class _BareRecipe:
    """One fine-tuning recipe's floor passes on ``adapter`` (the agent's copy: the parameters it freezes do not
    require gradients). ``params``: the recipe's effective hyperparameters (as :func:`recipe_rollout_flops` reads
    them); ``shared``: whether a user's copies share the chain's start (then the frozen steps run once per user)."""

    def __init__(self, adapter, data, algo: str, params: Dict[str, Any], shared: bool, seed: int = 0):
        from refit_gym.utils import optimizer_kwargs

        # the denoiser in eval mode, as the policy keeps it (no dropout)
        self.adapter, self.data, self.algo, self.shared = adapter.eval(), data, algo, shared
        shape = RecipeShape.of(adapter.schedule.chain_steps, algo, params)  # the floor's own reading of params
        self.T, self.N, self.n, self.G, self.K = shape.T, shape.N, shape.n, shape.G, shape.K
        self.bs, self.epochs = shape.batch, shape.epochs
        self.score_grad = algo == "pathwise" or bool(params.get("score_grad"))
        self.max_norm = params.get("max_grad_norm")
        self.reference = copy.deepcopy(adapter).requires_grad_(False) if shape.kl else None
        self.trained = [p for p in adapter.parameters() if p.requires_grad]
        self.opt = torch.optim.Adam(self.trained, lr=1e-12, **optimizer_kwargs(torch.optim.Adam, self.trained))
        self.rng = np.random.default_rng(seed)
        self.gen = torch.Generator(adapter.device).manual_seed(seed)
        self.copies = torch.arange(self.G, device=adapter.device).repeat_interleave(self.n)

    def inputs(self) -> Dict[str, Any]:
        """A rollout's inputs, prepared off the clock: G users' conditions and their chains' start."""
        users = self.rng.choice(self.data.n_users, size=self.G, replace=self.G > self.data.n_users)
        cond, u = probe_conditions(self.adapter, self.data, users)
        with torch.no_grad():
            x = self.adapter.start(cond, detach_context(self.adapter.context(cond, u)), self.gen)
        return {"cond": cond, "users": u, "x": x}

    def step_optimizer(self) -> None:
        if self.max_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.trained, float(self.max_norm))
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def rollout(self, inp: Dict[str, Any]) -> None:
        """One rollout + update's floor passes (see the module docstring)."""
        ad, dev = self.adapter, inp["x"].device
        ctx = ad.context(inp["cond"], inp["users"])  # G rows, with a graph where the recipe trains the encoder
        x = inp["x"] if self.shared else inp["x"][self.copies]
        frozen_ctx = detach_context(ctx if self.shared else index_context(ctx, self.copies))
        with torch.no_grad():  # the frozen steps: once per user when the copies share the start
            for i in range(self.T - 1, self.K - 1, -1):
                x = ad.reverse_step(x, _full(i, len(x), dev), frozen_ctx)[0]
        if self.shared:
            x = x[self.copies]
        ctx_n = index_context(ctx, self.copies)
        if self.algo == "ddpo":
            return self._ddpo(inp, x, detach_context(ctx_n))
        loss = 0.0
        for i in range(self.K - 1, -1, -1):  # the trained steps, forward + backward once per chain
            mean = ad.reverse_step(x, _full(i, self.N, dev), ctx_n)[0]
            loss = loss + mean.float().mean()
            x = mean if self.algo == "pathwise" else mean.detach()  # Pathwise differentiates through the chain
        if self.reference is not None:  # the KL's reference: its context and the K steps, forward
            with torch.no_grad():
                ref_ctx = index_context(self.reference.context(inp["cond"], inp["users"]), self.copies)
                for i in range(self.K - 1, -1, -1):
                    self.reference.reverse_step(x.detach(), _full(i, self.N, dev), ref_ctx)
        if self.score_grad:
            loss = loss + _reduce(ad.reward_scores(x if self.algo == "pathwise" else x.detach(), ctx_n))
        else:
            with torch.no_grad():
                _reduce(ad.reward_scores(x.detach(), detach_context(ctx_n)))
        loss.backward()
        self.step_optimizer()

    def _ddpo(self, inp: Dict[str, Any], x: torch.Tensor, ctx_n: Any) -> None:
        """DDPO: the sampling pass (the K steps forward, each chain), then ``n_epochs`` passes over its K x N states
        in minibatches of ``batch_size``: each the context of its users, one step forward + backward, one optimizer
        step."""
        ad, dev = self.adapter, x.device
        states, steps = [], []
        with torch.no_grad():
            for i in range(self.K - 1, -1, -1):
                states.append(x)
                steps.append(_full(i, self.N, dev))
                x = ad.reverse_step(x, steps[-1], ctx_n)[0]
        states, steps = torch.cat(states), torch.cat(steps)
        chain = torch.arange(self.N, device=dev).repeat(self.K)  # stored transition r belongs to chain r % N
        for _ in range(self.epochs):
            order = torch.randperm(len(states), generator=self.gen, device=dev)
            for lo in range(0, len(states), self.bs):
                mb = order[lo:lo + self.bs]
                owners, local = torch.unique(self.copies[chain[mb]], return_inverse=True)  # the minibatch's users
                ctx = index_context(ad.context(inp["cond"][owners], inp["users"][owners]), local)
                ad.reverse_step(states[mb], steps[mb], ctx)[0].float().mean().backward()
                self.step_optimizer()


def bare_rollout_seconds(adapter, data, algo: str, params: Dict[str, Any], shared: bool, rollouts: int = 4,
                         max_seconds: float = 30.0, seed: int = 0) -> float:
    """Mean seconds of one rollout + update's floor passes of the ``algo`` recipe (``params``: its effective
    hyperparameters): one warm-up, then ``rollouts`` timed (fewer when they would exceed ``max_seconds``). The
    adapter is trained (its weights change by at most ``1e-12`` a step): pass a copy."""
    bare = _BareRecipe(adapter, data, algo, params, shared, seed)
    t0 = time.perf_counter()
    bare.rollout(bare.inputs())  # warm-up, and the estimate
    first = time.perf_counter() - t0
    n = max(1, min(int(rollouts), math.floor(max_seconds / max(first, 1e-9))))
    spent = 0.0
    for _ in range(n):
        inp = bare.inputs()
        t0 = time.perf_counter()
        bare.rollout(inp)
        spent += time.perf_counter() - t0
    return spent / n


__all__ = ["bare_evaluation_seconds", "bare_rollout_seconds"]
