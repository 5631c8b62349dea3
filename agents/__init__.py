"""RL agents that fine-tune diffusion recommenders on refit-gym environments.

* :class:`DenoiserPolicy` -- an SB3 ``ActorCriticPolicy`` whose actor is the pretrained denoiser
  (usable with SB3's ``PPO`` and ``A2C``).
* :class:`ReFiT` -- REINFORCE over whole denoising trajectories with per-user group baselines and
  a KL penalty to the pretrained model.
* :class:`DDPO` -- DDPO-style clipped importance-ratio updates over stored transitions.
* :class:`Pathwise` -- the exact gradient of a differentiable reward through the last reverse steps.
* :class:`ChainAlgorithm` -- their shared base (construction, loop, save/load). Each names its hyperparameters,
  a dataclass (``config_class``: :class:`ReFiTConfig`, :class:`DDPOConfig`, :class:`PathwiseConfig`, all
  extending :class:`ChainConfig`, which extends the policy's :class:`PolicyConfig`).
* :class:`RatioLoggingPPO` -- SB3's PPO plus importance-ratio extremes in the logs; :class:`SafeA2C` -- SB3's A2C.
  Both save the backbone's architecture (not a pickled object) and load without unpickling code.

``ALGOS`` maps the ``--algo`` names of ``scripts/train.py`` to classes; ``HYPERPARAMS_DIR`` holds their default
hyperparameters (``<algo>.yml``, rl-zoo3's format; read by :mod:`refit_gym.experiments.hyperparams`).
"""
from pathlib import Path

from stable_baselines3 import A2C, PPO

from agents.chain import ChainAlgorithm, ChainConfig
from agents.config import Config, ConfigTypeError
from agents.ddpo import DDPO, DDPOConfig
from agents.distributions import DenoiserGaussian
from agents.policies import DenoiserPolicy, DenoisingSummaryExtractor, PolicyConfig
from agents.pathwise import Pathwise, PathwiseConfig
from agents.ppo import RatioLoggingPPO, SafeA2C
from agents.refit import NonFiniteTrainingError, ReFiT, ReFiTConfig, Trajectories

#: ``"ppo"`` is :class:`RatioLoggingPPO`, a drop-in :class:`stable_baselines3.PPO` subclass; ``"a2c"`` :class:`SafeA2C`.
ALGOS = {"refit": ReFiT, "ddpo": DDPO, "pathwise": Pathwise, "ppo": RatioLoggingPPO, "a2c": SafeA2C}
#: ``<algo>.yml`` per key of :data:`ALGOS` (also rl-zoo3's ``--conf-file``)
HYPERPARAMS_DIR = Path(__file__).resolve().parent / "hyperparams"

__all__ = ["A2C", "ALGOS", "ChainAlgorithm", "ChainConfig", "Config", "ConfigTypeError", "DDPO", "DDPOConfig",
           "DenoiserGaussian", "DenoiserPolicy", "DenoisingSummaryExtractor", "HYPERPARAMS_DIR", "NonFiniteTrainingError",
           "PPO", "Pathwise", "PathwiseConfig", "PolicyConfig", "RatioLoggingPPO", "ReFiT", "ReFiTConfig", "SafeA2C",
           "Trajectories"]
