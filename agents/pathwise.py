"""Pathwise: fine-tuning by the exact gradient of a differentiable reward through the reverse chain.

DRaFT-K / AlignProp / ReFL backpropagate the reward through the last reverse steps instead of
estimating its gradient from reward values (REINFORCE, :class:`~agents.refit.ReFiT`). Each iteration:

1. **Rollout with gradients.** Draw ``n_envs / n_traj_per_user`` users and episode keys (as ReFiT), reset
   the environment, and run all T reverse steps of the :class:`~agents.policies.DenoiserPolicy`. The
   frozen steps (``t > train_last_k``) take the policy's mean without gradients (as in ReFiT); the
   last ``K = train_last_k`` steps are reparameterised, ``x_{t-1} = mu_theta(x_t, t, c) + sigma_t eps``
   (or ``x_{t-1} = mu_theta`` with ``sample_noise=False``: the deterministic chain that evaluation
   runs), so ``x_0`` is a differentiable function of the denoiser's parameters. Every action also
   steps the environment (detached), which keeps the environment's bookkeeping and its terminal
   reward exactly those of a ReFiT rollout.
2. **Reward.** After the terminal step the environment recomputes the terminal reward from the
   graph-connected ``x_0`` (``env.terminal_reward(x0)``; the reward must declare a differentiable torch
   form, ``Reward.differentiable``). The environment scores with the *policy's* denoiser, so
   parameters inside ``scores`` (DreamRec's item embeddings) receive the reward's gradient too.
3. **Loss.** ``-mean_n R_n + kl_coef * mean_n sum_t KL_{n,t} + pretrain_coef * L_pretrain``, with the
   closed-form KL of each trained step to the frozen pretrained denoiser (as ReFiT's) and, optionally,
   the backbone's own pretraining loss on the rollout's conditions (``adapter.diffusion_loss`` at
   uniformly drawn indices; ReFL alternates with it to keep the model on its data). Gradient norm
   clipped to ``max_grad_norm``, one optimizer step.

Memory grows with ``K`` (the activations of K denoiser passes for ``n_envs`` chains are kept for the
backward pass); ``K = 1`` (DRaFT-1) is the cheapest and, per DRaFT, often enough.

Data parallel under ``torchrun`` (:mod:`refit_gym.distributed`): each rank's environment holds ``n_envs``
chains of a global batch of ``n_envs * world_size``; users, keys and noise are drawn for the global batch
and each rank keeps its block, its loss is its chains' share of the global means, and the gradients are
summed over the ranks, so the updates equal one process's with ``n_envs * world_size`` environments.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Optional, Union

import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.type_aliases import Schedule

from agents.chain import ChainAlgorithm, ChainConfig
from refit_gym import distributed


@dataclass
class PathwiseBatch:
    """One rollout with its graph: ``reward`` ``(N,)`` and ``kl`` ``(N,)`` (summed over the trained steps;
    None when ``kl_coef == 0``) are connected to the policy's parameters; ``condition (N, C)`` and
    ``users (N,)`` feed the optional pretraining term."""

    reward: torch.Tensor
    kl: Optional[torch.Tensor]
    condition: torch.Tensor
    users: torch.Tensor


@dataclass
class PathwiseConfig(ChainConfig):
    """Pathwise's hyperparameters: the chain's, with DRaFT-1's defaults, plus the reward-gradient loss's."""

    learning_rate: Union[float, Schedule] = 1e-4
    """learning rate (or SB3 schedule) of the value head; the denoiser's is denoiser_lr_scale times it"""
    n_traj_per_user: int = 1
    """chains per user and rollout (no baseline: one is enough)"""
    train_last_k: Optional[int] = 1
    """backpropagate through the last k reverse steps (DRaFT-K; None: all T)"""
    sample_noise: bool = True
    """reparameterised Gaussian steps (True) or the deterministic chain that evaluation runs (False)"""
    pretrain_coef: float = 0.0
    """weight of the backbone's own pretraining loss on each rollout's conditions (0: off)"""
    reward_scale: float = 1.0
    """the reward is multiplied by it in the loss (its gradient's unit)"""

    def check(self) -> None:
        if not (self.pretrain_coef >= 0 and self.reward_scale > 0):
            raise ValueError(f"need pretrain_coef >= 0 and reward_scale > 0; got {self.pretrain_coef}, {self.reward_scale}")
        super().check()


class Pathwise(ChainAlgorithm):
    """Reward-gradient fine-tuning (see the module docstring; hyperparameters :class:`PathwiseConfig`). ``env``
    must be a ``BatchedDenoisingEnv`` (its torch fast path recomputes the reward with gradients) whose reward is
    differentiable.
    """

    config_class = PathwiseConfig
    supports_distributed = True

    def _check_env(self) -> None:
        if self.env is not None:
            reason = self.driver.terminal_reward_unavailable()
            if reason is not None:
                raise ValueError(f"Pathwise needs the reward's gradient: {reason}")

    # ------------------------------------------------------------------ rollout (with gradients)
    def collect_rollout(self, callback: BaseCallback) -> Optional[PathwiseBatch]:
        """Run the chains with the trained steps on the autograd graph (see the module docstring)."""
        self.policy.set_training_mode(False)  # the denoiser never drops out (see DenoiserPolicy)
        T, K = self.policy.steps, self.trained_steps
        users, keys = self._draw_episodes()
        obs = self.driver.reset(users, keys)
        x, condition, users_t = obs["x"], obs["condition"], obs["user"].reshape(-1)
        N = x.shape[0]
        ctx, fixed_ctx = self._rollout_context(lambda: self.policy.denoiser.context(condition, users_t))
        use_ref = self.kl_coef > 0
        if use_ref:  # a context no trained parameter reaches is the reference's too
            with torch.no_grad():
                ref_ctx = ctx if fixed_ctx else self.reference.context(condition, users_t)
        kl = torch.zeros(N, device=self.device) if use_ref else None
        for t in range(T, 0, -1):
            t_vec = torch.full((N,), t, dtype=torch.long, device=self.device)
            if t > K:
                with torch.no_grad():
                    action = self.policy.step_distribution(x, t_vec, ctx).mode()
            else:
                dist = self.policy.step_distribution(x, t_vec, ctx)
                action = dist.sample(self._generator, self._rank_noise(dist.mean)) if self.sample_noise else dist.mode()
                if use_ref:
                    with torch.no_grad():
                        ref_mean = self.reference.reverse_step(x.detach(), t_vec - 1, ref_ctx)[0]
                    kl = kl + dist.kl_to_mean(ref_mean)
            self._check_actions(action)
            # the terminal step computes the reward once, on the graph; terminal_reward(x) below returns it
            rewards, done = self.driver.step(action if t == 1 else action.detach(), keep_graph=t == 1)
            self.num_timesteps += self.global_n_envs
            callback.update_locals(locals())
            if not callback.on_step():
                return None
            x = action
        if not done:
            raise RuntimeError(f"the environment did not terminate after T={T} steps")
        reward = self.driver.terminal_reward(x)
        self._check_finite("rewards", reward)
        self._record_episodes(rewards, T)
        return PathwiseBatch(reward=reward, kl=kl, condition=condition, users=users_t.long())

    # ------------------------------------------------------------------ update
    def pretrain_loss(self, batch: PathwiseBatch) -> torch.Tensor:
        """The backbone's own loss on the rollout's conditions at uniform diffusion indices: this rank's share
        ``sum / global_n_envs`` of the global mean (the mean on one process). Under torch.distributed the
        indices (and, for backbones whose ``diffusion_loss`` takes ``noise``, the noise) are drawn for the
        global batch and this rank's rows kept."""
        steps = self.policy.denoiser.schedule.steps
        i = torch.randint(0, steps, (self.global_n_envs,), generator=self._generator,
                          device=self._generator.device).to(self.device)
        i = distributed.shard(i)
        kwargs = {}
        if distributed.active() and "noise" in inspect.signature(self.policy.denoiser.diffusion_loss).parameters:
            kwargs["noise"] = self._rank_noise(batch.condition.new_empty(
                (self.n_envs, self.policy.denoiser.action_dim)))
        per_row = self.policy.denoiser.diffusion_loss(batch.condition, batch.users, i, generator=self._generator,
                                                      **kwargs)
        return per_row.sum() / self.global_n_envs

    def train(self, batch: PathwiseBatch) -> None:
        """One gradient step on ``-mean R + kl_coef * mean KL + pretrain_coef * L_pretrain`` (means over the
        global batch; each rank's loss is its chains' share, see the module docstring)."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        self.policy.optimizer.zero_grad(set_to_none=True)
        n = self.global_n_envs
        zero = torch.zeros((), device=self.device)
        reward_loss = -self.reward_scale * batch.reward.sum() / n
        kl_loss = batch.kl.sum() / n if batch.kl is not None else zero
        pre_loss = self.pretrain_loss(batch) if self.pretrain_coef > 0 else zero
        loss = reward_loss + self.kl_coef * kl_loss + self.pretrain_coef * pre_loss
        r = batch.reward.detach()
        # global values of the loss terms and reward statistics (one reduction; the same on every rank)
        loss_g, kl_g, pre_g, r_sum, r_sq = distributed.all_reduce_sum(
            [float(loss.detach()), float(kl_loss.detach()), float(pre_loss.detach()), float(r.sum()),
             float((r.double() ** 2).sum())])
        self._check_finite("loss", torch.tensor(loss_g))
        loss.backward()
        grad_norm = self._clip_and_step()
        self._n_updates += 1
        r_mean = r_sum / n
        self.logger.record("rollout/reward_mean", r_mean)
        self.logger.record("rollout/reward_std", max(r_sq / n - r_mean ** 2, 0.0) ** 0.5)
        self.logger.record("train/loss", loss_g)
        if batch.kl is not None:
            self.logger.record("train/kl", kl_g)
        if self.pretrain_coef > 0:
            self.logger.record("train/pretrain_loss", pre_g)
        self.logger.record("train/grad_norm", grad_norm)
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
