#!/usr/bin/env python
"""RL fine-tuning of a pretrained diffusion recommender (ReFiT, DDPO, or SB3's PPO / A2C).

Examples::

    python scripts/train.py --algo refit --data synthetic                       # pretrains a backbone first
    python scripts/train.py --algo refit --data ../shared/datasets/ml-1m --checkpoint runs/diffrec-ml1m/best.pt \\
        --out runs/refit-ml1m --eval-freq 20000 --save-freq 20000 --tensorboard-log runs/refit-ml1m/tb
    python scripts/train.py --algo ddpo --hyperparams my.yml ...                # rl-zoo style overrides
    python scripts/train.py ... --resume                                        # continue from --out/last_model.zip

Hyperparameters: the defaults of ``agents/hyperparams/<algo>.yml`` updated by ``--hyperparams FILE``,
both in rl-zoo3's format (top-level key = environment id; ``n_timesteps``, ``n_envs``, ``policy``,
``policy_kwargs`` as a dict or a ``"dict(...)"`` string of literals, learning rates as numbers or
``"lin_<value>"``; the rest are keyword arguments of the algorithm).

Writes to ``--out``: ``last_model.zip`` (the full agent: weights, optimizer, RNG state and step count,
every ``--save-freq`` steps and at the end), ``best.pt`` (backbone checkpoint of the best validation
Recall@20 seen at the ``--eval-freq`` evaluations, selected on validation only), ``final.pt`` (the
backbone at the end), ``metrics.json`` (validation and test metrics of the pretrained backbone, the
final and the best model), ``hyperparams.yml``, ``progress.csv``. Exported ``.pt`` files are plain
backbone checkpoints: ``scripts/evaluate.py --checkpoint OUT/best.pt``.

Without ``--checkpoint`` a backbone is first pretrained with
:func:`refit_gym.diffusion.training.pretrain` into ``OUT/pretrain/best.pt`` (reused on ``--resume``).
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import yaml

HYPERPARAMS_DIR = Path(__file__).resolve().parents[1] / "agents" / "hyperparams"
ZOO_KEYS = ("n_timesteps", "n_envs", "policy")
SELECT_METRIC = "recall@20"


def log(msg: str) -> None:
    print(f"[train] {msg}", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algo", choices=["refit", "ddpo", "ppo", "a2c"], default="refit")
    p.add_argument("--env", default="refit_gym/DiffRec-v0", help="registered environment id")
    p.add_argument("--data", default="synthetic", help="dataset spec for refit_gym.data.load_dataset")
    p.add_argument("--checkpoint", type=Path, default=None, help="pretrained backbone (default: pretrain one first)")
    p.add_argument("--pretrain-epochs", type=int, default=30, help="epochs of the pretraining run without --checkpoint")
    p.add_argument("--reward", default="refit", help="terminal reward: refit, topk, reconstruction")
    p.add_argument("--hyperparams", type=Path, default=None, help="rl-zoo style YAML overriding the defaults")
    p.add_argument("-n", "--n-timesteps", type=int, default=None, help="override n_timesteps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--tensorboard-log", default=None, help="TensorBoard folder (default: no TensorBoard)")
    p.add_argument("--eval-freq", type=int, default=0, help="validate every N environment steps (0: only at the end)")
    p.add_argument("--save-freq", type=int, default=0, help="save last_model.zip every N environment steps (0: at the end)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default runs/<algo>-<data>)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last_model.zip")
    p.add_argument("--verbose", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print metrics.json on stdout")
    return p


# ---------------------------------------------------------------------------- hyperparameters
def parse_policy_kwargs(value: Any) -> Dict[str, Any]:
    """rl-zoo's ``policy_kwargs``: a dict, or a string ``"dict(a=1, b=[2, 3])"`` / ``"{'a': 1}"`` of literals
    (parsed with ``ast``, never ``eval``)."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return dict(value)
    if not isinstance(value, str):
        raise ValueError(f"policy_kwargs must be a dict or a string, got {type(value).__name__}")
    node = ast.parse(value.strip(), mode="eval").body
    try:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
            return {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords}
        out = ast.literal_eval(node)
    except ValueError as e:
        raise ValueError(f"policy_kwargs {value!r}: only literal values are supported ({e})") from None
    if not isinstance(out, dict):
        raise ValueError(f"policy_kwargs {value!r} is not a dict")
    return out


def parse_schedule(value: Any) -> Any:
    """``"lin_<v>"`` -> a linear schedule from v to 0 (rl-zoo's convention); numbers as floats."""
    if isinstance(value, str) and value.startswith("lin_"):
        start = float(value[4:])
        return lambda progress_remaining: progress_remaining * start
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def load_hyperparams(algo: str, env_id: str, override: Optional[Path]) -> Dict[str, Any]:
    """Defaults of ``agents/hyperparams/<algo>.yml`` for ``env_id``, updated by the file ``override``."""
    def section(path: Path, required: bool) -> Dict[str, Any]:
        blob = yaml.safe_load(path.read_text()) or {}
        if env_id not in blob:
            if required:
                raise SystemExit(f"error: {path} has no section for environment {env_id!r} (sections: {sorted(blob)})")
            return {}
        return dict(blob[env_id] or {})

    params = section(HYPERPARAMS_DIR / f"{algo}.yml", required=False)
    if override is not None:
        if not override.is_file():
            raise SystemExit(f"error: --hyperparams {override}: no such file")
        params.update(section(override, required=True))
    return params


def split_hyperparams(params: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(zoo-level settings, algorithm keyword arguments) with policy_kwargs and schedules parsed."""
    zoo = {k: params[k] for k in ZOO_KEYS if k in params}
    kwargs = {k: v for k, v in params.items() if k not in ZOO_KEYS}
    for unsupported in ("normalize", "frame_stack", "env_wrapper", "callback", "vec_env_wrapper"):
        if unsupported in kwargs:
            raise SystemExit(f"error: hyperparameter {unsupported!r} is not supported by refit-gym's train.py")
    kwargs["policy_kwargs"] = parse_policy_kwargs(kwargs.get("policy_kwargs"))
    for key in ("learning_rate", "clip_range"):
        if key in kwargs:
            kwargs[key] = parse_schedule(kwargs[key])
    return zoo, kwargs


# ---------------------------------------------------------------------------- evaluation and callbacks
def evaluate_splits(adapter, data, device) -> Dict[str, Dict[str, float]]:
    from refit_gym.metrics import evaluate_backbone

    return {split: evaluate_backbone(adapter, data, split, device=device) for split in ("valid", "test")}


def make_callbacks(out: Path, data, device, eval_every: int, save_every: int, state: Dict[str, Any]):
    """SB3 callbacks: validation (logged, printed, best model exported) and periodic saving."""
    from stable_baselines3.common.callbacks import BaseCallback

    from refit_gym.diffusion.checkpoint import save_backbone
    from refit_gym.metrics import evaluate_backbone

    class ValidationCallback(BaseCallback):
        """Every ``eval_every`` calls: validation metrics of the deterministic policy (= the fine-tuned
        backbone's own inference); the best Recall@20 is exported to ``best.pt``."""

        def _on_step(self) -> bool:
            if eval_every > 0 and self.n_calls % eval_every == 0:
                validate(self.model)
            return True

    class SaveCallback(BaseCallback):
        def _on_step(self) -> bool:
            if save_every > 0 and self.n_calls % save_every == 0:
                save_model(self.model, out, state)
            return True

    def validate(model) -> Dict[str, float]:
        metrics = evaluate_backbone(model.policy.denoiser, data, "valid", device=device)
        for key in ("recall@20", "ndcg@20"):
            model.logger.record(f"eval/{key}", metrics[key])
        log(f"step {model.num_timesteps}: valid recall@20 {metrics['recall@20']:.4f} ndcg@20 {metrics['ndcg@20']:.4f}")
        if metrics[SELECT_METRIC] > state["best_valid"].get(SELECT_METRIC, float("-inf")):
            state["best_valid"], state["best_timesteps"] = metrics, int(model.num_timesteps)
            save_backbone(model.policy.denoiser, out / "best.pt", meta=dict(source="scripts/train.py",
                          num_timesteps=int(model.num_timesteps), valid=metrics, data=data.name, n_users=data.n_users))
        return metrics

    return [ValidationCallback(), SaveCallback()], validate


def save_model(model, out: Path, state: Dict[str, Any]) -> None:
    """``last_model.zip`` and the validation tracker, each replaced atomically."""
    tmp = out / "last_model.tmp.zip"
    model.save(tmp)
    os.replace(tmp, out / "last_model.zip")
    (out / "train_state.tmp.json").write_text(json.dumps(state))
    os.replace(out / "train_state.tmp.json", out / "train_state.json")


# ---------------------------------------------------------------------------- main
def obtain_backbone(args, data, kind: str, out: Path, device) -> Path:
    """The pretrained backbone checkpoint: ``--checkpoint`` or a fresh pretraining run in OUT/pretrain."""
    if args.checkpoint is not None:
        if not args.checkpoint.is_file():
            raise SystemExit(f"error: --checkpoint {args.checkpoint}: no such file")
        return args.checkpoint
    path = out / "pretrain" / "best.pt"
    if args.resume and path.is_file():
        log(f"reusing the pretrained backbone {path}")
        return path
    from refit_gym.diffusion import build_backbone
    from refit_gym.diffusion.training import PretrainConfig, pretrain

    log(f"no --checkpoint: pretraining a {kind} backbone for {args.pretrain_epochs} epochs into {path.parent}")
    adapter = build_backbone(kind, data)
    pretrain(adapter, data, PretrainConfig(epochs=args.pretrain_epochs, seed=args.seed), out_dir=path.parent,
             device=device, progress=False, log=log)
    return path


def main(argv=None) -> Dict[str, Any]:
    args = build_parser().parse_args(argv)
    import torch  # noqa: F401  (heavy imports after argument parsing)
    from stable_baselines3.common.vec_env import VecMonitor

    from agents import ALGOS, DenoiserPolicy, NonFiniteTrainingError
    from refit_gym.data import load_dataset
    from refit_gym.diffusion import load_backbone
    from refit_gym.diffusion.checkpoint import save_backbone
    from refit_gym.envs import ENV_IDS
    from refit_gym.envs.factory import make_batched_env
    from refit_gym.utils import resolve_device, set_global_seed

    if args.env not in ENV_IDS:
        raise SystemExit(f"error: --env {args.env!r}: known environment ids {sorted(ENV_IDS)}")
    device = resolve_device(args.device)
    data = load_dataset(args.data)
    out = args.out or Path("runs") / f"{args.algo}-{data.name}"
    out.mkdir(parents=True, exist_ok=True)
    set_global_seed(args.seed)
    checkpoint = obtain_backbone(args, data, ENV_IDS[args.env], out, device)

    params = load_hyperparams(args.algo, args.env, args.hyperparams)
    (out / "hyperparams.yml").write_text(yaml.safe_dump({args.env: params}, sort_keys=True))
    zoo, kwargs = split_hyperparams(params)
    n_timesteps = int(args.n_timesteps if args.n_timesteps is not None else zoo.get("n_timesteps", 1e5))
    n_envs = int(zoo.get("n_envs", 16))
    env = make_batched_env(ENV_IDS[args.env], data, n_envs=n_envs, checkpoint=checkpoint, reward=args.reward,
                           device=device, seed=args.seed)
    algo_cls = ALGOS[args.algo]
    if args.algo in ("ppo", "a2c"):
        env = VecMonitor(env)  # episode statistics for SB3's rollout/ep_rew_mean
        kwargs["policy_kwargs"]["checkpoint"] = str(checkpoint)
        policy: Any = zoo.get("policy", DenoiserPolicy)
        policy = DenoiserPolicy if policy == "DenoiserPolicy" else policy
    else:
        policy = str(checkpoint)

    pretrained, _ = load_backbone(checkpoint, data, device=device)
    state: Dict[str, Any] = {"best_valid": {}, "best_timesteps": None}
    last = out / "last_model.zip"
    if args.resume and last.is_file():
        model = algo_cls.load(last, env=env, device=device, tensorboard_log=args.tensorboard_log)
        if (out / "train_state.json").is_file():
            state = json.loads((out / "train_state.json").read_text())
        before = json.loads((out / "metrics.json").read_text())["pretrained"] if (out / "metrics.json").is_file() \
            else evaluate_splits(pretrained, data, device)
        log(f"resuming {args.algo} from {last} at step {model.num_timesteps}")
    else:
        if args.resume:
            log(f"--resume: {last} does not exist yet; starting from scratch")
        model = algo_cls(policy, env, seed=args.seed, device=device, tensorboard_log=args.tensorboard_log,
                         verbose=args.verbose, **kwargs)
        before = evaluate_splits(pretrained, data, device)
        (out / "metrics.json").write_text(json.dumps({"pretrained": before}, indent=1))
    log(f"pretrained backbone: valid recall@20 {before['valid']['recall@20']:.4f}, "
        f"test recall@20 {before['test']['recall@20']:.4f}")

    from stable_baselines3.common.logger import Logger, make_output_format

    formats = [make_output_format("csv", str(out))] + ([make_output_format("stdout", str(out))] if args.verbose else [])
    if args.tensorboard_log:
        formats.append(make_output_format("tensorboard", str(args.tensorboard_log)))
    model.set_logger(Logger(str(out), formats))  # progress.csv in OUT, TensorBoard events in --tensorboard-log
    eval_every, save_every = (max(f // n_envs, 1) if f > 0 else 0 for f in (args.eval_freq, args.save_freq))
    callbacks, validate = make_callbacks(out, data, device, eval_every, save_every, state)
    remaining = n_timesteps - model.num_timesteps
    try:
        if remaining > 0:
            model.learn(remaining, callback=callbacks, reset_num_timesteps=False)
    except NonFiniteTrainingError as e:
        raise SystemExit(f"error: {e}\nlast good checkpoint: {last if last.is_file() else 'none written'}") from e
    save_model(model, out, state)
    if not state["best_valid"] or state["best_timesteps"] != model.num_timesteps:
        validate(model)  # the final model competes for best.pt too
    save_model(model, out, state)
    save_backbone(model.policy.denoiser, out / "final.pt", meta=dict(source="scripts/train.py", algo=args.algo,
                  num_timesteps=int(model.num_timesteps), data=data.name, n_users=data.n_users))
    best, _ = load_backbone(out / "best.pt", data, device=device)
    metrics = {
        "algo": args.algo, "env": args.env, "data": data.name, "checkpoint": str(checkpoint),
        "num_timesteps": int(model.num_timesteps), "hyperparams": params, "selected_on": f"valid {SELECT_METRIC}",
        "pretrained": before,
        "final": evaluate_splits(model.policy.denoiser, data, device),
        "best": dict(evaluate_splits(best, data, device), num_timesteps=state["best_timesteps"]),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1, default=str))
    for name in ("pretrained", "final", "best"):
        m = metrics[name]
        log(f"{name:>10}: valid recall@20 {m['valid']['recall@20']:.4f} ndcg@20 {m['valid']['ndcg@20']:.4f} | "
            f"test recall@20 {m['test']['recall@20']:.4f} ndcg@20 {m['test']['ndcg@20']:.4f}")
    log(f"outputs in {out}: best.pt (evaluate with scripts/evaluate.py --checkpoint), final.pt, last_model.zip")
    if args.json:
        print(json.dumps(metrics, default=str))
    return metrics


if __name__ == "__main__":
    main()
