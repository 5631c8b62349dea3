"""Wall-clock cost of the main operations of a backbone against their matmul FLOP floor.

For one dataset and one backbone (a checkpoint, or a freshly initialised backbone of the scenario's
architecture: the cost does not depend on the weights), :func:`measure_cost` times

* ``pretrain_epoch``: one pretraining epoch (every user once; :func:`refit_gym.diffusion.training.pretrain`),
  validation replaced by a constant;
* ``evaluation``: one full validation (every user with a ground truth, full ranking over all items,
  :meth:`refit_gym.scenarios.Scenario.evaluate_backbone`);
* ``finetune_<algo>``: one fine-tuning epoch (every user once: ``ceil(n_users / (n_envs / n_traj_per_user))``
  rollouts + updates) of each shipped recipe (``agents/hyperparams/<algo>.yml`` for the backbone's
  environment id, :data:`refit_gym.registry.ENV_OF_BACKBONE`) on a ``BatchedDenoisingEnv``,

and sets each beside its **FLOP floor**: the matmul FLOPs (2 per multiply-add) of the forward / backward
passes the operation needs at minimum, divided by the machine's measured matmul rate (FLOP/s of a dense
``(rows, k) @ (k, n)`` product, ``rows`` the operation's batch and ``(k, n)`` the model's largest 2-D
weight or its largest Linear weight, whichever runs faster, with the same thread count). ``ratio = measured seconds / floor seconds``: 1 is the floor, and a
ratio far above 1 says where the implementation (small matmuls, Python overhead, non-matmul work) costs.
The same ratio is also given in CPU time (``ratio_cpu``: the process's CPU seconds against the matmul's FLOPs
per CPU second), which other processes on a busy machine disturb much less than wall-clock.

The floors (FLOPs counted from the model's shapes) are defined in :mod:`refit_gym.experiments.floors`.

Seconds of an operation that would exceed ``max_seconds`` are measured on part of it (a sample of the
users for evaluation, the first batches of a sequence pretraining epoch, some rollouts of a fine-tuning
epoch) and scaled linearly to the whole; ``fraction_timed`` says how much was timed.
"""
from __future__ import annotations

import math
import platform
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from refit_gym.experiments.bare import bare_evaluation_seconds, bare_rollout_seconds
from refit_gym.experiments.floors import (evaluation_flops, pretrain_epoch_flops,
                                          recipe_rollout_flops, unit_flops)
from refit_gym.registry import ENV_OF_BACKBONE

#: fine-tuning recipes measured by default (``agents/hyperparams/<algo>.yml``)
RECIPES = ("refit", "ddpo", "pathwise")


def matmul_rate(rows: int, k: int, n: int, device="cpu", min_seconds: float = 0.2, repeats: int = 3,
                clock: Callable[[], float] = time.perf_counter) -> float:
    """Measured FLOP/s of a dense float32 ``(rows, k) @ (k, n)`` product (best of ``repeats`` runs of at least
    ``min_seconds`` each) with torch's current thread count; ``clock=time.process_time`` gives FLOPs per CPU
    second (all threads summed), which a busy machine disturbs less than wall-clock."""
    device = torch.device(device)
    a = torch.randn(int(rows), int(k), device=device)
    w = torch.randn(int(k), int(n), device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    a @ w
    sync()
    best = 0.0
    for _ in range(repeats):
        reps, t0 = 0, clock()
        while True:
            a @ w
            reps += 1
            sync()
            dt = clock() - t0
            if dt >= min_seconds:
                break
        best = max(best, 2.0 * rows * k * n * reps / dt)
    return best


def largest_weight(adapter, linear_only: bool = False) -> Tuple[int, int]:
    """``(k, n)`` of the adapter's 2-D parameter with most entries (a Linear's ``(in, out)``; an embedding
    table ``(d, n_items)``, as item scoring multiplies by its transpose); ``linear_only``: among the
    ``nn.Linear`` weights only."""
    if linear_only:
        params = [m.weight for m in adapter.modules() if isinstance(m, torch.nn.Linear)]
    else:
        params = [p for p in adapter.parameters() if p.dim() == 2]
    if not params:
        raise ValueError(f"{type(adapter).__name__} has no 2-D {'Linear weight' if linear_only else 'parameter'}")
    a, b = max(params, key=lambda p: p.numel()).shape
    return (int(b), int(a))  # Linear (out, in) -> (in, out); Embedding (n_items, d) -> (d, n_items)


# ---------------------------------------------------------------------------------------------- timings
class _Timer:
    """``with _Timer() as t: ...``; then ``t.wall`` and ``t.cpu`` (this process's CPU seconds) of the block."""

    def __enter__(self):
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self._w, time.process_time() - self._c


@dataclass
class OpCost:
    """One measured operation. seconds / cpu_seconds: wall-clock / CPU time of the whole operation (scaled from
    ``fraction_timed`` of it); flops: its matmul FLOP floor; rate / rate_cpu: the machine's FLOP per wall / CPU
    second at ``rate_shape``; floor_seconds = flops / rate; ratio = seconds / floor_seconds, ratio_cpu the same
    in CPU time (less disturbed by other processes on a busy machine). bare_seconds: the floor's own passes run
    through the backbone's modules at the operation's shapes, plus the recipe's optimizer steps, nothing else
    (:mod:`refit_gym.experiments.bare`); then ``ratio = library_ratio x bare_ratio``, with ``library_ratio =
    seconds / bare_seconds`` (what this library adds) and ``bare_ratio = bare_seconds / floor_seconds`` (what the
    engine needs at these shapes)."""

    seconds: float
    cpu_seconds: float
    flops: float
    rate: float
    rate_cpu: float
    rate_shape: Tuple[int, int, int]
    fraction_timed: float = 1.0
    detail: Optional[Dict[str, float]] = None
    bare_seconds: Optional[float] = None

    @property
    def floor_seconds(self) -> float:
        return self.flops / self.rate

    @property
    def ratio(self) -> float:
        return self.seconds / self.floor_seconds if self.flops > 0 else float("nan")

    @property
    def ratio_cpu(self) -> float:
        return self.cpu_seconds * self.rate_cpu / self.flops if self.flops > 0 else float("nan")

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d.update(floor_seconds=self.floor_seconds, ratio=self.ratio, ratio_cpu=self.ratio_cpu,
                 rate_shape=list(self.rate_shape))
        for key in ("detail", "bare_seconds"):
            if d[key] is None:
                del d[key]
        if self.bare_seconds is not None:
            d.update(library_ratio=self.seconds / self.bare_seconds, bare_ratio=self.bare_seconds / self.floor_seconds
                     if self.flops > 0 else float("nan"))
        return d


def time_pretrain_epoch(adapter, data, scenario, device, max_seconds: Optional[float], log=print,
                        overrides: Optional[Dict[str, Any]] = None) -> Tuple[float, float, float]:
    """``(wall seconds, CPU seconds, fraction timed)`` of one pretraining epoch of a copy of ``adapter`` (scenario
    defaults under PretrainConfig ``overrides``; validation a constant). History backbones: a second one-epoch run (the
    first warms up); sequence backbones: one epoch bounded by ``max_seconds`` (None: all) and scaled by its batches."""
    import copy

    from refit_gym.diffusion.training import pretrain

    model = copy.deepcopy(adapter)
    cfg = scenario.pretrain_config(**{**(overrides or {}), "patience": 0, "epochs": 1, "eval_users": None})
    const = lambda *_, **__: {cfg.metric: 0.0}  # noqa: E731
    quiet = lambda *_: None  # noqa: E731
    run = lambda seconds=None: pretrain(model, data, cfg, out_dir=None, device=device, tensorboard=False,  # noqa: E731
                                        progress=False, evaluate_fn=const, log=quiet, max_seconds=seconds)
    if scenario.sequential:  # one epoch, bounded by max_seconds and scaled by its share of the batches
        with _Timer() as t:
            res = run(max_seconds)
        total = math.ceil(data.n_users / cfg.batch_size)
        frac = res.history[0]["batches"] / total
        return t.wall / frac, t.cpu / frac, frac
    run()  # warm-up
    with _Timer() as t:
        run()
    return t.wall, t.cpu, 1.0


def time_evaluation(adapter, data, scenario, eval_users: np.ndarray, max_seconds: float
                    ) -> Tuple[float, float, float]:
    """``(wall seconds, CPU seconds, fraction timed)`` of the validation of ``eval_users``: one batch first (the
    estimate); then all of them, or, when that would exceed ``max_seconds``, a prefix sized to it, scaled."""
    bs = 1024
    with _Timer() as t:
        scenario.evaluate_backbone(adapter, data, "valid", users=eval_users[:bs])
    if len(eval_users) <= bs:
        return t.wall, t.cpu, 1.0
    per_user = t.wall / bs
    n = min(len(eval_users), max(bs, int(max_seconds / per_user)))
    with _Timer() as t:
        scenario.evaluate_backbone(adapter, data, "valid", users=eval_users[:n])
    frac = n / len(eval_users)
    return t.wall / frac, t.cpu / frac, frac


def time_finetune_epoch(algo: str, env_id: str, data, adapter, device, max_seconds: float, seed: int = 0
                        ) -> Tuple[float, float, float, Dict[str, Any], torch.nn.Module]:
    """``(wall seconds, CPU seconds, fraction timed, hyperparameters, the fine-tuned adapter)`` of one fine-tuning epoch
    (every user once) of the shipped ``algo`` recipe for ``env_id``: one warm-up rollout + update, then as many rollouts
    of the epoch as fit in ``max_seconds`` (at least one), scaled to the epoch. The adapter is the agent's, with the
    recipe's frozen parameters (``frozen``) not requiring gradients."""
    import gymnasium

    from agents import ALGOS
    from refit_gym.experiments.hyperparams import load_hyperparams, split_hyperparams
    from refit_gym.envs.batched import BatchedDenoisingEnv

    params = load_hyperparams(algo, env_id)
    zoo, kwargs = split_hyperparams(params)
    n_envs = int(zoo.get("n_envs", 16))
    reward = zoo.get("reward") or gymnasium.spec(env_id).kwargs["reward"]
    env = BatchedDenoisingEnv(data, adapter, n_envs, reward, device, zoo.get("reward_kwargs"), seed=seed)
    model = ALGOS[algo](adapter, env, seed=seed, device=device, **kwargs)
    T = adapter.schedule.chain_steps  # the reverse steps of an episode
    per_rollout = n_envs * T
    rollouts = math.ceil(data.n_users / (n_envs // model.n_traj_per_user))
    with _Timer() as t:
        model.learn(per_rollout)  # warm-up (lazy initialisation, allocator pools); also the time estimate
    timed = max(1, min(rollouts, int(max_seconds / max(t.wall, 1e-9))))
    with _Timer() as t:
        model.learn(timed * per_rollout, reset_num_timesteps=True)
    # the effective settings, defaults of the algorithm included (what recipe_rollout_flops reads)
    params = dict(params, n_envs=n_envs, n_traj_per_user=model.n_traj_per_user, train_last_k=model.trained_steps)
    frac = timed / rollouts
    return t.wall / frac, t.cpu / frac, frac, params, model.policy.denoiser


def copies_share_start(data, adapter, device, copies: int = 2) -> bool:
    """Whether the environment starts a user's copies (one user, one episode key: ReFiT's and DDPO's groups) from one
    ``x_T``, so that their frozen steps run once per user: two users' groups reset side by side in the backbone's own
    environment, their starts compared."""
    import gymnasium

    from refit_gym.envs.batched import BatchedDenoisingEnv

    env_id = ENV_OF_BACKBONE[adapter.backbone_name]
    env = BatchedDenoisingEnv(data, adapter, 2 * copies, gymnasium.spec(env_id).kwargs["reward"], device, seed=0)
    users = np.repeat(np.asarray(env.train_users[:2], dtype=np.int64), copies)
    x = env.reset_tensors(users=users, keys=np.repeat(np.array([1, 2], dtype=np.uint64), copies))["x"]
    groups = x.reshape(2, copies, -1)
    return bool((groups == groups[:, :1]).all())


# ---------------------------------------------------------------------------------------------- the study
def machine_info(device="cpu") -> Dict[str, Any]:
    """Where the numbers were taken: CPU/GPU description, platform, torch version, threads."""
    from refit_gym.utils import describe_machine

    return {"machine": describe_machine(device), "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "device": str(device)}


def evaluated_users(data, split: str = "valid") -> np.ndarray:
    """The users an evaluation of ``split`` scores (those with a non-empty ground truth), int64."""
    from refit_gym.data.dataset import as_interactions

    truth = as_interactions(data).split(split)
    return np.flatnonzero(np.diff(truth.indptr) > 0).astype(np.int64)


def measure_cost(data, adapter, scenario, device="cpu", recipes: Sequence[str] = RECIPES, max_seconds: float = 60.0,
                 probe: int = 8, seed: int = 0, log: Callable[[str], None] = print) -> Dict[str, Any]:
    """Time every operation (see the module docstring) and set it beside its floor.

    Args:
        data: the scenario's dataset. adapter: the backbone (left unchanged: pretraining and fine-tuning
            run on copies). scenario: a :class:`~refit_gym.scenarios.Scenario` (environment id, protocol).
        recipes: fine-tuning algorithms (``agents/hyperparams/<algo>.yml``). max_seconds: per operation,
            beyond which a part is timed and scaled. probe: users of the FLOP-counting probes.
    Returns: ``{"machine": machine_info, "data", "backbone", "n_users", "n_items", "steps", "unit_flops",
    "operations": {name: OpCost.to_dict()}}`` (numbers in seconds, FLOPs and FLOP/s).
    """
    import copy

    device = torch.device(device)
    adapter = adapter.to(device).eval()
    T = adapter.schedule.chain_steps  # reverse steps of the chain (K when respaced)
    u = unit_flops(adapter, data, probe)
    shapes = sorted({largest_weight(adapter), largest_weight(adapter, linear_only=True)})
    rates: Dict[int, Tuple[float, float, Tuple[int, int, int]]] = {}

    def rate(rows: int) -> Tuple[float, float, Tuple[int, int, int]]:
        """(FLOP per wall second, FLOP per CPU second, shape) at the faster of ``(rows, k) @ (k, n)`` for the
        largest 2-D parameter and the largest Linear weight (a floor takes the best rate)."""
        if rows not in rates:
            best = max((matmul_rate(rows, k, n, device), k, n) for k, n in shapes)
            _, k, n = best
            rates[rows] = (best[0], matmul_rate(rows, k, n, device, clock=time.process_time), (rows, k, n))
        return rates[rows]

    ops: Dict[str, OpCost] = {}
    cfg = scenario.pretrain_config()
    log(f"pretraining epoch ({data.n_users} users, batch {cfg.batch_size})")
    wall, cpu, frac = time_pretrain_epoch(adapter, data, scenario, device, max_seconds, log)
    ops["pretrain_epoch"] = OpCost(wall, cpu, pretrain_epoch_flops(copy.deepcopy(adapter), data, probe),
                                   *rate(cfg.batch_size), frac)
    users = evaluated_users(data)
    log(f"evaluation ({len(users)} users, T={T})")
    wall, cpu, frac = time_evaluation(adapter, data, scenario, users, max_seconds)
    ops["evaluation"] = OpCost(wall, cpu, evaluation_flops(u, T, len(users)), *rate(1024), frac,
                               bare_seconds=bare_evaluation_seconds(adapter, data, users, 1024, max_seconds))
    shared = copies_share_start(data, adapter, device)
    env_id = ENV_OF_BACKBONE[adapter.backbone_name]  # the backbone's own recipes (DreamRec-CE's are not DreamRec's)
    for algo in recipes:
        log(f"fine-tuning epoch: {algo} ({env_id})")
        wall, cpu, frac, params, tuned = time_finetune_epoch(algo, env_id, data, copy.deepcopy(adapter), device,
                                                             max_seconds, seed)
        # the units as this recipe trains: backward passes only into the parameters it does not freeze
        parts = recipe_rollout_flops(unit_flops(tuned, data, probe), T, algo, params, shared)
        N = int(params["n_envs"])
        rollouts = math.ceil(data.n_users / (N // int(params["n_traj_per_user"])))
        bare = bare_rollout_seconds(tuned, data, algo, params, shared, max_seconds=max_seconds / 2, seed=seed)
        ops[f"finetune_{algo}"] = OpCost(wall, cpu, rollouts * sum(parts.values()), *rate(N), frac,
                                         {p: rollouts * v for p, v in parts.items()}, rollouts * bare)
    return {"machine": machine_info(device), "data": getattr(data, "name", "?"), "backbone": adapter.backbone_name,
            "env_id": env_id,
            "n_users": int(data.n_users), "n_items": int(data.n_items), "steps": int(T), "unit_flops": asdict(u),
            "shared_start": shared, "operations": {name: op.to_dict() for name, op in ops.items()}}


def format_table(result: Dict[str, Any]) -> str:
    """A readable table of :func:`measure_cost`'s result."""
    lines = [f"{result['backbone']} on {result['data']} ({result['n_users']} users, {result['n_items']} items, "
             f"T={result['steps']}); {result['machine']['machine']}; torch {result['machine']['torch']}",
             f"{'operation':<18} {'measured s':>11} {'floor GFLOP':>12} {'GFLOP/s':>8} {'floor s':>9} {'ratio':>7} "
             f"{'CPU s':>9} {'ratio CPU':>9} {'bare s':>9} {'bare/floor':>10} {'meas/bare':>9}  timed",
             "-" * 124]
    for name, op in result["operations"].items():
        bare = (f"{op['bare_seconds']:>9.3f} {op['bare_ratio']:>10.2f} {op['library_ratio']:>9.2f}"
                if "bare_seconds" in op else f"{'-':>9} {'-':>10} {'-':>9}")
        lines.append(f"{name:<18} {op['seconds']:>11.3f} {op['flops'] / 1e9:>12.2f} {op['rate'] / 1e9:>8.1f} "
                     f"{op['floor_seconds']:>9.3f} {op['ratio']:>7.2f} {op['cpu_seconds']:>9.3f} {op['ratio_cpu']:>9.2f}"
                     f" {bare}  {op['fraction_timed']:.0%}")
    return "\n".join(lines)


__all__ = ["OpCost", "RECIPES", "copies_share_start", "evaluated_users", "format_table", "largest_weight", "machine_info", "matmul_rate",
           "measure_cost", "time_evaluation", "time_finetune_epoch", "time_pretrain_epoch"]
