"""The benchmark's cost and scaling: wall-clock and peak memory of one ReFiT fine-tuning epoch against the
number of users and of items, each point measured in a fresh process.

``python -m refit_gym.experiments.benchmark.scaling SPEC_JSON RESULT_PATH`` measures one point
(:func:`measure_scaling_point`) and writes its result to ``RESULT_PATH``; :func:`run_scaling` starts it.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from refit_gym.experiments.benchmark.files import read_json, write_json
from refit_gym.experiments.benchmark.plan import REPO, Settings, backbone_kwargs_for

SCALING_SEED = 0  # the user sample of the scaling points (fixed, independent of --seeds)
PRETRAIN_TIMED_EPOCHS = 3  # pretraining epochs timed per scaling point (after one warm-up epoch)
SCALING_MODULE = "refit_gym.experiments.benchmark.scaling"  # run with -m: one point per fresh process


def scaling_points(fractions: Sequence[float]) -> List[Tuple[str, float, float]]:
    """Returns (name, user fraction, item fraction) per point: the users axis at all items, the items axis at all users."""
    fr = sorted({float(f) for f in fractions} | {1.0})
    pts = [(f"users{f:g}", f, 1.0) for f in fr if f < 1] + [(f"items{f:g}", 1.0, f) for f in fr if f < 1]
    return pts + [("all", 1.0, 1.0)]


def _rss_kb(field_name: str) -> Optional[int]:
    """Returns ``VmRSS`` / ``VmHWM`` of this process in kB from /proc (None where /proc is absent)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark to the current RSS (Linux >= 4.0); returns False where impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return _rss_kb("VmHWM") is not None
    except OSError:
        return False


def measure_scaling_point(spec: Dict[str, Any]) -> Dict[str, Any]:
    """One cost point, meant to run in a fresh process (see the module docstring). ``spec`` keys: data,
    protocol (load_dataset keyword arguments, optional), backbone, env_id, backbone_kwargs, users_frac, items_frac, device, threads, max_rollouts.

    Returns the point: sizes, ``epoch_seconds`` (seconds of one fine-tuning epoch, extrapolated from
    ``rollouts_timed`` when fewer than all were timed), ``peak_rss_mb`` / ``epoch_extra_rss_mb`` (MiB),
    ``pretrain_epoch_seconds`` (seconds) and their ratio ``finetune_over_pretrain``."""
    import gc
    import resource

    import numpy as np
    import torch

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    from agents import ReFiT
    from refit_gym.experiments.hyperparams import load_hyperparams, split_hyperparams
    from refit_gym.data import load_dataset
    from refit_gym.diffusion import build_backbone
    from refit_gym.diffusion.training import PretrainConfig, pretrain
    from refit_gym.envs.factory import make_batched_env
    from refit_gym.utils import resolve_device

    device = resolve_device(spec["device"])
    full = load_dataset(spec["data"], **spec.get("protocol", {}))
    data = full
    if spec["users_frac"] < 1:
        n = max(1, round(spec["users_frac"] * full.n_users))
        users = np.sort(np.random.default_rng(SCALING_SEED).choice(full.n_users, size=n, replace=False))
        data = data.subset_users(users)
    if spec["items_frac"] < 1:
        m = max(1, round(spec["items_frac"] * full.n_items))
        popularity = np.asarray(full.train.sum(axis=0)).ravel()
        data = data.subset_items(np.sort(np.argsort(-popularity, kind="stable")[:m]))
    del full
    gc.collect()

    params = load_hyperparams("refit", spec["env_id"])  # the environment's default ReFiT hyperparameters
    zoo, kwargs = split_hyperparams(params)
    n_envs = zoo["n_envs"]
    env = make_batched_env(spec["backbone"], data, n_envs=n_envs, checkpoint="untrained",
                           backbone_kwargs=spec["backbone_kwargs"], device=device, seed=SCALING_SEED)
    model = ReFiT(env.adapter, env, seed=SCALING_SEED, device=device, **kwargs)
    T = env.adapter.schedule.chain_steps
    steps_per_rollout = n_envs * T
    users_per_rollout = n_envs // model.n_traj_per_user
    rollouts_per_epoch = math.ceil(data.n_users / users_per_rollout)
    timed = rollouts_per_epoch if spec.get("max_rollouts") is None else min(rollouts_per_epoch,
                                                                             int(spec["max_rollouts"]))
    model.learn(steps_per_rollout)  # warm-up: one rollout + update (lazy initialisation, allocator pools)
    gc.collect()
    rss_before = _rss_kb("VmRSS")
    hwm_reset = _reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    model.learn(timed * steps_per_rollout, reset_num_timesteps=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    peak_kb = _rss_kb("VmHWM") if hwm_reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = dict(
        n_users=int(data.n_users), n_items=int(data.n_items), users_frac=spec["users_frac"],
        items_frac=spec["items_frac"], T=int(T), n_envs=n_envs, n_traj_per_user=model.n_traj_per_user,
        rollouts_per_epoch=rollouts_per_epoch, rollouts_timed=timed, extrapolated=timed < rollouts_per_epoch,
        timed_seconds=seconds, epoch_seconds=seconds * rollouts_per_epoch / timed,
        peak_rss_mb=peak_kb / 1024, rss_before_mb=None if rss_before is None else rss_before / 1024,
        epoch_extra_rss_mb=None if (rss_before is None or not hwm_reset) else (peak_kb - rss_before) / 1024,
        peak_scope="epoch" if hwm_reset else "process",
        cuda_peak_mb=torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        device=str(device), threads=torch.get_num_threads(), hyperparams=params,
    )
    # pretraining epochs of the same architecture on the same data (scripts/pretrain.py's defaults otherwise):
    # the first one warms up, the median of the others is the pretraining epoch time; validation (untimed by
    # pretrain() anyway) is replaced by a constant so that it costs nothing here
    adapter = build_backbone(spec["backbone"], data, **spec["backbone_kwargs"])
    cfg = PretrainConfig(epochs=1 + PRETRAIN_TIMED_EPOCHS, patience=0, seed=SCALING_SEED, eval_users=None)
    pre = pretrain(adapter, data, cfg, out_dir=None, device=device, tensorboard=False, progress=False,
                   evaluate_fn=lambda *_: {cfg.metric: 0.0}, log=lambda m: None)
    result["pretrain_epoch_seconds"] = float(np.median([h["epoch_seconds"] for h in pre.history[1:]]))
    result["finetune_over_pretrain"] = result["epoch_seconds"] / result["pretrain_epoch_seconds"]
    return result


def loglog_slope(x: Sequence[float], y: Sequence[Optional[float]]) -> Optional[float]:
    """Returns the least-squares slope of log(y) against log(x); None with fewer than 2 usable points."""
    import numpy as np

    pts = [(a, b) for a, b in zip(x, y) if a and b is not None and a > 0 and b > 0]
    if len({a for a, _ in pts}) < 2:
        return None
    lx, ly = np.log([a for a, _ in pts]), np.log([b for _, b in pts])
    return float(np.polyfit(lx, ly, 1)[0])


def scaling_summary(points: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """Returns the log-log slopes of epoch time and memory along each axis (``users``, ``items``) from the
    measured points (name -> result), and the full point's epoch seconds and fine-tune / pretrain ratio."""
    out: Dict[str, Any] = {}
    for axis, key, n_key in (("users", "users", "n_users"), ("items", "items", "n_items")):
        pts = sorted([p for name, p in points.items() if name.startswith(key) or name == "all"],
                     key=lambda p: p[n_key])
        x = [p[n_key] for p in pts]
        out[axis] = dict(n=x, time_slope=loglog_slope(x, [p["epoch_seconds"] for p in pts]),
                         memory_slope=loglog_slope(x, [p.get("epoch_extra_rss_mb") for p in pts]),
                         peak_rss_slope=loglog_slope(x, [p["peak_rss_mb"] for p in pts]))
    full = points.get("all")
    if full:
        out["finetune_over_pretrain"] = full["finetune_over_pretrain"]
        out["epoch_seconds"] = full["epoch_seconds"]
        out["pretrain_epoch_seconds"] = full["pretrain_epoch_seconds"]
    return out


def run_scaling(out: Path, settings: Settings, backbone: str, env_id: str, device: str, threads: Optional[int],
                max_rollouts: Optional[int], fractions: Sequence[float], bar=None,
                done: Optional[List[str]] = None) -> Dict[str, Any]:
    """Measure (or reuse) every scaling point of ``backbone``, each in a fresh subprocess
    (``python -m refit_gym.experiments.benchmark.scaling``), written to ``out/scaling/<backbone>/<point>.json``.
    Returns ``{"points": {name: result}, "summary": scaling_summary(points), "backbone_kwargs": ...}``."""
    kwargs = backbone_kwargs_for(backbone, settings)
    points: Dict[str, Dict[str, Any]] = {}
    for name, uf, itf in scaling_points(fractions):
        path = out / "scaling" / backbone / f"{name}.json"
        res = read_json(path)
        if res is None:
            if bar is not None:
                bar.set_postfix_str(f"scaling {backbone} {name}")
            spec = dict(data=settings.data, protocol=settings.protocol, backbone=backbone, env_id=env_id, backbone_kwargs=kwargs, users_frac=uf,
                        items_frac=itf, device=device, threads=threads, max_rollouts=max_rollouts)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.result")
            path.parent.mkdir(parents=True, exist_ok=True)
            logfile = out / "logs" / f"scaling-{backbone}-{name}.log"
            logfile.parent.mkdir(parents=True, exist_ok=True)
            t0 = time.perf_counter()
            with open(logfile, "a") as fh:
                proc = subprocess.run([sys.executable, "-m", SCALING_MODULE, json.dumps(spec), str(tmp)], stdout=fh,
                                      stderr=fh, cwd=str(REPO))
            if proc.returncode != 0 or not tmp.is_file():
                raise RuntimeError(f"scaling point {backbone}/{name} failed (exit {proc.returncode}); see {logfile}")
            res = json.loads(tmp.read_text())
            tmp.unlink()
            res.update(name=name, backbone=backbone, seconds=time.perf_counter() - t0)
            write_json(path, res)
            if done is not None:
                done.append(f"scaling/{backbone}/{name}")
        if bar is not None:
            bar.update(1)
        points[name] = res
    return dict(points=points, summary=scaling_summary(points), backbone_kwargs=kwargs)


def _main(argv: List[str]) -> int:
    """``SPEC_JSON RESULT_PATH``: measure one point and write it; returns the exit status."""
    if len(argv) != 2:
        print(f"usage: python -m {SCALING_MODULE} SPEC_JSON RESULT_PATH", file=sys.stderr)
        return 2
    write_json(Path(argv[1]), measure_scaling_point(json.loads(argv[0])))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
