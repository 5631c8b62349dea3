"""Run guards of the fine-tuning runner: divergence detection, saves at update boundaries, Ctrl-C.

:class:`RunGuard` is one SB3 callback that works for every algorithm of :data:`agents.ALGOS` (ReFiT and
DDPO call the callback hooks in the same order as SB3's on-policy loop: ``on_rollout_start`` comes after
the previous rollout's update):

* **Saves after the update.** A periodic save falls due on an environment step (``save_every`` calls of
  ``on_step``) but is written at the next ``on_rollout_start``, i.e. after the update of the rollout in
  which it fell due, so a saved agent never holds a rollout whose update is missing (a resumed run loses
  no update). The save is refused when the weights are unhealthy (below).
* **Divergence.** At every rollout boundary the policy's parameters must be finite and their L2 norm at
  most ``max_weight_growth`` times the norm at the start of training; during rollouts the *raw* actions
  (before SB3's clipping to the action box) must be finite and inside the action space's bounds. A
  violation raises :class:`DivergenceError` (a :class:`NonFiniteTrainingError`) before
  anything is saved, so ``last_model.zip`` stays the last good state.
* **Ctrl-C.** The first SIGINT (main thread only) is recorded; the current rollout and its update
  finish, the agent is saved at the boundary and training stops: the runner then raises
  :class:`TrainingInterrupted` with one line naming the saved step. A second Ctrl-C interrupts at once.
  Under torch.distributed the ranks agree at every boundary (a collective), so all of them save and stop at
  the first boundary after any rank saw the Ctrl-C.
"""
from __future__ import annotations

import math
import signal
import threading
from typing import Any, Callable, Dict, Optional

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

from refit_gym import distributed

#: largest allowed ratio of the policy's parameter norm to its norm at the start of training
DEFAULT_MAX_WEIGHT_GROWTH = 10.0
#: a validation ``select_metric`` below this fraction of the best one so far stops the run
DEFAULT_COLLAPSE_RATIO = 0.5


class NonFiniteTrainingError(FloatingPointError):
    """A loss, gradient, action or reward became NaN/inf; training stopped before the parameter update."""


class DivergenceError(NonFiniteTrainingError):
    """Training diverged: non-finite or exploding weights/actions, or a collapsed validation metric."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped training after saving at an update boundary (the message says where)."""


def _parameter_norms(module: torch.nn.Module) -> Dict[str, float]:
    """The L2 norm of every parameter of ``module`` (one pass over each, in its own dtype; ``inf``/``nan`` when a
    value is, or when a float32 norm overflows)."""
    return {name: float(torch.linalg.vector_norm(p.detach())) for name, p in module.named_parameters()}


def parameter_norm(module: torch.nn.Module) -> float:
    """L2 norm over all floating-point parameters of ``module`` (``inf``/``nan`` when any value is)."""
    total = math.fsum(n * n for n in _parameter_norms(module).values())
    return math.sqrt(total) if math.isfinite(total) else total


def check_weights(module: torch.nn.Module, reference_norm: float, max_growth: float, where: str) -> float:
    """Raise :class:`DivergenceError` unless every parameter is finite and the norm is at most
    ``max_growth * reference_norm`` (plus 1, for near-zero starts); returns the norm. One pass over the weights
    when they are fine (this runs at every rollout)."""
    norms = _parameter_norms(module)
    for name, p in module.named_parameters():
        if not math.isfinite(norms[name]) and not bool(torch.isfinite(p).all()):
            raise DivergenceError(f"{where}: parameter {name!r} holds non-finite values; training stopped, the last "
                                  "saved state is the last good one. Try a lower learning rate.")
    total = math.fsum(n * n for n in norms.values())
    norm = math.sqrt(total) if math.isfinite(total) else total
    limit = max_growth * reference_norm + 1.0
    if not norm <= limit:
        raise DivergenceError(f"{where}: the parameter norm exploded to {norm:.4g} (start {reference_norm:.4g}, limit "
                              f"{limit:.4g} = {max_growth:g} x start + 1); training stopped, the last saved state is the "
                              "last good one. Try a lower learning rate.")
    return norm


def check_actions(actions: Any, bound: float, where: str) -> None:
    """Raise :class:`DivergenceError` when raw ``actions`` (tensor or array, any shape) are non-finite or
    beyond ``bound`` in absolute value (the action box's largest bound)."""
    a = actions.detach() if torch.is_tensor(actions) else torch.from_numpy(np.asarray(actions, dtype=np.float64))
    if a.numel() == 0 or actions_within(a, bound):
        return
    if not bool(torch.isfinite(a).all()):
        raise DivergenceError(f"{where}: non-finite actions; training stopped, the last saved state is the last good one")
    peak = float(a.abs().max())
    if peak > bound:
        raise DivergenceError(f"{where}: actions exploded (|a| up to {peak:.4g}, the action space bound is {bound:g}); "
                              "training stopped, the last saved state is the last good one. Try a lower learning rate.")


def actions_within(a: torch.Tensor, bound: float) -> bool:
    """Whether the non-empty tensor ``a`` is finite and within ``[-bound, bound]``, in one pass (NaN propagates into
    both extremes, which then compare False): the fast path of the action checks, whose errors say what failed."""
    lo, hi = torch.aminmax(a)
    return bool(torch.isfinite(lo) & torch.isfinite(hi) & (lo >= -bound) & (hi <= bound))


def action_bound(space) -> float:
    """The largest finite absolute bound of a Box action space (``inf`` when unbounded)."""
    bounds = np.concatenate([np.abs(np.asarray(space.low, dtype=np.float64)).ravel(),
                             np.abs(np.asarray(space.high, dtype=np.float64)).ravel()])
    finite = bounds[np.isfinite(bounds)]
    return float(finite.max()) if finite.size else float("inf")


class RunGuard(BaseCallback):
    """Boundary saves, divergence checks and Ctrl-C handling (see the module docstring).

    Args:
        save: ``save(model)`` writes the agent (and the runner's state); called only at rollout boundaries.
        save_every: a save falls due every this many ``on_step`` calls (0: only on Ctrl-C; the runner saves
            at the end itself).
        max_weight_growth: see :data:`DEFAULT_MAX_WEIGHT_GROWTH`.
        log: receives one line per event (interrupt, save on interrupt).
    """

    def __init__(self, save: Callable[[Any], None], save_every: int = 0,
                 max_weight_growth: float = DEFAULT_MAX_WEIGHT_GROWTH, log: Callable[[str], None] = print):
        super().__init__()
        self.save, self.save_every, self.max_weight_growth, self.log = save, int(save_every), float(max_weight_growth), log
        self.pending = self.interrupted = self.stop = False
        self.saved_at: Optional[int] = None
        self._norm0 = 0.0
        self._previous_handler = None
        self._bound = float("inf")

    # ---------------------------------------------------------------- SIGINT
    def _on_sigint(self, signum, frame) -> None:
        if self.interrupted:  # the second Ctrl-C: stop now, without saving
            raise KeyboardInterrupt
        self.interrupted = True
        self.log("Ctrl-C: finishing this rollout and its update, then saving (Ctrl-C again to stop without saving)")

    def _on_training_start(self) -> None:
        self._norm0 = check_weights(self.model.policy, float("inf"), 1.0, self._where())
        self._bound = action_bound(self.model.action_space)
        if threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.signal(signal.SIGINT, self._on_sigint)

    def _on_training_end(self) -> None:
        self.restore_signal_handler()

    def restore_signal_handler(self) -> None:
        """Put back the SIGINT handler found at the start of training (also call it when training raised)."""
        if self._previous_handler is not None:
            signal.signal(signal.SIGINT, self._previous_handler)
            self._previous_handler = None

    # ---------------------------------------------------------------- checks and saves
    def _where(self) -> str:
        return f"{type(self.model).__name__} at num_timesteps={self.model.num_timesteps}"

    def check_health(self) -> None:
        """:func:`check_weights` of the policy against its norm at the start of training."""
        check_weights(self.model.policy, self._norm0, self.max_weight_growth, self._where())

    def _on_step(self) -> bool:
        raw = self.locals.get("actions", self.locals.get("action"))
        if raw is not None:
            check_actions(raw, self._bound, self._where())
        if self.save_every > 0 and self.n_calls % self.save_every == 0:
            self.pending = True
        return not self.stop

    def _on_rollout_start(self) -> None:
        self.check_health()
        if distributed.active():  # Ctrl-C reaches the ranks at different steps: all stop at the first boundary after
            self.interrupted = bool(distributed.all_reduce_max([float(self.interrupted)])[0])
        if self.pending or self.interrupted:
            self.save(self.model)
            self.pending, self.saved_at = False, int(self.model.num_timesteps)
        if self.interrupted:
            self.log(f"saved at step {self.saved_at} (after its update); stopping")
            self.stop = True


def check_train_state(path, state: Dict[str, Any]) -> Dict[str, Any]:
    """Validate the fields of a ``train_state.json`` read from ``path``; returns ``state``.

    Raises:
        CheckpointError: naming the file, the field and the value.
    """
    from refit_gym.diffusion.checkpoint import CheckpointError
    from refit_gym.io_safety import finite_number

    def bad(field: str, value: Any, expected: str) -> CheckpointError:
        return CheckpointError(f"{path}: field {field!r} is {value!r:.80}, expected {expected}")

    if "history" in state and not (isinstance(state["history"], list)
                                   and all(isinstance(h, dict) and isinstance(h.get("num_timesteps"), int)
                                           for h in state["history"])):
        raise bad("history", state["history"], "a list of objects with an integer 'num_timesteps'")
    for key in ("train_seconds", "wall_seconds"):
        seconds = state.get(key, 0.0)
        if not (finite_number(seconds) and seconds >= 0):
            raise bad(key, seconds, "a finite number >= 0")
    for key in ("best_valid",):
        if key in state and not isinstance(state[key], dict):
            raise bad(key, state[key], "an object of metrics")
    for key in ("best_timesteps", "last_eval_timesteps"):
        value = state.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise bad(key, value, "null or a non-negative integer")
    return state


__all__ = ["DEFAULT_COLLAPSE_RATIO", "DEFAULT_MAX_WEIGHT_GROWTH", "DivergenceError", "RunGuard",
           "TrainingInterrupted", "action_bound", "actions_within", "check_actions", "check_train_state",
           "check_weights", "parameter_norm"]
