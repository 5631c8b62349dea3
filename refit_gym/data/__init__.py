"""Data layer: the interaction dataset, its loaders (one module per on-disk format, :mod:`~refit_gym.data.loaders`
picks one), the splitting rules, the synthetic generators and graph signals."""
from refit_gym.data.dataset import DataError, InteractionData, SPLITS, as_interactions
from refit_gym.data.diffrec_format import load_diffrec
from refit_gym.data.loaders import load_dataset
from refit_gym.data.movielens import download_movielens, load_movielens_raw
from refit_gym.data.recbole import load_recbole
from refit_gym.data.synthetic import SYNTHETIC_SPECS, load_synthetic, make_synthetic
from refit_gym.data.synthetic_sequences import make_synthetic_sequences

__all__ = [
    "DataError", "InteractionData", "SPLITS", "SYNTHETIC_SPECS", "as_interactions", "download_movielens",
    "load_dataset", "load_diffrec", "load_recbole", "load_movielens_raw", "load_synthetic", "make_synthetic",
    "make_synthetic_sequences",
]
