"""Reading and writing run files safely: no code from files, no lost or mixed runs, every error named.

* :func:`restricted_loads` -- unpickle the few non-JSON values of an SB3 agent zip (spaces, schedule
  objects, the policy class) with an allow-list of globals; anything else (a cloudpickled function,
  ``os.system``, an arbitrary class) raises :class:`CheckpointError`
  naming the file, the key and the refused global, *before* any object is built.
* :func:`load_agent` / :func:`sb3_load` -- SB3's ``BaseAlgorithm.load`` fed only with values decoded by
  :func:`restricted_loads` (as ``custom_objects``), so SB3 never calls ``cloudpickle.loads`` on file
  content; counters are range-checked, SB3's errors on damaged zips are named, loaded weights must be finite.
* :func:`read_json_file` -- JSON state files (``train_state.json``, ``metrics.json``) with errors naming
  the file.
* :func:`unique_tmp` / :func:`atomic_write` -- per-process unique temporary names next to the target,
  removed on any failure; ``ENOSPC`` and other ``OSError`` re-raised naming the target path.
* :class:`RunLock` -- an exclusive ``flock`` on ``OUT/.lock`` holding the owner's pid: a second run on the
  same output folder raises :class:`OutputLockedError` naming that pid. The kernel releases the lock
  when the holder dies (also on ``kill -9``), so a stale lock never blocks a resume; :func:`locks_output`
  wraps a function in it.
* :func:`resumable_csv_output` -- ``progress.csv`` continued (not truncated) on resume.
* :func:`cli_errors` -- a script's named errors end it with one line (Ctrl-C: exit status 130).
"""
from __future__ import annotations

import base64
import contextlib
import errno
import io
import json
import math
import os
import pickle
import re
import uuid
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional, Union

PathLike = Union[str, "os.PathLike[str]"]

#: ``(module, name)`` globals an agent zip's pickled values may reference: gymnasium spaces, numpy
#: arrays/dtypes/generators, SB3's schedule classes, SB3's rollout buffers, optimizers and refit-gym's policy.
#: Functions (cloudpickled code), ``builtins.eval``/``exec``, ``os.*``, ``subprocess.*`` ... are absent by
#: design. What remains callable builds data objects only: no code runs, although a crafted value may still
#: ask for a large allocation (e.g. a huge ``Box``), which fails with ``MemoryError``.
ALLOWED_GLOBALS = frozenset({
    ("copyreg", "_reconstructor"), ("copyreg", "__newobj__"), ("builtins", "object"), ("builtins", "slice"),
    ("collections", "OrderedDict"), ("collections", "deque"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.random._pickle", "__generator_ctor"), ("numpy.random._pickle", "__bit_generator_ctor"),
    ("numpy.random._pickle", "__randomstate_ctor"), ("numpy.random._pcg64", "PCG64"),
    ("numpy.random._pcg64", "PCG64DXSM"),
    ("numpy.random._mt19937", "MT19937"), ("numpy.random._philox", "Philox"), ("numpy.random._sfc64", "SFC64"),
    ("numpy.random._generator", "Generator"), ("numpy.random.mtrand", "RandomState"),
    ("numpy.random.bit_generator", "SeedSequence"), ("numpy.random.bit_generator", "__pyx_unpickle_SeedSequence"),
    ("gymnasium.spaces.box", "Box"), ("gymnasium.spaces.dict", "Dict"), ("gymnasium.spaces.discrete", "Discrete"),
    ("gymnasium.spaces.multi_discrete", "MultiDiscrete"), ("gymnasium.spaces.multi_binary", "MultiBinary"),
    ("gymnasium.spaces.tuple", "Tuple"),
    ("stable_baselines3.common.utils", "FloatSchedule"), ("stable_baselines3.common.utils", "ConstantSchedule"),
    ("stable_baselines3.common.utils", "LinearSchedule"),
    ("stable_baselines3.common.buffers", "RolloutBuffer"), ("stable_baselines3.common.buffers", "DictRolloutBuffer"),
    ("agents.policies", "DenoiserPolicy"),
    ("stable_baselines3.common.policies", "ActorCriticPolicy"),
    ("stable_baselines3.common.policies", "MultiInputActorCriticPolicy"),
    ("torch.optim.adam", "Adam"), ("torch.optim.rmsprop", "RMSprop"), ("torch.optim.adamw", "AdamW"),
    ("torch.optim.sgd", "SGD"),
})
#: counters of an agent zip that must be non-negative integers
NONNEGATIVE_COUNTERS = ("num_timesteps", "_total_timesteps", "_num_timesteps_at_start", "_n_updates", "_episode_num")
#: keys SB3 rebuilds on load itself (``_setup_model`` recomputes the schedule from ``learning_rate``): never decoded
REBUILT_KEYS = ("lr_schedule",)


class CheckpointError(ValueError):
    """A checkpoint or agent file that cannot be read, or does not fit the data it is used with.

    Defined here, the lowest layer that reads files; :mod:`refit_gym.diffusion.checkpoint` exports it too."""


class OutputLockedError(RuntimeError):
    """Another live process holds the output folder's lock (the message names its pid)."""


class _AllowListUnpickler(pickle.Unpickler):
    def __init__(self, fh, where: str):
        super().__init__(fh)
        self.where = where

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_GLOBALS:
            raise CheckpointError(f"{self.where}: refuses to unpickle global {module}.{name} (only spaces, numpy "
                                    "arrays, SB3 schedules and refit-gym policies are allowed; a pickled function "
                                    "or any other object could run code)")
        return super().find_class(module, name)


def restricted_loads(blob: bytes, where: str) -> Any:
    """Unpickle ``blob`` allowing only :data:`ALLOWED_GLOBALS`; ``where`` (file and key) goes into errors.

    Raises:
        CheckpointError: a refused global or an unreadable pickle.
    """
    try:
        return _AllowListUnpickler(io.BytesIO(blob), where).load()
    except CheckpointError:
        raise
    except Exception as e:  # truncated / corrupt pickle
        raise CheckpointError(f"{where}: unreadable pickled value ({type(e).__name__}: {e})") from None


def read_agent_data(path) -> Dict[str, Any]:
    """The ``data`` JSON of an SB3 agent zip (a path or a seekable binary file), without decoding any
    serialized value. A file object is rewound afterwards.

    Raises:
        CheckpointError: missing file, not a zip, no ``data`` entry, not JSON, not an object.
    """
    if isinstance(path, (str, os.PathLike)):
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"{path}: no such agent file")
    try:
        with zipfile.ZipFile(path) as zf:
            raw = zf.read("data")
    except KeyError:
        raise CheckpointError(f"{path}: not an SB3 agent zip (no 'data' entry)") from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable agent zip ({type(e).__name__}: {e})") from None
    finally:
        if hasattr(path, "seek"):
            path.seek(0)
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: entry 'data' is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: entry 'data' is a {type(data).__name__}, expected a JSON object")
    return data


def safe_custom_objects(path: PathLike, data: Dict[str, Any], given: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """``custom_objects`` for SB3's loader covering *every* serialized key of ``data``.

    Keys in ``given`` are used as they are; :data:`REBUILT_KEYS` get a placeholder (SB3 rebuilds them);
    every other ``{":serialized:": ...}`` value is decoded with :func:`restricted_loads`. Also checks
    :data:`NONNEGATIVE_COUNTERS`.

    Raises:
        CheckpointError: a refused or unreadable value, or a counter that is not a non-negative integer.
    """
    out = dict(given or {})
    for key in NONNEGATIVE_COUNTERS:
        value = data.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise CheckpointError(f"{path}: field 'data.{key}' is {value!r}, expected a non-negative integer")
    for key, value in data.items():
        if key in out or not (isinstance(value, dict) and ":serialized:" in value):
            continue
        if key in REBUILT_KEYS:
            out[key] = None
            continue
        try:
            blob = base64.b64decode(value[":serialized:"].encode(), validate=True)
        except (ValueError, AttributeError) as e:
            raise CheckpointError(f"{path}: field 'data.{key}' is not base64 ({e})") from None
        out[key] = restricted_loads(blob, f"{path}: field 'data.{key}'")
    return out


def check_finite_parameters(model, path) -> None:
    """Raise CheckpointError naming ``path`` and the tensor when a loaded policy holds NaN/inf values."""
    import torch

    for name, p in model.policy.state_dict().items():
        if torch.is_tensor(p) and p.is_floating_point() and not bool(torch.isfinite(p).all()):
            raise CheckpointError(f"{path}: field 'policy.{name}' holds non-finite values")


def sb3_load(load: Callable, path, custom_objects: Optional[Dict[str, Any]] = None, **kwargs):
    """Run an SB3 ``load`` (``BaseAlgorithm.load`` bound to a class) on ``path`` safely: the serialized values
    come from :func:`safe_custom_objects`, SB3's own errors on a damaged zip (bad CRC, missing entries, state
    dicts that do not fit) become :class:`CheckpointError` naming the file, and the loaded weights must be finite.
    """
    objects = safe_custom_objects(path, read_agent_data(path), custom_objects)
    try:
        model = load(path, custom_objects=objects, **kwargs)
    except CheckpointError:
        raise
    except (AssertionError, KeyError, RuntimeError, ValueError, EOFError, zipfile.BadZipFile,
            pickle.UnpicklingError) as e:
        raise CheckpointError(f"{path}: cannot load the agent ({type(e).__name__}: {e})") from e
    check_finite_parameters(model, path)
    return model


def load_agent(cls, path: PathLike, env=None, device="auto", custom_objects: Optional[Dict[str, Any]] = None,
               **kwargs):
    """``cls.load(path, ...)`` (an SB3 algorithm class) without unpickling code from the file.

    Every serialized value of the zip's ``data`` is decoded by :func:`safe_custom_objects` (or taken from
    ``custom_objects``) before SB3 sees it, so SB3's ``cloudpickle.loads`` is never reached; the tensors
    inside the zip are read by SB3 with ``torch.load(weights_only=True)``. After loading, every parameter
    must be finite.

    Raises:
        CheckpointError: a tampered or corrupt zip (refused before anything is built), or non-finite weights.
    """
    path = Path(path)
    return sb3_load(cls.load, path, custom_objects, env=env, device=device, **kwargs)


# ---------------------------------------------------------------------------- JSON state files
def read_json_file(path: PathLike, expect: type = dict) -> Any:
    """Parse the JSON file ``path``; its top-level value must be an ``expect``.

    Raises:
        CheckpointError: unreadable file, invalid JSON (with line and column), or the wrong top-level type.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: cannot read the JSON state file ({type(e).__name__}: {e})") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not valid JSON at line {e.lineno} column {e.colno} ({e.msg}); "
                                "delete it or restore it from a backup") from None
    if not isinstance(obj, expect):
        raise CheckpointError(f"{path}: top-level value is a {type(obj).__name__}, expected a {expect.__name__}")
    return obj


# ---------------------------------------------------------------------------- atomic writes
_TMP_NAME = re.compile(r"^\..+\.(\d+)\.[0-9a-f]{8}\.(tmp|zip)$")


def unique_tmp(path: PathLike) -> Path:
    """A temporary name beside ``path`` unique to this process and call (``.NAME.<pid>.<hex>.tmp``), so two
    writers never share a temporary file."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


@contextlib.contextmanager
def atomic_write(path: PathLike) -> Iterator[Path]:
    """Yield a unique temporary path to write; on success it replaces ``path`` atomically.

    On any failure the temporary file is removed; an ``OSError`` (e.g. ``ENOSPC``, a full disk) is
    re-raised as an ``OSError`` with the same errno whose message and ``filename`` name ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = unique_tmp(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(e, OSError) and not isinstance(e, FileNotFoundError):
            code = e.errno or errno.EIO
            reason = "no space left on device" if code == errno.ENOSPC else (e.strerror or str(e))
            raise OSError(code, f"writing {path}: {reason} (the previous file, if any, is intact)", str(path)) from e
        raise


def write_text_atomic(path: PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through :func:`atomic_write`."""
    with atomic_write(path) as tmp:
        Path(tmp).write_text(text)
    return Path(path)


def write_json_atomic(path: PathLike, obj: Any, indent: Optional[int] = None) -> Path:
    """Write ``obj`` as JSON to ``path`` through :func:`atomic_write` (never half-written)."""
    return write_text_atomic(path, json.dumps(obj, indent=indent, default=str))


def save_agent_atomic(model, path: PathLike) -> Path:
    """``model.save`` to a unique temporary zip, then rename onto ``path`` (see :func:`atomic_write`)."""
    path = Path(path)
    with atomic_write(path) as tmp:
        written = tmp.with_suffix(".zip")  # SB3 appends ".zip" to names without it
        try:
            model.save(written)
            os.replace(written, tmp)
        finally:
            with contextlib.suppress(FileNotFoundError):
                written.unlink()
    return path


# ---------------------------------------------------------------------------- progress.csv across resumes
def resumable_csv_output(path: PathLike, keep_until_step: Optional[int] = None, step_key: str = "time/total_timesteps"):
    """An SB3 CSV logger output on ``path`` that continues an existing file instead of truncating it.

    With ``keep_until_step`` (a resume) the rows of an existing file whose ``step_key`` exceeds it (logged
    after the save being resumed, so about to be redone) are dropped first, through :func:`atomic_write`;
    the other rows and the header are kept and new rows are appended (new columns widen the file as in
    SB3). Without it (a fresh run) the file starts empty.

    Raises:
        CheckpointError: an existing file that is not a CSV with a header (the message names it).
    """
    import csv

    from stable_baselines3.common.logger import CSVOutputFormat

    path = Path(path)
    header: list = []
    if keep_until_step is not None and path.is_file() and path.stat().st_size > 0:
        try:
            with open(path, newline="") as fh:
                rows = list(csv.reader(fh))
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise CheckpointError(f"{path}: cannot continue the progress log ({type(e).__name__}: {e})") from None
        header, body = rows[0], rows[1:]
        if step_key in header:
            col = header.index(step_key)

            def keep(row) -> bool:
                try:
                    return float(row[col]) <= keep_until_step
                except (IndexError, ValueError):
                    return False
            body = [row for row in body if keep(row)]
        with atomic_write(path) as tmp:
            with open(tmp, "w", newline="") as fh:
                csv.writer(fh, lineterminator="\n").writerows([header] + body)
    class NamedCSVOutputFormat(CSVOutputFormat):
        """SB3's CSV output whose write errors (e.g. a full disk) name the file."""

        def write(self, *args, **kwargs) -> None:
            try:
                super().write(*args, **kwargs)
            except OSError as e:
                raise OSError(e.errno or errno.EIO, f"writing {path}: {e.strerror or e}", str(path)) from e

    out = NamedCSVOutputFormat.__new__(NamedCSVOutputFormat)
    out.file = open(path, "r+" if header else "w+")
    out.file.seek(0, os.SEEK_END)
    out.keys, out.separator, out.quotechar = list(header), ",", '"'
    return out


# ---------------------------------------------------------------------------- the output-folder lock
class RunLock:
    """Exclusive lock of an output folder for the lifetime of one run (``with RunLock(out): ...``).

    ``OUT/.lock`` holds the holder's pid; the lock itself is an ``fcntl.flock``, so it vanishes with the
    process (``kill -9`` included) and a later ``--resume`` is never blocked by a dead run. Once acquired,
    temporary files of earlier, dead writers (:func:`unique_tmp` names of other pids, left by a ``kill -9``
    mid-write) are removed and listed in ``stale_removed``.

    Raises:
        OutputLockedError: another process (or another open run in this one) holds the folder.
    """

    def __init__(self, folder: PathLike):
        self.folder, self._fh = Path(folder), None
        self.stale_removed: list = []

    @property
    def path(self) -> Path:
        return self.folder / ".lock"

    def acquire(self) -> "RunLock":
        import fcntl

        self.folder.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            fh.close()
            raise OutputLockedError(f"{self.folder}: another run (pid {holder}) is writing to this output folder; "
                                    "wait for it or choose another --out") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._fh = fh
        for p in self.folder.iterdir():  # we hold the folder: other pids' temp files are from dead runs
            m = _TMP_NAME.match(p.name)
            if m and int(m.group(1)) != os.getpid() and p.is_file():
                p.unlink()
                self.stale_removed.append(p.name)
        return self

    def release(self) -> None:
        if self._fh is not None:
            import fcntl

            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def locks_output(param: str) -> Callable:
    """Decorator: the wrapped function runs holding :class:`RunLock` on its argument ``param`` (a folder; None
    or absent: no lock), so two runs never write one output folder. Under ``torch.distributed`` only rank 0
    (the one that writes) takes the lock."""
    import functools
    import inspect

    def wrap(fn: Callable) -> Callable:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def locked(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            folder = bound.arguments.get(param)
            from refit_gym import distributed

            if folder is None or not distributed.is_main():
                return fn(*args, **kwargs)
            with RunLock(folder):
                return fn(*args, **kwargs)

        return locked

    return wrap


def finite_number(value: Any) -> bool:
    """True for a real int/float that is neither NaN nor infinite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


__all__ = ["ALLOWED_GLOBALS", "CheckpointError", "OutputLockedError", "RunLock", "atomic_write", "check_finite_parameters",
           "finite_number", "load_agent", "locks_output", "read_agent_data", "read_json_file", "restricted_loads",
           "resumable_csv_output", "safe_custom_objects", "sb3_load", "save_agent_atomic", "unique_tmp",
           "write_json_atomic", "write_text_atomic"]
