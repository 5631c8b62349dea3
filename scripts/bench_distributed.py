#!/usr/bin/env python
"""Seconds of data-parallel pretraining epochs and of one sharded validation, for a speed-up measurement.

Run once as one process and once under torchrun, with the same --threads per process::

    python scripts/bench_distributed.py --data ../shared/datasets/ml-1m --threads 1 --epochs 3
    torchrun --nproc_per_node=2 scripts/bench_distributed.py --data ../shared/datasets/ml-1m --threads 1 --epochs 3

Builds the scenario's default (freshly initialised) interaction backbone, times ``--epochs`` pretraining epochs
(:func:`refit_gym.diffusion.training.pretrain`, the global batch of the scenario's defaults, validation replaced by
a constant; the first epoch is a warm-up) and one full validation (users sharded over the processes). Rank 0
prints one JSON object: world size, threads per process, epoch seconds, every rank's CPU seconds of the
pretraining, validation seconds, the machine.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="synthetic")
    p.add_argument("--backbone", default="diffrec", help="an interaction backbone (diffrec, cfdiff, social-diffrec)")
    p.add_argument("--epochs", type=int, default=3, help="pretraining epochs timed (the first is a warm-up)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from refit_gym import distributed
    from refit_gym.diffusion.training import pretrain
    from refit_gym.experiments.cost import machine_info
    from refit_gym.scenarios import scenario_for
    from refit_gym.utils import set_global_seed

    distributed.init_from_env("cpu")
    try:
        scenario = scenario_for(args.backbone)
        data = scenario.load(args.data)
        set_global_seed(args.seed)
        adapter = scenario.build_backbone(data, args.backbone)
        cfg = scenario.pretrain_config(epochs=args.epochs, patience=0, seed=args.seed, eval_users=None)
        cpu0 = time.process_time()
        res = pretrain(adapter, data, cfg, out_dir=None, device="cpu", tensorboard=False, progress=False,
                       evaluate_fn=lambda *_: {cfg.metric: 0.0}, log=lambda m: None)
        # CPU seconds of every rank's pretraining (all epochs): on a machine whose cores are shared with other
        # jobs, single-process CPU / the largest rank's CPU bounds the speed-up free cores would give
        cpu = distributed.gather_rows(torch.tensor([time.process_time() - cpu0], dtype=torch.float64),
                                      distributed.world_size()).tolist()
        distributed.barrier()
        t0 = time.perf_counter()
        metrics = scenario.evaluate_backbone(adapter, data, "valid")
        distributed.barrier()
        eval_seconds = time.perf_counter() - t0
        epochs = [h["epoch_seconds"] for h in res.history]
        out = {"world_size": distributed.world_size(), "threads_per_process": torch.get_num_threads(),
               "data": data.name, "backbone": args.backbone, "batch_size": cfg.batch_size, "epoch_seconds": epochs,
               "epoch_seconds_after_warmup": sum(epochs[1:]) / max(len(epochs) - 1, 1),
               "pretrain_cpu_seconds_per_rank": cpu, "validation_seconds": eval_seconds, "valid_recall@20": metrics["recall@20"], **machine_info()}
        if distributed.is_main():
            print(json.dumps(out))
        return out
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    sys.exit(main() and 0)
