"""Experiments: the layer above agents and environments that runs and reports studies.

* :mod:`refit_gym.experiments.finetune` -- one fine-tuning run (:func:`~refit_gym.experiments.finetune.finetune`:
  environment, algorithm, validation-selected ``best.pt``, ``metrics.json``), what ``refit-gym train`` and the
  benchmark run.
* :mod:`refit_gym.experiments.hyperparams` -- the rl-zoo3-format hyperparameters of a run (YAML defaults per
  algorithm and environment id -> the algorithm's constructor keywords).
* :mod:`refit_gym.experiments.ladder` -- the headroom ladder (start, continued pretraining, oracle
  diagnostic, reward gradient, REINFORCE, PPO on one reward).
* :mod:`refit_gym.experiments.benchmark` -- the results tables (``scripts/benchmark.py``): baselines, pretrained,
  fine-tuned (ReFiT, DDPO, Pathwise, PPO, A2C) and continued-pretraining rows over seeds, cost and scaling.
* :mod:`refit_gym.experiments.pretrain` -- pretraining a backbone (``scripts/pretrain.py``).

Nothing below this layer imports it (``refit_gym/__init__`` does not either).
"""
