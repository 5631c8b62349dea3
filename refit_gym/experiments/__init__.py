"""Experiments: the layer above agents and environments that runs and reports studies.

* :mod:`refit_gym.experiments.ladder` -- the headroom ladder (start, continued pretraining, oracle
  diagnostic, reward gradient, REINFORCE, PPO on one reward).
* :mod:`refit_gym.experiments.benchmark` -- the results tables (``scripts/benchmark.py``): baselines, pretrained,
  fine-tuned (ReFiT, DDPO, Pathwise, PPO, A2C) and continued-pretraining rows over seeds, cost and scaling.
* :mod:`refit_gym.experiments.pretrain` -- pretraining a backbone (``scripts/pretrain.py``).

Nothing below this layer imports it (``refit_gym/__init__`` does not either).
"""
