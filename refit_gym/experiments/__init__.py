"""Experiments: the layer above agents and environments that runs and reports studies.

* :mod:`refit_gym.experiments.ladder` -- the headroom ladder (start, continued pretraining, oracle
  diagnostic, reward gradient, REINFORCE, PPO on one reward).

Nothing below this layer imports it (``refit_gym/__init__`` does not either).
"""
