"""PPO with importance-ratio diagnostics for high-dimensional denoising actions.

SB3's PPO logs ``train/clip_fraction`` and ``train/approx_kl`` averaged over the minibatches of an
update. With D-dimensional Gaussian actions the *extremes* of the ratio matter (one exploding
ratio is enough to ruin an update), so :class:`RatioLoggingPPO` adds, after each update, the
statistics of ``ratio = pi_new(a|s) / pi_old(a|s)`` over the whole rollout buffer under the
updated policy: ``train/ratio_mean``, ``train/ratio_max``, ``train/ratio_min``,
``train/log_ratio_abs_max``, ``train/final_clip_fraction`` and ``train/final_approx_kl``.
The extra cost is one no-grad forward pass over the buffer.
"""
from __future__ import annotations

import numpy as np
import torch
from stable_baselines3 import A2C, PPO


class SafeLoadMixin:
    """For SB3 on-policy algorithms with a :class:`~agents.policies.DenoiserPolicy`: saved zips never hold a
    pickled backbone, and loading never unpickles code.

    After ``_setup_model`` the ``policy_kwargs`` keep only the architecture (``backbone_spec``) instead of the
    adapter object or a checkpoint path, so ``save`` writes JSON; ``load`` goes through
    :func:`refit_gym.io_safety.safe_custom_objects` (allow-listed values only) and refuses non-finite weights.
    """

    def _setup_model(self) -> None:
        super()._setup_model()
        if "backbone" in self.policy_kwargs or "checkpoint" in self.policy_kwargs:
            denoiser = getattr(self.policy, "denoiser", None)
            if denoiser is not None:
                self.policy_kwargs = {k: v for k, v in self.policy_kwargs.items() if k not in ("backbone", "checkpoint")}
                self.policy_kwargs["backbone_spec"] = dict(backbone=denoiser.backbone_name, config=denoiser.config())

    @classmethod
    def load(cls, path, env=None, device="auto", custom_objects=None, **kwargs):
        """SB3's ``load`` without unpickling code from the file (see :func:`refit_gym.io_safety.load_agent`)."""
        from refit_gym.io_safety import sb3_load

        return sb3_load(super().load, path, custom_objects, env=env, device=device, **kwargs)


class RatioLoggingPPO(SafeLoadMixin, PPO):
    """:class:`stable_baselines3.PPO` plus end-of-update importance-ratio statistics (see module doc)."""

    def train(self) -> None:
        super().train()
        self.policy.set_training_mode(False)
        clip_range = float(self.clip_range(self._current_progress_remaining))  # a schedule after _setup_model
        buffer = self.rollout_buffer
        n = buffer.buffer_size * buffer.n_envs
        log_ratios = []
        with torch.no_grad():
            # In-order batches (buffer.get() would shuffle and consume the global NumPy RNG).
            for start in range(0, n, self.batch_size):
                batch = buffer._get_samples(np.arange(start, min(start + self.batch_size, n)))
                _, log_prob, _ = self.policy.evaluate_actions(batch.observations, batch.actions)
                log_ratios.append(log_prob - batch.old_log_prob)
        log_ratio = torch.cat(log_ratios)
        ratio = torch.exp(log_ratio)
        self.logger.record("train/ratio_mean", ratio.mean().item())
        self.logger.record("train/ratio_max", ratio.max().item())
        self.logger.record("train/ratio_min", ratio.min().item())
        self.logger.record("train/log_ratio_abs_max", log_ratio.abs().max().item())
        self.logger.record("train/final_clip_fraction", ((ratio - 1).abs() > clip_range).float().mean().item())
        self.logger.record("train/final_approx_kl", float(np.mean(((ratio - 1) - log_ratio).cpu().numpy())))


class SafeA2C(SafeLoadMixin, A2C):
    """:class:`stable_baselines3.A2C` with :class:`SafeLoadMixin`'s saving and loading."""
