"""The options every script shares: the ``--help`` formatter, ``--device`` and ``--protocol`` (one meaning
everywhere).

A module of the lowest layer (argparse only), so that the command line (:mod:`refit_gym.cli`, ``scripts/``) and
the experiments' parsers (:mod:`refit_gym.experiments.pretrain`, :mod:`refit_gym.experiments.benchmark`) use
the same definitions.
"""
from __future__ import annotations

import argparse
import copy

#: what ``--device`` means in every script (:func:`add_device_argument`; the value goes through
#: :func:`refit_gym.utils.resolve_device`)
DEVICE_HELP = ("auto: CUDA when available, else the CPU; cpu; cuda or cuda:N (an error when CUDA is not "
               "available, never a silent fallback)")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The scripts' ``--help``: the description as written, and the default of every option that has one
    (not for flags that are off by default, options whose default is None, or help that already states it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text or default is None or default is False or default == argparse.SUPPRESS
                or not action.option_strings):
            return text
        return (text + " " if text else "") + "(default: %(default)s)"

    def _format_action(self, action: argparse.Action) -> str:
        if action.help is None and action.option_strings and action.default not in (None, argparse.SUPPRESS) \
                and action.default is not False:  # an option without help text still shows its default
            action = copy.copy(action)
            action.help = "(default: %(default)s)"
        return super()._format_action(action)


#: what ``--protocol`` means in every script that loads data (:func:`add_protocol_argument`); the names are
#: :data:`refit_gym.data.seq_protocols.PROTOCOLS` (this module imports nothing of the library)
PROTOCOL_CHOICES = ("loo", "user-split")
PROTOCOL_HELP = ("evaluation protocol of sequence data (dataset.pkl, synthetic-seq): loo = the file's leave-one-out "
                 "split (the default); user-split = users split 80/10/10 at random (--split-seed), a valid / test "
                 "user's last item is its target and the last 10 items before it its history, only train users "
                 "train (PreferDiff / DreamRec papers). Default: the checkpoint's protocol where a checkpoint is "
                 "given, the saved one on --resume, else loo")


def add_protocol_argument(parser: argparse.ArgumentParser) -> None:
    """``--protocol`` and ``--split-seed``, the same options in every script that loads a dataset
    (:func:`protocol_kwargs` turns them into ``load_dataset`` keyword arguments)."""
    parser.add_argument("--protocol", choices=PROTOCOL_CHOICES, default=None, help=PROTOCOL_HELP)
    parser.add_argument("--split-seed", type=int, default=None,
                        help="seed of the --protocol user-split draw of users (default 0)")


def protocol_kwargs(args: argparse.Namespace) -> dict:
    """The ``refit_gym.data.load_dataset`` keyword arguments of ``--protocol`` / ``--split-seed``: ``{}`` when
    neither was given (the data's own split), ``{"protocol": ..., "split_seed": ...}`` otherwise. SystemExit for
    ``--split-seed`` without ``--protocol user-split``."""
    protocol, seed = getattr(args, "protocol", None), getattr(args, "split_seed", None)
    if seed is not None and protocol != "user-split":
        raise SystemExit(f"error: --split-seed {seed} applies to --protocol user-split (got --protocol {protocol})")
    if protocol is None:
        return {}
    return {"protocol": protocol, **({"split_seed": 0 if seed is None else int(seed)} if protocol == "user-split" else {})}


def protocol_argv(kwargs: dict) -> list:
    """The command-line flags of :func:`protocol_kwargs`' output (``[]`` for ``{}``), for a script run by another."""
    out = ["--protocol", kwargs["protocol"]] if kwargs.get("protocol") else []
    return out + (["--split-seed", str(kwargs["split_seed"])] if kwargs.get("split_seed") is not None else [])


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device``, the same option in every script: default ``auto``, help :data:`DEVICE_HELP`."""
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
