"""Data parallelism with ``torch.distributed``: pretraining, evaluation and fine-tuning (ReFiT, DDPO, Pathwise) on N
processes.

Launch any entry point under ``torchrun`` (``torchrun --nproc_per_node=2 scripts/pretrain.py ...``): it sets
``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``, and :func:`init_from_env`
joins the process group (gloo on CPU, NCCL when the device is CUDA). Without them (``WORLD_SIZE`` unset or 1)
every function here is a no-op on one process, so the same code runs unchanged.

The scheme is synchronous data parallelism with an explicit gradient all-reduce (no
``DistributedDataParallel`` wrapper: the trained modules are called through methods such as
``diffusion_loss``, not ``forward``):

* every rank holds the full model and the same generators (same seeds), so every rank draws the same global
  batch of users, diffusion indices and noise, and keeps only its contiguous block of rows
  (:func:`shard_bounds`);
* each rank's loss is its rows' share of the *global* mean (sum over its rows / global batch size), so
  :func:`all_reduce_gradients` (a sum) leaves on every rank exactly the gradient of one process running the
  whole global batch; the optimizer steps are then identical everywhere;
* metric sums and per-row statistics are reduced (:func:`all_reduce_sum`, :func:`all_reduce_max`,
  :func:`gather_rows`; on CUDA tensors under NCCL, which reduces nothing else: :func:`collective_device`); only
  rank 0 (:func:`is_main`) writes checkpoints, logs and result files.

Every function that communicates is a *collective*: all ranks must call it, in the same order.
"""
from __future__ import annotations

import os
from typing import Iterable, Optional, Tuple, Union

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["active", "all_agree", "all_reduce_gradients", "all_reduce_max", "all_reduce_sum", "barrier",
           "broadcast_parameters", "broadcast_scalar", "check_same", "collective_device", "gather_rows",
           "init_from_env", "is_main", "local_device", "mean_std", "rank", "rank_seed", "shard", "shard_bounds",
           "shutdown", "world_size"]


def init_from_env(device: Union[str, torch.device, None] = None, backend: Optional[str] = None) -> bool:
    """Join the process group described by torchrun's environment variables when ``WORLD_SIZE > 1`` (once;
    later calls do nothing). ``backend`` defaults to NCCL for a CUDA ``device``, else gloo. Returns
    :func:`active`. Raises RuntimeError naming the missing variables when ``WORLD_SIZE > 1`` without them."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        return active()
    missing = [v for v in ("RANK", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if missing:
        raise RuntimeError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} but {missing} unset: launch with torchrun "
                           "(torchrun --nproc_per_node=N script.py ...), which sets them")
    if backend is None:
        backend = "nccl" if device is not None and torch.device(device).type == "cuda" else "gloo"
    dist.init_process_group(backend)
    return active()


def active() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if active() else 0


def world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """True on rank 0, the only process that writes files."""
    return rank() == 0


def local_device(device: Union[str, torch.device]) -> torch.device:
    """``device``, with a bare ``cuda`` mapped to ``cuda:LOCAL_RANK`` (one GPU per process)."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and active():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def collective_device() -> torch.device:
    """Where the host-side collectives of this module (floats, flags) put their tensors: the current CUDA device
    under NCCL, which reduces only CUDA tensors, else the CPU (gloo)."""
    if active() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _host_tensor(values, dtype=torch.float64) -> torch.Tensor:
    """A 1-D tensor of ``values`` on :func:`collective_device` (read back with ``.cpu()``)."""
    return torch.tensor(values, dtype=dtype, device=collective_device())


def shard_bounds(n: int) -> Tuple[int, int]:
    """``(lo, hi)``: this rank's contiguous block of ``n`` rows (blocks differ in size by at most one;
    ``(0, n)`` on one process)."""
    r, w = rank(), world_size()
    return r * n // w, (r + 1) * n // w


def shard(rows: Union[np.ndarray, torch.Tensor]) -> Union[np.ndarray, torch.Tensor]:
    """This rank's block of ``rows`` (first dimension), see :func:`shard_bounds`."""
    lo, hi = shard_bounds(len(rows))
    return rows[lo:hi]


def all_reduce_sum(x: Union[torch.Tensor, float, Iterable[float]]) -> Union[torch.Tensor, np.ndarray, float]:
    """Sum over the ranks: a tensor (reduced in place and returned), a float, or a sequence of floats (a float64
    numpy array back). Collective; the identity on one process."""
    if isinstance(x, torch.Tensor):
        if active():
            dist.all_reduce(x, op=dist.ReduceOp.SUM)
        return x
    scalar = isinstance(x, (int, float))
    t = _host_tensor([float(x)] if scalar else [float(v) for v in x])
    if active():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    t = t.cpu()
    return float(t[0]) if scalar else t.numpy()


def mean_std(x: torch.Tensor) -> Tuple[float, float]:
    """Mean and population standard deviation of all elements of ``x`` over every rank's ``x`` (float64 sums:
    ``x.mean()`` and ``x.std(unbiased=False)`` of the concatenation, up to rounding). Collective."""
    x = x.detach().double()
    total, sq, n = all_reduce_sum([float(x.sum()), float((x * x).sum()), float(x.numel())])
    if n == 0:
        raise ValueError("mean_std: no elements on any rank")
    mean = total / n
    return mean, max(sq / n - mean * mean, 0.0) ** 0.5


def gather_rows(local: torch.Tensor, n_total: int) -> torch.Tensor:
    """The ``(n_total, ...)`` tensor whose :func:`shard_bounds` block on every rank is that rank's ``local``
    rows (an all-reduce of zero-padded copies; every rank gets the whole). Collective."""
    if not active():
        return local
    lo, hi = shard_bounds(n_total)
    if local.shape[0] != hi - lo:
        raise ValueError(f"rank {rank()}: {local.shape[0]} local rows, expected {hi - lo} of {n_total}")
    comm = local.device if local.device.type == "cuda" else collective_device()
    full = torch.zeros((n_total,) + tuple(local.shape[1:]), dtype=local.dtype, device=comm)
    full[lo:hi] = local.to(comm)
    dist.all_reduce(full, op=dist.ReduceOp.SUM)
    return full.to(local.device)


def all_reduce_gradients(params: Union[torch.nn.Module, Iterable[torch.nn.Parameter]],
                         extra: Optional[Iterable[float]] = None) -> Optional[np.ndarray]:
    """Sum the gradients of ``params`` (a module's trainable parameters) over the ranks, in one flat buffer.

    A parameter that some rank left without a gradient (``grad is None``: its share of the loss does not
    depend on it, e.g. a rank with no rows in a minibatch) counts as zeros there, which is that share's exact
    gradient; a parameter that *no* rank used keeps ``grad = None`` on every rank, as it would on one process
    (an optimizer skips such parameters: a zero gradient would still move Adam's moments and apply weight decay,
    so the ranks would drift from the one-process update). ``extra``: floats summed in the same collective
    (e.g. the loss terms of the update, so that every rank can check the global loss before stepping),
    returned as a float64 array (in the first parameter's dtype during the reduction); None when not given.
    Collective; a no-op on one process (``extra`` returned as an array)."""
    extra = None if extra is None else [float(v) for v in extra]
    if not active():
        return None if extra is None else np.asarray(extra, dtype=np.float64)
    if isinstance(params, torch.nn.Module):
        params = params.parameters()
    params = [p for p in params if p.requires_grad]
    if not params:  # nothing to train: only the extras
        return None if extra is None else np.asarray(all_reduce_sum(extra) if extra else [], dtype=np.float64)
    ref = params[0]
    dtype = ref.dtype  # the same on every rank (a gradient has its parameter's dtype)
    has_grad = torch.tensor([p.grad is not None for p in params], dtype=dtype, device=ref.device)
    tail = torch.tensor(extra or [], dtype=dtype, device=ref.device)
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).to(dtype) for p in params]
                     + [has_grad, tail])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    used = flat[-len(params) - len(tail):len(flat) - len(tail)] > 0
    for p, any_rank in zip(params, used.tolist()):
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).to(p.dtype).clone() if any_rank else None
        offset += n
    return None if extra is None else flat[len(flat) - len(tail):].double().cpu().numpy()


def all_reduce_max(x: Iterable[float]) -> np.ndarray:
    """Elementwise maximum over the ranks of a sequence of floats (a float64 array back; the minimum of ``v``
    is ``-all_reduce_max([-v])``). Collective; the identity on one process."""
    t = _host_tensor([float(v) for v in x])
    if active():
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.cpu().numpy()


def all_agree(flag: bool) -> bool:
    """True when ``flag`` is true on every rank (a logical AND; e.g. a shortcut every rank must take or skip
    together because it changes how many numbers they draw from a shared generator). Collective."""
    if not active():
        return bool(flag)
    return float(all_reduce_max([0.0 if flag else 1.0])[0]) == 0.0


def broadcast_parameters(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank (same starting point). Collective."""
    if not active():
        return
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, src)


def check_same(value: float, what: str) -> None:
    """RuntimeError on every rank unless all ranks hold the same number ``value`` (e.g. a batch size or
    whether a resume state was found). Collective."""
    if not active():
        return
    t = _host_tensor([float(value), -float(value)])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    t = t.cpu()
    if float(t[0]) != -float(t[1]):
        raise RuntimeError(f"ranks disagree on {what}: values range over [{-float(t[1])}, {float(t[0])}]")


def rank_seed(*keys: int) -> int:
    """A seed for this rank's own draws (e.g. dropout masks, which cannot follow a global batch) derived from
    ``keys`` and the rank, so that ranks do not repeat each other's masks."""
    return int(np.random.SeedSequence([*(int(k) for k in keys), rank()]).generate_state(1)[0])


def barrier() -> None:
    """Wait for every rank (e.g. before reading a file rank 0 wrote). Collective."""
    if active():
        dist.barrier()


def shutdown() -> None:
    """Leave the process group (end of a torchrun entry point); a no-op without one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_scalar(value: float, src: int = 0) -> float:
    """Rank ``src``'s ``value`` (a float) on every rank, e.g. a decision taken on rank 0's clock. Collective; the
    identity on one process."""
    if not active():
        return float(value)
    t = _host_tensor([float(value) if rank() == src else 0.0])
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.cpu()[0])
