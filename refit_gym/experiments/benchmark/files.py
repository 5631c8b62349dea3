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


def settings_clash(stored: dict, mine: dict) -> List[str]:
    """Returns the settings (keys of :meth:`Settings.fingerprint`, and ``hyperparams`` entries) that two benchmark
    folders' plans both hold with different values (empty: their cells can stand in one table)."""
    stored = dict(stored)
    stored.setdefault("protocol", {})  # plans written before --protocol were the data's own split
    clash = sorted(k for k in mine if k in stored and k != "hyperparams" and stored[k] != mine[k])
    return clash + sorted(k for k, v in mine.get("hyperparams", {}).items()
                          if k in stored.get("hyperparams", {}) and stored["hyperparams"][k] != v)


def recorded_settings(stored: dict, out: Path, rows: Sequence[RowSpec]) -> dict:
    """``stored`` (a plan's settings) without the hyperparameters of those fine-tuned ``rows`` that have no record in
    ``out``: a recipe that no cell was made with cannot be mixed with another (e.g. the CF-Diff section of a
    hyperparameter file whose CF-Diff row never ran), so :func:`settings_clash` need not refuse a new one."""
    unrecorded = {f"{r.method}|{r.env_id}" for r in rows
                  if r.kind == "finetuned" and not any((out / "runs" / r.name).glob("seed*.json"))}
    return dict(stored, hyperparams={k: v for k, v in stored.get("hyperparams", {}).items() if k not in unrecorded})


def merge_folder(out: Path, src: Path, dataset: str, mine: dict) -> int:
    """Copy the cells of the benchmark folder ``src`` (run elsewhere, e.g. some seeds in another process) into
    ``out``: its records (``runs/``), logs and hyperparameter files, and its invocations (marked ``merged_from``).
    SystemExit naming the file when ``src`` holds another dataset, other settings than ``mine`` (a plan
    fingerprint), or a record that differs from one ``out`` already holds. Returns the number of records copied."""
    import shutil

    plan = read_json(src / "plan.json")
    if plan is None:
        raise SystemExit(f"error: --merge {src}: no plan.json (not a benchmark folder)")
    if plan.get("dataset") != dataset:
        raise SystemExit(f"error: --merge {src}: its plan.json field 'dataset' is {plan.get('dataset')!r}, not {dataset!r}")
    clash = settings_clash(plan.get("settings", {}), mine)
    if clash:
        raise SystemExit(f"error: --merge {src}: its plan.json was made with other settings ({', '.join(clash)})")
    copied = 0
    for rec in sorted((src / "runs").glob("*/seed*.json")):
        dest = out / "runs" / rec.parent.name / rec.name
        if dest.is_file():
            if read_json(dest) != read_json(rec):
                raise SystemExit(f"error: --merge {src}: {rec} differs from {dest}; keep one of them")
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(rec, dest)
        copied += 1
    for sub in ("logs", "hyperparams"):
        for f in sorted((src / sub).glob("*")):
            if f.is_file() and not (out / sub / f.name).exists():
                (out / sub).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, out / sub / f.name)
    merged = [dict(inv, merged_from=str(src)) for inv in read_json(src / "invocations.json") or []]
    known = read_json(out / "invocations.json") or []
    write_json(out / "invocations.json", known + [m for m in merged if m not in known])
    return copied


def check_retirable(out: Path, rows: Sequence[RowSpec], dest: Path) -> None:
    """SystemExit naming the row when a row of ``rows`` has no records in ``out`` or ``dest`` holds its records
    already: what :func:`retire_rows` checks before it moves anything."""
    for row in rows:
        if not (out / "runs" / row.name).is_dir():
            raise SystemExit(f"error: --retire {row.name}: {out / 'runs' / row.name} does not exist (nothing to retire)")
        if (dest / "runs" / row.name).exists():
            raise SystemExit(f"error: --retire {row.name}: {dest / 'runs' / row.name} exists already; choose another "
                             "--retire-to")


def without_retired(stored: dict, rows: Sequence[RowSpec]) -> dict:
    """``stored`` (a plan's settings) as :func:`retire_rows` leaves it: without the hyperparameters of the fine-tuned
    ``rows``. The settings check of an invocation that retires rows runs on it, before anything moves."""
    gone = {f"{r.method}|{r.env_id}" for r in rows if r.kind == "finetuned"}
    return dict(stored, hyperparams={k: v for k, v in stored.get("hyperparams", {}).items() if k not in gone})


def retire_rows(out: Path, rows: Sequence[RowSpec], dest: Path) -> List[str]:
    """Move the cells of ``rows`` out of the benchmark folder ``out`` into the archive folder ``dest``, so that the
    rows can be run again with other settings: their records (``runs/<row>/``), logs (``logs/<row>-seed*.log``)
    and, for fine-tuned rows, hyperparameter files (``hyperparams/<method>-<backbone>.yml``) move; ``dest/plan.json``
    gets a copy of ``out/plan.json`` (the settings the retired cells were made with), and the retired rows'
    hyperparameters leave ``out/plan.json``. Returns the moved paths, relative to ``out``.

    SystemExit, before anything moves, when :func:`check_retirable` refuses."""
    import shutil

    check_retirable(out, rows, dest)
    plan = read_json(out / "plan.json")
    if plan is not None and not (dest / "plan.json").exists():
        write_json(dest / "plan.json", plan)
    moved = []
    for row in rows:
        paths = [out / "runs" / row.name] + sorted((out / "logs").glob(f"{row.name}-seed*.log"))
        if row.kind == "finetuned":
            paths.append(out / "hyperparams" / f"{row.method}-{row.backbone}.yml")
        for p in paths:
            if p.exists():
                target = dest / p.relative_to(out)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(p), str(target))
                moved.append(str(p.relative_to(out)))
    if plan is not None:
        write_json(out / "plan.json", dict(plan, settings=without_retired(plan.get("settings", {}), rows)))
    return moved
