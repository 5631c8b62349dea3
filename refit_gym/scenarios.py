"""The recommendation scenarios of ReFiT, each a backbone + data format + environment + protocol.

:data:`SCENARIOS` maps a scenario name to a :class:`Scenario`:

=============  ============================  ==================  ==============  =========================
name           environment id                default backbone    default reward  data
=============  ============================  ==================  ==============  =========================
``cf``         ``refit_gym/DiffRec-v0``      ``diffrec``         ``refit``       InteractionData (ml-1m)
``social``     ``refit_gym/SocialDiffRec-v0`` ``social-diffrec`` ``refit``       with a social graph (social-ciao)
``sequential`` ``refit_gym/DreamRec-v0``     ``dreamrec``        ``refit-seq``   SequentialData (seq-beauty)
``poi``        ``refit_gym/DreamRecPOI-v0``  ``dreamrec-poi``    ``refit-seq``   timestamped SequentialData (poi-gowalla)
=============  ============================  ==================  ==============  =========================

A scenario knows how to load its data from a spec (:meth:`Scenario.load`), build and pretrain its
default backbone (:meth:`Scenario.build_backbone`, :meth:`Scenario.pretrain`, which writes the same
``best.pt`` checkpoint for every scenario), evaluate any scorer with the scenario's protocol
(:meth:`Scenario.evaluate`, :meth:`Scenario.evaluate_backbone`) and fit its non-diffusion baselines
(:meth:`Scenario.baseline_score_fn`). The default reward of a scenario is the one registered with its
environment id (``gymnasium.spec(env_id).kwargs["reward"]``), so ``gymnasium.make(env_id, data=...,
checkpoint=...)`` and the agents need no scenario-specific code.

Evaluation protocols (full ranking over all items; K in ``Scenario.ks``: (10, 20) for sequences,
(10, 20, 50, 100) for interaction data, as :data:`refit_gym.metrics.DEFAULT_KS`):

* ``cf`` / ``social`` (:func:`refit_gym.metrics.evaluate`): Recall@K, NDCG@K, Precision@K, MRR@K,
  HitRate@K over the users with a non-empty ground truth; the user's known items (train, plus
  valid for 'test') are **masked**; diffusion backbones are conditioned on the train history.
* ``sequential`` / ``poi`` (:func:`refit_gym.metrics.evaluate_sequential`): one target per evaluated
  user under the data's protocol (:mod:`refit_gym.data.seq_protocols`): leave-one-out (every user; the
  history is the train sequence for 'valid' and train + validation item for 'test') or user-split (the
  split's users; the history is the items before the target, the last ``max_len``); HR@K (``hitrate@K``) and NDCG@K; the history is **not masked** (repeat consumption is
  legitimate, e.g. POI revisits; ``mask_history=False``), ties count in the target's favour.
  ``Scenario.mask_history`` records the convention.

Score functions everywhere have the signature ``score_fn(users (B,) int64, split) -> (B, n_items)`` scores (a tensor or
array; a sequence backbone's come as :class:`~refit_gym.scores.LowRankScores`, the same values as factors).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from refit_gym.data.dataset import DataError, InteractionData
from refit_gym.data.sequential import SequentialData
from refit_gym.diffusion.adapters import DenoiserAdapter, build_backbone
from refit_gym.diffusion.training import PretrainConfig, PretrainResult, pretrain
from refit_gym.registry import ENVIRONMENTS, SCENARIO_OF_BACKBONE, environment

ScoreFn = Callable[[np.ndarray, str], Any]
KS = (10, 20)


# ---------------------------------------------------------------------------------------------- scenario
@dataclass(frozen=True)
class Scenario:
    """One recommendation scenario (see the module docstring).

    Attributes:
        name: 'cf', 'social', 'sequential' or 'poi'.
        env_id: the default environment id (a row of :data:`refit_gym.registry.ENVIRONMENTS` with this scenario,
            which names the default backbone and reward).
        backbone_kwargs: default architecture keyword arguments of that backbone.
        data_kind: 'interactions' (InteractionData) or 'sequences' (SequentialData).
        needs_social / needs_time: the data must carry a social graph / timestamps.
        metric: validation metric for model selection (a key of :meth:`evaluate`'s output).
        mask_history: whether evaluation masks the user's known items (see the module docstring).
        baselines: names of the non-diffusion baselines (:meth:`baseline_score_fn`).
        datasets: the shared datasets (folders of ``../shared/datasets``) the scenario is run on.
        pretrain_defaults: :class:`~refit_gym.diffusion.training.PretrainConfig` overrides.
        baseline_defaults: per-baseline fit keyword arguments.
    """

    name: str
    env_id: str
    backbone_kwargs: Dict[str, Any]
    data_kind: str
    metric: str
    mask_history: bool
    baselines: Tuple[str, ...]
    datasets: Tuple[str, ...]
    needs_social: bool = False
    needs_time: bool = False
    pretrain_defaults: Dict[str, Any] = field(default_factory=dict)
    baseline_defaults: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    ks: Tuple[int, ...] = KS

    # ------------------------------------------------------------------ defaults
    @property
    def sequential(self) -> bool:
        return self.data_kind == "sequences"

    @property
    def backbone(self) -> str:
        """The default backbone name (a key of ``refit_gym.diffusion.BACKBONES``): :attr:`env_id`'s."""
        return environment(self.env_id)["backbone"]

    @property
    def reward(self) -> str:
        """The default reward name: the one registered with :attr:`env_id` (:data:`refit_gym.registry.ENVIRONMENTS`)."""
        return environment(self.env_id)["reward"]

    def pretrain_config(self, **overrides) -> PretrainConfig:
        """:class:`PretrainConfig` with the scenario's defaults, then ``overrides``."""
        return PretrainConfig(**{"metric": self.metric, **self.pretrain_defaults, **overrides})

    # ------------------------------------------------------------------ data
    def load(self, spec, **kwargs):
        """Load and check the scenario's data: a loaded dataset is returned as is, a spec string / path
        goes through :func:`refit_gym.data.load_dataset` (``kwargs`` to the loader)."""
        from refit_gym.data import load_dataset

        data = load_dataset(spec, **kwargs) if isinstance(spec, (str, Path)) else spec
        return self.check_data(data)

    def check_data(self, data):
        """``data`` if it fits the scenario; DataError naming what is missing otherwise."""
        want = SequentialData if self.sequential else InteractionData
        if not isinstance(data, want):
            raise DataError(f"{getattr(data, 'source', data)}: scenario {self.name!r} needs a {want.__name__} "
                            f"({'a dataset.pkl folder' if self.sequential else 'user-item pairs'}), got "
                            f"{type(data).__name__}")
        if self.needs_social and data.social is None:
            raise DataError(f"{data.source}: scenario {self.name!r} needs a social graph (social_list.npy); "
                            f"field 'social' is None")
        if self.needs_time and not data.has_time:
            raise DataError(f"{data.source}: scenario {self.name!r} needs timestamped sequences "
                            "((item, 'YYYY-MM-DD HH:MM:SS') entries)")
        return data

    # ------------------------------------------------------------------ backbone
    def architecture(self, backbone: Optional[str] = None, **overrides) -> Dict[str, Any]:
        """Constructor keyword arguments of ``backbone`` (default :attr:`backbone`): :attr:`backbone_kwargs`
        for the default backbone only (other backbones keep their constructor defaults), then ``overrides``."""
        kwargs = dict(self.backbone_kwargs) if (backbone or self.backbone) == self.backbone else {}
        kwargs.update(overrides)
        return kwargs

    def build_backbone(self, data, backbone: Optional[str] = None, **overrides) -> DenoiserAdapter:
        """A fresh backbone (default :attr:`backbone`) for ``data``, built with :meth:`architecture`."""
        return build_backbone(backbone or self.backbone, data, **self.architecture(backbone, **overrides))

    def pretrain(self, adapter: DenoiserAdapter, data, cfg: Optional[PretrainConfig] = None, out_dir=None,
                 device="cpu", max_seconds: Optional[float] = None, progress: bool = False, resume: bool = False,
                 log: Callable[[str], None] = print) -> PretrainResult:
        """Pretrain ``adapter`` on ``data`` with :func:`refit_gym.diffusion.training.pretrain` (the one loop; the
        adapter's own objective), validation selection on :attr:`metric` (by default) and this scenario's
        evaluation (:meth:`evaluate_backbone`); writes ``out_dir/best.pt``, ``history.json``, ``tb/`` and the resume
        state ``last_state.pt`` (after every epoch).

        ``max_seconds`` bounds the cumulative wall time in seconds (None: no bound). With ``resume=True`` and
        ``out_dir/last_state.pt`` present, training continues at the epoch after the last finished one, with the
        same weights as an uninterrupted run; a state written for another architecture or other data raises
        :class:`~refit_gym.diffusion.checkpoint.CheckpointError` naming the file.
        Returns a :class:`PretrainResult`; ``adapter`` is left holding the best weights."""
        return pretrain(adapter, data, cfg or self.pretrain_config(), out_dir=out_dir, device=device, progress=progress,
                        resume=resume, evaluate_fn=self.evaluate_backbone, log=log, max_seconds=max_seconds)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, score_fn: ScoreFn, data, split: str = "test", ks: Optional[Sequence[int]] = None,
                 batch_size: int = 1024, users: Optional[np.ndarray] = None) -> Dict[str, float]:
        """Metrics of ``score_fn(users, split) -> (B, n_items)`` on ``split`` with the scenario's protocol
        (``users``: evaluate these users only; default all)."""
        ks = tuple(ks or self.ks)
        if self.sequential:
            from refit_gym.metrics import evaluate_sequential

            return evaluate_sequential(score_fn, data, split, ks, mask_history=self.mask_history,
                                       batch_size=batch_size, users=users)
        from refit_gym.metrics import evaluate

        return evaluate(lambda u: score_fn(u, split), data, split, ks, batch_size, users=users)

    def backbone_score_fn(self, adapter: DenoiserAdapter, data, seed: int = 0) -> ScoreFn:
        """``score_fn(users, split)`` of the backbone's deterministic inference with the scenario's conditioning
        (train history; for sequences train + validation item when scoring 'test'; sequence backbones return
        factored scores, :func:`~refit_gym.diffusion.seq_training.adapter_score_fn`)."""
        if self.sequential:
            from refit_gym.diffusion.seq_training import adapter_score_fn

            return adapter_score_fn(adapter, data, deterministic=True, seed=seed)
        from refit_gym.metrics import backbone_score_fn

        fns = {}

        def score_fn(users, split):
            if split not in fns:
                fns[split] = backbone_score_fn(adapter, data, split)
            return fns[split](users)

        return score_fn

    @torch.no_grad()
    def evaluate_backbone(self, adapter: DenoiserAdapter, data, split: str = "test",
                          ks: Optional[Sequence[int]] = None, batch_size: int = 1024,
                          users: Optional[np.ndarray] = None) -> Dict[str, float]:
        """:meth:`evaluate` of :meth:`backbone_score_fn` (the adapter is left in eval mode)."""
        adapter.eval()
        return self.evaluate(self.backbone_score_fn(adapter, data), data, split, ks, batch_size, users)

    # ------------------------------------------------------------------ baselines
    def baseline_score_fn(self, name: str, data, **fit_kwargs) -> ScoreFn:
        """Fit baseline ``name`` (one of :attr:`baselines`) on the training data; its ``score_fn(users, split)``.

        Sequence scenarios: ``"sasrec"`` (:class:`~refit_gym.seq_baselines.SASRec`, ``fit_kwargs`` to
        ``fit``, e.g. ``epochs``; architecture keywords ``d``, ``n_layers``, ``heads``, ``dropout``) and
        ``"pop"`` (train occurrence counts, repeats included). Interaction scenarios: ``"pop"``, ``"itemknn"``,
        ``"ease"`` of :mod:`refit_gym.baselines` (``fit_kwargs`` to the constructor, e.g. ``lam``, ``k``).
        Defaults: :attr:`baseline_defaults`.
        """
        if name not in self.baselines:
            raise ValueError(f"scenario {self.name!r} has baselines {list(self.baselines)}, not {name!r}")
        kwargs = {**self.baseline_defaults.get(name, {}), **fit_kwargs}
        if name == "sasrec":
            from refit_gym.seq_baselines import SASRec

            arch = {k: kwargs.pop(k) for k in ("d", "n_layers", "heads", "dropout") if k in kwargs}
            return SASRec(data.n_items, data.max_len, **arch).fit(data, **kwargs).scores
        from refit_gym.baselines import BASELINES

        model = BASELINES[name](**kwargs).fit(data)
        return lambda users, split: model.scores(users)

    def has_baseline_grid(self, name: str) -> bool:
        """Whether baseline ``name`` is fitted with its parameter chosen on validation
        (:meth:`baseline_on_validation`): ItemKNN's ``k`` and EASE's ``lam`` on interaction data."""
        from refit_gym.baselines import DEFAULT_GRIDS

        return not self.sequential and name in self.baselines and name in DEFAULT_GRIDS

    def baseline_on_validation(self, name: str, data, metric: str = "ndcg@20"
                               ) -> Tuple[Dict[str, Any], ScoreFn, List[Dict[str, Any]]]:
        """Fit baseline ``name`` on train once per value of its grid (:data:`refit_gym.baselines.DEFAULT_GRIDS`) and
        keep the best on the 'valid' split by ``metric``. Returns ``(params, score_fn(users, split), table)``: the
        kept model's parameters, its scores, and one ``{<parameter>: value, <metric>: valid score}`` per grid value.
        ValueError when the baseline has no grid here (:meth:`has_baseline_grid`)."""
        from refit_gym.baselines import BASELINES, DEFAULT_GRIDS, select_on_validation

        if not self.has_baseline_grid(name):
            raise ValueError(f"scenario {self.name!r}: baseline {name!r} has no validation grid; grids: "
                             f"{[b for b in self.baselines if self.has_baseline_grid(b)]}")
        pname, grid = DEFAULT_GRIDS[name]
        cast = int if pname == "k" else float  # as scripts/evaluate.py: ItemKNN's k is an integer
        sel = select_on_validation(lambda v: BASELINES[name](**{pname: cast(v)}), grid, data, metric=metric)
        model = sel.model
        table = [{pname: cast(r["value"]), metric: r[metric]} for r in sel.table]
        return model.params(), (lambda users, split: model.scores(users)), table

    def baseline_rows(self, data, splits: Sequence[str] = ("test",), names: Optional[Sequence[str]] = None,
                      fit_kwargs: Optional[Dict[str, Dict[str, Any]]] = None) -> List[Dict[str, Any]]:
        """Benchmark rows of the baselines: ``[{"scenario", "data", "model", "split", "fit_seconds", <metrics>}]``."""
        rows = []
        for name in names or self.baselines:
            t0 = time.perf_counter()
            fn = self.baseline_score_fn(name, data, **(fit_kwargs or {}).get(name, {}))
            fit_s = time.perf_counter() - t0
            for split in splits:
                rows.append({"scenario": self.name, "data": data.name, "model": name, "split": split,
                             "fit_seconds": fit_s, **self.evaluate(fn, data, split)})
        return rows


#: pretraining defaults of the sequence scenarios. Early stopping validates on every validation user (``eval_users``
#: None), not on a sample: with one held-out item per user a 1,024-user sample's NDCG@10 is mostly noise (seq-beauty,
#: DreamRec, consecutive epochs: 0.0173, 0.0147, 0.0131, 0.0143, 0.0113 while the training loss fell steadily, so
#: patience stops on noise; results/seq-beauty/probes/pretrain-ce01-long), and a full pass over 22,363 users costs
#: 7.7 s against a 19 s epoch, which the adaptive interval keeps within its budget.
SEQUENCE_PRETRAIN: Dict[str, Any] = dict(batch_size=256, epochs=50, patience=5, eval_users=None)

SCENARIOS: Dict[str, Scenario] = {
    "cf": Scenario(
        name="cf", env_id="refit_gym/DiffRec-v0",
        backbone_kwargs=dict(hidden=[600, 200], emb_size=10, dropout=0.5), data_kind="interactions",
        metric="recall@20", mask_history=True, baselines=("pop", "itemknn", "ease", "t-ease"),
        datasets=("ml-1m", "amazon-beauty"), baseline_defaults={"ease": {"lam": 1000.0}, "t-ease": {"lam": 1000.0},
                                                                "itemknn": {"k": 100}}, ks=(10, 20, 50, 100)),
    "social": Scenario(
        name="social", env_id="refit_gym/SocialDiffRec-v0",
        backbone_kwargs=dict(hidden=[600, 200], emb_size=10, dropout=0.5, top_m=200), data_kind="interactions",
        needs_social=True, metric="recall@20", mask_history=True, baselines=("pop", "itemknn", "ease"),
        datasets=("social-ciao", "social-lastfm"), baseline_defaults={"ease": {"lam": 500.0}, "itemknn": {"k": 100}},
        ks=(10, 20, 50, 100)),
    "sequential": Scenario(
        name="sequential", env_id="refit_gym/DreamRec-v0",
        backbone_kwargs=dict(d=64, n_layers=2, heads=2, dropout=0.1, hidden=[256, 256]), data_kind="sequences",
        metric="ndcg@10", mask_history=False, baselines=("sasrec", "pop"), datasets=("seq-beauty", "seq-ml-1m"),
        pretrain_defaults=SEQUENCE_PRETRAIN, baseline_defaults={"sasrec": {"epochs": 20}}),
    "poi": Scenario(
        name="poi", env_id="refit_gym/DreamRecPOI-v0",
        backbone_kwargs=dict(d=64, n_layers=2, heads=2, dropout=0.1, hidden=[256, 256]), data_kind="sequences",
        needs_time=True, metric="ndcg@10", mask_history=False, baselines=("sasrec", "pop"), datasets=("poi-gowalla",),
        pretrain_defaults=SEQUENCE_PRETRAIN, baseline_defaults={"sasrec": {"epochs": 20}}),
}

def scenario_for(env_id_or_backbone: str) -> Scenario:
    """The scenario of an environment id (``refit_gym/DreamRec-v0``) or a backbone name (``dreamrec``), as the
    identity table :data:`refit_gym.registry.ENVIRONMENTS` says."""
    row = ENVIRONMENTS.get(env_id_or_backbone)
    name = row["scenario"] if row else SCENARIO_OF_BACKBONE.get(env_id_or_backbone)
    if name is None:
        raise KeyError(f"no scenario for {env_id_or_backbone!r}; scenarios: "
                       f"{ {n: (s.env_id, s.backbone) for n, s in SCENARIOS.items()} }")
    return SCENARIOS[name]


__all__ = ["KS", "SCENARIOS", "SCENARIO_OF_BACKBONE", "Scenario", "scenario_for"]
