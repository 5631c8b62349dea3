"""Gaussian diffusion schedule with DiffRec's options.

Conventions (used by every other module):

* ``T = steps``; the diffusion *index* ``i`` is an integer in ``[0, T-1]``. ``x_i`` is the vector
  after ``i + 1`` forward noising steps, ``q(x_i | x_0) = N(sqrt(abar_i) x_0, (1 - abar_i) I)``.
* The reverse step at index ``i`` maps ``x_i`` to ``x_{i-1}`` (``x_{-1}`` is the clean ``x_0``):
  ``p(x_{i-1} | x_i) = N(mu_i(x_i, x0_hat), var_i I)`` with the posterior mean
  ``mu_i = c1_i * x0_hat + c2_i * x_i`` and the *fixed* posterior variance
  ``var_i = beta_i (1 - abar_{i-1}) / (1 - abar_i)`` (``abar_{-1} = 1``). At ``i = 0`` that variance
  is 0; like DiffRec (and DDPM's ``log_variance_clipped``) we use ``var_1`` there, so every reverse
  step, the last one included, is a proper Gaussian with a finite log-probability.
* Gymnasium environments count ``t`` = remaining reverse steps, ``t = T .. 1``; the step taken from
  ``t`` uses index ``i = t - 1``.
* Respacing (``inference_steps = K``, improved-diffusion's ``space_timesteps``): the reverse chain runs
  K steps on the evenly spaced subsequence ``tau_0 = 0 < ... < tau_{K-1} = T - 1`` of the training indices
  (:func:`respaced_timesteps`), as DDPM on that subsequence: ``abar'_k = abar_{tau_k}``,
  ``beta'_k = 1 - abar'_k / abar'_{k-1}``, and the posterior tables recomputed from those. The reverse
  chain then counts *chain* indices ``k`` in ``[0, K-1]`` (environments: ``t = K .. 1``, ``k = t - 1``);
  the denoiser is called with the training index ``tau_k`` (:meth:`GaussianDiffusion.model_index`), so a
  model pretrained on T steps runs unchanged. The forward process and the pretraining objective
  (``q_sample``, ``timestep_weight``, ``check_index``, ``steps``) keep the full T-step schedule.
  Without respacing (K None, or K = T) chain and training indices coincide and the tables are the
  full schedule's, the same objects.

All tables are computed in float64 numpy and served as float32 torch tensors on ``device``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Dict, Optional

import numpy as np
import torch

NOISE_SCHEDULES = ("linear", "linear-var", "cosine")
MEAN_TYPES = ("x0", "eps")


@dataclass(frozen=True)
class ScheduleConfig:
    """Everything that defines a schedule (stored in checkpoints).

    noise_schedule: 'linear' (betas linear in [scale*min, scale*max]), 'linear-var' (the
        *variance* 1 - abar linear in that range, DiffRec's default) or 'cosine'.
    noise_scale, noise_min, noise_max: DiffRec's noise range (dimensionless).
    steps: T, the number of diffusion steps.
    mean_type: what the denoiser predicts, 'x0' or 'eps'.
    sampling_steps: the noise level of the inference starting point: 0 starts from the clean
        history vector (DiffRec's choice), k > 0 from q(x_{k-1} | history).
    inference_steps: K, the reverse steps the chain runs (the environment's episode length, inference,
        fine-tuning): an evenly spaced subsequence of the T training steps (see the module docstring);
        None: all T (left out of :meth:`to_dict` then, so such checkpoints are unchanged). The chain
        always spans the whole schedule (from index T - 1, also with ``sampling_steps`` > 0, as
        DiffRec runs all T steps from its noised start), so K is in [1, T].
    """

    noise_schedule: str = "linear-var"
    noise_scale: float = 0.005
    noise_min: float = 0.005
    noise_max: float = 0.01
    steps: int = 40
    mean_type: str = "x0"
    sampling_steps: int = 0
    inference_steps: Optional[int] = None

    def __post_init__(self):
        if self.noise_schedule not in NOISE_SCHEDULES:
            raise ValueError(f"noise_schedule={self.noise_schedule!r}: expected one of {NOISE_SCHEDULES}")
        if self.mean_type not in MEAN_TYPES:
            raise ValueError(f"mean_type={self.mean_type!r}: expected one of {MEAN_TYPES}")
        if int(self.steps) < 2:
            raise ValueError(f"steps={self.steps}: need at least 2 diffusion steps")
        if not 0 <= int(self.sampling_steps) <= int(self.steps):
            raise ValueError(f"sampling_steps={self.sampling_steps}: expected 0..steps ({self.steps})")
        check_inference_steps(self.inference_steps, int(self.steps))
        if self.noise_schedule != "cosine":
            if not (self.noise_scale > 0 and 0 < self.noise_min <= self.noise_max and self.noise_scale * self.noise_max < 1):
                raise ValueError(
                    f"noise range scale={self.noise_scale}, min={self.noise_min}, max={self.noise_max}: "
                    "need scale > 0, 0 < min <= max and scale * max < 1"
                )

    def to_dict(self) -> Dict:
        d = asdict(self)
        if d["inference_steps"] is None:  # the full chain: stored as before the option existed
            del d["inference_steps"]
        return d


def check_inference_steps(k, steps: int) -> None:
    """ValueError naming ``k`` unless it is None or an integer in ``[1, steps]``."""
    if k is None:
        return
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"inference_steps={k!r}: expected an integer number of reverse steps (or None: all {steps})")
    if not 1 <= int(k) <= steps:
        raise ValueError(f"inference_steps={k}: the reverse chain runs 1 to T={steps} of the schedule's steps "
                         f"(None: all {steps})")


def respaced_timesteps(steps: int, k: Optional[int]) -> np.ndarray:
    """The training indices the chain keeps, ascending int64 ``(K,)``: ``round(linspace(0, T-1, K))`` (both
    ends kept: the chain starts at T - 1 and ends at 0); ``[T - 1]`` for K = 1 (one x0 prediction from the
    start); ``arange(T)`` for K None or T."""
    check_inference_steps(k, int(steps))
    T = int(steps)
    if k is None or int(k) == T:
        return np.arange(T, dtype=np.int64)
    if int(k) == 1:
        return np.array([T - 1], dtype=np.int64)
    kept = np.round(np.linspace(0, T - 1, int(k))).astype(np.int64)
    assert len(np.unique(kept)) == len(kept), kept  # spacing >= 1 keeps rounded indices distinct
    return kept


def make_betas(cfg: ScheduleConfig, max_beta: float = 0.999) -> np.ndarray:
    """The forward-process betas, float64 array of shape (T,)."""
    T = int(cfg.steps)
    if cfg.noise_schedule in ("linear", "linear-var"):
        lo, hi = cfg.noise_scale * cfg.noise_min, cfg.noise_scale * cfg.noise_max
        ramp = np.linspace(lo, hi, T, dtype=np.float64)
        if cfg.noise_schedule == "linear":
            return ramp
        # linear variance: 1 - abar_i = ramp_i  =>  beta_i = 1 - abar_i / abar_{i-1}
        abar = 1.0 - ramp
        prev = np.concatenate([[1.0], abar[:-1]])
        return np.minimum(1.0 - abar / prev, max_beta)
    # cosine (Nichol & Dhariwal): abar(s) = cos^2(((s + 0.008) / 1.008) * pi / 2)
    f = lambda s: math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    return np.array([min(1 - f((i + 1) / T) / f(i / T), max_beta) for i in range(T)], dtype=np.float64)


def schedule_tables(betas: np.ndarray, last_var: Optional[float] = None) -> Dict[str, np.ndarray]:
    """Every float64 table (shape (T,)) of the schedule with forward betas ``betas``; the clipped posterior
    variance takes ``var_1`` at index 0 (``last_var`` when there is no index 1)."""
    alphas = 1.0 - betas
    abar = np.cumprod(alphas)
    abar_prev = np.concatenate([[1.0], abar[:-1]])
    post_var = betas * (1.0 - abar_prev) / (1.0 - abar)
    post_var_clipped = np.concatenate([[post_var[1] if len(post_var) > 1 else last_var], post_var[1:]])
    return dict(
        betas=betas, alphas_cumprod=abar, alphas_cumprod_prev=abar_prev,
        sqrt_alphas_cumprod=np.sqrt(abar), sqrt_one_minus_alphas_cumprod=np.sqrt(1 - abar),
        sqrt_recip_alphas_cumprod=np.sqrt(1 / abar), sqrt_recipm1_alphas_cumprod=np.sqrt(1 / abar - 1),
        posterior_variance=post_var, posterior_variance_clipped=post_var_clipped,
        posterior_log_variance_clipped=np.log(post_var_clipped),
        posterior_mean_coef1=betas * np.sqrt(abar_prev) / (1 - abar),
        posterior_mean_coef2=(1 - abar_prev) * np.sqrt(alphas) / (1 - abar),
        snr=abar / (1 - abar),
    )


class GaussianDiffusion:
    """Schedule tables plus the forward and reverse Gaussian algebra, batched over users.

    Tensors: ``x`` is ``(B, D)`` float32, ``i`` a ``(B,)`` int64 tensor of diffusion indices: training
    indices in ``[0, T-1]`` for the forward process and the objective, chain indices in ``[0, K-1]`` for
    the reverse process (the same unless respaced, see the module docstring).

    Attributes: ``steps`` T; ``chain_steps`` K (T unless respaced); ``timesteps`` the training index of each
    chain index; ``respaced`` K < T.
    """

    def __init__(self, cfg: ScheduleConfig = ScheduleConfig(), device="cpu"):
        self.cfg = cfg
        self.steps = int(cfg.steps)
        self.device = torch.device(device)
        betas = make_betas(cfg)
        if not (np.all(betas > 0) and np.all(betas < 1)):
            raise ValueError(f"schedule {cfg}: betas out of (0, 1): min {betas.min()}, max {betas.max()}")
        self._np = schedule_tables(betas)
        self._t = {k: torch.as_tensor(v, dtype=torch.float32, device=self.device) for k, v in self._np.items()}
        #: the training index of each chain index, ascending int64 (K,) (see the module docstring)
        self.timesteps = respaced_timesteps(self.steps, cfg.inference_steps)
        self.chain_steps = len(self.timesteps)
        self.respaced = self.chain_steps != self.steps
        if self.respaced:
            abar = self._np["alphas_cumprod"][self.timesteps]
            chain_betas = 1.0 - abar / np.concatenate([[1.0], abar[:-1]])
            # K = 1 has no second step to borrow the last step's variance from: keep the full schedule's
            self._chain_np = schedule_tables(chain_betas, self._np["posterior_variance_clipped"][0])
            self._chain_t = {k: torch.as_tensor(v, dtype=torch.float32, device=self.device)
                             for k, v in self._chain_np.items()}
            self._index = torch.as_tensor(self.timesteps, device=self.device)
        else:
            self._chain_np, self._chain_t = self._np, self._t

    # -------------------------------------------------------------- helpers
    def table(self, name: str) -> np.ndarray:
        """A float64 copy of one schedule table (shape (T,)), e.g. 'posterior_variance_clipped'."""
        return self._np[name].copy()

    def chain_table(self, name: str) -> np.ndarray:
        """A float64 copy of one table of the reverse chain (shape (K,), chain indices; :meth:`table` when not
        respaced)."""
        return self._chain_np[name].copy()

    def to(self, device) -> "GaussianDiffusion":
        return GaussianDiffusion(self.cfg, device)

    def _at(self, name: str, i: torch.Tensor, chain: bool = False) -> torch.Tensor:
        """Gather table ``name`` (of the reverse chain if ``chain``) at indices ``i`` (B,) -> (B, 1) for
        broadcasting over D."""
        tables = self._chain_t if chain else self._t
        tab = tables[name]
        if tab.device != i.device:
            tab = tab.to(i.device)
            tables[name] = tab
        return tab[i.long()].unsqueeze(-1)

    def check_index(self, i: torch.Tensor) -> None:
        if i.numel() and (int(i.min()) < 0 or int(i.max()) >= self.steps):
            raise ValueError(f"diffusion index out of range [0, {self.steps - 1}]: got {i.tolist()[:8]}")

    def model_index(self, i: torch.Tensor) -> torch.Tensor:
        """The training indices ``(B,)`` the denoiser sees at chain indices ``i`` (B,) int64 in ``[0, K-1]``
        (``i`` itself when not respaced)."""
        if not self.respaced:
            return i
        if self._index.device != i.device:
            self._index = self._index.to(i.device)
        return self._index[i.long()]

    # -------------------------------------------------------------- forward process
    def q_sample(self, x0: torch.Tensor, i: torch.Tensor, noise: Optional[torch.Tensor] = None,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Draw ``x_i ~ q(x_i | x0)``: (B, D) (training indices)."""
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        return self._at("sqrt_alphas_cumprod", i) * x0 + self._at("sqrt_one_minus_alphas_cumprod", i) * noise

    # -------------------------------------------------------------- reverse process (chain indices)
    def q_posterior(self, x0: torch.Tensor, x_i: torch.Tensor, i: torch.Tensor):
        """Mean (B, D) and clipped variance (B, 1) of ``q(x_{i-1} | x_i, x0)`` at chain indices ``i``."""
        mean = self._at("posterior_mean_coef1", i, True) * x0 + self._at("posterior_mean_coef2", i, True) * x_i
        return mean, self._at("posterior_variance_clipped", i, True)

    def x0_from_output(self, model_out: torch.Tensor, x_i: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        """The denoiser's x0 estimate from its raw output at chain indices ``i`` (identity for mean_type='x0')."""
        if self.cfg.mean_type == "x0":
            return model_out
        return (self._at("sqrt_recip_alphas_cumprod", i, True) * x_i
                - self._at("sqrt_recipm1_alphas_cumprod", i, True) * model_out)

    def reverse_mean_std(self, model_out: torch.Tensor, x_i: torch.Tensor, i: torch.Tensor):
        """Mean (B, D) and standard deviation (B, 1) of ``p(x_{i-1} | x_i)`` at chain indices ``i``."""
        x0_hat = self.x0_from_output(model_out, x_i, i)
        mean, var = self.q_posterior(x0_hat, x_i, i)
        return mean, var.sqrt()

    def reverse_std(self, i: torch.Tensor) -> torch.Tensor:
        """Fixed reverse-step standard deviation at chain indices ``i``: (B, 1)."""
        return self._at("posterior_variance_clipped", i, True).sqrt()

    # -------------------------------------------------------------- training objective
    def timestep_weight(self, i: torch.Tensor) -> torch.Tensor:
        """DiffRec's reweighting: SNR(i-1) - SNR(i) for x0 prediction (1 at i = 0), 1 for eps. Shape (B,)."""
        if self.cfg.mean_type == "eps":
            return torch.ones_like(i, dtype=torch.float32)
        snr = self._t["snr"].to(i.device)
        prev = snr[(i - 1).clamp(min=0)]
        return torch.where(i == 0, torch.ones_like(prev), prev - snr[i])
