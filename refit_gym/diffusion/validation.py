"""When and on whom the pretraining loop validates, so that validation costs at most a share of the wall-clock.

Two parts, both in :class:`~refit_gym.diffusion.training.PretrainConfig`:

* **the validation sample** (``eval_users``, default 1024): early stopping and model selection score a fixed
  sample of that many validation users (:func:`validation_sample`: drawn once from the run's seed, the same on
  every rank and in every resumed session); the kept checkpoint then gets one full pass over every validation user
  at the end, and that full pass is its reported result (``best.pt``'s meta, ``history.json``,
  ``PretrainResult.best_valid``). With ``eval_users=None``, or data with no more validation users than that,
  every validation is a full pass and none is added at the end.
* **the interval** (``eval_every``): a fixed number of epochs, or ``None`` (the default) for the adaptive
  interval of :class:`ValidationSchedule`: after each validation the next one is placed at the first epoch where,
  were the run to stop right after it, the validation seconds so far + that validation + the final full pass
  would be at most ``eval_budget`` (default 1/4) of training + validation seconds
  (:func:`adaptive_interval`). The decision uses rank 0's clock and is broadcast, so every rank of a
  torch.distributed run validates at the same epochs; it depends on measured time, so a rerun may validate at
  other epochs (the weights of every epoch do not depend on it: validation draws from no training generator).
  A fixed ``eval_every`` gives a reproducible schedule.
"""
from __future__ import annotations

import inspect
import math
from typing import Callable, Dict, List, Optional

import numpy as np

#: the stream of :class:`numpy.random.SeedSequence` that draws the validation sample (apart from training's)
SAMPLE_STREAM = 0x5A3F1E


def validation_users(data) -> np.ndarray:
    """The users validation scores, sorted ``(n,)`` int64: a sequence dataset's ``split_users["valid"]``, else
    the users with at least one validation item (interaction data; the others are skipped by evaluation)."""
    if hasattr(data, "split_users"):
        return np.asarray(data.split_users["valid"], dtype=np.int64)
    valid = data.split("valid").tocsr()
    return np.flatnonzero(np.diff(valid.indptr) > 0).astype(np.int64)


def validation_sample(data, n: Optional[int], seed: int) -> Optional[np.ndarray]:
    """A fixed sample of ``n`` validation users (sorted int64 ``(n,)``), drawn without replacement from
    :func:`validation_users` with ``SeedSequence([seed, SAMPLE_STREAM])`` (the same on every rank and every
    session); None (validate every user) when ``n`` is None or at least the number of validation users."""
    if n is None:
        return None
    if int(n) < 1:
        raise ValueError(f"eval_users={n}: expected a positive number of validation users, or None for all")
    users = validation_users(data)
    if int(n) >= len(users):
        return None
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), SAMPLE_STREAM]))
    return np.sort(rng.choice(users, size=int(n), replace=False))


def check_evaluate_fn(evaluate_fn: Callable, sample: Optional[np.ndarray]) -> None:
    """TypeError naming ``evaluate_fn`` when a validation sample is in use and it takes no ``users`` keyword."""
    if sample is None:
        return
    try:
        params = inspect.signature(evaluate_fn).parameters
    except (TypeError, ValueError):  # a builtin without a signature: let the call speak
        return
    if "users" not in params and not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        raise TypeError(f"evaluate_fn {getattr(evaluate_fn, '__qualname__', evaluate_fn)!r} takes no 'users' "
                        f"keyword, but validation scores a sample of {len(sample)} users (eval_users): give it a "
                        "users=None parameter (the users to score; None: all), or set eval_users=None")


def adaptive_interval(train_seconds: float, valid_seconds: float, epochs_trained: int, next_valid_seconds: float,
                      final_pass_seconds: float, budget: float) -> int:
    """Epochs until the next validation (>= 1) under the share rule of the module docstring.

    Args:
        train_seconds: training seconds so far (``epochs_trained`` epochs). valid_seconds: validation seconds so far.
        next_valid_seconds: the expected seconds of the next validation (the mean of those so far).
        final_pass_seconds: the expected seconds of the final full pass (0 without a validation sample).
        budget: the largest share of training + validation seconds that validation may take, in (0, 1).
    Returns the smallest k >= 1 with ``V + v + F <= budget * (S + k t + V + v + F)``, where t is the mean epoch
    (``S / epochs_trained``); 1 when no training second has been measured (t = 0).
    """
    if not 0.0 < budget < 1.0:
        raise ValueError(f"eval_budget={budget}: expected a share in (0, 1)")
    if epochs_trained < 1 or train_seconds <= 0:
        return 1
    per_epoch = train_seconds / epochs_trained
    spent = valid_seconds + next_valid_seconds + final_pass_seconds
    needed = (spent * (1.0 - budget) / budget - train_seconds) / per_epoch
    return max(1, int(math.ceil(needed - 1e-9)))


class ValidationSchedule:
    """Which epochs the loop validates after (see the module docstring).

    Args:
        every: a fixed interval in epochs (validate after epochs every-1, 2 every-1, ...), or None (adaptive).
        budget: the adaptive rule's share (``eval_budget``).
        epochs: the run's last epoch count (the last epoch is always validated).
        next_at: adaptive: the number of finished epochs after which to validate next (1 for a new run; stored in
            ``last_state.pt`` as ``next_validation``).
    """

    def __init__(self, every: Optional[int], budget: float, epochs: int, next_at: int = 1):
        if every is not None and int(every) < 1:
            raise ValueError(f"eval_every={every}: expected a positive number of epochs, or None (adaptive)")
        if not 0.0 < budget < 1.0:
            raise ValueError(f"eval_budget={budget}: expected a share in (0, 1)")
        self.every, self.budget, self.epochs, self.next_at = every, float(budget), int(epochs), int(next_at)

    def due(self, epoch: int) -> bool:
        """Whether to validate after 0-based ``epoch``."""
        if epoch + 1 == self.epochs:
            return True
        if self.every is not None:
            return (epoch + 1) % self.every == 0
        return epoch + 1 >= self.next_at

    def plan_next(self, epoch: int, history: List[Dict], full_pass_ratio: float,
                  broadcast: Callable[[float], float] = float) -> int:
        """After validating at 0-based ``epoch`` (its row already in ``history``), set and return
        :attr:`next_at` from the seconds in ``history`` (``epoch_seconds``, ``valid_seconds``,
        ``valid_full_seconds``). ``full_pass_ratio``: the final full pass's cost in validations of the sample
        (validation users / sample size; 0 without a sample). ``broadcast`` sends rank 0's value to every rank
        (:func:`refit_gym.distributed.broadcast_scalar`)."""
        if self.every is not None:
            self.next_at = epoch + 1 + self.every
            return self.next_at
        train = sum(float(r["epoch_seconds"]) for r in history)
        done = [float(r["valid_seconds"]) for r in history if r.get("valid_seconds", 0.0) > 0]
        valid = sum(done) + sum(float(r.get("valid_full_seconds", 0.0)) for r in history)
        per = float(np.mean(done)) if done else 0.0
        k = adaptive_interval(train, valid, len(history), per, per * full_pass_ratio, self.budget)
        self.next_at = int(broadcast(float(epoch + 1 + k)))
        return self.next_at
