"""Data layer: the interaction dataset, its loaders, the synthetic generators and graph signals."""
from refit_gym.data.dataset import DataError, InteractionData, SPLITS, as_interactions
from refit_gym.data.loaders import (SYNTHETIC_SPECS, download_movielens, load_dataset, load_diffrec, load_movielens_raw,
                                    load_recbole, load_synthetic)
from refit_gym.data.synthetic import make_synthetic
from refit_gym.data.synthetic_sequences import make_synthetic_sequences

__all__ = [
    "DataError", "InteractionData", "SPLITS", "SYNTHETIC_SPECS", "as_interactions", "download_movielens",
    "load_dataset", "load_diffrec", "load_recbole", "load_movielens_raw", "load_synthetic", "make_synthetic",
    "make_synthetic_sequences",
]
