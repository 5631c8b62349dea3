"""Loaders from the on-disk formats the diffusion-recommender community publishes to :class:`InteractionData`.

Formats:

* **DiffRec** (:func:`load_diffrec`): a folder of ``train_list.npy``, ``valid_list.npy`` and
  ``test_list.npy``, each an ``(n, 2)`` integer array of 0-based (user, item) pairs, plus an
  optional ``social_list.npy`` of (user, user) edges (the social-recommendation variants).
* **RecBole atomic files** (:func:`load_recbole`): a tab-separated ``<name>.inter`` file whose
  header types every field (``user_id:token  item_id:token  rating:float  timestamp:float``).
  The loader maps raw tokens to contiguous ids and splits each user's history by time.
* **Raw MovieLens-1M** (:func:`load_movielens_raw`): the official GroupLens ``ratings.dat``
  (``UserID::MovieID::Rating::Timestamp``) or ``ml-1m.zip``, prepared with DiffRec's protocol.
* **Synthetic** data (:func:`refit_gym.data.synthetic.make_synthetic`).

:func:`load_dataset` picks the loader from a spec string or path. Every loader raises
:class:`~refit_gym.data.dataset.DataError` naming the file, the field, the line (for text
formats) and the offending value, and records every record it filters out in
``InteractionData.drop_counts`` and every duplicate it removes in ``InteractionData.dedup_counts``.

Modules: :mod:`~refit_gym.data.diffrec_format`, :mod:`~refit_gym.data.recbole`, :mod:`~refit_gym.data.movielens`
(formats); :mod:`~refit_gym.data.splits` (splitting rules); :mod:`~refit_gym.data.text_tables` (text parsing);
this module picks one (:func:`load_dataset`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

from refit_gym.data.dataset import DataError, InteractionData
from refit_gym.data.diffrec_format import DIFFREC_FILES, load_diffrec
from refit_gym.data.movielens import load_movielens_raw
from refit_gym.data.recbole import load_recbole
from refit_gym.data.synthetic import SYNTHETIC_SPECS, load_synthetic

ACCEPTED_FORMATS = (
    "'synthetic', 'synthetic-social', 'synthetic-seq' or 'synthetic-poi' (optionally ':<seed>'); "
    "a DiffRec folder holding train_list.npy / valid_list.npy / test_list.npy (+ optional social_list.npy); "
    "a RecBole .inter file or a folder holding exactly one; "
    "a MovieLens-1M ratings.dat or ml-1m.zip (or a folder holding one); "
    "a sequential folder holding dataset.pkl"
)


def _load_sequential(folder: Path, **kwargs):
    try:
        from refit_gym.data.sequential import load_sequential
    except ModuleNotFoundError as exc:
        if exc.name != "refit_gym.data.sequential":
            raise
        raise DataError(f"{folder}: sequential dataset (dataset.pkl): use refit_gym.data.sequential, "
                        "which is not available in this installation") from None
    return load_sequential(folder, **kwargs)


def load_dataset(spec: Union[str, "os.PathLike[str]"], **kwargs) -> InteractionData:
    """Load a dataset from a spec string or path, picking the loader from what the path holds.

    Accepted specs:

    * ``"synthetic"``, ``"synthetic-social"``, ``"synthetic-seq"``, ``"synthetic-poi"``, each optionally
      ``:<seed>``: the synthetic generators (:func:`load_synthetic`).
    * a folder with ``train_list.npy``: :func:`load_diffrec`.
    * a folder with ``dataset.pkl``: ``refit_gym.data.sequential.load_sequential``.
    * a ``.inter`` file, or a folder with exactly one: :func:`load_recbole`.
    * ``ratings.dat`` or a ``.zip`` (MovieLens-1M), or a folder holding ``ratings.dat`` /
      ``ml-1m.zip``: :func:`load_movielens_raw`.

    ``kwargs`` go to the chosen loader, except the protocol of sequence data (``protocol``, ``split_seed``,
    ``ratios``: :mod:`refit_gym.data.seq_protocols`), which applies to ``dataset.pkl`` folders and the synthetic
    sequence specs only.

    Raises:
        DataError: the path does not exist or holds none of the formats above (the message lists them), or a
            protocol was given for data that is not sequences.
    """
    from refit_gym.data.seq_protocols import PROTOCOL_KWARGS, apply_protocol

    chosen = {k: kwargs.pop(k) for k in PROTOCOL_KWARGS if k in kwargs}
    data = _load(spec, chosen, **kwargs)
    if chosen and not hasattr(data, "split_users"):
        raise DataError(f"{spec}: field 'protocol' is {chosen.get('protocol', 'loo')!r}, but the protocol (loo / "
                        f"user-split) applies to sequence data (a dataset.pkl folder or synthetic-seq), not "
                        f"{type(data).__name__}")
    if chosen and data.protocol != chosen.get("protocol", "loo"):  # synthetic sequences: generated leave-one-out
        data = apply_protocol(data, **chosen, max_len=kwargs.get("max_len"))
    return data


def _load(spec, protocol: dict, **kwargs):
    """:func:`load_dataset` without the protocol: the loader of ``spec`` (``protocol`` goes to load_sequential)."""
    if isinstance(spec, str) and spec.partition(":")[0] in SYNTHETIC_SPECS:
        return load_synthetic(spec, **kwargs)

    path = Path(spec)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder. Accepted dataset specs: {ACCEPTED_FORMATS}")
    if path.is_dir():
        if (path / DIFFREC_FILES["train"]).is_file():
            return load_diffrec(path, **kwargs)
        if (path / "dataset.pkl").is_file():
            return _load_sequential(path, **protocol, **kwargs)
        if any(path.glob("*.inter")):
            return load_recbole(path, **kwargs)
        for raw in ("ratings.dat", "ml-1m.zip", "ml-1m/ratings.dat"):
            if (path / raw).is_file():
                return load_movielens_raw(path / raw, **kwargs)
    else:
        if path.suffix == ".inter":
            return load_recbole(path, **kwargs)
        if path.name == "ratings.dat" or path.suffix.lower() == ".zip":
            return load_movielens_raw(path, **kwargs)
        if path.name == "dataset.pkl":
            return _load_sequential(path.parent, **protocol, **kwargs)
    raise DataError(f"{path}: unrecognised dataset format. Accepted dataset specs: {ACCEPTED_FORMATS}")


__all__ = ["ACCEPTED_FORMATS", "load_dataset"]
