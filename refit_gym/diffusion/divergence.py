"""Divergence detection of the pretraining loop (:func:`refit_gym.diffusion.training.pretrain`).

:class:`DivergenceMonitor` raises :class:`PretrainingDivergedError` (a ``FloatingPointError``, as the
loops raised for NaN losses before) when

* a batch loss is NaN/inf or above ``max_loss_growth * max(first loss of this run, 1)``
  (dimensionless: the losses are mean squared errors or cross-entropies), or
* at the end of an epoch a parameter is NaN/inf or the parameters' L2 norm exceeds
  ``max_weight_growth * (norm at the start of this run) + 1``.

The loop checks the weights *before* validating and writing ``best.pt`` / ``last_state.pt``, so a
diverged epoch is never saved: the resume state stays the last good epoch.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

#: batch loss limit, as a multiple of the run's first batch loss (at least 1)
MAX_LOSS_GROWTH = 1e4
#: parameter-norm limit, as a multiple of the norm at the start of the run
MAX_WEIGHT_GROWTH = 100.0


class PretrainingDivergedError(FloatingPointError):
    """Pretraining diverged (non-finite or exploding loss or weights); the last good state is kept."""


def _norm(module: torch.nn.Module) -> float:
    total = sum(float(p.detach().double().pow(2).sum()) for p in module.parameters())
    return math.sqrt(total) if math.isfinite(total) else total


class DivergenceMonitor:
    """Loss and weight checks of one pretraining run (see the module docstring).

    Args:
        module: the model being trained (its norm now is the reference).
        kept: where the last good state is (named in the errors), or None.
        max_loss_growth, max_weight_growth: see :data:`MAX_LOSS_GROWTH`, :data:`MAX_WEIGHT_GROWTH`.
    """

    def __init__(self, module: torch.nn.Module, kept: Optional[str] = None, max_loss_growth: float = MAX_LOSS_GROWTH,
                 max_weight_growth: float = MAX_WEIGHT_GROWTH):
        self.norm0, self.ref_loss = _norm(module), None
        self.kept = f"; last good state kept in {kept}" if kept else "; nothing was saved"
        self.max_loss_growth, self.max_weight_growth = float(max_loss_growth), float(max_weight_growth)

    def check_loss(self, loss: float, at: str) -> None:
        """Raise when the batch ``loss`` (a float) is non-finite or exploding; ``at`` names the batch."""
        if not math.isfinite(loss):
            raise PretrainingDivergedError(f"pretraining loss is {loss} at {at}{self.kept}. Try a lower learning rate.")
        if self.ref_loss is None:
            self.ref_loss = loss
        limit = self.max_loss_growth * max(self.ref_loss, 1.0)
        if loss > limit:
            raise PretrainingDivergedError(f"pretraining loss exploded to {loss:.4g} at {at} (first loss {self.ref_loss:.4g}, "
                                           f"limit {limit:.4g}){self.kept}. Try a lower learning rate.")

    def check_weights(self, module: torch.nn.Module, at: str) -> None:
        """Raise when a parameter of ``module`` is non-finite or the norm exploded; ``at`` names the epoch."""
        for name, p in module.named_parameters():
            if not bool(torch.isfinite(p).all()):
                raise PretrainingDivergedError(f"parameter {name!r} is non-finite at {at}{self.kept}")
        norm, limit = _norm(module), self.max_weight_growth * self.norm0 + 1.0
        if norm > limit:
            raise PretrainingDivergedError(f"parameter norm exploded to {norm:.4g} at {at} (start {self.norm0:.4g}, limit "
                                           f"{limit:.4g}){self.kept}. Try a lower learning rate.")
