"""ReFiT: REINFORCE fine-tuning of a diffusion recommender over whole denoising trajectories.

Each iteration (one rollout, one update):

1. **Rollout.** Draw ``n_envs / n_traj_per_user`` users and one episode key per user; every user is repeated
   ``n_traj_per_user`` times with the *same* key (same condition, same held-out items, and the same x_T: the
   environment starts the episodes that share ``(user, key)`` from one draw), so the copies differ only by the
   policy's noise. The frozen steps (``t > train_last_k``) then take the policy's mean once per user: common random
   numbers, so the group baseline removes every noise but the trained steps'; ``antithetic=True`` also pairs the
   copies' noise at the first trained step (``e`` and ``-e``). Run all T reverse steps of the
   :class:`~agents.policies.DenoiserPolicy` (the backbone's own Gaussian reverse step) through the environment and
   keep, for the trained steps (the last ``train_last_k``, default all), the states ``x_t``, the actions
   ``x_{t-1}``, their log-probabilities and the means of a frozen copy of the pretrained denoiser (the KL reference;
   only when ``kl_coef > 0``). The reward arrives at the terminal step.
2. **Advantages.** ``baseline="group"``: ``(R - mean_group(R)) / (std_group(R) + eps)`` over the copies of a user
   (DDPO's per-prompt normalisation; ``normalize_advantage=False``: ``R - mean_group(R)``, which keeps the reward's
   scale, so copies whose rewards barely differ contribute little); ``"value"``: ``R - V(x_t, t)`` with the policy's
   value head (trained by MSE to R); ``"none"``: ``R``.
3. **Loss.** ``-mean_n(sum_t A_{n,t} log pi(a_{n,t} | s_{n,t})) + kl_coef * mean_n(sum_t KL_{n,t})`` with the
   closed-form KL of two Gaussians with the same std, ``KL(pi_t || ref_t) = ||mu_t - mu_ref_t||^2 / (2 sigma_t^2)``
   (summed or averaged over the D dimensions, like the log-probabilities, per ``log_prob_reduction``). The
   log-probabilities are recomputed with gradients in chunks of ``batch_size`` (state, action) rows whose gradients
   are accumulated, so memory does not grow with T; the importance ratio of the recomputation is logged (it is
   exactly 1 unless the policy is nondeterministic). Gradient norm clipped to ``max_grad_norm``, one optimizer step.

Per-item credit assignment (``credit="item"``)
----------------------------------------------
With ``credit="trajectory"`` (the default) every item dimension of an action is credited with the
whole scalar reward ``R``: for a D-dimensional Gaussian action the score-function estimator's
signal-to-noise ratio per item falls like ``1/sqrt(D)``, D the number of items. Many rewards are sums of
per-item terms, ``R(x0) = sum_j r_j(x0)`` with ``r_j`` depending (mainly) on ``x0_j``
(:meth:`refit_gym.rewards.Reward.item_terms`). When only the last reverse step is stochastic
(``train_last_k=1``), ``x0 ~ N(mu_theta(x1, 1, cond), sigma^2 I)`` factorises over items and
``E[(R - r_j) d log pi_j(x0_j) / d theta] = 0`` when the other terms do not depend on ``x0_j``; so
``credit="item"`` uses the Rao-Blackwellised estimator

    g = (1/N) sum_n sum_j A_nj grad log pi_j(x0_nj | x1_n, cond_n),
    A_nj = (r_nj - mean_group(r_j)) / (std_group(R) + eps)        (baseline="group")
    A_nj = r_nj                                                    (baseline="none")

(loss ``-(1/N) sum_n sum_j A_nj log pi_j``, divided by D with ``log_prob_reduction="mean"``). The
per-item baseline is the mean of ``r_j`` over the user's copies and the scale the trajectory path's, so
``sum_j A_nj`` is exactly the trajectory advantage. Unbiased for separable rewards ("reconstruction", linear
ones) with variance lower by a factor of order D; coupled terms (``GraphScoreReward``'s standardisation) carry
that reward's documented O(1/|N|) bias. It uses reward values only, never their gradients. Requirements
(ValueError otherwise): ``train_last_k=1`` (earlier steps mix the items), a reward with per-item terms, a
``BatchedDenoisingEnv`` used directly (``terminal_item_terms()``), a backbone whose action is the item-score
vector (``action_dim == n_items``, identity ``scores``: DiffRec), ``baseline`` "group" or "none". The std of the
item advantages is logged as ``train/item_adv_std``.

:class:`~agents.ddpo.DDPO` reuses the rollout and replaces step 3 with clipped importance-ratio
updates.

Data parallel under ``torchrun`` (:mod:`refit_gym.distributed`, :mod:`agents.chain`): each rank's environment
holds ``n_envs`` chains of a global batch of ``n_envs * world_size``; users are sharded whole (a user's copies,
hence its group baseline and per-item baselines, stay on one rank), policy noise is drawn for the global batch
and each rank keeps its rows, the losses divide by the global ``N`` (and ``K * N``), and gradients, loss totals
and the logged statistics (reward mean / std, importance ratios, ``item_adv_std``) are reduced over the ranks,
so an update equals one process's with ``n_envs * world_size`` environments. ``batch_size`` chunks are per rank.

Non-finite values (actions, rewards, losses, gradient norms) stop training with
:class:`NonFiniteTrainingError` *before* the optimizer step, so the model in memory and every
checkpoint written so far hold the last good parameters; exploding actions (finite, beyond the action
box) stop it with :class:`agents.guards.DivergenceError` (a subclass) before the environment sees them.
``load`` never unpickles code from the file (:func:`refit_gym.io_safety.sb3_load`).

The agent is a :class:`stable_baselines3.common.base_class.BaseAlgorithm`: ``learn``, ``predict``,
``save``/``load`` (zip with policy, optimizer, reference, RNG state and ``num_timesteps``),
``set_env``/``get_env``, SB3 callbacks and the SB3 logger (TensorBoard with ``tensorboard_log``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import torch
from stable_baselines3.common.callbacks import BaseCallback

from agents.chain import ChainAlgorithm, ChainConfig, NonFiniteTrainingError
from agents.trajectories import Trajectories
from refit_gym import distributed
from refit_gym.diffusion.adapters import DenoiserAdapter
from refit_gym.diffusion.context import index_context

__all__ = ["BASELINES", "CREDITS", "NonFiniteTrainingError", "ReFiT", "ReFiTConfig", "Trajectories"]
BASELINES = ("group", "value", "none")
#: ``credit`` options: the whole reward credited to every item dimension, or per-item reward terms
CREDITS = ("trajectory", "item")


@dataclass
class ReFiTConfig(ChainConfig):
    """ReFiT's hyperparameters (see the module docstring)."""

    baseline: str = "group"
    """advantage baseline: group (the copies of a user; n_traj_per_user >= 2), value (the value head) or none"""
    credit: str = "trajectory"
    """credit of the reward: trajectory (every item dimension gets the whole reward) or item (per-item terms)"""
    normalize_advantage: bool = True
    """baseline="group": divide by the copies' reward std (DDPO's per-prompt normalisation); False keeps the reward's
    scale, ``R - mean_group(R)``, the plain baseline-corrected estimator of grad E[R]"""
    vf_coef: float = 0.5
    """weight of the value loss (baseline="value" only)"""
    batch_size: Optional[int] = None
    """(step, trajectory) rows per gradient-accumulation chunk (None: one chunk)"""
    score_grad: bool = False
    """also follow the exact reward gradient in the parameters that score the final state (adapter.scores)"""
    antithetic: bool = False
    """mirrored noise at the first trained step, whose state the copies of a user share: half of them take the negated
    noise of the other half, so the estimate is a sum of central differences ``(R(mu + s e) - R(mu - s e)) e``"""

    @property
    def min_traj_per_user(self) -> int:
        return 2 if self.baseline == "group" else 1

    def check(self) -> None:
        if self.baseline not in BASELINES:
            raise ValueError(f"baseline={self.baseline!r}: expected one of {BASELINES}")
        if self.credit not in CREDITS:
            raise ValueError(f"credit={self.credit!r}: expected one of {CREDITS}")
        if self.credit == "item" and self.baseline == "value":
            raise ValueError("credit='item' needs baseline='group' (per-item group means) or 'none': the value head "
                             "predicts the scalar reward, not per-item terms")
        if self.credit == "item" and self.train_last_k != 1:
            raise ValueError(f"credit='item' needs train_last_k=1 (got {self.train_last_k!r}): only "
                             "the last reverse step x1 -> x0 factorises over items; earlier steps mix the items through "
                             "the denoiser, so per-item reward terms are not valid credit for them")
        if not self.vf_coef >= 0:
            raise ValueError(f"need vf_coef >= 0; got {self.vf_coef}")
        if self.antithetic and self.n_traj_per_user % 2:
            raise ValueError(f"antithetic=True needs an even n_traj_per_user (pairs); got {self.n_traj_per_user}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size}: must be >= 1 (or None)")
        super().check()


class ReFiT(ChainAlgorithm):
    """REINFORCE fine-tuning of a diffusion backbone (see the module docstring; the construction, the
    loop, saving and loading are :class:`~agents.chain.ChainAlgorithm`'s, the hyperparameters
    :class:`ReFiTConfig`'s).

    ``credit="item"`` (see the module docstring) needs ``train_last_k=1``, a reward with ``item_terms``, a
    ``BatchedDenoisingEnv`` and ``baseline`` "group" or "none". ``score_grad=True`` adds the exact gradient of
    the reward in the parameters that *score* the final state (``adapter.scores``, e.g. DreamRec's item
    embeddings), the final states held fixed: ``grad E[R_theta(x0)] = E[R grad log pi] + E[grad_theta R_theta(x0)]``;
    the chain itself still learns by REINFORCE only. It needs a ``BatchedDenoisingEnv`` and a differentiable
    reward, and is a no-op for backbones whose ``scores`` has no parameters (DiffRec's identity).
    """

    config_class = ReFiTConfig
    supports_distributed = True

    def _check_env(self) -> None:
        """Raise ValueError for an unusable pairing: ``score_grad`` without a differentiable terminal reward;
        ``credit="item"`` unless the backbone's action is the item-score vector and (when there is an
        environment) the environment can hand over per-item reward terms."""
        if getattr(self, "score_grad", False) and self.env is not None and \
                (reason := self.driver.terminal_reward_unavailable()) is not None:
            raise ValueError(f"score_grad=True: {reason}")
        if getattr(self, "credit", "trajectory") != "item":
            return
        denoiser = self.policy.denoiser
        if denoiser.action_dim != denoiser.n_items or type(denoiser).scores is not DenoiserAdapter.scores:
            raise ValueError(f"credit='item' needs a backbone whose action x0 is the item-score vector (action_dim == "
                             f"n_items, identity scores(), as DiffRec's); {type(denoiser).__name__} has action_dim="
                             f"{denoiser.action_dim} for {denoiser.n_items} items")
        if self.env is not None:
            reason = self.driver.item_terms_unavailable()
            if reason is not None:
                raise ValueError(f"credit='item': {reason}")

    # ------------------------------------------------------------------ rollout
    @torch.no_grad()
    def collect_trajectories(self, callback: BaseCallback) -> Optional[Trajectories]:
        """Roll out one batch of whole denoising chains (see the module docstring). Returns None when
        a callback asked to stop."""
        self.policy.set_training_mode(False)
        T, K, D = self.policy.steps, self.trained_steps, self.policy.denoiser.action_dim
        users, keys = self._draw_episodes()
        obs = self.driver.reset(users, keys)
        x, condition, users_t = obs["x"], obs["condition"], obs["user"].reshape(-1)
        N = x.shape[0]
        ctx_index = self._shared_conditions(condition, users_t)
        ctx, fixed_ctx = self._rollout_context(
            lambda: self._context_once(self.policy.denoiser, condition, users_t, ctx_index))
        use_ref = self.kl_coef > 0  # kl_coef = 0: the reference's forward passes are skipped (no KL to log)
        ref_ctx = None if not use_ref else ctx if fixed_ctx else \
            self._context_once(self.reference, condition, users_t, ctx_index)
        # The frozen steps (t > K) are deterministic. When the copies of a user also start from the
        # same x_T, they stay identical until step K: compute those steps once per user, not per copy.
        n = self.n_traj_per_user
        grouped = x.view(-1, n, D)
        # every rank takes the shortcut or none: it changes how much noise is drawn from the shared generator
        same_start = (K < T or self.antithetic) and n > 1 and distributed.all_agree(
            bool((grouped == grouped[:, :1]).all()))
        if self.antithetic and not same_start:  # the pairs need one state per user at the first trained step
            raise ValueError("antithetic=True: the copies of a user start from different x_T")
        shared = K < T and same_start
        if shared:
            first = slice(None, None, n)
            ctx_first = index_context(ctx, torch.arange(0, N, n, device=self.device))  # each user's first copy
        xs = torch.empty((K + 1, N, D), device=self.device)
        log_prob = torch.empty((K, N), device=self.device)
        ref_mean = torch.empty((K, N, D), device=self.device) if use_ref else None
        rewards = None
        for t in range(T, 0, -1):
            t_vec = torch.full((N,), t, dtype=torch.long, device=self.device)
            if shared and t > K:
                mean = self.policy.step_distribution(x[first], t_vec[first], ctx_first).mode()
                action = mean.repeat_interleave(n, dim=0)
                dist = None
            else:
                dist = self.policy.step_distribution(x, t_vec, ctx)
                action = dist.sample(self._generator, self._rank_noise(dist.mean, self.antithetic and t == K))
            self._check_actions(action)
            if t <= K:
                s = K - t
                xs[s] = x
                log_prob[s] = dist.log_prob(action)
                if use_ref:
                    ref_mean[s] = self.reference.reverse_step(x, t_vec - 1, ref_ctx)[0]
            # score_grad: the terminal step computes the reward once, on the graph of the scoring parameters
            rewards, done = self.driver.step(action, keep_graph=self.score_grad and t == 1)
            self.num_timesteps += self.global_n_envs
            callback.update_locals(locals())
            if not callback.on_step():
                return None
            x = action
        if not done:
            raise RuntimeError(f"the environment did not terminate after T={T} steps")
        xs[K] = x
        self._check_finite("rewards", rewards)
        item_rewards = self.driver.terminal_item_terms().float() if self.credit == "item" else None
        if item_rewards is not None:
            self._check_finite("per-item rewards", item_rewards)
        with torch.enable_grad():  # score_grad: the graph the terminal step kept (collection runs without autograd)
            score_reward = self.driver.terminal_reward(x) if self.score_grad else None
        self._record_episodes(rewards, T)
        return Trajectories(users=users_t.long(), condition=condition, xs=xs,
                            t=torch.arange(K, 0, -1, device=self.device), log_prob=log_prob, ref_mean=ref_mean,
                            rewards=rewards.float(), item_rewards=item_rewards, ctx_index=ctx_index,
                            score_reward=score_reward, context=ctx if fixed_ctx else None)

    def _shared_conditions(self, condition: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        """``(N,)`` int64: for each chain, the first copy of its user when the two have the same user and
        condition (the copies of a user share its episode key), else the chain itself."""
        N, n = condition.shape[0], self.n_traj_per_user
        index = torch.arange(N, device=condition.device)
        if n == 1:
            return index
        first = index - index % n
        same = (condition == condition[first]).all(dim=-1) & (users == users[first])
        return torch.where(same, first, index)

    @staticmethod
    def _context_once(denoiser, condition: torch.Tensor, users: torch.Tensor, ctx_index: torch.Tensor) -> Any:
        """``denoiser.context`` of every chain, computed once per distinct ``ctx_index`` entry (see
        :meth:`_shared_conditions`): a condition encoder (DreamRec's Transformer) runs once per user, not per copy."""
        uniq, inverse = torch.unique(ctx_index, return_inverse=True)
        if len(uniq) == len(ctx_index):
            return denoiser.context(condition, users)
        return index_context(denoiser.context(condition[uniq], users[uniq]), inverse)

    # ------------------------------------------------------------------ advantages and losses
    def _row_batches(self, n_rows: int):
        """Index tensors of ``batch_size`` of this rank's ``n_rows`` rows, in order (all rows when batch_size is
        None): ReFiT's gradient-accumulation chunks, whose sizes do not change the update."""
        order = torch.arange(n_rows, device=self.device)
        size = n_rows if self.batch_size is None else self.batch_size
        return [order[i:i + size] for i in range(0, n_rows, size)]

    def _global_minibatches(self, traj: Trajectories, shuffle: bool = True) -> List[Tuple[torch.Tensor, int]]:
        """DDPO's minibatches: ``(local index, global size)`` per minibatch of ``batch_size`` flat rows of the
        *global* batch (all of them when batch_size is None), shuffled with the shared generator when ``shuffle``.

        A global row is ``s * N_global + n`` (step ``s``, chain ``n`` of the global batch, as on one process); each
        rank keeps the rows of its chains ``[chain_offset, chain_offset + N)`` as local indices ``s * N + n -
        chain_offset`` (possibly none), and a loss that is a minibatch mean divides its rows' sum by the global
        size, so the summed gradients equal one process's minibatch gradient."""
        n_local, n_global = traj.n_traj, traj.n_traj * distributed.world_size()
        n_rows = traj.n_steps * n_global
        g = self._generator
        order = torch.randperm(n_rows, generator=g, device=g.device).to(self.device) if shuffle \
            else torch.arange(n_rows, device=self.device)
        size = n_rows if self.batch_size is None else self.batch_size
        lo = self.chain_offset
        batches = []
        for i in range(0, n_rows, size):
            rows = order[i:i + size]
            step, chain = rows // n_global, rows % n_global
            mine = (chain >= lo) & (chain < lo + n_local)
            batches.append((step[mine] * n_local + chain[mine] - lo, len(rows)))
        return batches

    def _obs(self, rows: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        return {"x": rows["x"], "t": rows["t"].unsqueeze(-1), "user": rows["users"].unsqueeze(-1),
                "condition": rows["condition"]}

    def compute_advantages(self, traj: Trajectories) -> torch.Tensor:
        """Advantages ``(K, N)`` of every trained (step, trajectory) row (see ``baseline``)."""
        R = traj.rewards
        if self.baseline == "group":
            # float64: the copies' rewards may differ by ~1e-4 of their magnitude
            groups = R.double().view(-1, self.n_traj_per_user)
            mean, std = groups.mean(dim=1, keepdim=True), groups.std(dim=1, unbiased=False, keepdim=True)
            adv = ((groups - mean) / (std + 1e-8) if self.normalize_advantage else groups - mean).to(R.dtype)
            return adv.reshape(1, -1).expand(traj.n_steps, -1)
        if self.baseline == "none":
            return R.reshape(1, -1).expand(traj.n_steps, -1)
        values = torch.empty(traj.n_steps * traj.n_traj, device=self.device)
        with torch.no_grad():
            for index in self._row_batches(values.numel()):
                values[index] = self.policy.predict_values(self._obs(traj.rows(index))).reshape(-1)
        return R.reshape(1, -1) - values.view(traj.n_steps, traj.n_traj)

    def compute_item_advantages(self, traj: Trajectories) -> torch.Tensor:
        """Per-item advantages ``(N, n_items)`` (``credit="item"``, see the module docstring): ``baseline="group"``:
        ``(r_nj - mean_group(r_j)) / (std_group(R) + eps)`` (without the division when ``normalize_advantage`` is
        False), so that they sum over items to the trajectory advantage; ``"none"``: ``r_nj``."""
        if traj.item_rewards is None:
            raise ValueError("these trajectories carry no per-item rewards (collected with credit='trajectory')")
        r = traj.item_rewards
        if self.baseline == "none":
            return r
        n = self.n_traj_per_user
        # float32 is enough here (unlike the sums R): the copies' per-item terms differ by O(1) of their size
        groups = r.view(-1, n, r.shape[-1])
        adv = groups - groups.mean(dim=1, keepdim=True)
        if self.normalize_advantage:
            std = traj.rewards.double().view(-1, n).std(dim=1, unbiased=False)  # the trajectory path's per-user scale
            adv = adv / (std + 1e-8).to(r.dtype).view(-1, 1, 1)
        return adv.view_as(r)

    def evaluate_rows(self, rows: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        """Current log-probabilities ``(B,)``, KL to the reference ``(B,)`` and values ``(B,)`` (None
        unless ``baseline="value"``) of flat rows, with gradients. Without reference means
        (``rows["ref_mean"]`` None: ``kl_coef == 0``) the KL is a constant zero tensor ``(B,)``."""
        _, log_prob, kl = self._row_distribution(rows)
        values = self.policy.predict_values(self._obs(rows)).reshape(-1) if self.baseline == "value" else None
        return log_prob, kl, values

    def _row_distribution(self, rows: Dict[str, torch.Tensor]):
        """(the current step distribution, log-probabilities ``(B,)`` of the rows' actions, KL to the reference
        ``(B,)``: zeros without reference means) of flat rows, with gradients."""
        dist = self.policy.step_distribution(rows["x"], rows["t"], self._row_context(rows))
        log_prob = dist.log_prob(rows["action"])
        kl = torch.zeros_like(log_prob) if rows["ref_mean"] is None else dist.kl_to_mean(rows["ref_mean"])
        return dist, log_prob, kl

    def _row_context(self, rows: Dict[str, torch.Tensor]) -> Any:
        """The denoiser context of every row, computed once per distinct condition among the rows (with
        gradients): the K trained steps of a chain share one condition, and so do the copies of a user
        (``rows["ctx_traj"]``, see :meth:`_shared_conditions`), so the context (a Transformer pass for DreamRec)
        runs on at most N / n_traj_per_user rows instead of K * N."""
        if rows.get("ctx") is not None:  # a context no trained parameter reaches: the rollout's
            return rows["ctx"]
        traj = rows["ctx_traj"]
        uniq, inverse = torch.unique(traj, return_inverse=True)
        first = torch.empty(len(uniq), dtype=torch.long, device=traj.device)
        first.scatter_(0, inverse, torch.arange(len(traj), device=traj.device))  # a row of each trajectory
        ctx = self.policy.denoiser.context(rows["condition"][first], rows["users"][first])
        return index_context(ctx, inverse)

    def evaluate_item_rows(self, rows: Dict[str, torch.Tensor],
                           item_advantages: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``credit="item"``: current log-probabilities ``(B,)``, KL to the reference ``(B,)`` (zeros without
        reference means) and the advantage-weighted log-probabilities ``sum_j A_j log pi_j`` ``(B,)`` (divided
        by D with ``log_prob_reduction="mean"``) of flat rows, with gradients; ``item_advantages`` ``(B, D)``."""
        dist, log_prob, kl = self._row_distribution(rows)
        return log_prob, kl, dist.weighted_log_prob(rows["action"], item_advantages)

    def train(self, traj: Trajectories) -> None:
        """One REINFORCE update on ``traj`` (gradient accumulated over row chunks; under torch.distributed the
        gradients and loss terms are summed over the ranks, see the module docstring)."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        self.policy.optimizer.zero_grad(set_to_none=True)
        totals, log_ratio = self.accumulate_gradients(traj)
        if self.score_grad:
            # the reward's own gradient in the scoring parameters, the sampled final states held fixed
            score_loss = -traj.score_reward.sum() / self.global_n_envs
            if not score_loss.requires_grad:  # e.g. frozen item embeddings: refused, never skipped in silence
                raise ValueError(f"score_grad=True, but the reward's scores depend on no trainable parameter (frozen: "
                                 f"{self.policy.frozen}); set score_grad: false or leave those parameters trainable")
            score_loss.backward()
            totals["score_loss"] = float(score_loss.detach())
        item_adv_std = totals.pop("item_adv_std", None)  # already global
        grad_norm, totals = self._reduce_and_step(totals)
        if item_adv_std is not None:
            totals["item_adv_std"] = item_adv_std
        self._n_updates += 1
        self._record_update(traj, totals, grad_norm, log_ratio)

    def accumulate_gradients(self, traj: Trajectories) -> Tuple[Dict[str, float], torch.Tensor]:
        """Backpropagate the loss of ``traj`` into the parameters' ``.grad`` (added to what is there; no
        clipping, no optimizer step). Returns the loss totals to log (this rank's shares of the global batch's
        losses, which the ranks sum; ``item_adv_std`` is already global: a collective with ``credit="item"``) and
        the log importance ratios ``(K * N,)`` of this rank's rows."""
        N, n_rows = self.global_n_envs, traj.n_steps * self.global_n_envs  # the global batch's normalisers
        item_adv = self.compute_item_advantages(traj) if self.credit == "item" else None
        advantages = self.compute_advantages(traj).reshape(-1) if item_adv is None else None
        totals = dict(policy_loss=0.0, kl=0.0, value_loss=0.0, loss=0.0)
        log_ratios = []
        for index in self._row_batches(traj.n_steps * traj.n_traj):
            rows = traj.rows(index)
            if item_adv is None:
                log_prob, kl, values = self.evaluate_rows(rows)
                policy_loss = -(advantages[index] * log_prob).sum() / N
            else:
                log_prob, kl, weighted = self.evaluate_item_rows(rows, item_adv[rows["traj"]])
                values = None
                policy_loss = -weighted.sum() / N
            kl_loss = kl.sum() / N
            value_loss = ((values - traj.rewards[rows["traj"]]).pow(2).sum() / n_rows) if values is not None \
                else torch.zeros((), device=self.device)
            loss = policy_loss + self.kl_coef * kl_loss + self.vf_coef * value_loss
            loss.backward()  # a non-finite loss stops the update in _reduce_and_step, before any optimizer step
            log_ratios.append((log_prob - rows["old_log_prob"]).detach())
            for key, value in zip(totals, (policy_loss, kl_loss, value_loss, loss)):
                totals[key] += float(value.detach())
        if item_adv is not None:
            totals["item_adv_std"] = distributed.mean_std(item_adv)[1]
        return totals, torch.cat(log_ratios)

    def _record_update(self, traj: Trajectories, totals: Dict[str, float], grad_norm: float,
                       log_ratio: torch.Tensor, clip_range: Optional[float] = None) -> None:
        """Log the update: ``totals`` and ``grad_norm`` (global already), and the global batch's reward mean / std
        and importance-ratio mean, max, min (and clip fraction with ``clip_range``) from this rank's
        ``traj.rewards`` ``(N,)`` and ``log_ratio`` ``(rows,)`` (collectives under torch.distributed)."""
        ratio = log_ratio.exp()
        r_mean, r_std = distributed.mean_std(traj.rewards)
        clipped = float(((ratio - 1).abs() > clip_range).sum()) if clip_range is not None else 0.0
        ratio_sum, n_ratio, clipped = distributed.all_reduce_sum([float(ratio.double().sum()), float(ratio.numel()),
                                                                  clipped])
        local_max, local_min = (float(ratio.max()), float(ratio.min())) if ratio.numel() else (-math.inf, math.inf)
        ratio_max, neg_ratio_min = distributed.all_reduce_max([local_max, -local_min])  # a rank may have no rows
        self.logger.record("rollout/reward_mean", r_mean)
        self.logger.record("rollout/reward_std", r_std)
        for key, value in totals.items():
            if key == "kl" and traj.ref_mean is None:
                continue  # not computed (kl_coef = 0): no misleading zero
            self.logger.record(f"train/{key}", value)
        self.logger.record("train/grad_norm", grad_norm)
        self.logger.record("train/ratio_mean", ratio_sum / n_ratio)
        self.logger.record("train/ratio_max", float(ratio_max))
        self.logger.record("train/ratio_min", -float(neg_ratio_min))
        if clip_range is not None:
            self.logger.record("train/clip_fraction", clipped / n_ratio)
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")

    # ------------------------------------------------------------------ the loop (ChainAlgorithm.learn)
    def collect_rollout(self, callback: BaseCallback) -> Optional[Trajectories]:
        return self.collect_trajectories(callback)
