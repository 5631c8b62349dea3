"""RL fine-tuning of a pretrained diffusion recommender as one function call (an experiment runner).

:func:`finetune` is what ``scripts/train.py`` runs (the script is a thin command line over it) and what
``scripts/benchmark.py`` calls for every fine-tuned cell of the results table::

    from refit_gym.experiments.finetune import finetune
    metrics = finetune("refit", "refit_gym/DiffRec-v0", "synthetic", "runs/diffrec/best.pt", out="runs/refit",
                       eval_freq=20_000, select_metric="ndcg@20")
    metrics["best"]["test"]["ndcg@20"], metrics["history"]  # validation curve against training wall-clock

Hyperparameters follow rl-zoo3's format (:mod:`refit_gym.experiments.hyperparams`): the defaults of
``agents/hyperparams/<algo>.yml`` for the environment id, updated by an override.

Model selection uses the validation split only: the backbone is validated every ``eval_freq``
environment steps and at the end, and the checkpoint with the best validation ``select_metric`` is
exported to ``best.pt`` (the pretrained start competes: when fine-tuning never improves validation, the
selected model is the start); test metrics are computed once per distinct model (pretrained, final, best).

Data parallel under ``torchrun`` (:mod:`refit_gym.distributed`; ``scripts/train.py`` joins the process group, a
library caller calls :func:`refit_gym.distributed.init_from_env` first): the chain algorithms that set
``supports_distributed`` (ReFiT, DDPO, Pathwise) run on every rank, each with an environment of ``n_envs /
world_size`` chains (``n_envs`` stays the global batch, so N processes take the steps of one; it must split into
whole users: a multiple of ``world_size * n_traj_per_user``); validation and test are sharded over the users and
reduced (every rank gets the metrics); only rank 0 logs and writes ``OUT`` (checkpoints, ``progress.csv``,
TensorBoard, JSON), and ``--resume`` needs ``OUT`` on a filesystem every process sees. PPO and A2C (SB3's own
loops) refuse to run under torch.distributed.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Union

import yaml

from refit_gym import distributed
from refit_gym.experiments.hyperparams import (FinetuneError, HyperparamsLike, load_hyperparams, resolve_hyperparams,
                                               split_hyperparams)
from refit_gym.io_safety import locks_output, write_json_atomic
from refit_gym.diffusion.training import protocol_meta

#: validation metric of the model selection unless told otherwise
DEFAULT_SELECT_METRIC = "recall@20"
#: validation metrics recorded in the learning-curve history
HISTORY_METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")
ON_POLICY_SB3 = ("ppo", "a2c")
#: ``meta["source"]`` of the checkpoints a run writes
SOURCE = "refit_gym.experiments.finetune"


def default_log(msg: str) -> None:
    """The default ``log`` of :func:`finetune`: one ``[train]`` line on stderr."""
    print(f"[train] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- evaluation, saving, callbacks
def evaluate_split(adapter, data, split: str, env_id: str) -> Dict[str, float]:
    """Metrics of a backbone's deterministic inference on ``split`` with the protocol of ``env_id``'s scenario
    (:meth:`refit_gym.scenarios.Scenario.evaluate_backbone`: masked full ranking with Recall/NDCG/... for
    interaction data, leave-one-out HR/NDCG (and ``recall@K`` = HR@K) for sequences)."""
    from refit_gym.scenarios import scenario_for

    return scenario_for(env_id).evaluate_backbone(adapter, data, split)


def evaluate_splits(adapter, data, env_id: str = "refit_gym/DiffRec-v0") -> Dict[str, Dict[str, float]]:
    """``{"valid": {...}, "test": {...}}``: :func:`evaluate_split` on both splits."""
    return {split: evaluate_split(adapter, data, split, env_id) for split in ("valid", "test")}


def save_model(model, out: Path, state: Dict[str, Any]) -> None:
    """``last_model.zip`` and the training tracker ``train_state.json``, each replaced atomically through
    per-process temporary names (a failed write, e.g. a full disk, leaves the previous files and no temp file)."""
    from refit_gym.io_safety import save_agent_atomic

    save_agent_atomic(model, out / "last_model.zip")
    write_json_atomic(out / "train_state.json", state)


class TrainingClock:
    """Training wall-clock excluding validation time, and the run's whole wall-clock, both continued across resumes.

    ``start()`` opens a segment; ``pause()``/``resume()`` bracket the validations; ``seconds`` is the
    time carried over from earlier segments (``offset``) plus this segment's training time. ``wall_seconds`` is
    ``wall_offset`` (the earlier segments' wall-clock up to their last save) plus the seconds since ``since`` (a
    ``time.perf_counter()`` value, default: when the clock was made), validations included.
    """

    def __init__(self, offset: float = 0.0, wall_offset: float = 0.0, since: Optional[float] = None):
        self.offset, self._t0, self._paused, self._paused_at = float(offset), None, 0.0, None
        self.wall_offset, self._since = float(wall_offset), time.perf_counter() if since is None else float(since)

    def start(self) -> None:
        self._t0, self._paused, self._paused_at = time.perf_counter(), 0.0, None

    def pause(self) -> None:
        self._paused_at = time.perf_counter()

    def resume(self) -> None:
        if self._paused_at is not None:
            self._paused += time.perf_counter() - self._paused_at
            self._paused_at = None

    @property
    def seconds(self) -> float:
        if self._t0 is None:
            return self.offset
        now = self._paused_at if self._paused_at is not None else time.perf_counter()
        return self.offset + (now - self._t0 - self._paused)

    @property
    def wall_seconds(self) -> float:
        return self.wall_offset + (time.perf_counter() - self._since)

    def stamp(self, state: Dict[str, Any]) -> None:
        """Write ``seconds`` and ``wall_seconds`` into ``state`` (``train_seconds``, ``wall_seconds``) before a save."""
        state["train_seconds"], state["wall_seconds"] = self.seconds, self.wall_seconds


def make_callbacks(out: Path, data, env_id: str, eval_every: int, save_every: int, state: Dict[str, Any],
                   clock: TrainingClock, select_metric: str, log: Callable[[str], None], total: Optional[int] = None,
                   progress: bool = False, collapse_ratio: Optional[float] = None):
    """SB3 callbacks (validation with best-model export, periodic saving, an optional tqdm bar) and the
    ``validate(model)`` function they use.

    ``validate`` evaluates the deterministic policy (= the fine-tuned backbone's own inference) on the
    validation split with the protocol of ``env_id``'s scenario, logs ``eval/*``, appends
    ``{num_timesteps, train_seconds, <metrics>}`` to ``state["history"]``, keeps the full metrics in
    ``state["last_valid"]`` and exports ``best.pt`` when ``select_metric`` improves on
    ``state["best_valid"]`` (which starts as the pretrained backbone's: the start competes too). With
    ``collapse_ratio``, a ``select_metric`` below ``collapse_ratio`` times the best one raises
    :class:`agents.guards.DivergenceError`. Saving is :class:`agents.guards.RunGuard`'s (after updates only).
    Under torch.distributed every rank validates (a collective: the users are sharded) and only rank 0 writes
    ``best.pt`` and the saves and shows the bar.
    """
    from stable_baselines3.common.callbacks import BaseCallback

    from agents.guards import DivergenceError, RunGuard
    from refit_gym.diffusion.checkpoint import save_backbone

    def validate(model) -> Dict[str, float]:
        clock.pause()
        metrics = evaluate_split(model.policy.denoiser, data, "valid", env_id)
        for key in sorted({"recall@20", "ndcg@20", select_metric}):
            model.logger.record(f"eval/{key}", metrics[key])
        step = int(model.num_timesteps)
        model.logger.record("time/total_timesteps", step, exclude="tensorboard")  # every progress.csv row has its step
        model.logger.dump(step)  # every algorithm writes at least once per validation (A2C's log_interval is long)
        state["history"].append(dict(num_timesteps=step, train_seconds=clock.seconds,
                                     **{k: metrics[k] for k in HISTORY_METRICS if k in metrics}))
        state["last_eval_timesteps"], state["last_valid"] = step, metrics
        log(f"step {step}: valid recall@20 {metrics['recall@20']:.4f} ndcg@20 {metrics['ndcg@20']:.4f}")
        if metrics[select_metric] > state["best_valid"].get(select_metric, float("-inf")):
            state["best_valid"], state["best_timesteps"] = metrics, step
            if distributed.is_main():
                save_backbone(model.policy.denoiser, out / "best.pt", meta=dict(
                    source=SOURCE, num_timesteps=step, valid=metrics, selected_on=f"valid {select_metric}",
                    data=data.name, n_users=data.n_users, **protocol_meta(data)))
        clock.resume()
        best = state["best_valid"].get(select_metric, 0.0)
        if collapse_ratio is not None and best > 0 and not metrics[select_metric] >= collapse_ratio * best:
            raise DivergenceError(f"validation collapsed at step {step}: {select_metric} {metrics[select_metric]:.4f} "
                                  f"< {collapse_ratio:g} x the best {best:.4f} (step {state['best_timesteps']}); "
                                  "best.pt and the last saved state are kept")
        return metrics

    class ValidationCallback(BaseCallback):
        def _on_step(self) -> bool:
            if eval_every > 0 and self.n_calls % eval_every == 0:
                validate(self.model)
            return True

    def save(model) -> None:
        clock.pause()
        clock.stamp(state)
        if distributed.is_main():
            save_model(model, out, state)
        clock.resume()

    class ProgressCallback(BaseCallback):
        """A tqdm bar over environment steps (SB3's own bar needs ``rich``)."""

        def _on_training_start(self) -> None:
            from refit_gym.utils import progress_bar

            self.bar = progress_bar(total=total, initial=self.model.num_timesteps, desc="fine-tune", unit="step")

        def _on_step(self) -> bool:
            self.bar.update(self.model.num_timesteps - self.bar.n)
            return True

        def _on_training_end(self) -> None:
            self.bar.close()

    progress = progress and distributed.is_main()
    callbacks = [RunGuard(save, save_every, log=log), ValidationCallback()] + ([ProgressCallback()] if progress else [])
    return callbacks, validate


def tensorboard_run_name(tensorboard_log: Union[str, Path], algo: str, env_id: str) -> str:
    """``<algo>_<env>_<n>`` with ``n`` one more than the largest such sub-folder of ``tensorboard_log`` (SB3's
    numbering), e.g. ``refit_DiffRec-v0_3``."""
    import re

    base = f"{algo}_{env_id.split('/')[-1]}"
    root = Path(tensorboard_log)
    taken = [int(m.group(1)) for p in (root.iterdir() if root.is_dir() else [])
             if (m := re.fullmatch(re.escape(base) + r"_(\d+)", p.name))]
    return f"{base}_{max(taken, default=0) + 1}"


# ---------------------------------------------------------------------------- the entry point
@locks_output("out")
def finetune(algo: str, env_id: str, data, checkpoint: Union[str, Path], reward: Optional[str] = None,
             hyperparams: HyperparamsLike = None, seed: int = 0, device="cpu", out: Union[str, Path] = "runs/finetune",
             eval_freq: int = 0, save_freq: int = 0, resume: bool = False, tensorboard_log: Optional[str] = None,
             n_timesteps: Optional[int] = None, progress: bool = False, verbose: int = 0,
             select_metric: str = DEFAULT_SELECT_METRIC, pretrained_metrics: Optional[Dict[str, Dict[str, float]]] = None,
             log: Callable[[str], None] = default_log, collapse_ratio: Optional[float] = None,
             hyperparams_source: Optional[str] = None, inference_steps: Optional[int] = None) -> Dict[str, Any]:
    """Fine-tune the backbone ``checkpoint`` with ``algo`` on the environment ``env_id``; returns the metrics.

    Args:
        algo: a key of :data:`agents.ALGOS` (``refit``, ``ddpo``, ``ppo``, ``a2c``).
        env_id: a registered ``refit_gym/...`` id (its backbone kind must match the checkpoint's).
        data: an :class:`~refit_gym.data.InteractionData` or a spec for :func:`refit_gym.data.load_dataset`.
        checkpoint: the pretrained backbone checkpoint.
        reward: the terminal reward (``refit``, ``refit-seq``, ``graph-score``, ``topk``, ``reconstruction``,
            ...); None: the hyperparameters' ``reward`` if they set one, else the reward registered for
            ``env_id``'s scenario (``refit-seq`` for DreamRec). Its constructor arguments come from the
            hyperparameters' ``reward_kwargs``.
        hyperparams: override of the defaults (see :func:`~refit_gym.experiments.hyperparams.load_hyperparams`).
            The resolved configuration (every default filled in) is written to ``out/hyperparams.yml`` and
            ``metrics.json``.
        seed: seed of the agent and the environment.
        device: ``cpu``, ``cuda`` or ``auto``.
        out: output folder (created): ``best.pt``, ``final.pt``, ``last_model.zip``, ``train_state.json``,
            ``metrics.json``, ``hyperparams.yml``, ``progress.csv``.
        eval_freq: validate every this many environment steps (0: only at the start and the end).
        save_freq: save ``last_model.zip`` every this many environment steps (0: only at the end).
        resume: continue from ``out/last_model.zip`` when it exists.
        tensorboard_log: TensorBoard folder (None: no TensorBoard); the run writes to its own sub-folder
            :func:`tensorboard_run_name` (kept across ``resume``).
        n_timesteps: overrides the hyperparameters' ``n_timesteps``.
        progress: show a tqdm bar over environment steps.
        verbose: SB3 verbosity (1 also prints SB3's log table).
        select_metric: validation metric of the best-model selection (e.g. ``ndcg@20``). The pretrained start
            competes: if no validation beats it, ``best`` is the pretrained backbone (``num_timesteps`` 0).
        pretrained_metrics: ``{"valid": {...}, "test": {...}}`` of ``checkpoint`` already computed with the same
            protocol (e.g. by the benchmark's pretrained row); skips re-evaluating the start.
        log: receives one human-readable line per event.
        collapse_ratio: stop with :class:`agents.guards.DivergenceError` when validation ``select_metric``
            falls below this fraction of the best one (None: never; e.g. 0.5).
        hyperparams_source: how errors name a dict ``hyperparams`` (e.g. the ladder's recipe and rung).
        inference_steps: K, run the reverse chain (episodes, evaluation, the exported checkpoints) on K evenly spaced
            steps of the checkpoint's T (:mod:`refit_gym.diffusion.schedule`); None: the checkpoint's own.

    Under torch.distributed (an initialised process group, see the module docstring) every rank calls this with
    the same arguments; all return the metrics, rank 0 alone writes ``out`` and logs.

    Safety: ``out`` is locked for the run (a second run on it raises
    :class:`refit_gym.io_safety.OutputLockedError` naming the holder's pid); saves happen after updates;
    non-finite or exploding weights or actions raise :class:`agents.guards.DivergenceError`; Ctrl-C saves at
    the next update boundary and raises :class:`agents.guards.TrainingInterrupted`; ``--resume`` loads
    ``last_model.zip`` without unpickling code and appends to ``progress.csv``.

    Returns:
        A JSON-able dict: ``algo, env, data, checkpoint, reward, seed, num_timesteps, hyperparams,
        selected_on``; ``pretrained``, ``final`` and ``best`` (each ``{"valid": {...}, "test": {...}}``,
        ``best`` also ``num_timesteps``); ``history`` (one entry per validation, starting with the
        pretrained model at step 0: ``num_timesteps``, ``train_seconds`` -- training wall-clock without
        validation time -- and the validation metrics of :data:`HISTORY_METRICS`); ``train_seconds``;
        ``resumed_seconds``: the wall-clock of the earlier segments of a resumed run, up to their last save (0 for a
        run that did not resume; the benchmark adds it to a resumed cell's time). The same dict is written to
        ``out/metrics.json``.

    Raises:
        FinetuneError: unknown ``algo``/``env_id``, missing checkpoint or hyperparameter file, an unknown
            hyperparameter or one of the wrong type (naming the file, the environment id and the key); under
            torch.distributed an algorithm that is not data-parallel or ``n_envs`` that does not split into whole users.
        agents.NonFiniteTrainingError: training diverged (the last good ``last_model.zip`` is kept).
    """
    from stable_baselines3.common.logger import Logger, make_output_format
    from stable_baselines3.common.vec_env import VecMonitor

    from agents import ALGOS, DenoiserPolicy
    from agents.guards import RunGuard, TrainingInterrupted, check_train_state
    from refit_gym.diffusion import load_backbone
    from refit_gym.diffusion.checkpoint import save_backbone
    from refit_gym.envs import ENV_IDS
    from refit_gym.envs.factory import make_batched_env, resolve_data
    from refit_gym.io_safety import load_agent, read_json_file, resumable_csv_output, write_text_atomic
    from refit_gym.utils import resolve_device, set_global_seed

    if algo not in ALGOS:
        raise FinetuneError(f"algo {algo!r}: known algorithms {sorted(ALGOS)}")
    world, main = distributed.world_size(), distributed.is_main()
    if world > 1 and not getattr(ALGOS[algo], "supports_distributed", False):
        raise FinetuneError(f"algo {algo!r} does not run under torch.distributed ({world} processes): refit, ddpo "
                            "and pathwise do; run it as one process (without torchrun)")
    if not main:
        log = lambda msg: None  # noqa: E731  (rank 0 logs)
    if env_id not in ENV_IDS:
        raise FinetuneError(f"environment {env_id!r}: known environment ids {sorted(ENV_IDS)}")
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FinetuneError(f"checkpoint {checkpoint}: no such file")
    device = distributed.local_device(resolve_device(device))
    data = resolve_data(data)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    set_global_seed(seed)

    # the configuration as used: every default filled in, the reward and n_timesteps as run
    params = resolve_hyperparams(algo, env_id, load_hyperparams(algo, env_id, hyperparams, source=hyperparams_source,
                                                                 reward=reward))
    zoo, kwargs = split_hyperparams(params)
    reward = reward or zoo["reward"]
    params.update(reward=reward if isinstance(reward, str) else str(reward),
                  n_timesteps=zoo["n_timesteps"] if n_timesteps is None else int(n_timesteps))
    if main:
        write_text_atomic(out / "hyperparams.yml", yaml.safe_dump({env_id: params}, sort_keys=True))
    n_timesteps, n_envs = params["n_timesteps"], zoo["n_envs"]  # n_envs: the global batch of chains
    copies = kwargs.get("n_traj_per_user", 1)
    if world > 1 and n_envs % (world * copies):
        raise FinetuneError(f"n_envs={n_envs} chains per rollout do not split into whole users over {world} processes: "
                            f"need a multiple of world_size x n_traj_per_user = {world} x {copies} (a user's copies "
                            "share its group baseline and stay on one process)")
    batched = make_batched_env(ENV_IDS[env_id], data, n_envs=n_envs // world, checkpoint=checkpoint, reward=reward,
                               reward_kwargs=zoo.get("reward_kwargs"), device=device, seed=seed,
                               inference_steps=inference_steps)
    pretrained = batched.adapter  # the start: evaluated, and the first best.pt; never trained
    algo_cls = ALGOS[algo]
    env: Any = batched
    if algo in ON_POLICY_SB3:
        env = VecMonitor(batched)  # episode statistics for SB3's rollout/ep_rew_mean
        kwargs["policy_kwargs"]["checkpoint"] = str(checkpoint)
        if inference_steps is not None:  # the environment's chain, not the checkpoint's
            kwargs["policy_kwargs"]["inference_steps"] = inference_steps
        policy: Any = zoo["policy"]
        if isinstance(policy, str) and "." in policy:  # rl-zoo3's convention: a dotted class name
            import importlib

            module, _, name = policy.rpartition(".")
            policy = getattr(importlib.import_module(module), name)
        policy = DenoiserPolicy if policy == "DenoiserPolicy" else policy
    else:
        policy = pretrained  # deep-copied into the policy
    entered = time.perf_counter()  # the run's wall-clock (clock.wall_seconds) counts from here
    state: Dict[str, Any] = {"best_valid": {}, "best_timesteps": None, "history": [], "train_seconds": 0.0,
                             "wall_seconds": 0.0, "last_eval_timesteps": None, "last_valid": None}
    last = out / "last_model.zip"
    if resume:
        distributed.check_same(float(last.is_file()), f"whether {last} exists (--resume needs --out on a filesystem "
                                                      "every process sees)")
    if resume and last.is_file():
        model = load_agent(algo_cls, last, env=env, device=device, tensorboard_log=tensorboard_log)
        if (out / "train_state.json").is_file():
            state.update(check_train_state(out / "train_state.json", read_json_file(out / "train_state.json")))
        # validations after the last save are redone: drop them from the learning curve
        state["history"] = [h for h in state["history"] if h["num_timesteps"] <= model.num_timesteps]
        previous = read_json_file(out / "metrics.json") if (out / "metrics.json").is_file() else {}
        before = previous.get("pretrained") or pretrained_metrics or evaluate_splits(pretrained, data, env_id)
        log(f"resuming {algo} from {last} at step {model.num_timesteps}")
    else:
        if resume:
            log(f"resume: {last} does not exist yet; starting from scratch")
        model = algo_cls(policy, env, seed=seed, device=device, tensorboard_log=tensorboard_log,
                         verbose=verbose if main else 0, **kwargs)
        if pretrained_metrics is None:
            log(f"evaluating the pretrained backbone on valid and test ({data.n_users} users each)")
        before = pretrained_metrics or evaluate_splits(pretrained, data, env_id)
        if select_metric not in before["valid"]:
            raise FinetuneError(f"select_metric {select_metric!r} is not an evaluated metric ({sorted(before['valid'])})")
        state["history"] = [dict(num_timesteps=0, train_seconds=0.0,
                                 **{k: before["valid"][k] for k in HISTORY_METRICS if k in before["valid"]})]
        # the start competes for best.pt: when no validation beats it, the selected model is the pretrained one
        state["best_valid"], state["best_timesteps"] = before["valid"], 0
        if main:
            save_backbone(pretrained, out / "best.pt", meta=dict(source=SOURCE, num_timesteps=0, valid=before["valid"],
                          selected_on=f"valid {select_metric}", data=data.name, n_users=data.n_users,
                          **protocol_meta(data)))
            write_json_atomic(out / "metrics.json", {"pretrained": before}, indent=1)
    # the reward scores x0 with the model being trained (DreamRec's item embeddings train), not a frozen copy
    batched.set_backbone(model.policy.denoiser)
    log(f"pretrained backbone: valid recall@20 {before['valid']['recall@20']:.4f}, "
        f"test recall@20 {before['test']['recall@20']:.4f}")

    resumed = resume and model.num_timesteps > 0
    formats = []  # rank 0 writes the logs; the other ranks record into a logger without outputs
    if main:
        formats = [resumable_csv_output(out / "progress.csv", int(model.num_timesteps) if resumed else None)]
        formats += [make_output_format("stdout", str(out))] if verbose else []
    if tensorboard_log and main:  # one sub-folder per run (SB3's <name>_<n>), the same one when the run is resumed
        state["tensorboard_run"] = state.get("tensorboard_run") or tensorboard_run_name(tensorboard_log, algo, env_id)
        formats.append(make_output_format("tensorboard", str(Path(tensorboard_log) / state["tensorboard_run"])))
        log(f"TensorBoard: {Path(tensorboard_log) / state['tensorboard_run']}")
    model.set_logger(Logger(str(out), formats))  # progress.csv in OUT, TensorBoard events in tensorboard_log
    eval_every, save_every = (max(f // n_envs, 1) if f > 0 else 0 for f in (eval_freq, save_freq))
    clock = TrainingClock(offset=state["train_seconds"], wall_offset=state["wall_seconds"], since=entered)
    callbacks, validate = make_callbacks(out, data, env_id, eval_every, save_every, state, clock, select_metric, log,
                                         total=n_timesteps, progress=progress, collapse_ratio=collapse_ratio)
    guard = next(c for c in callbacks if isinstance(c, RunGuard))
    remaining = n_timesteps - model.num_timesteps
    clock.start()
    try:
        if remaining > 0:
            model.learn(remaining, callback=callbacks, reset_num_timesteps=False)
        if not guard.stop and (state["last_eval_timesteps"] != model.num_timesteps or state["last_valid"] is None):
            validate(model)  # the final model competes for best.pt too
    finally:
        model.logger.close()  # progress.csv and TensorBoard files, also when training stops on an error
        guard.restore_signal_handler()
    if guard.stop:
        raise TrainingInterrupted(f"interrupted: {out / 'last_model.zip'} saved at step {guard.saved_at}; "
                                  "continue with --resume")
    if remaining > 0:
        guard.check_health()  # the last update happened after the last boundary check
    clock.stamp(state)
    resumed_seconds = clock.wall_offset  # the earlier segments' wall-clock (0 for a run that did not resume)
    if main:
        save_model(model, out, state)
        save_backbone(model.policy.denoiser, out / "final.pt", meta=dict(source=SOURCE, algo=algo,
                      num_timesteps=int(model.num_timesteps), data=data.name, n_users=data.n_users,
                      **protocol_meta(data)))
    # validation metrics are those of the validations themselves; test is evaluated once per distinct model
    final = {"valid": state["last_valid"], "test": evaluate_split(model.policy.denoiser, data, "test", env_id)}
    if state["best_timesteps"] == 0:
        best = dict(before)
    elif state["best_timesteps"] == int(model.num_timesteps):
        best = dict(final)
    else:
        distributed.barrier()  # rank 0 wrote best.pt
        best_adapter, _ = load_backbone(out / "best.pt", data, device=device)
        best = {"valid": state["best_valid"], "test": evaluate_split(best_adapter, data, "test", env_id)}
    metrics = {
        "algo": algo, "env": env_id, "data": data.name, **protocol_meta(data), "checkpoint": str(checkpoint), "reward": reward, "seed": seed,
        "inference_steps": pretrained.schedule.chain_steps,
        "num_timesteps": int(model.num_timesteps), "hyperparams": params, "selected_on": f"valid {select_metric}",
        "pretrained": before, "final": final, "best": dict(best, num_timesteps=state["best_timesteps"]),
        "history": state["history"], "train_seconds": state["train_seconds"], "resumed_seconds": resumed_seconds,
    }
    if main:
        write_json_atomic(out / "metrics.json", metrics, indent=1)
    for name in ("pretrained", "final", "best"):
        m = metrics[name]
        log(f"{name:>10}: valid recall@20 {m['valid']['recall@20']:.4f} ndcg@20 {m['valid']['ndcg@20']:.4f} | "
            f"test recall@20 {m['test']['recall@20']:.4f} ndcg@20 {m['test']['ndcg@20']:.4f}")
    log(f"outputs in {out}: best.pt (evaluate with scripts/evaluate.py --checkpoint), final.pt, last_model.zip")
    return json.loads(json.dumps(metrics, default=str))  # plain JSON types (schedules as strings)


__all__ = ["DEFAULT_SELECT_METRIC", "FinetuneError", "HISTORY_METRICS", "TrainingClock", "evaluate_split",
           "evaluate_splits", "finetune", "make_callbacks", "save_model", "tensorboard_run_name"]
