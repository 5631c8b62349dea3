"""Data layer: the interaction dataset, its loaders, the synthetic generator and graph signals."""
from refit_gym.data.dataset import DataError, InteractionData, SPLITS, as_interactions
from refit_gym.data.loaders import load_dataset, load_diffrec, load_movielens_raw, load_recbole
from refit_gym.data.synthetic import make_synthetic

__all__ = [
    "DataError", "InteractionData", "SPLITS", "as_interactions",
    "load_dataset", "load_diffrec", "load_recbole", "load_movielens_raw", "make_synthetic",
]
