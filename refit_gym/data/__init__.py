"""Data layer: the interaction dataset, its loaders, the synthetic generator and graph signals."""
from refit_gym.data.dataset import DataError, InteractionData, SPLITS

__all__ = ["DataError", "InteractionData", "SPLITS"]
