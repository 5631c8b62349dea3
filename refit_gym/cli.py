"""The ``refit-gym`` command (also ``python -m refit_gym``): one entry point over the scripts.

::

    refit-gym pretrain  [--backbone diffrec] [--data synthetic] ...   # scripts/pretrain.py
    refit-gym train     [--algo refit] [--env refit_gym/DiffRec-v0] ...   # scripts/train.py
    refit-gym evaluate  (--checkpoint PATH | --baseline ease) ...     # scripts/evaluate.py
    refit-gym benchmark --data synthetic --quick ...                  # scripts/benchmark.py
    refit-gym ladder --data FOLDER --checkpoint PATH --recipe R.yml   # scripts/ladder.py
    refit-gym hyperparams ppo                                         # path of the shipped rl-zoo3 YAML file

Each subcommand takes exactly the arguments of its script (``refit-gym train --help`` lists them with their
defaults). A user error -- bad data (:class:`~refit_gym.data.DataError`), a checkpoint that does not fit
(:class:`~refit_gym.diffusion.CheckpointError`), bad fine-tuning input
(:class:`~refit_gym.experiments.hyperparams.FinetuneError`), a device that is not there
(:class:`~refit_gym.utils.DeviceError`) or a script's own ``error: ...`` -- is printed as one line on stderr and the
exit status is 2; ``--debug`` (anywhere on the command line) shows the traceback instead. Ctrl-C exits with 130.

The scripts live in the source tree (``scripts/``), beside the packages: the command finds them in an editable
install (``pip install -e .``, as the README says) or a checkout on ``PYTHONPATH``.
"""
from __future__ import annotations

import argparse
import importlib.util
import signal
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from refit_gym.options import DEVICE_HELP, HelpFormatter, add_device_argument  # noqa: F401 (the scripts' options)

SCRIPTS_DIR = Path(__file__).resolve().parent.parent / "scripts"
#: subcommand -> one-line description (the script is ``scripts/<subcommand>.py``)
COMMANDS: Dict[str, str] = {
    "pretrain": "pretrain a diffusion backbone (validation-selected best.pt)",
    "train": "RL fine-tuning of a pretrained backbone (ReFiT, DDPO, Pathwise, PPO, A2C)",
    "evaluate": "full-ranking evaluation of a checkpoint or a classic baseline",
    "benchmark": "the results tables: every method x seed on one dataset, resumable",
    "ladder": "the headroom ladder: continued pretraining, oracle, Pathwise, ReFiT, PPO on one start and reward",
}
USAGE_EXIT = 2
def user_errors() -> tuple:
    """The exception classes that are the user's input or the run's state, not a bug: printed as one line.

    Bad files and settings (``DataError``, ``CheckpointError``, ``FinetuneError``, ``DeviceError``), a second run on a locked
    output folder (``OutputLockedError``, naming the holder's pid), divergence (``FloatingPointError``
    subclasses: ``NonFiniteTrainingError``, ``DivergenceError``, ``PretrainingDivergedError``) and
    operating-system errors such as a full disk (``OSError``, naming the path)."""
    from refit_gym.data.dataset import DataError
    from refit_gym.experiments.hyperparams import FinetuneError
    from refit_gym.io_safety import CheckpointError, OutputLockedError
    from refit_gym.utils import DeviceError

    return DataError, CheckpointError, FinetuneError, DeviceError, OutputLockedError, FloatingPointError, OSError


def run_main(main: Callable[[Optional[List[str]]], Any], prog: str, argv: Optional[Sequence[str]] = None,
             exit_code: Optional[Callable[[Any], int]] = None) -> int:
    """Run a script's ``main(argv)`` with the command-line error policy; returns the exit status.

    ``argv`` (default ``sys.argv[1:]``) may contain ``--debug`` anywhere: it is removed, and errors then raise
    with their traceback. ``exit_code(result)`` maps ``main``'s return value to the status (default 0)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        result = main(argv)
    except SystemExit as e:  # argparse (status 2, message already printed) or a script's SystemExit("error: ...")
        if debug or e.code is None or isinstance(e.code, int):
            raise
        print(f"{prog}: {str(e.code).strip()}", file=sys.stderr)
        return USAGE_EXIT
    except KeyboardInterrupt as e:  # e.g. agents.guards.TrainingInterrupted, raised after its save
        if debug:
            raise
        print(f"{prog}: {str(e) or 'interrupted'}", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 -- only the user-error classes are caught below
        if debug or not isinstance(e, user_errors()):
            raise
        print(f"{prog}: error: {type(e).__name__}: {e} (--debug shows the traceback)", file=sys.stderr)
        return USAGE_EXIT
    return 0 if exit_code is None else int(exit_code(result))


def load_script(name: str):
    """Import ``scripts/<name>.py`` as a module (the scripts folder is not a package)."""
    path = SCRIPTS_DIR / f"{name}.py"
    if not path.is_file():
        raise SystemExit(f"error: {path} not found: 'refit-gym {name}' runs the scripts of a source checkout; install "
                         "with 'pip install -e .' from the repository")
    spec = importlib.util.spec_from_file_location(f"refit_gym_script_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _benchmark_exit(result: Dict[str, Any]) -> int:
    return 130 if result.get("interrupted") else 1 if result.get("failed") else 0


def hyperparams_path(algo: str) -> Path:
    """The shipped hyperparameter file of ``algo`` (rl-zoo3's format; ``--conf-file`` of ``rl_zoo3.train``)."""
    from agents import HYPERPARAMS_DIR

    path = HYPERPARAMS_DIR / f"{algo}.yml"
    if not path.is_file():
        known = sorted(p.stem for p in HYPERPARAMS_DIR.glob("*.yml"))
        raise SystemExit(f"error: no shipped hyperparameters for {algo!r}; known: {', '.join(known)}")
    return path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="refit-gym", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter,
                                epilog="Run 'refit-gym <command> --help' for a command's options. --debug anywhere "
                                       "shows tracebacks of user errors.")
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", metavar="command")
    for name, desc in COMMANDS.items():
        sub.add_parser(name, help=desc, add_help=False)
    h = sub.add_parser("hyperparams", help="print the path of the shipped hyperparameter file of an algorithm")
    h.add_argument("algo", help="refit, ddpo, ppo or a2c")
    return p


def _version() -> str:
    from refit_gym import __version__

    return __version__


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``refit-gym <command> [args]``; returns the exit status (the console script exits with it)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    rest = [a for a in argv if a != "--debug"]
    if not rest or rest[0] not in COMMANDS:
        args = parser.parse_args(rest)
        if args.command is None:
            parser.print_help(sys.stderr)
            return USAGE_EXIT
        return run_main(lambda _: print(hyperparams_path(args.algo)), "refit-gym hyperparams", argv)
    command = rest[0]
    argv.remove(command)
    prog = f"refit-gym {command}"
    module = load_script(command)
    if command == "benchmark":
        signal.signal(signal.SIGTERM, module._interrupt)  # stop like Ctrl-C: the invocation is recorded

    def call(args):
        old = sys.argv[0]
        sys.argv[0] = prog  # argparse's usage line names the command
        try:
            return module.main(args)
        finally:
            sys.argv[0] = old

    return run_main(call, prog, argv, _benchmark_exit if command == "benchmark" else None)


def console() -> None:
    """The ``refit-gym`` console script."""
    sys.exit(main())


__all__ = ["COMMANDS", "DEVICE_HELP", "HelpFormatter", "add_device_argument", "console", "hyperparams_path", "load_script",
           "main", "run_main"]
