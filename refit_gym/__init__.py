"""refit-gym: reinforcement-learning fine-tuning of diffusion recommenders."""
__version__ = "0.1.0"

# Register the ``refit_gym/...`` gymnasium ids. Light: gymnasium entry points are strings, and
# refit_gym.envs loads its torch-based classes only on first use.
from refit_gym import envs as _envs  # noqa: E402,F401
