"""Python-level profile (cProfile) of DDPO's shipped seq-beauty recipe: a freshly initialised DreamRec, chain
respaced to K = 10 (as bench_cost.py --inference-steps 10); one warm-up rollout + update, then ROLLOUTS more.
Prints the wall time per rollout + update and the functions by own time.
    python results/seq-beauty/probes/profile_ddpo/run_cprofile.py [ROLLOUTS]"""
import cProfile
import io
import pstats
import sys
import time

import torch

from agents import ALGOS
from refit_gym.data import load_dataset
from refit_gym.envs.batched import BatchedDenoisingEnv
from refit_gym.experiments.hyperparams import load_hyperparams, split_hyperparams
from refit_gym.scenarios import SCENARIOS

torch.set_num_threads(1)
rollouts = int(sys.argv[1]) if len(sys.argv) > 1 else 20
data = load_dataset("../shared/datasets/seq-beauty")
scenario = SCENARIOS["sequential"]
torch.manual_seed(0)
adapter = scenario.build_backbone(scenario.check_data(data))
adapter.set_inference_steps(10)
zoo, kwargs = split_hyperparams(load_hyperparams("ddpo", "refit_gym/DreamRec-v0"))
n_envs = int(zoo["n_envs"])
env = BatchedDenoisingEnv(data, adapter, n_envs, zoo.get("reward") or "refit", "cpu", zoo.get("reward_kwargs"), seed=0)
model = ALGOS["ddpo"](adapter, env, seed=0, device="cpu", **kwargs)
per = n_envs * adapter.schedule.chain_steps
model.learn(per)
prof = cProfile.Profile()
t = time.perf_counter()
prof.enable()
model.learn(rollouts * per, reset_num_timesteps=True)
prof.disable()
print(f"{rollouts} rollouts + updates: {(time.perf_counter() - t) / rollouts * 1e3:.0f} ms each under cProfile")
out = io.StringIO()
pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(20)
print(out.getvalue())
