"""The options every script shares: the ``--help`` formatter and ``--device`` (one meaning everywhere).

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


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device``, the same option in every script: default ``auto``, help :data:`DEVICE_HELP`."""
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
