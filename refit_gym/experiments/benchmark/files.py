"""The benchmark's files: atomic JSON records, where each (row, seed) cell is stored, per-run logs."""
from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Sequence

from refit_gym.experiments.benchmark.plan import REPO, SEEDLESS, RowSpec


def write_json(path: Path, obj: Any) -> None:
    """Atomic JSON write (temporary file + rename); returns nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    os.replace(tmp, path)


def read_json(path: Path) -> Optional[Any]:
    """Returns the JSON in ``path``, or None when absent (a corrupt file is an error naming it)."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise SystemExit(f"error: {path} is not valid JSON ({e}); delete it to recompute that cell") from None


def repo_relative(path: Path) -> str:
    """Returns ``path`` relative to the repository when it lies inside it (the form the reproduce lines print, run from
    the repository root), else as given."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(REPO.resolve()))
    except ValueError:
        return str(path)


def file_sha1(path: Path) -> str:
    """Returns the SHA-1 (hex) of a file's bytes (read in 1 MiB blocks)."""
    import hashlib

    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def seed_tag(row: RowSpec, seed: int) -> str:
    """Returns the seed as written in file names: ``str(seed)``, or :data:`SEEDLESS` for deterministic rows."""
    return str(seed) if row.seeded else SEEDLESS


def run_path(out: Path, row: RowSpec, seed: int) -> Path:
    """Returns the record of the cell (row, seed): ``out/runs/<row>/seed<tag>.json``."""
    return out / "runs" / row.name / f"seed{seed_tag(row, seed)}.json"


def row_seeds(row: RowSpec, seeds: Sequence[int]) -> List[int]:
    """Returns the seeds a row runs with (one for deterministic rows)."""
    return list(seeds) if row.seeded else list(seeds[:1])


@contextlib.contextmanager
def run_log(path: Path) -> Iterator[Callable[[str], None]]:
    """Send stdout, stderr and a ``log(msg)`` function to ``path`` (appended) for the duration; yields ``log``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", buffering=1) as fh:
        def log(msg: str) -> None:
            fh.write(f"[{time.strftime('%H:%M:%S')}] {msg}\n")

        with contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
            yield log
