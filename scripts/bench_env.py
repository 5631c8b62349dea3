#!/usr/bin/env python
"""Throughput of the batched denoising environment against a bare loop of the same denoiser.

Example::

    python scripts/bench_env.py --data ../shared/datasets/ml-1m --checkpoint runs/diffrec-ml1m/best.pt --n-envs 256 --json

Three loops drive the same backbone with its reverse-process mean (``adapter.reverse_step`` under
``torch.no_grad``), one episode = T reverse steps for a batch of users:

* ``bare``: no environment: encode the condition of the users' visible items, context, start,
  T reverse steps, item scores;
* ``batched``: :class:`BatchedDenoisingEnv`'s torch fast path (reset_tensors / step_tensors), which
  also draws users, splits held-out items, validates actions and computes the ReFiT reward;
  ``batched_numpy`` the same through the SB3 numpy ``VecEnv`` API;
* ``single``: :class:`DenoisingEnv`, one user per episode.

The bare loop runs over the users and visible items of the batched env's episodes. Each loop is
warmed up, then timed ``--repeats`` times over ``--episodes`` episodes; the median is reported.
Throughput is in user-steps per second (transitions of one user; a batched step of n users counts
n). ``ratio`` = batched (fast path) time / bare time for the same users, paired per repeat (median
of the per-repeat ratios, robust to drifting machine load); the goal is ratio <= 1.2.
Without ``--checkpoint`` a fresh DiffRec of DiffRec's default size (hidden [1000], emb 10, T = 40)
is built: timing does not depend on training.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from refit_gym.data import load_dataset
from refit_gym.envs.batched import BatchedDenoisingEnv
from refit_gym.envs.denoising import DenoisingEnv
from refit_gym.envs.factory import build_env_backbone
from refit_gym.options import add_device_argument
from refit_gym.utils import resolve_device


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="dataset spec or folder for refit_gym.data.load_dataset")
    p.add_argument("--checkpoint", default="untrained",
                   help="backbone checkpoint (default 'untrained': a freshly initialised default-size backbone)")
    p.add_argument("--backbone", default="diffrec", help="backbone kind when no checkpoint is given")
    p.add_argument("--n-envs", type=int, default=256)
    p.add_argument("--episodes", type=int, default=1, help="episodes per timed repeat")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--single-episodes", type=int, default=5, help="episodes per repeat of the single env")
    add_device_argument(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)

    device = resolve_device(args.device)
    data = load_dataset(args.data)
    adapter = build_env_backbone(args.backbone, data, args.checkpoint, device, backbone_seed=args.seed)
    adapter.eval()
    T = adapter.schedule.chain_steps
    venv = BatchedDenoisingEnv(data, adapter, n_envs=args.n_envs, device=device, seed=args.seed)
    sync = (lambda: torch.cuda.synchronize()) if device.type == "cuda" else (lambda: None)

    @torch.no_grad()
    def policy_mean(x, t, ctx):
        i = torch.full((x.shape[0],), t - 1, dtype=torch.long, device=x.device)
        return adapter.reverse_step(x, i, ctx)[0]

    episodes_seen = []  # (users, visible) of the batched env's episodes, replayed by the bare loop

    def run_batched(n_ep):
        for _ in range(n_ep):
            obs = venv.reset_tensors()
            episodes_seen.append((venv.process.users.copy(), venv.process.state.visible))
            with torch.no_grad():
                ctx = adapter.context(obs["condition"], obs["user"].squeeze(1))
            for t in range(T, 0, -1):
                obs, r, term, _ = venv.step_tensors(policy_mean(obs["x"], t, ctx))
            r.sum().item()
        sync()

    def run_batched_numpy(n_ep):
        for _ in range(n_ep):
            obs = venv.reset()
            with torch.no_grad():
                ctx = adapter.context(torch.as_tensor(obs["condition"], device=device),
                                      torch.as_tensor(obs["user"][:, 0], device=device))
            for t in range(T, 0, -1):
                a = policy_mean(torch.as_tensor(obs["x"], device=device), t, ctx).cpu().numpy()
                obs, r, done, infos = venv.step(a)

    @torch.no_grad()
    def run_bare(n_ep, replay):
        for users, visible in replay[:n_ep]:
            cond = torch.as_tensor(adapter.encode_condition(users, visible), device=device)
            users_t = torch.as_tensor(users, device=device)
            ctx = adapter.context(cond, users_t)
            x = adapter.start(cond, ctx, None)
            for t in range(T, 0, -1):
                x = policy_mean(x, t, ctx)
            adapter.scores(x, ctx).sum().item()
        sync()

    single = DenoisingEnv(data, adapter, device=device)
    single.reset(seed=args.seed)

    def run_single(n_ep):
        for _ in range(n_ep):
            obs, _ = single.reset()
            cond = torch.as_tensor(obs["condition"], device=device).unsqueeze(0)
            with torch.no_grad():
                ctx = adapter.context(cond, torch.as_tensor(obs["user"], device=device))
            for t in range(T, 0, -1):
                a = policy_mean(torch.as_tensor(obs["x"], device=device).unsqueeze(0), t, ctx)[0].cpu().numpy()
                obs, r, term, _, _ = single.step(a)

    def timed(fn, *a):
        t0 = time.perf_counter()
        fn(*a)
        return time.perf_counter() - t0

    run_batched(1)  # warm-up
    run_bare(1, episodes_seen)
    run_batched_numpy(1)
    run_single(1)
    t_env, t_bare, t_np, t_single = [], [], [], []
    for _ in range(args.repeats):  # interleaved, so that drifts in machine load hit every loop alike
        episodes_seen.clear()
        t_env.append(timed(run_batched, args.episodes))
        t_bare.append(timed(run_bare, args.episodes, list(episodes_seen)))
        t_np.append(timed(run_batched_numpy, args.episodes))
        t_single.append(timed(run_single, args.single_episodes))
    med = statistics.median
    work = args.n_envs * T * args.episodes
    out = {
        "data": str(args.data), "backbone": adapter.backbone_name, "checkpoint": args.checkpoint,
        "n_envs": args.n_envs, "steps": T, "n_items": data.n_items, "device": str(device),
        "torch_threads": torch.get_num_threads(), "episodes": args.episodes, "repeats": args.repeats,
        "batched_steps_per_s": work / med(t_env),
        "batched_numpy_steps_per_s": work / med(t_np),
        "bare_steps_per_s": work / med(t_bare),
        "single_steps_per_s": T * args.single_episodes / med(t_single),
        # paired per repeat (the env and bare runs of a repeat cover the same users back to back)
        "ratio": med([e / b for e, b in zip(t_env, t_bare)]),
        "ratio_numpy": med([e / b for e, b in zip(t_np, t_bare)]),
    }
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:>26}: {v:.4g}" if isinstance(v, float) else f"{k:>26}: {v}")
    return out


if __name__ == "__main__":
    main()
